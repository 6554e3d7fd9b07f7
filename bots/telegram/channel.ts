import { Telegram } from 'telegraf';
import type { ChatChannel } from '../../src/chat-channel.js';
import { telegramEnabled, type Config } from '../../src/config.js';
import { createTelegramBot, createTelegramCodeSender } from './bot.js';
import { handleStoredUpdate, telegramLoginLink, telegramWebhook } from './index.js';
import { telegramWidgetRoute } from './widget.js';

/** Telegram, when TELEGRAM_BOT_TOKEN is set (config checked the rest). */
export function telegramChannel(config: Config): ChatChannel | undefined {
  if (!telegramEnabled(config)) return undefined;
  const token = config.TELEGRAM_BOT_TOKEN!;
  const username = config.TELEGRAM_BOT_USERNAME!;
  const polling = config.TELEGRAM_MODE === 'polling';
  return {
    name: 'telegram',
    // Codes asked for on the web with channel "telegram" go through the Bot API to the linked account.
    codeSender: createTelegramCodeSender(new Telegram(token, { apiRoot: config.TELEGRAM_API_ROOT, webhookReply: false })),
    links: [telegramLoginLink(username)],
    usesInbox: !polling,
    async register(app, { services, texts, clock, strictRateLimit }) {
      const bot = createTelegramBot({
        services,
        texts,
        log: app.log,
        settings: {
          token,
          username,
          apiRoot: config.TELEGRAM_API_ROOT,
          requireConfirm: config.INTENT_REQUIRE_CONFIRM,
          serviceName: config.SERVICE_NAME,
          rethrowErrors: !polling,
        },
      });
      if (polling) {
        // Local development only (refused in production): the bot asks Telegram for updates itself.
        app.addHook('onReady', async () => {
          void bot.launch().catch((error: unknown) => app.log.error({ err: error }, 'telegram polling stopped'));
        });
        app.addHook('onClose', async () => {
          try {
            bot.stop('shutdown');
          } catch {
            // It never got to run.
          }
        });
      } else {
        services.inbox.registerHandler('telegram', handleStoredUpdate(bot));
        await app.register(telegramWebhook, { secret: config.TELEGRAM_WEBHOOK_SECRET!, inbox: services.inbox });
      }
      await app.register(telegramWidgetRoute, {
        services,
        botToken: token,
        maxAgeSeconds: config.TELEGRAM_WIDGET_MAX_AGE_SECONDS,
        clock,
        rateLimit: strictRateLimit,
      });
      app.log.info({ mode: config.TELEGRAM_MODE, bot: username }, 'Telegram is on');
    },
  };
}
