// npm run bench: per scenario and connection count, req/s, p50, p99, errors, database round trips per request and the
// gateway's RSS. The gateway runs as `npm start` does, in its own process at LOG_LEVEL=info, against MONGODB_URI or
// the embedded engine (EMBEDDED_DB_ENGINE); nothing leaves 127.0.0.1. Bounded: BENCH_SECONDS (default 5) per run.
//   BENCH_CONNECTIONS=10,50      connection counts
//   BENCH_SCENARIOS=health,login  a subset (health, jwks, me, otpRequest, login, refresh, loginIntent)
//   BENCH_STORED_USERS=100000    users (and their sessions, refresh tokens, used codes, audit events) stored before the runs
//   BENCH_DATA_DIR=/tmp/bench-db  the embedded engine keeps its data there: a later run with as many stored users reuses it
//   BENCH_COUNT_REQUESTS=600      the untimed run per scenario that counts database commands (against a second gateway)
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { chatgateScenarios, loginOnce, startChatgate } from './bench/chatgate.js';
import {
  connectionCounts,
  countCommands,
  formatRow,
  measure,
  seconds,
  seed,
  startCodeSink,
  startEngine,
  startRoundTripCounter,
  withDatabase,
} from './bench/support.js';

const stored = Number(process.env.BENCH_STORED_USERS ?? 0);
const wanted = process.env.BENCH_SCENARIOS?.split(',');

const engineStarting = Date.now();
const engine = await startEngine();
process.stderr.write(`engine ready in ${((Date.now() - engineStarting) / 1000).toFixed(1)} s\n`);
const counter = await startRoundTripCounter(engine.uri);
const sink = await startCodeSink();
const dbName = process.env.BENCH_DATA_DIR ? `chatgate_bench_${stored}` : `chatgate_bench_${randomBytes(4).toString('hex')}`;
const seeding = Date.now();
const seeded = await seed(engine.uri, dbName, stored);
if (stored) process.stderr.write(`${stored} stored users: ${seeded === 'seeded' ? `seeded in ${Math.round((Date.now() - seeding) / 1000)} s` : 'already there'}\n`);
const gatewayStarting = Date.now();
const stopShared = async () => {
  counter.stop();
  sink.stop();
  await engine.stop();
};
// The measured gateway talks to the engine directly; a second one, on the same database and keys, goes through the
// counter and serves only to count commands (see measure).
const gateway = await startChatgate(withDatabase(engine.uri, dbName), sink.url).catch(async (error: unknown) => {
  await stopShared();
  throw error;
});
const counted = await startChatgate(withDatabase(counter.uri, dbName), sink.url, gateway).catch(async (error: unknown) => {
  await gateway.stop();
  await stopShared();
  throw error;
});
process.stderr.write(`gateway ready in ${((Date.now() - gatewayStarting) / 1000).toFixed(1)} s (its build included, when the sources changed)\n`);

try {
  const tokens = await loginOnce(gateway.base, sink.codes);
  // Refresh tokens work once: each run takes from its pool and puts the successors back.
  const refreshPool = async (size: number) => {
    const pool: string[] = [];
    for (let i = 0; i < size; i++) pool.push((await loginOnce(gateway.base, sink.codes)).refreshToken);
    return pool;
  };
  const scenarios = chatgateScenarios(gateway.base, sink.codes, tokens, await refreshPool(Math.max(...connectionCounts) * 2 * connectionCounts.length));
  const countedScenarios = chatgateScenarios(counted.base, sink.codes, tokens, await refreshPool(Math.max(...connectionCounts) * 2));
  const widths = [12, 5, 8, 7, 7, 7, 12, 8];
  const lines = [formatRow(['scenario', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'db cmds/req', 'RSS MiB'], widths)];
  process.stdout.write(`${lines[0]}\n`);
  for (const [name, scenario] of Object.entries(scenarios)) {
    if (wanted && !wanted.includes(name)) continue;
    for (const connections of connectionCounts) {
      const roundTrips = await countCommands({ ...countedScenarios[name as keyof typeof scenarios].options, connections }, counter, scenario.perIteration);
      const result = await measure({ ...scenario.options, connections }, gateway, scenario.perIteration);
      const line = formatRow(
        [
          name,
          connections,
          Math.round(result.reqPerSec),
          result.p50,
          result.p99,
          result.errors,
          roundTrips === undefined ? '-' : roundTrips.toFixed(1),
          result.rssMiB,
        ],
        widths,
      );
      lines.push(line);
      process.stdout.write(`${line}\n`);
    }
  }
  process.stdout.write(
    `\nChatgate at LOG_LEVEL=${process.env.LOG_LEVEL ?? 'info'}, ${seconds} s per run, ${stored} stored users, on ${engine.description}; ` +
      `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), load average ${os.loadavg()[0]!.toFixed(1)}. ` +
      `req/s counts logins for "login" (request + verify); p50/p99 are per HTTP request; database commands are counted on the wire (side by side ones separately), in a separate untimed run against a second gateway.\n`,
  );
} finally {
  await counted.stop();
  await gateway.stop();
  await stopShared();
}
