// The gateway under test, as `npm start` runs it (built, dist/src/server.js in its own process, LOG_LEVEL=info), with the
// limits that would otherwise answer instead of it opened up, and its codes delivered to the bench's sink.
import type autocannon from 'autocannon';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonPost, nextPhone, startChild, type ServerUnderTest } from './support.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
// The V8 flags `npm start` gives Node (package.json), so that the bench measures the process npm start runs.
const startFlags = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start
  .split(/\s+/)
  .filter((part) => part.startsWith('--'));

/**
 * A gateway on `mongoUri`. A second one given the first's `dataDir` shares its development signing keys and OTP pepper,
 * so tokens issued by either work on both (the command-counting instance, next to the measured one).
 */
export async function startChatgate(mongoUri: string, smsUrl: string, shared?: { dataDir: string }): Promise<ServerUnderTest & { dataDir: string }> {
  const dataDir = shared?.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'chatgate-bench-')));
  // What `npm start` does first: build when the sources changed.
  execFileSync(process.execPath, [path.join(root, 'scripts/build-if-changed.mjs')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  // BENCH_CPU_PROF_DIR=<dir>: the gateway writes a CPU profile there when it stops (NODE_OPTIONS refuses --cpu-prof).
  const profile = process.env.BENCH_CPU_PROF_DIR && !shared ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [];
  const server = await startChild(shared ? 'chatgate (counted)' : 'chatgate', [...startFlags, ...profile, path.join(root, 'dist/src/server.js')], {
    NODE_ENV: 'development',
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    DATA_DIR: dataDir,
    MONGODB_URI: mongoUri,
    SMS_PROVIDER: 'http',
    SMS_HTTP_URL: smsUrl,
    SMS_HTTP_SECRET: 'bench-secret-bench-secret',
    // The per-IP limiter off (where the gateway knows RATE_LIMIT_ENABLED) or as high as it goes.
    RATE_LIMIT_ENABLED: 'false',
    RATE_LIMIT_MAX: '1000000',
    OTP_RATE_LIMIT_MAX: '1000000',
    OTP_BUDGET_GLOBAL_PER_HOUR: '1000000',
    OTP_BUDGET_GLOBAL_PER_DAY: '10000000',
    OTP_BUDGET_COUNTRY_PER_HOUR: '1000000',
    OTP_BUDGET_IP_PER_DAY: '100000',
    // Login intents need a chat channel; creating one sends nothing to WhatsApp (no message comes in here).
    WHATSAPP_VERIFY_TOKEN: 'bench-verify-token',
    WHATSAPP_APP_SECRET: 'bench-app-secret',
    WHATSAPP_ACCESS_TOKEN: 'bench-access-token',
    WHATSAPP_PHONE_NUMBER_ID: '100000000000001',
  });
  return { ...server, dataDir };
}

export interface Tokens {
  accessToken: string;
  refreshToken: string;
}

/** One real login through the API, for the scenarios that need a signed-in user. */
export async function loginOnce(base: string, codes: Map<string, string>): Promise<Tokens> {
  const phone = nextPhone();
  const requested = await jsonPost(`${base}/auth/otp/request`, { phone });
  if (requested.status !== 200 && requested.status !== 202) throw new Error(`OTP request: ${requested.status} ${await requested.text()}`);
  const verified = await jsonPost(`${base}/auth/otp/verify`, { phone, code: codes.get(phone) });
  if (verified.status !== 200) throw new Error(`OTP verify: ${verified.status} ${await verified.text()}`);
  return (await verified.json()) as Tokens;
}

const json = { 'content-type': 'application/json' };

// autocannon keeps one context object per connection.
type Context = Record<string, string>;
const ctx = (context: object) => context as Context;

/** The scenarios of `npm run bench`; `perIteration` is how many HTTP requests one of them makes. */
export function chatgateScenarios(base: string, codes: Map<string, string>, tokens: Tokens, refreshTokens: string[]) {
  return {
    health: { options: { url: `${base}/health` }, perIteration: 1 },
    jwks: { options: { url: `${base}/.well-known/jwks.json` }, perIteration: 1 },
    me: { options: { url: `${base}/auth/me`, headers: { authorization: `Bearer ${tokens.accessToken}` } }, perIteration: 1 },
    otpRequest: {
      options: {
        url: `${base}/auth/otp/request`,
        method: 'POST',
        headers: json,
        requests: [{ setupRequest: (request: autocannon.Request) => ({ ...request, body: JSON.stringify({ phone: nextPhone() }) }) }],
      },
      perIteration: 1,
    },
    login: {
      options: {
        url: `${base}/auth/otp/request`,
        headers: json,
        requests: [
          {
            method: 'POST',
            path: '/auth/otp/request',
            setupRequest: (request: autocannon.Request, context: object) => {
              ctx(context).phone = nextPhone();
              return { ...request, body: JSON.stringify({ phone: ctx(context).phone }) };
            },
          },
          {
            method: 'POST',
            path: '/auth/otp/verify',
            // The code reached the sink before the request above was answered (the gateway awaits its delivery).
            setupRequest: (request: autocannon.Request, context: object) => ({
              ...request,
              body: JSON.stringify({ phone: ctx(context).phone, code: codes.get(ctx(context).phone!) ?? '000000' }),
            }),
          },
        ],
      },
      perIteration: 2,
    },
    refresh: {
      options: {
        url: `${base}/auth/token/refresh`,
        method: 'POST',
        headers: json,
        // Independent sessions, each refreshed in turn: a token is taken from the pool and its successor goes back
        // (a refresh token works once; autocannon resets a connection's context when its sequence restarts).
        requests: [
          {
            setupRequest: (request: autocannon.Request) => ({ ...request, body: JSON.stringify({ refreshToken: refreshTokens.shift() ?? '' }) }),
            onResponse: (status: number, body: string) => {
              if (status === 200) refreshTokens.push((JSON.parse(body) as Tokens).refreshToken);
            },
          },
        ],
      },
      perIteration: 1,
    },
    loginIntent: { options: { url: `${base}/auth/login-intents`, method: 'POST' }, perIteration: 1 },
  } satisfies Record<string, { options: autocannon.Options & { requests?: unknown }; perIteration: number }>;
}
