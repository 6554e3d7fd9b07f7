import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Clock } from '../../src/clock.js';
import { AppError } from '../../src/errors.js';
import { bodyErrors, errorResponses, tokenPairSchema } from '../../src/api-docs/schemas.js';
import { noStore } from '../../src/http/no-store.js';
import type { Services } from '../../src/services/index.js';

// The fields the Telegram Login Widget hands to the website; Telegram may add more, and the hash covers all.
const widgetFields = z
  .looseObject({
    id: z.union([z.number().int().positive(), z.string().regex(/^\d{1,20}$/)]),
    first_name: z.string().max(256).optional(),
    last_name: z.string().max(256).optional(),
    username: z.string().max(64).optional(),
    photo_url: z.string().max(2048).optional(),
    auth_date: z.union([z.number().int().positive(), z.string().regex(/^\d{1,12}$/)]),
    hash: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 hex characters'),
  })
  .refine((fields) => Object.values(fields).every((value) => ['string', 'number', 'boolean'].includes(typeof value)), {
    message: 'fields must be strings or numbers',
  });

export type WidgetFields = z.infer<typeof widgetFields>;

/**
 * Telegram's check: HMAC-SHA256 of the data-check-string (every field but hash, sorted, as key=value lines) under the
 * SHA-256 of the bot token, compared in constant time.
 */
export function isAuthenticWidgetLogin(fields: Record<string, unknown>, botToken: string): boolean {
  const { hash, ...data } = fields;
  if (typeof hash !== 'string') return false;
  const dataCheckString = Object.keys(data)
    .filter((key) => data[key] !== undefined && data[key] !== null)
    .sort()
    .map((key) => `${key}=${String(data[key])}`)
    .join('\n');
  const secretKey = createHash('sha256').update(botToken).digest();
  const expected = createHmac('sha256', secretKey).update(dataCheckString).digest();
  const given = Buffer.from(hash, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export interface TelegramWidgetOptions {
  services: Services;
  botToken: string;
  maxAgeSeconds: number;
  clock: Clock;
  rateLimit: object;
}

/** POST /auth/telegram/widget: a website's Telegram Login Widget result, exchanged for tokens. */
export const telegramWidgetRoute: FastifyPluginAsyncZod<TelegramWidgetOptions> = async (app, options) => {
  const route = {
    config: { rateLimit: options.rateLimit },
    onRequest: noStore,
    schema: {
      tags: ['telegram'],
      summary: 'Exchange a Telegram Login Widget result for tokens',
      description: 'The fields exactly as the widget handed them over; the hash covers all of them. Each result is exchanged once.',
      body: widgetFields,
      response: {
        200: tokenPairSchema,
        ...errorResponses(...bodyErrors, 'invalid_signature', 'token_expired', 'token_reused', 'user_blocked'),
      },
    },
  };
  app.post('/auth/telegram/widget', route, async (request) => {
    const fields = request.body;
    if (!isAuthenticWidgetLogin(fields, options.botToken)) {
      throw new AppError('invalid_signature', 'The Telegram login data does not match its hash.');
    }
    const ageSeconds = options.clock.now().getTime() / 1000 - Number(fields.auth_date);
    if (ageSeconds > options.maxAgeSeconds) throw new AppError('token_expired', 'This Telegram login is too old; sign in with Telegram again.');
    // One exchange per widget login: a copy of the payload (it can travel in a redirect URL) is worth nothing.
    if (!(await options.services.reservations.reserve(`telegram-widget:${fields.hash}`, options.maxAgeSeconds + 60))) {
      throw new AppError('token_reused', 'This Telegram login was already used; sign in with Telegram again.');
    }
    const user = await options.services.identities.resolveByTelegram({
      id: Number(fields.id),
      username: fields.username,
      firstName: fields.first_name,
    });
    return options.services.tokens.issueForLogin(user, 'telegram', { ip: request.ip, userAgent: request.headers['user-agent'] });
  });
};
