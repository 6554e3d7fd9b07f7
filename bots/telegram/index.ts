import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Telegraf } from 'telegraf';
import type { Update } from 'telegraf/types';
import { z } from 'zod';
import { errorResponses } from '../../src/api-docs/schemas.js';
import { AppError } from '../../src/errors.js';
import { bodyDocumentedOnly } from '../../src/http/input.js';
import { scrubExternalText } from '../../src/logger.js';
import type { Inbox } from '../../src/services/inbox.js';
import { secretsMatch } from '../../src/secrets.js';

export interface TelegramWebhookOptions {
  secret: string;
  inbox: Inbox;
}

const updateShape = z.looseObject({ update_id: z.number().int().nonnegative() });

const updateRoute = {
  config: { rateLimit: false as const },
  // Documented, not validated before the secret check: a stranger gets 401 whatever it sends, and an update of an
  // unexpected shape is acknowledged (and ignored) so Telegram does not redeliver it forever.
  validatorCompiler: bodyDocumentedOnly,
  schema: {
    tags: ['webhooks'],
    summary: 'Telegram: bot updates (called by Telegram, with X-Telegram-Bot-Api-Secret-Token)',
    headers: z.looseObject({ 'x-telegram-bot-api-secret-token': z.string().optional() }),
    body: updateShape,
    response: {
      200: z.object({ received: z.number().int() }),
      ...errorResponses('unauthorized', 'invalid_json', 'payload_too_large', 'unsupported_media_type', 'service_unavailable'),
    },
  },
};

/**
 * POST /webhooks/telegram: Telegram sends updates here with the secret given to setWebhook in
 * X-Telegram-Bot-Api-Secret-Token. Updates are stored (once per update_id) before the 200, then handled.
 */
export const telegramWebhook: FastifyPluginAsyncZod<TelegramWebhookOptions> = async (app, options) => {
  app.post('/webhooks/telegram', updateRoute, async (request, reply) => {
    const given = request.headers['x-telegram-bot-api-secret-token'];
    if (typeof given !== 'string' || !secretsMatch(given, options.secret)) {
      throw new AppError('unauthorized', 'The X-Telegram-Bot-Api-Secret-Token header does not match.');
    }
    const update = updateShape.safeParse(request.body);
    if (!update.success) {
      request.log.warn('telegram update without an update_id; ignored');
      return reply.send({ received: 0 });
    }
    await options.inbox.receive('telegram', [{ id: String(update.data.update_id), payload: { update: update.data } }]);
    return reply.send({ received: 1 });
  });
};

/** The inbox handler for Telegram: runs a stored update through the bot. */
export const handleStoredUpdate = (bot: Telegraf) => async (payload: Record<string, unknown>) => {
  const update = payload.update as Update;
  try {
    await bot.handleUpdate(update);
  } catch (error) {
    // Telegraf's HTTP errors can carry the request URL, and with it the bot token.
    const cleaned = new Error(scrubExternalText(error instanceof Error ? error.message : String(error)));
    cleaned.name = error instanceof Error ? error.name : 'Error';
    throw cleaned;
  }
  return { status: 'handled' as const, outcome: Object.keys(update).find((key) => key !== 'update_id') ?? 'update' };
};

/** The deep link that opens the bot with a login intent's start token. */
export const telegramLoginLink =
  (username: string) =>
  ({ startToken }: { startToken: string }): Record<string, string> => ({ telegram: `https://t.me/${username}?start=${startToken}` });
