import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import QRCode from 'qrcode';
import { z } from 'zod';
import type { Channel } from '../../models/channels.js';
import type { CodeSender } from '../delivery/types.js';
import type { User } from '../../models/user.js';
import { AppError } from '../errors.js';
import { bearerToken, parseInput } from '../http/input.js';
import { parsePhone } from '../phone.js';
import { pageLanguages, type PageLanguage } from './texts.js';
import type { Services } from '../services/index.js';

// The small API the page's script calls, the same under /login/api (a direct visit) and under
// /oidc/interaction/:uid/api (an OpenID Connect sign-in); only what happens once the person is known differs.

/** What the script does next: follow a redirect (OIDC), or show who signed in (a direct visit). */
export type Next = { redirectTo: string } | { signedIn: Record<string, unknown> };

export type IntentAnswer = { status: 'pending' | 'rejected' | 'expired' | 'consumed' } | { status: 'approved'; next: Next };

export interface PageApiOptions {
  prefix: string;
  services: Services;
  defaultCountry?: string | undefined;
  testNumbers?: ReadonlyMap<string, string> | undefined;
  rateLimit: object;
  /** The person proved their phone (or chat account): finish the sign-in. */
  complete(request: FastifyRequest, reply: FastifyReply, user: User, channel: Channel): Promise<Next>;
  /** An intent's state; `approved` comes with the user, exactly once. */
  pollIntent(request: FastifyRequest, reply: FastifyReply, intentId: string, pollToken: string | undefined): Promise<IntentAnswer>;
  /** The SMS sender wording the code in the page's language, when the operator kept the default OTP_MESSAGE. */
  smsIn?: (language: PageLanguage) => CodeSender | undefined;
  /** Runs before every call: the OIDC page checks that its interaction still exists. */
  guard?: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  /** "Log in with Telegram" (TELEGRAM_OIDC_CLIENT_ID/SECRET) is configured: intents may be completed through it. */
  telegramLogin?: boolean;
  /** The page this API belongs to: where "Log in with Telegram" brings the browser back. */
  pagePath?: (request: FastifyRequest) => string;
}

const requestBody = z.strictObject({
  // Short or odd input is left to the phone parser, whose refusal the page words as "not a phone number".
  phone: z.string().min(1).max(32),
  country: z.string().regex(/^[A-Z]{2}$/).optional(),
  channel: z.enum(['sms', 'whatsapp', 'telegram', 'auto']).default('sms'),
  // The page's language, so the SMS speaks it too.
  language: z.enum(pageLanguages).optional(),
});
const verifyBody = z.strictObject({ challengeId: z.string().min(1).max(64), code: z.string().min(1).max(32) });
// telegram_login: the intent is completed by Telegram's OpenID Connect login in this same browser, not in a chat.
const intentBody = z.strictObject({ chat: z.enum(['whatsapp', 'telegram', 'telegram_login']), language: z.enum(pageLanguages).optional() });
const intentParams = z.object({ intentId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'is not an intent id') });

export async function registerPageApi(app: FastifyInstance, options: PageApiOptions): Promise<void> {
  const { prefix, services, rateLimit } = options;
  const guard = options.guard ?? (async () => undefined);

  app.post(`${prefix}/otp/request`, { config: { rateLimit } }, async (request, reply) => {
    await guard(request, reply);
    const body = parseInput(requestBody, request.body);
    const { e164 } = parsePhone(body.phone, body.country ?? options.defaultCountry, options.testNumbers);
    const via = body.channel === 'sms' && body.language ? options.smsIn?.(body.language) : undefined;
    const sent = await services.otp.requestCode({ phone: e164, channel: body.channel, ip: request.ip, ...(via ? { via } : {}) });
    const shown = parsePhoneNumberFromString(e164)?.formatInternational() ?? e164;
    return { ...sent, phone: shown };
  });

  app.post(`${prefix}/otp/verify`, { config: { rateLimit } }, async (request, reply) => {
    await guard(request, reply);
    const body = parseInput(verifyBody, request.body);
    const { user, channel } = await services.otp.verifyCode({ ...body, ip: request.ip });
    return options.complete(request, reply, user, channel);
  });

  app.post(`${prefix}/intents`, { config: { rateLimit } }, async (request, reply) => {
    await guard(request, reply);
    const { chat, language } = parseInput(intentBody, request.body);
    if (chat === 'telegram_login') {
      if (!options.telegramLogin || !options.pagePath) throw new AppError('channel_unavailable', 'Log in with Telegram is not set up here.', { channel: 'telegram' });
      const intent = await services.loginIntents.create({ ip: request.ip, userAgent: request.headers['user-agent'] });
      // Back to this page (in its language) with the outcome in the query; the page then polls the intent.
      const returnTo = `${options.pagePath(request)}${language ? `?lang=${language}` : ''}`;
      const link = `/auth/telegram/login?${new URLSearchParams({ intent: intent.startToken, return_to: returnTo }).toString()}`;
      return reply.code(201).send({ intentId: intent.intentId, pollToken: intent.pollToken, expiresIn: intent.expiresIn, link });
    }
    // The page's language, so the bot's prompt and answers of this sign-in speak it too.
    const intent = await services.loginIntents.create({ ip: request.ip, userAgent: request.headers['user-agent'], language });
    const link = intent.links[chat];
    if (!link) throw new AppError('channel_unavailable', `Signing in through ${chat} is not set up here.`, { channel: chat });
    // A data URL of an SVG: shown with <img>, so no markup from the server is ever inserted into the page.
    const svg = await QRCode.toString(link, { type: 'svg', errorCorrectionLevel: 'M', margin: 1 });
    return reply.code(201).send({
      intentId: intent.intentId,
      pollToken: intent.pollToken,
      code: intent.code,
      expiresIn: intent.expiresIn,
      link,
      qr: `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`,
    });
  });

  app.get(`${prefix}/intents/:intentId`, async (request, reply) => {
    await guard(request, reply);
    const { intentId } = parseInput(intentParams, request.params);
    const answer = await options.pollIntent(request, reply, intentId, bearerToken(request.headers.authorization));
    if ('next' in answer) return { status: 'approved', ...answer.next };
    return { status: answer.status };
  });
}
