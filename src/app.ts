import rateLimit from '@fastify/rate-limit';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import pino, { type DestinationStream } from 'pino';
import type { Channel } from '../models/channels.js';
import { telegramChannel } from '../bots/telegram/channel.js';
import { telegramGatewayCodeSender, telegramWebLogin } from '../bots/telegram/web-login.js';
import { whatsappChannel } from '../webhooks/whatsapp/channel.js';
import { registerApiDescription, registerApiDocsRoutes } from './api-docs/index.js';
import type { ChatChannel } from './chat-channel.js';
import { chatTexts } from './chat-texts.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import type { Database } from './db/connection.js';
import { createSmsSender } from './delivery/index.js';
import type { TwilioSettings } from './delivery/twilio-sms.js';
import type { CodeSender } from './delivery/types.js';
import { AppError } from './errors.js';
import { errorHandler, sendError } from './http/error-handler.js';
import { waitForHandlersOnClose } from './http/in-flight.js';
import { createSharedRateLimit, failClosed } from './http/rate-limit-store.js';
import { loggerOptions } from './logger.js';
import { registerBrowserProtections } from './observability/browser.js';
import { observeCompletions } from './observability/completions.js';
import { deferredRequestLoggers, logDestination, requestCompletionLog } from './observability/logging.js';
import { exposeMetrics, instrumentRequests, requestDurations } from './observability/metrics-endpoint.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { requestIdFor } from './observability/request-id.js';
import { registerSignInWithChatgate } from './oidc/index.js';
import { registerAccounts } from './accounts/index.js';
import { registerAdmin } from './admin/index.js';
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
    metrics: Metrics;
  }
}

// A hop count means: trust that many proxies in front of us (Fastify's types only take the other forms).
const trustProxySetting = (value: Config['TRUST_PROXY']) =>
  typeof value === 'number' ? (_address: string, hop: number) => hop < value : value;

// What the start log says about a chat channel that is not configured.
const offMessages: Partial<Record<Channel, string>> = {
  whatsapp: 'WhatsApp is off (set WHATSAPP_VERIFY_TOKEN and WHATSAPP_APP_SECRET to turn it on)',
  telegram: 'Telegram is off (set TELEGRAM_BOT_TOKEN to turn it on)',
};

