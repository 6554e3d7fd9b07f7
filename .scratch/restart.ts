// Scratch: seed N users into a persistent mongo-java-server, then time a restart of the engine and the index step.
import { rm } from 'node:fs/promises';
import { connectDatabase } from '../src/db/connection.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';
import { seed } from '../scripts/bench/support.js';

const n = Number(process.env.N ?? 10000);
const dataDir = process.env.DIR ?? `/tmp/hdata/data-${n}`;
const log = (line: string) => process.stderr.write(`[engine] ${line}\n`);
const engine = (process.env.EMBEDDED_DB_ENGINE ?? 'mongo-java-server') as 'mongo-java-server';
if (!process.env.KEEP) {
  await rm(dataDir, { recursive: true, force: true });
  const first = await startEmbeddedDatabase({ engine, dataDir, log });
  let t = Date.now();
  await seed(first.uri, 'chatgate', n);
  console.log(`seeded ${n} in ${Date.now() - t} ms`);
  t = Date.now();
  await first.stop();
  console.log(`stopped in ${Date.now() - t} ms`);
}
for (let i = 0; i < 1; i++) {
  let t = Date.now();
  const again = await startEmbeddedDatabase({ engine, dataDir, log });
  console.log(`engine start ${Date.now() - t} ms`);
  t = Date.now();
  const db = await connectDatabase(`${again.uri.replace(/\/$/, '')}/chatgate`, {});
  console.log(`connect + indexes ${Date.now() - t} ms`);
  t = Date.now();
  console.log(await db.models.User.collection.countDocuments({}), `count ${Date.now() - t} ms`);
  await db.close();
  await again.stop();
}
// integrity: a lookup by the unique phone index and an insert that must collide
{
  const again = await startEmbeddedDatabase({ engine, dataDir, log });
  const db = await connectDatabase(`${again.uri.replace(/\/$/, '')}/chatgate`, {});
  const t = Date.now();
  const user = await db.models.User.collection.findOne({ phone: '+447000000042' });
  console.log('by phone', !!user, `${Date.now() - t} ms`);
  const dup = await db.models.User.collection.insertOne({ phone: '+447000000042' } as never).then(() => 'inserted (WRONG)', (e: Error) => `refused: ${e.message.slice(0, 60)}`);
  console.log(dup);
  await db.close();
  await again.stop();
}
