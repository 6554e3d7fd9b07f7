import type { FastifyInstance } from 'fastify';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Database } from '../db/connection.js';
import type { CodeSender } from '../delivery/types.js';
import type { Services } from '../services/index.js';
import { accountRoutes } from './routes.js';
import { createAccountService, type PhoneNotifier } from './service.js';

/** Sessions, change of phone number, linked channels, deletion and token introspection for signed-in people. */
export async function registerAccounts(
  app: FastifyInstance,
  deps: { config: Config; database: Database; clock: Clock; services: Services; smsSender?: CodeSender | undefined; rateLimit: object },
): Promise<void> {
  const { config, database, services, smsSender } = deps;
  const { models } = database;
  // A notice is an SMS without a code: text-only senders take it as it is.
  const notifyPhone: PhoneNotifier | undefined = smsSender
    ? (phone, text) => smsSender.send({ channel: 'sms', phone, code: '', text, ttlMinutes: 0 })
    : undefined;
  const accounts = createAccountService({
    users: models.User,
    sessions: models.Session,
    refreshTokens: models.RefreshToken,
    auditEvents: models.AuditEvent,
    tokens: services.tokens,
    otp: services.otp,
    reservations: services.reservations,
    audit: services.audit,
    clock: deps.clock,
    notifyPhone,
    serviceName: config.SERVICE_NAME,
    defaultCountry: config.DEFAULT_COUNTRY,
    testNumbers: config.OTP_TEST_NUMBERS,
    log: app.log,
  });
  await app.register(accountRoutes, { accounts, rateLimit: deps.rateLimit });
}
