// Shared parts of `npm run bench` and `npm run bench:compare`: the database, a round-trip counter, a sink for the
// codes the servers send, the servers under test as child processes, and autocannon runs. Loopback only.
import autocannon from 'autocannon';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, connect, type AddressInfo, type Socket } from 'node:net';
import { MongoClient, ObjectId } from 'mongodb';
import { connectDatabase } from '../../src/db/connection.js';
import { startEmbeddedDatabase, type EmbeddedDatabase, type EmbeddedOptions } from '../../src/db/embedded.js';

export const seconds = Number(process.env.BENCH_SECONDS ?? 5);
/** An unmeasured run of each server per scenario first, so that neither is measured while its JIT (or the engine's) is cold. */
export const warmUpSeconds = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
export const connectionCounts = (process.env.BENCH_CONNECTIONS ?? '10,50').split(',').map(Number);
const countRequests = Number(process.env.BENCH_COUNT_REQUESTS ?? 600);

export interface Engine {
  description: string;
  uri: string;
  stop(): Promise<void>;
}

/**
 * MONGODB_URI when set, else the embedded engine EMBEDDED_DB_ENGINE names (default auto), its data in BENCH_DATA_DIR
 * (kept, so a seeded database serves the next runs) or a temp folder.
 */
export async function startEngine(): Promise<Engine> {
  if (process.env.MONGODB_URI) return { description: `MONGODB_URI`, uri: process.env.MONGODB_URI, stop: async () => undefined };
  const embedded: EmbeddedDatabase = await startEmbeddedDatabase({
    engine: (process.env.EMBEDDED_DB_ENGINE as EmbeddedOptions['engine'] | undefined) ?? 'auto',
    dataDir: process.env.BENCH_DATA_DIR || undefined,
    log: (line) => process.stderr.write(`[engine] ${line}\n`),
  });
  return { description: embedded.description, uri: embedded.uri, stop: () => embedded.stop() };
}

export const withDatabase = (uri: string, dbName: string) => `${uri.replace(/\/[^/]*$/, '')}/${dbName}`;

/**
 * Counts database round trips on the wire, whatever the server under test and its driver: a TCP relay between it and
 * the engine that reads each client message's header and its command name. Handshakes and heartbeats are not counted.
 */
export async function startRoundTripCounter(engineUri: string): Promise<{ uri: string; commands: () => number; stop(): void }> {
  const target = new URL(engineUri.replace(/^mongodb:/, 'http:'));
  let commands = 0;
  const sockets = new Set<Socket>();
  const notCounted = new Set(['hello', 'ismaster', 'isMaster', 'ping', 'buildInfo', 'buildinfo', 'endSessions', 'saslStart', 'saslContinue', 'getnonce']);
  const server = createTcpServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    let pending: Buffer = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      // Each message: int32 length, requestID, responseTo, opCode; OP_MSG (2013): flags, section kind 0, a BSON document.
      while (pending.length >= 16 && pending.length >= pending.readInt32LE(0)) {
        const length = pending.readInt32LE(0);
        if (pending.readInt32LE(12) === 2013 && length > 26 && pending[20] === 0) {
          const keyStart = 26;
          const keyEnd = pending.indexOf(0, keyStart);
          if (!notCounted.has(pending.toString('latin1', keyStart, keyEnd))) commands++;
        }
        pending = pending.subarray(length);
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    uri: `mongodb://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    commands: () => commands,
    stop: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** Receives the codes the servers under test send (Chatgate's HTTP SMS provider, better-auth's sendOTP). */
export async function startCodeSink(): Promise<{ url: string; codes: Map<string, string>; stop(): void }> {
  const codes = new Map<string, string>();
  const server: Server = createHttpServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      try {
        const { to, code } = JSON.parse(body) as { to: string; code: string };
        codes.set(to, code);
      } catch {
        // not ours
      }
      response.writeHead(200).end('{}');
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/sms`, codes, stop: () => server.close() };
}

