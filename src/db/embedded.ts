import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { createServer, type Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MongoClient } from 'mongodb';

export type EmbeddedEngineName = 'mongod' | 'ferretdb' | 'mongo-java-server';

export interface EmbeddedDatabase {
  engine: EmbeddedEngineName;
  /** Human-readable: which engine, which version, where its data lives. */
  description: string;
  uri: string;
  /** The engine's process id, where we started it ourselves (FerretDB, mongo-java-server). */
  pid?: number | undefined;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  engine: 'auto' | EmbeddedEngineName;
  /** Where the data lives; undefined keeps it in memory (mongod) or a temporary folder (FerretDB, mongo-java-server). */
  dataDir: string | undefined;
  ferretdbBin?: string | undefined;
  /** A folder prepared by scripts/ensure-mongo-java-server.sh (classes/, lib/); unset: the one in the cache. */
  mongoJavaServerHome?: string | undefined;
  /** The setup of mongo-java-server, started while mongod was tried (auto). */
  preparedMongoJavaServer?: Promise<string> | undefined;
  /** The engine builds and the memory of a failed mongod download (CHATGATE_CACHE_DIR, default ~/.cache/chatgate). */
  cacheDir?: string | undefined;
  log: (message: string) => void;
}

export class EmbeddedDatabaseUnavailable extends Error {}

/** Another live process holds the embedded database of this data directory. */
export class EmbeddedDatabaseInUse extends Error {}

const FERRETDB_VERSION = 'v1.24.2';
// The scripts folder seen from dist/src/db (the built gateway) and from src/db (tsx, tests).
const scriptPaths = (name: string) => [
  fileURLToPath(new URL(`../../../scripts/${name}`, import.meta.url)),
  fileURLToPath(new URL(`../../scripts/${name}`, import.meta.url)),
];
const MONGO_JAVA_SERVER_VERSION = '1.47.0';
// A failed mongod download is not retried on every start, only after this long.
const MONGOD_RETRY_AFTER_MS = 7 * 86_400_000;
const LOCK_FILE = 'embedded-db.lock';

export function cacheDirectory(configured?: string): string {
  return (
    configured ??
    process.env.CHATGATE_CACHE_DIR ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'chatgate')
  );
}

/**
 * Starts a real MongoDB-wire server: mongod through mongodb-memory-server, else FerretDB with SQLite. With a data
 * directory, a lock file in it keeps a second process from opening the same files while this one lives.
 */
export async function startEmbeddedDatabase(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const lock = options.dataDir ? await lockDataDir(path.resolve(options.dataDir)) : undefined;
  try {
    const database = await startAnyEngine(options);
    await lock?.record({ engine: database.engine, enginePid: database.pid });
    return {
      ...database,
      stop: async () => {
        await database.stop();
        await lock?.release();
      },
    };
  } catch (error) {
    await lock?.release();
    throw error;
  }
}

async function startAnyEngine(given: EmbeddedOptions): Promise<EmbeddedDatabase> {
  let options = given;
  if (options.engine === 'ferretdb') return startNamed('ferretdb', () => startFerretDB(options));
  if (options.engine === 'mongo-java-server') return startNamed('mongo-java-server', () => startMongoJavaServer(options));
  const failures: string[] = [];
  const marker = path.join(cacheDirectory(options.cacheDir), 'mongod-unavailable.json');
  const remembered = options.engine === 'auto' ? await rememberedMongodFailure(marker) : undefined;
  if (remembered) {
    options.log(
      `using mongo-java-server: mongod could not be had on ${remembered.failedAt.slice(0, 10)} (${remembered.reason}); ` +
        `tried again after ${remembered.retryAfter.slice(0, 10)}, or now with EMBEDDED_DB_ENGINE=mongod`,
    );
  } else {
    // Where mongod may fail (its download), mongo-java-server's one-time setup runs meanwhile: a first start pays once.
    if (options.engine === 'auto' && !options.mongoJavaServerHome) {
      const preparing = ensureMongoJavaServer(options);
      preparing.catch(() => undefined);
      options = { ...options, preparedMongoJavaServer: preparing };
    }
    try {
      const database = await startMongod(options.dataDir);
      await rm(marker, { force: true });
      return database;
    } catch (error) {
      const reason = oneLine(error);
      failures.push(`mongod: ${reason}`);
      if (options.engine === 'mongod') throw new EmbeddedDatabaseUnavailable(failures.join('; '));
      const retryAfter = await rememberMongodFailure(marker, reason);
      options.log(`mongod is unavailable (${reason}); using mongo-java-server, and not trying mongod again before ${retryAfter.slice(0, 10)}`);
    }
  }
  // auto: mongo-java-server needs Java and Maven; where they are missing, FerretDB (built with Go) still serves.
  try {
    return await startMongoJavaServer(options);
  } catch (error) {
    failures.push(`mongo-java-server: ${oneLine(error)}`);
    options.log(`mongo-java-server is unavailable (${oneLine(error)}); using FerretDB`);
  }
  try {
    return await startFerretDB(options);
  } catch (error) {
    failures.push(`ferretdb: ${oneLine(error)}`);
  }
  throw unavailable(failures);
}

