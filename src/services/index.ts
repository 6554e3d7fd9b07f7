import { createHmac } from 'node:crypto';
import type { Channel } from '../../models/channels.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Database } from '../db/connection.js';
import type { CodeSender } from '../delivery/types.js';
import { createCleanup } from '../db/cleanup.js';
import { createAuditTrail } from './audit.js';
import { createBlockedPhones } from './blocked-phones.js';
import { createFailureBudget } from './failure-budget.js';
import { createIdentityService } from './identities.js';
import { createInbox } from './inbox.js';
import { createLoginIntentService, type IntentLinkBuilder } from './login-intents.js';
import { createOtpService } from './otp.js';
import { createBudgetCounter, createReservations, createSlotCounter } from './reservations.js';
import type { SigningKeys } from './signing-keys.js';
import { createTokenService } from './tokens.js';

export interface ServiceDeps {
  config: Config;
  database: Database;
  keys: SigningKeys;
  pepper: string;
  clock: Clock;
  senders: Partial<Record<Channel, CodeSender>>;
  linkBuilders: IntentLinkBuilder[];
  log: { info(object: object, message: string): void; warn(object: object, message: string): void; error(object: object, message: string): void };
}

/** Wires the rules together; nothing here knows about HTTP or chat. */
export function createServices(deps: ServiceDeps) {
  const { config, database, clock, log } = deps;
  const { models } = database;
  const audit = createAuditTrail(models.AuditEvent, clock, (error, context) => log.error({ err: error, ...context }, 'audit write failed'));
  const reservations = createReservations(models.Reservation, clock);
  const identities = createIdentityService(models.User, models.Session, reservations, clock);
  const tokens = createTokenService({
    sessions: models.Session,
    refreshTokens: models.RefreshToken,
    identities,
    keys: deps.keys,
    audit,
    clock,
    settings: {
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      accessTtlSeconds: config.ACCESS_TOKEN_TTL_SECONDS,
      refreshTtlSeconds: config.REFRESH_TOKEN_TTL_SECONDS,
      reuseGraceSeconds: config.REFRESH_REUSE_GRACE_SECONDS,
      successorKey: createHmac('sha256', deps.pepper).update('chatgate refresh-token successor').digest(),
    },
  });
  const otp = createOtpService({
    challenges: models.Challenge,
    otpPhones: models.OtpPhone,
    reservations,
    slots: createSlotCounter(models.Reservation, clock),
    failures: createFailureBudget(models.OtpPhone, clock, config.OTP_MAX_FAILURES_PER_DAY),
    sendBudgets: createBudgetCounter(models.Reservation, clock, { maxBlock: config.OTP_BUDGET_BLOCK_MAX }),
    blockedPhones: createBlockedPhones(models.OtpPhone),
    identities,
    senders: deps.senders,
    audit,
    clock,
    log,
    settings: {
      length: config.OTP_LENGTH,
      ttlSeconds: config.OTP_TTL_SECONDS,
      maxAttempts: config.OTP_MAX_ATTEMPTS,
      resendSeconds: config.OTP_RESEND_SECONDS,
      maxSendsPerHour: config.OTP_MAX_SENDS_PER_HOUR,
      maxSendsPerPhonePerHour: config.OTP_MAX_SENDS_PER_PHONE_PER_HOUR,
      maxFailuresPerDay: config.OTP_MAX_FAILURES_PER_DAY,
      budgets: {
        globalPerHour: config.OTP_BUDGET_GLOBAL_PER_HOUR,
        globalPerDay: config.OTP_BUDGET_GLOBAL_PER_DAY,
        countryPerHour: config.OTP_BUDGET_COUNTRY_PER_HOUR,
        ipPerDay: config.OTP_BUDGET_IP_PER_DAY,
      },
      pepper: deps.pepper,
      defaultCountry: config.DEFAULT_COUNTRY,
      // `*` is every country, chosen knowingly.
      allowedCountries: config.OTP_ALLOWED_COUNTRIES?.includes('*') ? undefined : config.OTP_ALLOWED_COUNTRIES,
      testNumbers: config.OTP_TEST_NUMBERS,
      messageTemplate: config.OTP_MESSAGE,
    },
  });
  const loginIntents = createLoginIntentService({
    intents: models.LoginIntent,
    reservations,
    identities,
    tokens,
    audit,
    clock,
    settings: { ttlSeconds: config.INTENT_TTL_SECONDS, maxWrongCodesPerHour: config.INTENT_MAX_WRONG_CODES_PER_HOUR },
    linkBuilders: deps.linkBuilders,
  });
  const inbox = createInbox({
    messages: models.InboundMessage,
    reservations,
    clock,
    log,
    settings: { leaseSeconds: config.INBOX_LEASE_SECONDS, stuckAfterSeconds: config.INBOX_STUCK_AFTER_SECONDS },
  });
  const cleanup = createCleanup(models, clock, { auditRetentionDays: config.AUDIT_RETENTION_DAYS }, log);
  return { audit, reservations, identities, tokens, otp, loginIntents, inbox, cleanup };
}

export type Services = ReturnType<typeof createServices>;
