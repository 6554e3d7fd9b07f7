import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterAll } from 'vitest';
import { buildApp, type AppDeps } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Database } from '../../src/db/connection.js';
import type { CodeMessage, CodeSender } from '../../src/delivery/types.js';
import { DeliveryError } from '../../src/errors.js';
import { generateSigningJwks, importSigningKeys, type SigningAlg, type SigningKeys } from '../../src/services/signing-keys.js';
import { createTestClock, type TestClock } from './clock.js';
import { connectTestDatabase } from './database.js';

export const TEST_PEPPER = 'test-pepper-that-is-long-enough-0123456789';

/** An SMS sender that keeps what it was asked to send, so tests read codes the way a phone would. */
export interface CapturingSender extends CodeSender {
  sent: CodeMessage[];
  failNext: boolean;
  lastCodeFor(phone: string): string;
}

export function createCapturingSender(channel: CodeSender['channel'] = 'sms'): CapturingSender {
  const sender: CapturingSender = {
    channel,
    provider: 'capture',
    sent: [],
    failNext: false,
    canReach: () => true,
    async send(message) {
      if (sender.failNext) {
        sender.failNext = false;
        // Like Twilio's errors, it names the number it refused.
        throw new DeliveryError('capture', `provider refused ${message.phone}`);
      }
      sender.sent.push(message);
    },
    lastCodeFor(phone) {
      const message = sender.sent.filter((entry) => entry.phone === phone).at(-1);
      if (!message) throw new Error(`nothing was sent to ${phone}`);
      return message.code;
    },
  };
  return sender;
}

const keyCache = new Map<string, Promise<SigningKeys>>();
export const testKeys = (alg: SigningAlg = 'ES256'): Promise<SigningKeys> => {
  if (!keyCache.has(alg)) keyCache.set(alg, generateSigningJwks(alg).then((jwks) => importSigningKeys(jwks, alg)));
  return keyCache.get(alg)!;
};

export interface TestApp {
  app: FastifyInstance;
  config: Config;
  database: Database;
  clock: TestClock;
  sms: CapturingSender;
  keys: SigningKeys;
  logs: string[];
}

let sharedDatabase: Promise<Database> | undefined;

/** The gateway as tests see it: a real database, a movable clock, a capturing SMS sender, logs kept in memory. */
export async function buildTestApp(
  env: Record<string, string> = {},
  overrides: Partial<AppDeps> & { database?: Database } = {},
): Promise<TestApp> {
  // Every request of a test comes from 127.0.0.1, so the per-IP limits are raised; tests of those limits set their own.
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'info', RATE_LIMIT_MAX: '100000', OTP_RATE_LIMIT_MAX: '100000', OTP_BUDGET_IP_PER_DAY: '100000', ...env });
  sharedDatabase ??= connectTestDatabase();
  const database = overrides.database ?? (await sharedDatabase);
  const clock = createTestClock();
  const sms = createCapturingSender();
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(chunk.toString());
      done();
    },
  });
  const keys = overrides.keys ?? (await testKeys(config.JWT_ALG));
  const app = await buildApp({ config, database, keys, pepper: TEST_PEPPER, clock, smsSender: sms, logStream, ...overrides });
  await app.ready();
  afterAll(() => app.close());
  return { app, config, database, clock, sms, keys, logs };
}

/** A phone number no other test in this file uses (each file has its own database), so per-phone limits never collide. */
let phoneCounter = 0;
export function uniquePhone(): string {
  phoneCounter += 1;
  return `+447911${String(phoneCounter).padStart(6, '0')}`;
}

export interface TokenPair {
  accessToken: string;
  refreshToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  user: { id: string; phone: string | null; [key: string]: unknown };
}

/** The whole web SMS login: request a code, read it off the "phone", verify it. */
export async function signInBySms(testApp: Pick<TestApp, 'app' | 'sms'>, phone = uniquePhone()): Promise<TokenPair> {
  const requested = await testApp.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } });
  if (requested.statusCode !== 200) throw new Error(`request failed: ${requested.body}`);
  const verified = await testApp.app.inject({
    method: 'POST',
    url: '/auth/otp/verify',
    payload: { phone, code: testApp.sms.lastCodeFor(phone) },
  });
  if (verified.statusCode !== 200) throw new Error(`verify failed: ${verified.body}`);
  return verified.json() as TokenPair;
}