async function startNamed(engine: EmbeddedEngineName, start: () => Promise<EmbeddedDatabase>): Promise<EmbeddedDatabase> {
  try {
    return await start();
  } catch (error) {
    throw unavailable([`${engine}: ${oneLine(error)}`]);
  }
}

function unavailable(failures: string[]): EmbeddedDatabaseUnavailable {
  return new EmbeddedDatabaseUnavailable(
    `No embedded database could start (${failures.join('; ')}). Set MONGODB_URI to a MongoDB server, ` +
      'install Java 17 and Maven for mongo-java-server (npm run db:engine), ' +
      'or set FERRETDB_BIN to a FerretDB 1.x binary (npm run db:engine:ferretdb builds one with Go).',
  );
}

interface MongodFailure {
  failedAt: string;
  retryAfter: string;
  reason: string;
}

async function rememberedMongodFailure(marker: string): Promise<MongodFailure | undefined> {
  try {
    const failure = JSON.parse(await readFile(marker, 'utf8')) as MongodFailure;
    return Date.parse(failure.retryAfter) > Date.now() ? failure : undefined;
  } catch {
    return undefined;
  }
}

async function rememberMongodFailure(marker: string, reason: string): Promise<string> {
  const now = Date.now();
  const failure: MongodFailure = {
    failedAt: new Date(now).toISOString(),
    retryAfter: new Date(now + MONGOD_RETRY_AFTER_MS).toISOString(),
    reason,
  };
  try {
    await mkdir(path.dirname(marker), { recursive: true });
    await writeFile(marker, `${JSON.stringify(failure)}\n`);
  } catch {
    // An unwritable cache only costs the attempt again next time.
  }
  return failure.retryAfter;
}

async function startMongod(dataDir: string | undefined): Promise<EmbeddedDatabase> {
  // Imported lazily, and absent from a production install (a development dependency).
  let memoryServer: typeof import('mongodb-memory-server');
  try {
    memoryServer = await import('mongodb-memory-server');
  } catch {
    throw new Error('mongodb-memory-server is not installed (it is a development dependency)');
  }
  const { MongoBinary, MongoMemoryServer } = memoryServer;
  // Fetching the binary first makes a failed download an error we word, not a stack trace on the console.
  await MongoBinary.getPath();
  let dbPath: string | undefined;
  if (dataDir) {
    dbPath = path.resolve(dataDir, 'mongod');
    await mkdir(dbPath, { recursive: true });
  }
  const server = await MongoMemoryServer.create({
    instance: { ip: '127.0.0.1', ...(dbPath ? { dbPath, storageEngine: 'wiredTiger' as const } : {}) },
  });
  return {
    engine: 'mongod',
    description: `mongod ${server.opts.binary?.version ?? ''} (mongodb-memory-server${dbPath ? `, data in ${dbPath}` : ', in memory'})`.replace('  ', ' '),
    uri: server.getUri(),
    stop: async () => {
      await server.stop({ doCleanup: !dbPath });
    },
  };
}

