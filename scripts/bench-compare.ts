// npm run bench:compare: Chatgate against better-auth (1.x, phone-number plugin, MongoDB adapter, rate limits off) on
// the same engine, and /health against a bare Fastify hello world; runs interleaved A B A B (BENCH_ROUNDS, default 2)
// so that a machine whose load changes hurts both alike. better-auth lives in bench/better-auth with its own
// package.json, installed there on first use, never into the gateway's dependencies. Loopback only, bounded:
// BENCH_SECONDS (default 5) per run, BENCH_CONNECTIONS (default 10,50), BENCH_SCENARIOS (a subset: otpRequest, login, me,
// health), BENCH_WARMUP_SECONDS (default 2: an unmeasured run of each side per scenario first), BENCH_COUNT_REQUESTS
// (default 600: the untimed run per scenario that counts database commands, against a second instance of each side).
import type autocannon from 'autocannon';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MongoClient } from 'mongodb';
import { chatgateScenarios, loginOnce, startChatgate } from './bench/chatgate.js';
import {
  connectionCounts,
  countCommands,
  formatRow,
  jsonPost,
  measure,
  nextPhone,
  seconds,
  startChild,
  startCodeSink,
  startEngine,
  startRoundTripCounter,
  warmUp,
  withDatabase,
  type Measurement,
  type ServerUnderTest,
} from './bench/support.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const betterAuthDir = path.join(root, 'bench/better-auth');
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const wanted = process.env.BENCH_SCENARIOS?.split(',');

if (!existsSync(path.join(betterAuthDir, 'node_modules/better-auth'))) {
  process.stderr.write('installing better-auth into bench/better-auth (once)\n');
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: betterAuthDir, stdio: 'inherit' });
}

const engine = await startEngine();
const counter = await startRoundTripCounter(engine.uri);
const sink = await startCodeSink();
const suffix = randomBytes(4).toString('hex');
const started: ServerUnderTest[] = [];
const stopAll = async () => {
  for (const server of started.reverse()) await server.stop();
  counter.stop();
  sink.stop();
  await engine.stop();
};

