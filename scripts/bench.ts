// npm run bench: throughput, latency and memory of the hot paths, on loopback against a real database.
// Uses MONGODB_URI when set, else the embedded engine. Each scenario runs BENCH_SECONDS (default 5) with
// BENCH_CONNECTIONS (default 10) connections; nothing leaves this machine.
import autocannon from 'autocannon';
import type { AddressInfo } from 'node:net';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { connectDatabase } from '../src/db/connection.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';
import type { CodeSender } from '../src/delivery/types.js';
import { generateSigningJwks, importSigningKeys } from '../src/services/signing-keys.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 10);

const config = loadConfig({ NODE_ENV: 'development', LOG_LEVEL: 'warn', RATE_LIMIT_MAX: '1000000', OTP_RATE_LIMIT_MAX: '1000000' });
const embedded = process.env.MONGODB_URI
  ? undefined
  : await startEmbeddedDatabase({ engine: config.EMBEDDED_DB_ENGINE, dataDir: undefined, log: () => undefined });
const database = await connectDatabase(process.env.MONGODB_URI ?? embedded!.uri, { dbName: `chatgate_bench_${Date.now()}` });
const keys = await importSigningKeys(await generateSigningJwks(config.JWT_ALG), config.JWT_ALG);

// Codes go nowhere: the benchmark measures the gateway, not an SMS provider.
let lastCode = '';
const silentSms: CodeSender = { channel: 'sms', provider: 'bench', canReach: () => true, send: async ({ code }) => void (lastCode = code) };
const app = await buildApp({ config, database, keys, pepper: 'bench-pepper-bench-pepper-bench-pepper', smsSender: silentSms });
await app.listen({ host: '127.0.0.1', port: 0 });
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

// One signed-in user for the authenticated scenarios.
await fetch(`${base}/auth/otp/request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"phone":"+919812345678"}' });
const signIn = await fetch(`${base}/auth/otp/verify`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ phone: '+919812345678', code: lastCode }),
});
const { accessToken } = (await signIn.json()) as { accessToken: string };

let phoneCounter = 0;
const nextPhone = (): string => `+4479${String(1_000_000 + (++phoneCounter % 900_000)).padStart(8, '0')}`;
const scenarios: { name: string; options: autocannon.Options }[] = [
  { name: 'GET /health', options: { url: `${base}/health` } },
  { name: 'GET /.well-known/jwks.json', options: { url: `${base}/.well-known/jwks.json` } },
  { name: 'GET /auth/me (JWT verify + 2 reads)', options: { url: `${base}/auth/me`, headers: { authorization: `Bearer ${accessToken}` } } },
  { name: 'POST /auth/login-intents (1 insert + audit)', options: { url: `${base}/auth/login-intents`, method: 'POST' } },
  {
    name: 'POST /auth/otp/request (new phone each time)',
    options: {
      url: `${base}/auth/otp/request`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      // A new phone per request, so the per-phone limits never answer instead of the gateway.
      requests: [{ setupRequest: (request) => ({ ...request, body: JSON.stringify({ phone: nextPhone() }) }) }],
    },
  },
];

const rows: string[] = [];
for (const scenario of scenarios) {
  const result = await autocannon({ ...scenario.options, connections, duration: seconds });
  const errors = result.non2xx + result.errors;
  rows.push(
    `${scenario.name.padEnd(48)} ${String(Math.round(result.requests.average)).padStart(7)} req/s   p50 ${String(result.latency.p50).padStart(4)} ms   p99 ${String(result.latency.p99).padStart(4)} ms   non-2xx/errors ${errors}`,
  );
}
const memory = process.memoryUsage();
rows.push(`memory after the run: rss ${Math.round(memory.rss / 2 ** 20)} MiB, heap used ${Math.round(memory.heapUsed / 2 ** 20)} MiB`);
process.stdout.write(`\nChatgate benchmark (${connections} connections, ${seconds} s each, ${embedded?.description ?? 'MONGODB_URI'})\n${rows.join('\n')}\n`);

await app.close();
await database.connection.dropDatabase();
await database.close();
await embedded?.stop();