async function startFerretDB(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const bin = options.ferretdbBin ?? (await ensureFerretDB(options));
  const dataDir = options.dataDir
    ? path.resolve(options.dataDir, 'ferretdb')
    : await mkdtemp(path.join(tmpdir(), 'chatgate-ferretdb-'));
  await mkdir(dataDir, { recursive: true });
  const port = await freePort();
  const child = spawn(
    bin,
    [
      '--handler=sqlite',
      `--sqlite-url=file:${dataDir}/`,
      `--listen-addr=127.0.0.1:${port}`,
      '--debug-addr=-',
      '--telemetry=disable',
      `--state-dir=${dataDir}`,
      '--log-level=ERROR',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const watchdog = child.pid === undefined ? undefined : watchOverEngine(child.pid);
  child.once('exit', () => watchdog?.kill('SIGKILL'));
  const problem = recordProblems(child);
  const removeTemporaryData = () => (options.dataDir ? Promise.resolve() : rm(dataDir, { recursive: true, force: true }));
  const uri = `mongodb://127.0.0.1:${port}/`;
  try {
    await waitUntilAnswering(uri, child, problem);
  } catch (error) {
    child.kill('SIGKILL');
    await removeTemporaryData();
    throw error;
  }
  return {
    engine: 'ferretdb',
    description: `FerretDB ${FERRETDB_VERSION} (SQLite backend, data in ${dataDir})`,
    uri,
    pid: child.pid,
    stop: async () => {
      watchdog?.kill('SIGKILL');
      await stopChild(child);
      await removeTemporaryData();
    },
  };
}

/**
 * FerretDB must not outlive us, even after `kill -9`: a small detached shell holds the read end of a pipe that only we
 * write to. When this process dies, however it dies, the kernel closes the pipe, the shell's `read` returns, and it
 * stops the engine (SIGTERM, then SIGKILL after 3 s).
 */
function watchOverEngine(enginePid: number): ChildProcess {
  const script =
    'read -r _; kill -TERM "$1" 2>/dev/null || exit 0; ' +
    'for i in 1 2 3 4 5 6; do sleep 0.5; kill -0 "$1" 2>/dev/null || exit 0; done; kill -KILL "$1" 2>/dev/null';
  const watchdog = spawn('sh', ['-c', script, 'chatgate-engine-watchdog', String(enginePid)], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.on('error', () => undefined);
  // Neither the watchdog nor its pipe keep this process alive.
  watchdog.unref();
  (watchdog.stdin as Socket | null)?.unref();
  return watchdog;
}

interface LockHolder {
  pid: number;
  engine?: EmbeddedEngineName;
  enginePid?: number;
  startedAt?: string;
}

// Data directories this process holds: the same pid in a lock file is ours only if it is listed here.
const heldLocks = new Set<string>();

async function lockDataDir(dataDir: string): Promise<{ record(extra: Partial<LockHolder>): Promise<void>; release(): Promise<void> }> {
  await mkdir(dataDir, { recursive: true });
  const file = path.join(dataDir, LOCK_FILE);
  const holder: LockHolder = { pid: process.pid, startedAt: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(file, `${JSON.stringify(holder)}\n`, { flag: 'wx' });
      heldLocks.add(file);
      return {
        // Best effort: the engine's pid only helps to clean up after a crash; the lock itself is already ours.
        record: (extra) => writeFile(file, `${JSON.stringify({ ...holder, ...extra })}\n`).catch(() => undefined),
        release: async () => {
          heldLocks.delete(file);
          await rm(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const previous = await readLockHolder(file);
    const ours = previous?.pid === process.pid;
    if (previous && (ours ? heldLocks.has(file) : isAlive(previous.pid))) {
      throw new EmbeddedDatabaseInUse(
        `DATA_DIR ${dataDir} is in use: ${ours ? 'this process' : `process ${previous.pid}`} runs its embedded database. ` +
          'Stop it first, or give this one another DATA_DIR (or MONGODB_URI).',
      );
    }
    // A stale lock: its process is gone. Its engine should have gone with it; make sure before taking over.
    if (previous?.enginePid && isAlive(previous.enginePid) && (await isOurEngineProcess(previous.enginePid))) {
      process.kill(previous.enginePid, 'SIGKILL');
    }
    await rm(file, { force: true });
  }
  throw new EmbeddedDatabaseInUse(`DATA_DIR ${dataDir}: could not take the lock ${file}`);
}

async function readLockHolder(file: string): Promise<LockHolder | undefined> {
  try {
    const holder = JSON.parse(await readFile(file, 'utf8')) as LockHolder;
    return Number.isInteger(holder.pid) ? holder : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// Only an engine of ours is killed when a stale lock names its pid (the pid may have been reused since).
async function isOurEngineProcess(pid: number): Promise<boolean> {
  try {
    const commandLine = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return commandLine.includes('ferretdb') || commandLine.includes('ChatgateMongoServer');
  } catch {
    return false;
  }
}

async function findScript(name: string): Promise<string> {
  for (const script of scriptPaths(name)) {
    try {
      await readFile(script);
      return script;
    } catch {
      continue;
    }
  }
  throw new Error(`scripts/${name} not found`);
}

/** Finds or builds the FerretDB binary; a first build takes a minute or two, and the log follows it. */
async function ensureFerretDB(options: EmbeddedOptions): Promise<string> {
  return runEnsureScript(await findScript('ensure-ferretdb.sh'), options, { label: 'FerretDB build', failure: 'building FerretDB failed' });
}

/** Finds or fetches mongo-java-server and compiles our launcher; a first time takes about ten seconds. */
async function ensureMongoJavaServer(options: EmbeddedOptions): Promise<string> {
  return runEnsureScript(await findScript('ensure-mongo-java-server.sh'), options, {
    label: 'mongo-java-server setup',
    failure: 'setting up mongo-java-server failed',
  });
}

function runEnsureScript(script: string, options: EmbeddedOptions, words: { label: string; failure: string }): Promise<string> {
  const started = Date.now();
  const elapsed = () => `${Math.round((Date.now() - started) / 1000)} s`;
  const child = spawn('bash', [script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CHATGATE_CACHE_DIR: cacheDirectory(options.cacheDir) },
  });
  let stdout = '';
  let lastLines = '';
  let pending = '';
  const prefix = /^ensure-[a-z-]+: /;
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines.filter((text) => text.trim() !== '')) {
      lastLines = `${lastLines}\n${line}`.slice(-1000);
      options.log(`${words.label}, ${elapsed()}: ${line.replace(prefix, '')}`);
    }
  });
  // Go and Maven print nothing while they work: a line every 10 s says we are still at it.
  const ticker = setInterval(() => options.log(`${words.label}, ${elapsed()}: still working; this happens once`), 10_000);
  const timeout = setTimeout(() => child.kill('SIGTERM'), 600_000);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearInterval(ticker);
      clearTimeout(timeout);
      const result = stdout.trim().split('\n').pop();
      // The last lines say why; the earlier ones were progress, already logged.
      const why = lastLines.trim().split('\n').slice(-2).join(' ').replace(new RegExp(prefix.source.slice(1), 'g'), '');
      if (code === 0 && result) resolve(result);
      else reject(new Error(`${words.failure}: ${why || `exit code ${code}`}`));
    });
  });
}

