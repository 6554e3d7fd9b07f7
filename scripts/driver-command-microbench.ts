// What one database command costs the gateway's process, measured: a quick interleaved micro-benchmark (not a test).
// One client, one command at a time, the MongoDB driver the gateway uses (called directly, without mongoose), against
// two servers:
//   engine    the embedded engine (mongo-java-server; MONGODB_URI when set)
//   stand-in  a child process that answers every command with { ok: 1 } at once (this same file, run with --stand-in)
// Only this process's CPU is counted (user and system, per command), so the engine's own work is left out; a ping that
// costs the same against both servers is the driver's floor, whatever the engine. Rounds alternate; medians printed.
//   npx tsx scripts/driver-command-microbench.ts      ROUNDS (default 3), COMMANDS (default 5000 per run)
import { BSON } from 'bson';
import { fork } from 'node:child_process';
import net from 'node:net';
import { MongoClient } from 'mongodb';
import { startEmbeddedDatabase } from '../src/db/embedded.js';

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_MSG = 2013;

if (process.argv.includes('--stand-in')) {
  serveStandIn();
} else {
  await measureAll();
}

/** Answers each OP_MSG (and the driver's first handshake, an OP_QUERY) with a minimal reply; prints its port. */
function serveStandIn() {
  const hello = { ismaster: true, isWritablePrimary: true, helloOk: true, minWireVersion: 0, maxWireVersion: 21, maxBsonObjectSize: 16 * 1024 * 1024, maxMessageSizeBytes: 48_000_000, maxWriteBatchSize: 100_000, ok: 1 };
  const ok = BSON.serialize({ ok: 1 });
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 16 && pending.length >= pending.readInt32LE(0)) {
        const length = pending.readInt32LE(0);
        const message = pending.subarray(0, length);
        pending = pending.subarray(length);
        socket.write(replyTo(message));
      }
    });
  });
  function replyTo(message: Buffer): Buffer {
    const requestId = message.readInt32LE(4);
    const opCode = message.readInt32LE(12);
    if (opCode === OP_QUERY) {
      // OP_QUERY: flags, a NUL-terminated collection name, skip and limit, then the command.
      const nameEnd = message.indexOf(0, 20);
      const command = BSON.deserialize(message.subarray(nameEnd + 9));
      const body = BSON.serialize(command.hello || command.isMaster || command.ismaster ? { ...hello, localTime: new Date() } : { ok: 1 });
      const header = Buffer.alloc(36);
      header.writeInt32LE(36 + body.length, 0);
      header.writeInt32LE(requestId, 8);
      header.writeInt32LE(OP_REPLY, 12);
      header.writeInt32LE(1, 32); // one document returned
      return Buffer.concat([header, body]);
    }
    // OP_MSG: flag bits, then section kind 0 and the command.
    const command = BSON.deserialize(message.subarray(21, 21 + message.readInt32LE(21)));
    const body = command.hello || command.isMaster || command.ismaster ? BSON.serialize({ ...hello, localTime: new Date() }) : ok;
    const header = Buffer.alloc(21);
    header.writeInt32LE(21 + body.length, 0);
    header.writeInt32LE(requestId, 8);
    header.writeInt32LE(OP_MSG, 12);
    return Buffer.concat([header, body]);
  }
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as net.AddressInfo).port));
  process.on('disconnect', () => process.exit(0));
}

async function measureAll() {
  const rounds = Number(process.env.ROUNDS ?? 3);
  const commands = Number(process.env.COMMANDS ?? 5000);
  const embedded = process.env.MONGODB_URI ? undefined : await startEmbeddedDatabase({ engine: 'mongo-java-server', dataDir: undefined, log: () => undefined });
  const standIn = fork(new URL(import.meta.url).pathname, ['--stand-in'], { execArgv: process.execArgv, stdio: 'inherit' });
  const standInPort = await new Promise<number>((resolve) => standIn.once('message', (port) => resolve(Number(port))));
  // The gateway's settings (src/db/connection.ts): writes wait for a majority, retried once across a failover.
  const settings = { writeConcern: { w: 'majority' as const }, retryWrites: true, directConnection: true };
  const engine = await new MongoClient(process.env.MONGODB_URI ?? embedded!.uri, settings).connect();
  const bare = await new MongoClient(`mongodb://127.0.0.1:${standInPort}/`, settings).connect();
  const db = engine.db(`chatgate_driverbench_${Date.now()}`);
  const things = db.collection<{ _id: string; n: number }>('things');
  await things.insertOne({ _id: 'one', n: 0 });
  let inserted = 0;

  const commandsToTry: Record<string, (n: number) => Promise<unknown>> = {
    'ping, stand-in': () => bare.db('x').command({ ping: 1 }),
    'ping, engine': () => db.command({ ping: 1 }),
    'findOne by _id': () => things.findOne({ _id: 'one' }),
    'find command by _id': () => db.command({ find: 'things', filter: { _id: 'one' }, limit: 1, singleBatch: true }),
    'updateOne by _id': (n) => things.updateOne({ _id: 'one' }, { $set: { n } }),
    insertOne: () => things.insertOne({ _id: `key-${inserted++}`, n: 0 }),
  };
  const results = new Map<string, { total: number[]; user: number[]; system: number[]; wall: number[] }>();
  for (let round = 0; round < rounds; round++) {
    for (const [name, send] of Object.entries(commandsToTry)) {
      for (let n = 0; n < 300; n++) await send(n); // warm-up
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      for (let n = 0; n < commands; n++) await send(n);
      const wall = ((performance.now() - started) * 1000) / commands;
      const cpu = process.cpuUsage(cpuBefore);
      const result = results.get(name) ?? { total: [], user: [], system: [], wall: [] };
      result.total.push((cpu.user + cpu.system) / commands);
      result.user.push(cpu.user / commands);
      result.system.push(cpu.system / commands);
      result.wall.push(wall);
      results.set(name, result);
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  console.log(`${'command'.padEnd(22)} ${'CPU µs'.padStart(7)} ${'user'.padStart(6)} ${'system'.padStart(7)} ${'wall µs'.padStart(8)}   (medians of ${rounds} rounds of ${commands}, one at a time)`);
  for (const [name, { total, user, system, wall }] of results) {
    const cell = (value: number, width: number) => value.toFixed(0).padStart(width);
    console.log(`${name.padEnd(22)} ${cell(median(total), 7)} ${cell(median(user), 6)} ${cell(median(system), 7)} ${cell(median(wall), 8)}`);
  }
  await db.dropDatabase();
  await Promise.all([engine.close(), bare.close()]);
  standIn.disconnect();
  await embedded?.stop();
}