export interface ServerUnderTest {
  name: string;
  base: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts a server as its own process (so its RSS and CPU are its own) and waits for its "listening PORT" line. Its
 * output goes to a file, as to a log collector: a pipe that the busy bench drains late would pile up in its memory.
 */
export async function startChild(name: string, args: string[], env: Record<string, string>, cwd?: string): Promise<ServerUnderTest> {
  const logFile = path.join(await mkdtemp(path.join(tmpdir(), 'chatgate-bench-log-')), `${name.replace(/\W+/g, '-')}.log`);
  const fd = openSync(logFile, 'w');
  const child: ChildProcess = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd], cwd });
  closeSync(fd);
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  const deadline = Date.now() + 120_000;
  let port: number | undefined;
  while (port === undefined) {
    const output = await readFile(logFile, 'utf8');
    const match = /listening (\d+)/.exec(output) ?? /"url":"http:\/\/[^:]+:(\d+)"/.exec(output);
    if (match) port = Number(match[1]);
    else if (exited !== undefined) throw new Error(`${name} exited (${exited}):\n${output.slice(-3000)}`);
    else if (Date.now() > deadline) throw new Error(`${name} did not start within 120 s:\n${output.slice(-3000)}`);
    else await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    name,
    base: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop: async () => {
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null || exited !== undefined) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill('SIGTERM');
      });
      await rm(path.dirname(logFile), { recursive: true, force: true });
    },
  };
}

export async function rssMiB(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
  } catch {
    return 0;
  }
}

export interface Measurement {
  requests: number;
  reqPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  rssMiB: number;
}

/** The unmeasured warm-up run of a scenario (BENCH_WARMUP_SECONDS, 0 for none). */
export async function warmUp(options: autocannon.Options): Promise<void> {
  if (warmUpSeconds > 0) await autocannon({ ...options, duration: warmUpSeconds });
}

/**
 * One autocannon run with the RSS of the server sampled while it lasts (the highest is kept). The server under test talks
 * to the engine directly: the round-trip counter is a relay that would spend this machine's cores on every command,
 * as no deployment does, and so charge a server for each command it sends twice over. Commands are counted apart
 * (countCommands), against a second instance of the server connected through the relay.
 */
export async function measure(options: autocannon.Options, server: ServerUnderTest, perIteration = 1): Promise<Measurement> {
  let peak = await rssMiB(server.pid);
  const sampler = setInterval(() => void rssMiB(server.pid).then((value) => (peak = Math.max(peak, value))), 250);
  const result = await autocannon({ duration: seconds, ...options });
  clearInterval(sampler);
  peak = Math.max(peak, await rssMiB(server.pid));
  return {
    requests: result.requests.total,
    reqPerSec: result.requests.total / perIteration / (result.duration || seconds),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors + result.timeouts,
    rssMiB: peak,
  };
}

/**
 * Database commands per iteration of a scenario: a bounded run (BENCH_COUNT_REQUESTS, default 600 requests, at least 20 per
 * connection) against an instance whose database connection goes through the counter, not timed. Work still in flight
 * is waited for on both sides of the run, so the batched audit writes of its last requests are counted and none of an
 * earlier run's are.
 */
export async function countCommands(
  options: autocannon.Options,
  counter: { commands: () => number },
  perIteration = 1,
): Promise<number | undefined> {
  await quiet(counter);
  const before = counter.commands();
  const amount = Math.max(countRequests, (options.connections ?? 10) * 20);
  const result = await autocannon({ ...options, amount: Math.ceil(amount / perIteration) * perIteration });
  await quiet(counter);
  const iterations = result.requests.total / perIteration;
  return iterations > 0 ? (counter.commands() - before) / iterations : undefined;
}

