import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, telegramEnabled, whatsappEnabled, type Config } from './config.js';
import { connectDatabase } from './db/connection.js';
import { startEmbeddedDatabase, type EmbeddedDatabase } from './db/embedded.js';
import { loggerOptions } from './logger.js';
import { loadOrCreateDevelopmentPepper } from './services/dev-secrets.js';
import { importSigningKeys, loadOrCreateDevelopmentJwks } from './services/signing-keys.js';

// The process: read config, start what the app needs, listen, and close in order on SIGTERM/SIGINT.

// What was started so far, stopped in reverse order when the start fails half-way (the embedded engine above all).
const started: Array<{ name: string; stop: () => Promise<unknown> }> = [];

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\nSee .env.example for every variable and its default.\n`);
      process.exit(1);
    }
    throw error;
  }
  const log = pino(loggerOptions(config));
  if (!process.env.NODE_ENV) {
    log.warn(
      'DEVELOPMENT MODE (NODE_ENV is unset): the console SMS provider prints codes to this log, and the signing key and ' +
        'OTP pepper are generated into DATA_DIR. Set NODE_ENV=production and the production variables for real use.',
    );
  }

  let embedded: EmbeddedDatabase | undefined;
  let uri = config.MONGODB_URI;
  if (uri) {
    log.info({ engine: 'external' }, 'database: MONGODB_URI');
  } else {
    embedded = await startEmbeddedDatabase({
      engine: config.EMBEDDED_DB_ENGINE,
      dataDir: config.DATA_DIR,
      ferretdbBin: config.FERRETDB_BIN,
      cacheDir: config.CHATGATE_CACHE_DIR,
      log: (message) => log.info(message),
    });
    started.push({ name: 'embedded database', stop: () => embedded!.stop() });
    uri = embedded.uri;
    log.info({ engine: embedded.engine, enginePid: embedded.pid }, `database: embedded ${embedded.description}`);
  }
  const database = await connectDatabase(uri, {
    dbName: embedded ? 'chatgate' : undefined,
    serverSelectionTimeoutMS: config.MONGODB_SERVER_SELECTION_TIMEOUT_MS,
    startupTimeoutMS: 30_000,
  });
  started.push({ name: 'database connection', stop: () => database.close() });
  if (database.skippedIndexes.length > 0) {
    log.warn({ indexes: database.skippedIndexes }, 'the database engine has no TTL indexes: expired records are refused by their expiry checks and deleted by the cleanup sweep');
  }

  let jwks = config.JWT_PRIVATE_JWKS;
  if (!jwks) {
    const generated = await loadOrCreateDevelopmentJwks(config.DATA_DIR, config.JWT_ALG);
    jwks = generated.json;
    log.warn({ dataDir: config.DATA_DIR, created: generated.created }, 'JWT_PRIVATE_JWKS is unset: signing with a development key kept in DATA_DIR');
  }
  const keys = await importSigningKeys(jwks, config.JWT_ALG);

  let pepper = config.OTP_PEPPER;
  if (!pepper) {
    pepper = (await loadOrCreateDevelopmentPepper(config.DATA_DIR)).pepper;
    log.warn({ dataDir: config.DATA_DIR }, 'OTP_PEPPER is unset: using a development pepper kept in DATA_DIR');
  }

  const app = await buildApp({ config, database, keys, pepper });
  started.push({ name: 'HTTP server', stop: () => app.close() });
  await app.listen({ host: config.HOST, port: config.PORT });
  logReady(log, config, { url: publicUrl(config, app.server.address()), embedded, kid: keys.kid, alg: keys.alg });

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'shutting down: no new connections, finishing requests in flight');
    const force = setTimeout(() => {
      log.error('shutdown took longer than 10 s; exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    try {
      await app.close();
      await database.close();
      await embedded?.stop();
      log.info('stopped');
      process.exit(0);
    } catch (error) {
      log.error({ err: error }, 'error while shutting down');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** Where people reach this gateway: PUBLIC_URL, else the address it listens on (all interfaces read as localhost). */
function publicUrl(config: Config, address: string | AddressInfo | null): string {
  if (config.PUBLIC_URL) return config.PUBLIC_URL.replace(/\/+$/, '');
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  const host = ['0.0.0.0', '::', ''].includes(config.HOST) ? 'localhost' : config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
  return `http://${host}:${port}`;
}

// A few lines that tell a newcomer what runs, where, and what to do next.
function logReady(
  log: Logger,
  config: Config,
  ready: { url: string; embedded: EmbeddedDatabase | undefined; kid: string; alg: string },
): void {
  const channels = [
    'SMS on',
    whatsappEnabled(config) ? 'WhatsApp on' : 'WhatsApp off (set WHATSAPP_VERIFY_TOKEN and WHATSAPP_APP_SECRET to turn it on)',
    telegramEnabled(config)
      ? `Telegram on (${config.TELEGRAM_MODE})`
      : 'Telegram off (set TELEGRAM_BOT_TOKEN and TELEGRAM_BOT_USERNAME to turn it on)',
  ];
  log.info(
    {
      url: ready.url,
      environment: config.NODE_ENV,
      node: process.version,
      engine: ready.embedded ? ready.embedded.engine : 'external',
      ...(ready.embedded ? { dataDir: config.DATA_DIR } : {}),
      sms: config.SMS_PROVIDER,
      kid: ready.kid,
      alg: ready.alg,
    },
    `chatgate ready at ${ready.url} (${config.NODE_ENV}, Node ${process.version})`,
  );
  if (config.SMS_PROVIDER === 'console') {
    log.warn({ sms: 'console' }, 'SMS provider: console, codes are printed to this log (msg "otp.console") and never sent');
  } else {
    log.info({ sms: config.SMS_PROVIDER }, `SMS provider: ${config.SMS_PROVIDER}`);
  }
  log.info(`chat channels: ${channels.join('; ')}`);
  log.info(config.API_DOCS ? `API docs: ${ready.url}/docs` : 'API docs: off (API_DOCS=false)');
}

main().catch(async (error: unknown) => {
  process.stderr.write(`chatgate failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  // Nothing may outlive a failed start: above all not the embedded engine, which would hold DATA_DIR.
  for (const part of started.reverse()) {
    try {
      await part.stop();
    } catch (stopError) {
      process.stderr.write(`while stopping the ${part.name}: ${stopError instanceof Error ? stopError.message : String(stopError)}\n`);
    }
  }
  process.exit(1);
});
