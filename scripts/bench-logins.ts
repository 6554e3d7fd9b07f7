// npm run bench:logins: complete SMS logins per second (request a code, verify it) on one instance, and the database
// operations each login costs, counted by the driver's command monitoring. Bounded (BENCH_SECONDS, default 5), loopback only.
import type { AddressInfo } from 'node:net';
import mongoose from 'mongoose';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { connectDatabase } from '../src/db/connection.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';
import type { CodeSender } from '../src/delivery/types.js';
import { generateSigningJwks, importSigningKeys } from '../src/services/signing-keys.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const workers = Number(process.env.BENCH_CONNECTIONS ?? 8);
const config = loadConfig({
  NODE_ENV: 'development',
  LOG_LEVEL: 'warn',
  RATE_LIMIT_MAX: '1000000',
  OTP_RATE_LIMIT_MAX: '1000000',
  OTP_BUDGET_IP_PER_DAY: '100000',
  OTP_BUDGET_GLOBAL_PER_HOUR: '1000000',
  OTP_BUDGET_GLOBAL_PER_DAY: '10000000',
  OTP_BUDGET_COUNTRY_PER_HOUR: '1000000',
});
const embedded = process.env.MONGODB_URI ? undefined : await startEmbeddedDatabase({ engine: config.EMBEDDED_DB_ENGINE, dataDir: undefined, log: () => undefined });
const database = await connectDatabase(process.env.MONGODB_URI ?? embedded!.uri, { dbName: `chatgate_bench_${Date.now()}` });
// mongoose's debug hook sees every collection call, the direct `model.collection` ones included.
const commands = new Map<string, number>();
mongoose.set('debug', (_collection: string, method: string) => void commands.set(method, (commands.get(method) ?? 0) + 1));

const codes = new Map<string, string>();
const silentSms: CodeSender = { channel: 'sms', provider: 'bench', canReach: () => true, send: async ({ phone, code }) => void codes.set(phone, code) };
const keys = await importSigningKeys(await generateSigningJwks(config.JWT_ALG), config.JWT_ALG);
const app = await buildApp({ config, database, keys, pepper: 'bench-pepper-bench-pepper-bench-pepper', smsSender: silentSms });
await app.listen({ host: '127.0.0.1', port: 0 });
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

const post = (path: string, body: object) =>
  fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
let next = 0;
let logins = 0;
let failures = 0;
commands.clear();
const deadline = Date.now() + seconds * 1000;
await Promise.all(
  Array.from({ length: workers }, async () => {
    while (Date.now() < deadline) {
      const phone = `+4479112${String((next += 1)).padStart(5, '0')}`;
      const requested = await post('/auth/otp/request', { phone });
      const verified = requested.ok ? await post('/auth/otp/verify', { phone, code: codes.get(phone) }) : requested;
      if (verified.ok) logins += 1;
      else if (failures === 0) console.error(verified.status, await verified.text());
      else failures += 1;
    }
  }),
);
const total = [...commands.values()].reduce((sum, count) => sum + count, 0);
console.log(`${(logins / seconds).toFixed(1)} logins/s over ${seconds} s with ${workers} concurrent clients (${failures} failed)`);
console.log(`${(total / Math.max(1, logins)).toFixed(1)} database operations per login:`, Object.fromEntries([...commands].map(([name, count]) => [name, +(count / Math.max(1, logins)).toFixed(1)])));
await app.close();
await database.connection.dropDatabase().catch(() => undefined);
await database.close();
await embedded?.stop();