// Quiet: no command for 300 ms (the audit trail writes every 5 ms while it has events), or 15 s at most.
async function quiet(counter: { commands: () => number }): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (let last = -1; counter.commands() !== last && Date.now() < deadline; ) {
    last = counter.commands();
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

let phoneCounter = Number.parseInt(randomBytes(2).toString('hex'), 16);
/** A new UK mobile number each time, so per-phone limits never answer instead of the server. */
export const nextPhone = (): string => `+4479${String(10_000_000 + (++phoneCounter % 89_999_999)).slice(-8)}`;

/**
 * Stored data for the latency-with-data runs, shaped as a deployment leaves it: per user a session, its refresh token, a
 * used challenge with its phone record and single-use reservation, and an audit event. The gateway's own indexes
 * are created first (as on a real database, where documents arrive into indexed collections: an index built later
 * over 100k documents takes minutes on mongo-java-server), then the documents go in large batches, collections side by
 * side.
 */
export async function seed(uri: string, dbName: string, count: number): Promise<'seeded' | 'already there'> {
  const database = await connectDatabase(withDatabase(uri, dbName), { startupTimeoutMS: 30_000 });
  await database.close();
  const client = await MongoClient.connect(uri, { directConnection: true });
  const db = client.db(dbName);
  // A kept database (BENCH_DATA_DIR) seeded by an earlier run: the seeded users are its first ones.
  if (count <= 0 || (await db.collection('users').findOne({ phone: `+4470${String(count - 1).padStart(8, '0')}` }))) {
    await client.close();
    return 'already there';
  }
  const now = new Date();
  const later = new Date(now.getTime() + 86_400_000);
  const batch = 5000;
  try {
    for (let offset = 0; offset < count; offset += batch) {
      const size = Math.min(batch, count - offset);
      const users = Array.from({ length: size }, (_, i) => ({
        _id: new ObjectId(),
        phone: `+4470${String(offset + i).padStart(8, '0')}`,
        status: 'active',
        lastLoginAt: now,
        lastLoginChannel: 'sms',
        createdAt: now,
        updatedAt: now,
      }));
      const sessions = users.map((user) => ({ _id: new ObjectId(), userId: user._id, channel: 'sms', createdAt: now, ip: '127.0.0.1', cleanupAt: later }));
      const challenges = users.map((user, i) => ({
        _id: randomBytes(16).toString('base64url'),
        phone: user.phone,
        channel: 'sms',
        codeHash: randomBytes(32),
        sendSeq: 1,
        status: 'consumed',
        ipKey: `seed-${i % 1000}`,
        testNumber: false,
        expiresAt: now,
        createdAt: now,
        cleanupAt: later,
      }));
      const insert = (collection: string, documents: object[]) => db.collection(collection).insertMany(documents, { ordered: false });
      await Promise.all([
        insert('users', users),
        insert('sessions', sessions),
        insert(
          'refresh_tokens',
          sessions.map((session) => ({
            sessionId: session._id,
            userId: session.userId,
            tokenHash: randomBytes(32).toString('base64url'),
            expiresAt: later,
            createdAt: now,
            cleanupAt: later,
          })),
        ),
        insert('challenges', challenges),
        insert(
          'otp_phones',
          users.map((user, i) => ({ _id: user.phone, lastSeq: 1, sends: [{ seq: 1, at: now, ipKey: `seed-${i % 1000}` }], cleanupAt: later })),
        ),
        insert(
          'reservations',
          challenges.map((challenge) => ({ _id: `otp:${challenge._id}:used`, createdAt: now, cleanupAt: later })),
        ),
        insert(
          'audit_events',
          users.map((user) => ({ type: 'tokens.issued', at: now, channel: 'sms', userId: user._id, ip: '127.0.0.1' })),
        ),
      ]);
    }
  } finally {
    await client.close();
  }
  return 'seeded';
}

export const jsonPost = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

export const formatRow = (cells: Array<string | number>, widths: number[]) =>
  cells.map((cell, i) => (i === 0 ? String(cell).padEnd(widths[i]!) : String(cell).padStart(widths[i]!))).join('  ');
