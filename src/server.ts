import pino from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { connectDatabase } from './db/connection.js';
import { startEmbeddedDatabase, type EmbeddedDatabase } from './db/embedded.js';
import { loggerOptions } from './logger.js';
import { loadOrCreateDevelopmentPepper } from './services/dev-secrets.js';
import { importSigningKeys, loadOrCreateDevelopmentJwks } from './services/signing-keys.js';

// The process: read config, start what the app needs, listen, and close in order on SIGTERM/SIGINT.

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

  let embedded: EmbeddedDatabase | undefined;
  let uri = config.MONGODB_URI;
  if (uri) {
    log.info({ engine: 'external' }, 'database: MONGODB_URI');
  } else {
    embedded = await startEmbeddedDatabase({
      engine: config.EMBEDDED_DB_ENGINE,
      dataDir: config.DATA_DIR,
      ferretdbBin: config.FERRETDB_BIN,
      log: (message) => log.info(message),
    });
    uri = embedded.uri;
    log.info({ engine: embedded.engine }, `database: embedded ${embedded.description}`);
  }
  const database = await connectDatabase(uri, { dbName: embedded ? 'chatgate' : undefined });
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
  await app.listen({ host: config.HOST, port: config.PORT });
  log.info({ sms: config.SMS_PROVIDER, kid: keys.kid, alg: keys.alg }, 'chatgate ready');

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

main().catch((error: unknown) => {
  process.stderr.write(`chatgate failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
