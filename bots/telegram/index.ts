import type { FastifyPluginAsync } from 'fastify';
import type { Telegraf } from 'telegraf';
import type { Update } from 'telegraf/types';
import { z } from 'zod';
import { AppError } from '../../src/errors.js';
import { scrubExternalText } from '../../src/logger.js';
import type { Inbox } from '../../src/services/inbox.js';
import { secretsMatch } from '../../src/secrets.js';

export interface TelegramWebhookOptions {
  secret: string;
  inbox: Inbox;
}

const updateShape = z.looseObject({ update_id: z.number().int().nonnegative() });

/**
 * POST /webhooks/telegram: Telegram sends updates here with the secret given to setWebhook in
 * X-Telegram-Bot-Api-Secret-Token. Updates are stored (once per update_id) before the 200, then handled.
 */
export const telegramWebhook: FastifyPluginAsync<TelegramWebhookOptions> = async (app, options) => {
  app.post('/webhooks/telegram', { config: { rateLimit: false } }, async (request, reply) => {
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
