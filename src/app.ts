import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import pino, { type DestinationStream } from 'pino';
import type { Channel } from '../models/channels.js';
import { Telegram } from 'telegraf';
import { createTelegramBot, createTelegramCodeSender } from '../bots/telegram/bot.js';
import { handleStoredUpdate, telegramLoginLink, telegramWebhook } from '../bots/telegram/index.js';
import { telegramWidgetRoute } from '../bots/telegram/widget.js';
import { createWhatsAppConversation } from '../webhooks/whatsapp/conversation.js';
import { whatsappLoginLink, whatsappWebhook } from '../webhooks/whatsapp/index.js';
import { chatTexts } from './chat-texts.js';
import { systemClock, type Clock } from './clock.js';
import { telegramEnabled, whatsappEnabled, type Config } from './config.js';
import type { Database } from './db/connection.js';
import { createSmsSender } from './delivery/index.js';
import type { TwilioSettings } from './delivery/twilio-sms.js';
import type { CodeSender } from './delivery/types.js';
import { createWhatsAppClient, createWhatsAppCodeSender, type WhatsAppClient } from './delivery/whatsapp.js';
import { AppError } from './errors.js';
import { errorHandler, sendError } from './http/error-handler.js';
import { waitForHandlersOnClose } from './http/in-flight.js';
import { loggerOptions } from './logger.js';
import { loginIntentRoutes } from './routes/login-intents.js';
import { metaRoutes } from './routes/meta.js';
import { otpRoutes } from './routes/otp.js';
import { tokenRoutes } from './routes/tokens.js';
import { createServices, type Services } from './services/index.js';
import type { IntentLinkBuilder } from './services/login-intents.js';
import type { SigningKeys } from './services/signing-keys.js';