/**
 * mongo-java-server (H2 backend, one file in DATA_DIR/mongo-java-server) under our launcher. The launcher exits when
 * its stdin closes, and only we hold that pipe: however we die, the kernel closes it and the engine goes with us.
 */
async function startMongoJavaServer(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const home = options.mongoJavaServerHome ?? (await (options.preparedMongoJavaServer ?? ensureMongoJavaServer(options)));
  const dataDir = options.dataDir
    ? path.resolve(options.dataDir, 'mongo-java-server')
    : await mkdtemp(path.join(tmpdir(), 'chatgate-mongo-java-server-'));
  await mkdir(dataDir, { recursive: true });
  const file = path.join(dataDir, 'chatgate.mv.db');
  const child = spawn(
    'java',
    // A small heap and the serial collector: the engine shares the machine with the gateway.
    ['-Xmx1g', '-XX:+UseSerialGC', '-cp', `${home}/classes:${home}/lib/*`, 'ChatgateMongoServer', '--port', '0', '--file', file],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const problem = recordProblems(child);
  const removeTemporaryData = () => (options.dataDir ? Promise.resolve() : rm(dataDir, { recursive: true, force: true }));
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const giveUp = () => reject(new Error(`mongo-java-server did not start within 30 s: ${problem().trim()}`));
      let timer = setTimeout(giveUp, 30_000);
      let reported = 0;
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        // Opening a file written before the launcher kept unique keys in its own order copies each unique index once
        // (about 17 s at 100k stored users): each index it starts is logged and gives the start 30 s more.
        const lines = out.split('\n');
        for (const line of lines.slice(reported, -1)) {
          if (!line.startsWith('copying ')) continue;
          options.log(`mongo-java-server: ${line.trim()}`);
          clearTimeout(timer);
          timer = setTimeout(giveUp, 30_000);
        }
        reported = Math.max(reported, lines.length - 1);
        const match = /listening (\d+)/.exec(out);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`mongo-java-server did not start: ${error.message}`));
      });
      child.once('exit', () => {
        clearTimeout(timer);
        // Java's own words end with the exception; the first lines say which.
        reject(new Error(`mongo-java-server did not start: ${problem().trim().split('\n').slice(0, 3).join(' ') || 'java exited'}`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    await removeTemporaryData();
    throw error;
  }
  // Neither the engine nor its pipes keep this process alive; the pipe still closes when we exit.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as Socket | null)?.unref();
  return {
    engine: 'mongo-java-server',
    description: `mongo-java-server ${MONGO_JAVA_SERVER_VERSION} (H2 backend, data in ${file})`,
    uri: `mongodb://127.0.0.1:${port}/`,
    pid: child.pid,
    stop: async () => {
      await stopChild(child);
      await removeTemporaryData();
    },
  };
}

/**
 * What an engine process says went wrong, for the error of a failed start: the last 2,000 characters of its stderr,
 * after the reason it could not be started at all (missing, not executable), which shows up as an event, not an exit.
 */
function recordProblems(child: ChildProcess): () => string {
  let problem = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    problem = (problem + chunk.toString()).slice(-2000);
  });
  child.once('error', (error) => {
    problem = `${error.message}\n${problem}`;
  });
  return () => problem;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function waitUntilAnswering(uri: string, child: ChildProcess, problem: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null || child.pid === undefined) throw new Error(`FerretDB did not start: ${problem().trim()}`);
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 300, directConnection: true });
    try {
      await client.db('admin').command({ ping: 1 });
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`FerretDB did not answer on ${uri}: ${problem().trim()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      await client.close();
    }
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function oneLine(error: unknown): string {
  return String(error instanceof Error ? error.message : error).replace(/\s+/g, ' ').trim().slice(0, 240);
}
