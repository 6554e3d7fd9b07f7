// How to write the audit trail, measured: a quick interleaved micro-benchmark (not a test). Each "request" makes one
// write of its own (a session-sized insert) and records one audit event, CONCURRENCY at a time, three ways:
//   inline   the request awaits its own audit insert after its write (the old way: audit on the critical path)
//   batched  the request awaits its write; the event goes to the batching trail (src/services/audit.ts)
//   folded   the event rides in the request's own write (one bigger document, no audit insert at all)
// Rounds alternate A B C A B C. Uses MONGODB_URI when set, else embedded FerretDB.
import { Types } from 'mongoose';
import { connectDatabase } from '../src/db/connection.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';
import { systemClock } from '../src/clock.js';
import { createAuditTrail } from '../src/services/audit.js';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const REQUESTS = Number(process.env.REQUESTS ?? 600);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 10);

const embedded = process.env.MONGODB_URI ? undefined : await startEmbeddedDatabase({ engine: 'ferretdb', dataDir: undefined, log: () => undefined });
const database = await connectDatabase(process.env.MONGODB_URI ?? embedded!.uri, { dbName: `chatgate_auditbench_${Date.now()}` });
const writes = database.connection.collection('bench_writes');
const trail = createAuditTrail(database.models.AuditEvent, systemClock, (error) => console.error('audit write failed', error));

const event = () => ({ type: 'tokens.issued' as const, channel: 'sms' as const, userId: new Types.ObjectId(), ip: '127.0.0.1', detail: { sessionId: new Types.ObjectId().toString() } });
const own = () => ({ userId: new Types.ObjectId(), channel: 'sms', createdAt: new Date(), cleanupAt: new Date() });

const ways: Record<string, () => Promise<unknown>> = {
  inline: async () => {
    await writes.insertOne(own());
    await database.models.AuditEvent.collection.insertOne({ ...event(), at: new Date() });
  },
  batched: async () => {
    await writes.insertOne(own());
    await trail.record(event());
  },
  folded: async () => {
    await writes.insertOne({ ...own(), audit: { ...event(), at: new Date() } });
  },
};

async function run(work: () => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < REQUESTS) await work();
    }),
  );
  await trail.flush();
  return REQUESTS / ((performance.now() - started) / 1000);
}

const results: Record<string, number[]> = { inline: [], batched: [], folded: [] };
await run(ways.inline!); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, work] of Object.entries(ways)) results[name]!.push(await run(work));
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
for (const [name, values] of Object.entries(results)) {
  console.log(`${name.padEnd(8)} ${median(values).toFixed(0).padStart(6)} requests/s (rounds: ${values.map((value) => value.toFixed(0)).join(', ')})`);
}
await trail.close();
await database.connection.dropDatabase();
await database.close();
await embedded?.stop();