export interface AppDeps {
  config: Config;
  database: Database;
  keys: SigningKeys;
  pepper: string;
  clock?: Clock;
  /** Replaces the SMS sender that SMS_PROVIDER names (tests capture codes this way). */
  smsSender?: CodeSender;
  twilioHttpClient?: TwilioSettings['httpClient'];
  /** Where log lines go; stdout by default. */
  logStream?: DestinationStream;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

// A hop count means: trust that many proxies in front of us (Fastify's types only take the other forms).
const trustProxySetting = (value: Config['TRUST_PROXY']) =>
  typeof value === 'number' ? (_address: string, hop: number) => hop < value : value;

/** Builds the whole gateway as a Fastify instance; `server.ts` listens, tests call `inject`. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, database, keys } = deps;
  const clock = deps.clock ?? systemClock;
  const logger = pino(loggerOptions(config), deps.logStream ?? process.stdout);
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    trustProxy: trustProxySetting(config.TRUST_PROXY),
    bodyLimit: config.BODY_LIMIT_BYTES,
    // Prototype-poisoning payloads are refused, not cleaned.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });

  const senders: Partial<Record<Channel, CodeSender>> = {
    sms: deps.smsSender ?? createSmsSender(config, { twilioHttpClient: deps.twilioHttpClient }),
  };
  const linkBuilders: IntentLinkBuilder[] = [];

  let whatsapp: WhatsAppClient | undefined;
  if (whatsappEnabled(config)) {
    whatsapp = createWhatsAppClient({
      graphUrl: config.WHATSAPP_GRAPH_URL,
      apiVersion: config.WHATSAPP_API_VERSION,
      accessToken: config.WHATSAPP_ACCESS_TOKEN!,
      phoneNumberId: config.WHATSAPP_PHONE_NUMBER_ID!,
      timeoutMs: config.WHATSAPP_SEND_TIMEOUT_MS,
    });
    // Web-requested codes need an approved authentication template (business-initiated messages).
    if (config.WHATSAPP_OTP_TEMPLATE) {
      senders.whatsapp = createWhatsAppCodeSender(whatsapp, { name: config.WHATSAPP_OTP_TEMPLATE, language: config.WHATSAPP_OTP_TEMPLATE_LANGUAGE });
    }
    if (config.WHATSAPP_DISPLAY_NUMBER) linkBuilders.push(whatsappLoginLink(config.WHATSAPP_DISPLAY_NUMBER));
  }

  const telegram = telegramEnabled(config);
  if (telegram) {
    // Codes asked for on the web with channel "telegram" go through the Bot API to the linked account.
    senders.telegram = createTelegramCodeSender(new Telegram(config.TELEGRAM_BOT_TOKEN!, { apiRoot: config.TELEGRAM_API_ROOT, webhookReply: false }));
    linkBuilders.push(telegramLoginLink(config.TELEGRAM_BOT_USERNAME!));
  }

  const services = createServices({ config, database, keys, pepper: deps.pepper, clock, senders, linkBuilders, log: app.log });
  app.decorate('services', services);
  waitForHandlersOnClose(app);
  const texts = chatTexts(config);

  app.setErrorHandler(errorHandler);
  // JSON everywhere: a text/plain body is refused with 415 rather than handed to a route as a string.
  app.removeContentTypeParser('text/plain');
  const windowMs = config.RATE_LIMIT_WINDOW_SECONDS * 1000;
  await app.register(rateLimit, {
    global: true,
    max: config.RATE_LIMIT_MAX,
    timeWindow: windowMs,
    errorResponseBuilder: (_request, context) =>
      new AppError('rate_limited', `Too many requests. Try again in ${Math.ceil(context.ttl / 1000)} seconds.`, {
        retryAfter: Math.max(1, Math.ceil(context.ttl / 1000)),
      }),
  });
  // Unknown URLs are rate-limited too, so they cannot be used to probe the server for free.
  app.setNotFoundHandler({ preHandler: app.rateLimit() }, (request, reply) =>
    sendError(reply, new AppError('not_found', `There is no ${request.method} ${request.url.split('?')[0]}.`)),
  );

  const strictLimit = { max: config.OTP_RATE_LIMIT_MAX, timeWindow: windowMs };
  await app.register(metaRoutes, { keys, connection: database.connection });
  await app.register(otpRoutes, { services, rateLimit: strictLimit });
  await app.register(tokenRoutes, { services });
  await app.register(loginIntentRoutes, { services, rateLimit: strictLimit });

  if (whatsapp) {
    services.inbox.registerHandler(
      'whatsapp',
      createWhatsAppConversation({
        services,
        client: whatsapp,
        texts,
        clock,
        log: app.log,
        settings: {
          requireConfirm: config.INTENT_REQUIRE_CONFIRM,
          maxMessageAgeSeconds: config.WHATSAPP_MAX_MESSAGE_AGE_SECONDS,
          serviceName: config.SERVICE_NAME,
        },
      }),
    );
    await app.register(whatsappWebhook, {
      verifyToken: config.WHATSAPP_VERIFY_TOKEN!,
      appSecret: config.WHATSAPP_APP_SECRET!,
      phoneNumberId: config.WHATSAPP_PHONE_NUMBER_ID!,
      inbox: services.inbox,
    });
    app.log.info({ templateCodes: !!senders.whatsapp, links: !!config.WHATSAPP_DISPLAY_NUMBER }, 'WhatsApp is on: POST /webhooks/whatsapp');
  } else {
    app.log.info('WhatsApp is off (set WHATSAPP_VERIFY_TOKEN and WHATSAPP_APP_SECRET to turn it on)');
  }

  if (telegram) {
    const polling = config.TELEGRAM_MODE === 'polling';
    const bot = createTelegramBot({
      services,
      texts,
      log: app.log,
      settings: {
        token: config.TELEGRAM_BOT_TOKEN!,
        username: config.TELEGRAM_BOT_USERNAME!,
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
      botToken: config.TELEGRAM_BOT_TOKEN!,
      maxAgeSeconds: config.TELEGRAM_WIDGET_MAX_AGE_SECONDS,
      clock,
      rateLimit: strictLimit,
    });
    app.log.info({ mode: config.TELEGRAM_MODE, bot: config.TELEGRAM_BOT_USERNAME }, 'Telegram is on');
  } else {
    app.log.info('Telegram is off (set TELEGRAM_BOT_TOKEN to turn it on)');
  }

  if (whatsapp || (telegram && config.TELEGRAM_MODE === 'webhook')) {
    // Retries chat messages whose handling failed or was cut short by a restart.
    services.inbox.startSweeping(15_000);
  }
  app.addHook('onClose', () => services.inbox.stop());
  return app;
}
