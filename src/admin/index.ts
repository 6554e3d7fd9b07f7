import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Database } from '../db/connection.js';
import { errorHandler } from '../http/error-handler.js';
import type { AuditTrail } from '../services/audit.js';
import { adminRoutes } from './routes.js';
import { createAdminService } from './service.js';

/**
 * The admin API: off unless ADMIN_API_TOKEN is set; on ADMIN_PORT (bound to 127.0.0.1) when that is set, else on the
 * main port. The sweep that lifts expired blocks runs either way, since the CLI can block users too.
 */
export async function registerAdmin(app: FastifyInstance, deps: { config: Config; database: Database; audit: AuditTrail; clock: Clock }): Promise<void> {
  const { config, clock } = deps;
  const admin = createAdminService({ models: deps.database.models, audit: deps.audit, clock, defaultCountry: config.DEFAULT_COUNTRY });
  // On the cleanup sweep's cadence: finding the expired blocks reads the users by a non-key filter, which the embedded
  // engines answer by reading the whole collection (1.8 s at 100k users, holding it from logins). A block is lifted
  // late rather than early, by at most CLEANUP_INTERVAL_SECONDS.
  // It also writes the phone marks of blocked users that lack one (src/services/blocked-phones.ts), hence once at start.
  const sweepBlocks = () => {
    admin.sweepBlocks().catch((error: unknown) => app.log.error({ err: error }, 'the block sweep failed'));
  };
  const sweep = setInterval(sweepBlocks, config.CLEANUP_INTERVAL_SECONDS * 1000);
  sweep.unref();
  app.addHook('onReady', async () => sweepBlocks());
  app.addHook('onClose', async () => clearInterval(sweep));

  const token = config.ADMIN_API_TOKEN;
  if (!token) {
    app.log.info('Admin API is off (set ADMIN_API_TOKEN to turn it on)');
    return;
  }
  const options = { admin, token, now: () => clock.now() };
  const port = config.ADMIN_PORT;
  if (!port) {
    await app.register(adminRoutes, options);
    return;
  }
  let side: FastifyInstance | undefined;
  // Up when the app is ready (listen makes it ready), so a port that is taken fails the start, loudly.
  app.addHook('onReady', async () => {
    side = Fastify({ loggerInstance: app.log, logController: new LogController({ disableRequestLogging: true }) });
    side.setValidatorCompiler(validatorCompiler);
    side.setSerializerCompiler(serializerCompiler);
    side.setErrorHandler(errorHandler);
    await side.register(adminRoutes, options);
    await side.listen({ host: '127.0.0.1', port });
    app.log.info({ port }, `admin API on http://127.0.0.1:${port}/admin`);
  });
  app.addHook('onClose', async () => {
    await side?.close();
  });
}
