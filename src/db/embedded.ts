import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MongoClient } from 'mongodb';

export type EmbeddedEngineName = 'mongod' | 'ferretdb';

export interface EmbeddedDatabase {
  engine: EmbeddedEngineName;
  /** Human-readable: which engine, which version, where its data lives. */
  description: string;
  uri: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  engine: 'auto' | EmbeddedEngineName;
  /** Where the data lives; undefined keeps it in memory (mongod) or a temporary folder (FerretDB). */
  dataDir: string | undefined;
  ferretdbBin?: string | undefined;
  log: (message: string) => void;
}

export class EmbeddedDatabaseUnavailable extends Error {}

const FERRETDB_VERSION = 'v1.24.2';
const ensureScript = fileURLToPath(new URL('../../../scripts/ensure-ferretdb.sh', import.meta.url));
const ensureScriptFromSource = fileURLToPath(new URL('../../scripts/ensure-ferretdb.sh', import.meta.url));

/** Starts a real MongoDB-wire server: mongod through mongodb-memory-server, else FerretDB with SQLite. */
export async function startEmbeddedDatabase(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const failures: string[] = [];
  if (options.engine !== 'ferretdb') {
    try {
      return await startMongod(options.dataDir);
    } catch (error) {
      failures.push(`mongod: ${firstLine(error)}`);
      if (options.engine === 'mongod') throw new EmbeddedDatabaseUnavailable(failures.join('; '));
      options.log(`embedded mongod unavailable (${firstLine(error)}); falling back to FerretDB`);
    }
  }
  try {
    return await startFerretDB(options);
  } catch (error) {
    failures.push(`ferretdb: ${firstLine(error)}`);
  }
  throw new EmbeddedDatabaseUnavailable(
    `No embedded database could start (${failures.join('; ')}). Set MONGODB_URI to a MongoDB server, ` +
      'or FERRETDB_BIN to a FerretDB 1.x binary (npm run db:engine builds one with Go).',
  );
}

async function startMongod(dataDir: string | undefined): Promise<EmbeddedDatabase> {
  // Imported lazily: it is only needed when no MONGODB_URI is given.
  const { MongoMemoryServer } = await import('mongodb-memory-server');
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
  const bin = options.ferretdbBin ?? (await ensureFerretDB(options.log));
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
  let problem = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    problem = (problem + chunk.toString()).slice(-2000);
  });
  // A binary that cannot be started at all (missing, not executable) shows up here, not as an exit.
  child.once('error', (error) => {
    problem = `${error.message}\n${problem}`;
  });
  const removeTemporaryData = () => (options.dataDir ? Promise.resolve() : rm(dataDir, { recursive: true, force: true }));
  const uri = `mongodb://127.0.0.1:${port}/`;
  try {
    await waitUntilAnswering(uri, child, () => problem);
  } catch (error) {
    child.kill('SIGKILL');
    await removeTemporaryData();
    throw error;
  }
  return {
    engine: 'ferretdb',
    description: `FerretDB ${FERRETDB_VERSION} (SQLite backend, data in ${dataDir})`,
    uri,
    stop: async () => {
      await stopChild(child);
      await removeTemporaryData();
    },
  };
}

async function ensureFerretDB(log: (message: string) => void): Promise<string> {
  log('looking for a FerretDB binary (built once from the Go module proxy if missing)');
  for (const script of [ensureScript, ensureScriptFromSource]) {
    try {
      const { stdout } = await promisify(execFile)('bash', [script], { timeout: 600_000 });
      return stdout.trim().split('\n').pop()!;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || String(error).includes('No such file')) continue;
      throw error;
    }
  }
  throw new Error('scripts/ensure-ferretdb.sh not found');
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

function firstLine(error: unknown): string {
  return String(error instanceof Error ? error.message : error).split('\n')[0]!.slice(0, 200);
}