/** Builds the whole gateway as a Fastify instance; `server.ts` listens, tests call `inject`. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, database, keys } = deps;
  const clock = deps.clock ?? systemClock;
  const logger = pino(loggerOptions(config), deps.logStream ?? logDestination(config));
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    trustProxy: trustProxySetting(config.TRUST_PROXY),
    bodyLimit: config.BODY_LIMIT_BYTES,
    // Prototype-poisoning payloads are refused, not cleaned.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Errors the router meets before any route (a malformed URL, an over-long path segment) get our error shape too.
    frameworkErrors: (error, request, reply) => {
      errorHandler(error, request, reply);
    },
    // Ids: the caller's X-Request-Id when safe, else a random one; in every log line as requestId.
    genReqId: requestIdFor,
    requestIdHeader: false,
    // requestId in every log line, and one line per request instead of Fastify's two (src/observability/logging.ts).
    logController: new LogController({ requestIdLogLabel: 'requestId', disableRequestLogging: true }),
    // Each request's child logger is made when it first writes a line (most probes write none).
    childLoggerFactory: deferredRequestLoggers(logger),
  });
  const metrics = createMetrics();
  app.decorate('metrics', metrics);
  // One log line and one duration per request, wired per route at start (src/observability/completions.ts).
  observeCompletions(app, [requestCompletionLog(logger), requestDurations(metrics)]);
  // Requests the per-IP limiter refused, so a rate_limited error is counted under the right kind.
  const ipLimited = new WeakSet<object>();
  instrumentRequests(app, metrics, ipLimited);
  await registerBrowserProtections(app, config);

  const senders: Partial<Record<Channel, CodeSender>> = {
    sms: deps.smsSender ?? (await createSmsSender(config, { twilioHttpClient: deps.twilioHttpClient })),
  };
  const linkBuilders: IntentLinkBuilder[] = [];
  const chatChannels = [whatsappChannel(config), telegramChannel(config)].filter((channel): channel is ChatChannel => !!channel);
  for (const channel of chatChannels) {
    if (channel.codeSender) senders[channel.name] = channel.codeSender;
    linkBuilders.push(...channel.links);
  }
  // The Telegram Gateway reaches phones whose Telegram account never talked to the bot.
  const gatewaySender = telegramGatewayCodeSender(config);
  if (gatewaySender) senders.telegram = gatewaySender(senders.telegram);

  const services = createServices({ config, database, keys, pepper: deps.pepper, clock, senders, linkBuilders, log: app.log });
  app.decorate('services', services);
  services.audit.subscribe((entry) => metrics.observeAudit(entry));
  services.inbox.subscribe((event) => metrics.observeInbox(event));
  waitForHandlersOnClose(app);
  const texts = chatTexts(config);

  app.setErrorHandler(errorHandler);
  // Routes declare zod schemas: one schema validates the input (errors become 400 invalid_request in the error
  // handler) and filters the output, and the OpenAPI document is generated from the same schemas.
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  if (config.API_DOCS) await registerApiDescription(app);
  // JSON everywhere: a text/plain body is refused with 415 rather than handed to a route as a string.
  app.removeContentTypeParser('text/plain');
  const windowMs = config.RATE_LIMIT_WINDOW_SECONDS * 1000;
  const shared = config.REDIS_URL
    ? await createSharedRateLimit({ url: config.REDIS_URL, commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS, log: app.log })
    : undefined;
  if (shared) app.addHook('onClose', () => shared.close());
  else if (config.NODE_ENV === 'production') {
    app.log.warn('REDIS_URL is unset: per-IP rate limits are counted in this process; with several instances behind a balancer each one counts on its own');
  }
  await app.register(rateLimit, {
    ...shared?.options,
    global: true,
    max: config.RATE_LIMIT_MAX,
    // RATE_LIMIT_ENABLED=false (benchmarks): every request passes; the per-phone limits and budgets still apply.
    ...(config.RATE_LIMIT_ENABLED ? {} : { allowList: () => true }),
    timeWindow: windowMs,
    onExceeded: (request) => {
      ipLimited.add(request);
      metrics.countRateLimited('ip');
    },
    errorResponseBuilder: (_request, context) =>
      new AppError('rate_limited', `Too many requests. Try again in ${Math.ceil(context.ttl / 1000)} seconds.`, {
        retryAfter: Math.max(1, Math.ceil(context.ttl / 1000)),
      }),
  });
  // Unknown URLs are rate-limited too, so they cannot be used to probe the server for free.
  app.setNotFoundHandler({ preHandler: app.rateLimit() }, (request, reply) =>
    sendError(reply, new AppError('not_found', `There is no ${request.method} ${request.url.split('?')[0]}.`)),
  );

  // Sign-in routes refuse (503) rather than run unlimited while the shared counters are unreachable.
  const strictLimit = failClosed({ max: config.OTP_RATE_LIMIT_MAX, timeWindow: windowMs });
  exposeMetrics(app, metrics, config);
  if (config.API_DOCS) await registerApiDocsRoutes(app);
  await app.register(metaRoutes, { keys, connection: database.connection });
  await app.register(otpRoutes, { services, rateLimit: strictLimit });
  await app.register(tokenRoutes, { services });
  await app.register(loginIntentRoutes, { services, rateLimit: strictLimit, chatChannelsOn: chatChannels.length > 0 });
  // Accounts (issue 13): sessions, change of phone, linked channels, deletion; the admin API and its sweep.
  await registerAccounts(app, { config, database, clock, services, smsSender: senders.sms, rateLimit: strictLimit });
  await registerAdmin(app, { config, database, audit: services.audit, clock });

  for (const channel of chatChannels) {
    await channel.register(app, { services, texts, clock, strictRateLimit: strictLimit });
  }
  await telegramWebLogin(app, config, { services, users: database.models.User, clock, strictRateLimit: strictLimit });
  // Sign in with Chatgate: the OpenID Provider and the hosted login page (src/oidc, src/login-page).
  const codeChannels = Object.keys(senders);
  await registerSignInWithChatgate(app, {
    config,
    database,
    keys,
    pepper: deps.pepper,
    clock,
    services,
    codeChannels: codeChannels.length > 1 ? [...codeChannels, 'auto'] : codeChannels,
    chatChannels: chatChannels.filter((channel) => channel.links.length > 0).map((channel) => channel.name as 'whatsapp' | 'telegram'),
    rateLimit: strictLimit,
    smsSender: senders.sms,
  });

  for (const [name, message] of Object.entries(offMessages)) {
    if (!chatChannels.some((channel) => channel.name === name)) app.log.info(message);
  }
  if (chatChannels.some((channel) => channel.usesInbox)) {
    // Retries chat messages whose handling failed or was cut short by a restart.
    services.inbox.startSweeping(config.INBOX_SWEEP_SECONDS * 1000);
  }
  // Every instance sweeps spent data (FerretDB has no TTL indexes); deletes by date are safe to repeat.
  services.cleanup.start(config.CLEANUP_INTERVAL_SECONDS * 1000);
  app.addHook('onClose', () => services.inbox.stop());
  app.addHook('onClose', () => services.cleanup.stop());
  // After the requests in flight (waitForHandlersOnClose): the audit events they recorded are written before the end.
  app.addHook('onClose', () => services.audit.close());
  return app;
}