try {
  // Each side twice: the measured server on the engine directly, and beside it one on the same database through the
  // round-trip counter, which serves only to count commands (see measure in scripts/bench/support.ts).
  const chatgateDb = `chatgate_compare_${suffix}`;
  const chatgate = await startChatgate(withDatabase(engine.uri, chatgateDb), sink.url);
  started.push(chatgate);
  const chatgateCounted = await startChatgate(withDatabase(counter.uri, chatgateDb), sink.url, chatgate);
  started.push(chatgateCounted);
  const betterAuthDb = `better_auth_compare_${suffix}`;
  const startBetterAuth = (name: string, uri: string) =>
    startChild(name, [path.join(betterAuthDir, 'server.mjs')], { MONGODB_URI: withDatabase(uri, betterAuthDb), SMS_HTTP_URL: sink.url });
  const betterAuth = await startBetterAuth('better-auth', engine.uri);
  started.push(betterAuth);
  const betterAuthCounted = await startBetterAuth('better-auth (counted)', counter.uri);
  started.push(betterAuthCounted);
  const fastify = await startChild('bare Fastify', [path.join(root, 'bench/fastify-hello.mjs')], {}, root);
  started.push(fastify);

  const tokens = await loginOnce(chatgate.base, sink.codes);
  const chatgateScenario = chatgateScenarios(chatgate.base, sink.codes, tokens, []);
  const cookie = await betterAuthLogin(betterAuth.base, sink.codes);
  const json = { 'content-type': 'application/json' };
  type Ctx = Record<string, string>;
  const ctx = (context: object) => context as Ctx;

  const betterAuthScenarios = (base: string) => ({
    otpRequest: {
      options: {
        url: `${base}/api/auth/phone-number/send-otp`,
        method: 'POST',
        headers: json,
        requests: [{ setupRequest: (request: autocannon.Request) => ({ ...request, body: JSON.stringify({ phoneNumber: nextPhone() }) }) }],
      },
      perIteration: 1,
    },
    login: {
      options: {
        url: `${base}/api/auth/phone-number/send-otp`,
        headers: json,
        requests: [
          {
            method: 'POST',
            path: '/api/auth/phone-number/send-otp',
            setupRequest: (request: autocannon.Request, context: object) => {
              ctx(context).phone = nextPhone();
              return { ...request, body: JSON.stringify({ phoneNumber: ctx(context).phone }) };
            },
          },
          {
            method: 'POST',
            path: '/api/auth/phone-number/verify',
            setupRequest: (request: autocannon.Request, context: object) => ({
              ...request,
              body: JSON.stringify({ phoneNumber: ctx(context).phone, code: sink.codes.get(ctx(context).phone!) ?? '000000' }),
            }),
          },
        ],
      },
      perIteration: 2,
    },
    sessionRead: { options: { url: `${base}/api/auth/get-session`, headers: { cookie } }, perIteration: 1 },
  }) satisfies Record<string, { options: autocannon.Options; perIteration: number }>;
  const betterAuthScenario = betterAuthScenarios(betterAuth.base);
  const betterAuthCountedScenario = betterAuthScenarios(betterAuthCounted.base);
  const chatgateCountedScenario = chatgateScenarios(chatgateCounted.base, sink.codes, tokens, []);

  type Run = { options: autocannon.Options; perIteration: number };
  type Pair = { key: string; name: string; b: ServerUnderTest; aRun: Run; bRun: Run; aCount: Run; bCount: Run | undefined; against: string };
  // A pair is Chatgate's scenario (its name is also the BENCH_SCENARIOS key) against better-auth's, or against the bare
  // Fastify's /health; the runs that count commands are the same scenarios on the counted instances (none for Fastify).
  const pairOf = (name: string, ours: 'otpRequest' | 'login' | 'me' | 'health', theirs?: keyof typeof betterAuthScenario): Pair => ({
    key: ours,
    name,
    aRun: chatgateScenario[ours],
    aCount: chatgateCountedScenario[ours],
    ...(theirs
      ? { b: betterAuth, bRun: betterAuthScenario[theirs], bCount: betterAuthCountedScenario[theirs], against: 'better-auth' }
      : { b: fastify, bRun: { options: { url: `${fastify.base}/health` }, perIteration: 1 }, bCount: undefined, against: 'bare Fastify' }),
  });
  const allPairs = [
    pairOf('OTP request', 'otpRequest', 'otpRequest'),
    pairOf('full login', 'login', 'login'),
    pairOf('session read', 'me', 'sessionRead'),
    pairOf('/health', 'health'),
  ];
  const pairs = allPairs.filter((pair) => !wanted || wanted.includes(pair.key));

  const widths = [13, 13, 5, 9, 9, 7, 9, 9, 11, 11, 9, 9];
  const header = ['scenario', 'against', 'conns', 'Chatgate/s', 'other/s', 'ratio', 'p50 ms', 'other p50', 'cmds/req', 'other cmds', 'RSS MiB', 'other RSS'];
  process.stdout.write(`${formatRow(header, widths)}\n`);
  // The codes each side holds when a scenario begins: every scenario leaves some (the OTP request's are never
  // verified), and a store that looks codes up by scanning slows down as they pile up. Printed under the table.
  const inspector = await MongoClient.connect(engine.uri, { directConnection: true });
  const storedCodes: string[] = [];
  for (const pair of pairs) {
    if (pair.b === betterAuth) {
      const [ours, theirs] = await Promise.all([
        inspector.db(chatgateDb).collection('challenges').countDocuments(),
        inspector.db(betterAuthDb).collection('verification').countDocuments(),
      ]);
      storedCodes.push(`${pair.name} ${ours} / ${theirs}`);
    }
    await warmUp({ ...pair.aRun.options, connections: Math.max(...connectionCounts) });
    await warmUp({ ...pair.bRun.options, connections: Math.max(...connectionCounts) });
    for (const connections of connectionCounts) {
      const aTrips = await countCommands({ ...pair.aCount.options, connections }, counter, pair.aCount.perIteration);
      const bTrips = pair.bCount && (await countCommands({ ...pair.bCount.options, connections }, counter, pair.bCount.perIteration));
      const a: Measurement[] = [];
      const b: Measurement[] = [];
      for (let round = 0; round < rounds; round++) {
        a.push(await measure({ ...pair.aRun.options, connections }, chatgate, pair.aRun.perIteration));
        b.push(await measure({ ...pair.bRun.options, connections }, pair.b, pair.bRun.perIteration));
      }
      const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
      const aRate = mean(a.map((m) => m.reqPerSec));
      const bRate = mean(b.map((m) => m.reqPerSec));
      const trips = (count: number | undefined) => (count === undefined ? '-' : count.toFixed(1));
      const errors = a.reduce((sum, m) => sum + m.errors, 0) + b.reduce((sum, m) => sum + m.errors, 0);
      process.stdout.write(
        `${formatRow(
          [
            pair.name,
            pair.against,
            connections,
            Math.round(aRate),
            Math.round(bRate),
            (aRate / bRate).toFixed(2),
            mean(a.map((m) => m.p50)).toFixed(0),
            mean(b.map((m) => m.p50)).toFixed(0),
            trips(aTrips),
            trips(bTrips),
            Math.max(...a.map((m) => m.rssMiB)),
            Math.max(...b.map((m) => m.rssMiB)),
          ],
          widths,
        )}${errors ? `   (${errors} errors)` : ''}\n`,
      );
    }
  }
  await inspector.close();
  process.stdout.write(`\nCodes stored when each scenario began (Chatgate's challenges / better-auth's verification rows): ${storedCodes.join('; ')}.`);
  process.stdout.write(
    `\n${rounds} rounds A B A B of ${seconds} s each on ${engine.description}; ${os.cpus().length} cores ` +
      `(${os.cpus()[0]?.model ?? 'unknown CPU'}), load average ${os.loadavg()[0]!.toFixed(1)}. Logins/s for "full login". ` +
      'Refresh is not compared: better-auth has no rotating refresh tokens (its session is a cookie it extends).\n',
  );
} finally {
  await stopAll();
}

async function betterAuthLogin(base: string, codes: Map<string, string>): Promise<string> {
  const phone = nextPhone();
  const sent = await jsonPost(`${base}/api/auth/phone-number/send-otp`, { phoneNumber: phone });
  if (!sent.ok) throw new Error(`better-auth send-otp: ${sent.status} ${await sent.text()}`);
  const verified = await jsonPost(`${base}/api/auth/phone-number/verify`, { phoneNumber: phone, code: codes.get(phone) });
  if (!verified.ok) throw new Error(`better-auth verify: ${verified.status} ${await verified.text()}`);
  return verified.headers.getSetCookie().map((line) => line.split(';')[0]).join('; ');
}
