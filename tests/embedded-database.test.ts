import { execFile, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { connectDatabase } from '../src/db/connection.js';
import { EmbeddedDatabaseInUse, startEmbeddedDatabase, type EmbeddedDatabase } from '../src/db/embedded.js';

const temporaryDir = (prefix: string) => mkdtemp(path.join(tmpdir(), prefix));
// The FerretDB binary the suite uses (built once into the cache by the same script the gateway runs).
const ferretdbBinary = async () =>
  process.env.FERRETDB_BIN ?? (await promisify(execFile)('bash', ['scripts/ensure-ferretdb.sh'])).stdout.trim().split('\n').pop()!;

// The mongo-java-server the suite uses (fetched and compiled once into the cache by the gateway's own script).
const mongoJavaServerHome = async () =>
  (await promisify(execFile)('bash', ['scripts/ensure-mongo-java-server.sh'])).stdout.trim().split('\n').pop()!;

describe('the embedded database', () => {
  const running: EmbeddedDatabase[] = [];
  afterEach(async () => {
    for (const database of running.splice(0)) await database.stop();
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('keeps its data in DATA_DIR across restarts', async () => {
    const dataDir = await temporaryDir('chatgate-embedded-');
    // The same engine the suite runs on.
    const described = inject('mongoEngine');
    const engine = described.startsWith('mongo-java-server') ? 'mongo-java-server' : described.startsWith('mongod') ? 'mongod' : 'ferretdb';
    const first = await startEmbeddedDatabase({ engine, dataDir, log: () => undefined });
    let database = await connectDatabase(first.uri, { dbName: 'chatgate' });
    await database.models.User.create({ phone: '+919812345678' });
    await database.close();
    await first.stop();

    const second = await startEmbeddedDatabase({ engine, dataDir, log: () => undefined });
    database = await connectDatabase(second.uri, { dbName: 'chatgate' });
    expect(await database.models.User.countDocuments({ phone: '+919812345678' })).toBe(1);
    await database.close();
    await second.stop();
  });

  it('keeps its unique indexes working across restarts, the ones no document used yet included', async () => {
    // mongo-java-server's launcher opens stored indexes as they are, without re-reading the collections into them.
    const dataDir = await temporaryDir('chatgate-embedded-indexes-');
    const described = inject('mongoEngine');
    const engine = described.startsWith('mongo-java-server') ? 'mongo-java-server' : described.startsWith('mongod') ? 'mongod' : 'ferretdb';
    const first = await startEmbeddedDatabase({ engine, dataDir, log: () => undefined });
    let database = await connectDatabase(first.uri, { dbName: 'chatgate' });
    const { User, Session } = database.models;
    const user = await User.create({ phone: '+447700900123' });
    await Session.create({ userId: user._id, channel: 'sms', createdAt: new Date(), cleanupAt: new Date(Date.now() + 86_400_000) });
    await database.close();
    await first.stop();

    const second = await startEmbeddedDatabase({ engine, dataDir, log: () => undefined });
    running.push(second);
    database = await connectDatabase(second.uri, { dbName: 'chatgate' });
    try {
      const models = database.models;
      expect((await models.User.findOne({ phone: '+447700900123' }).lean())?._id.toString()).toBe(user._id.toString());
      await expect(models.User.collection.insertOne({ phone: '+447700900123', status: 'active' } as never)).rejects.toMatchObject({ code: 11000 });
      expect(await models.Session.countDocuments({ userId: user._id })).toBe(1);
      // The Telegram id index held nothing when the database was opened.
      await models.User.collection.insertOne({ telegram: { id: 4242 }, status: 'active' } as never);
      await expect(models.User.collection.insertOne({ telegram: { id: 4242 }, status: 'active' } as never)).rejects.toMatchObject({ code: 11000 });
      expect(await models.User.countDocuments({ 'telegram.id': 4242 })).toBe(1);
    } finally {
      await database.close();
    }
  });

  it('opens a mongo-java-server file written in the library index order, its unique indexes copied into the launcher order', async () => {
    // Files from before the launcher kept unique keys in its own order (KeyOrder in ChatgateMongoServer.java).
    const dataDir = await temporaryDir('chatgate-embedded-index-order-');
    const file = path.join(dataDir, 'mongo-java-server', 'chatgate.mv.db');
    await mkdir(path.dirname(file), { recursive: true });
    const home = await mongoJavaServerHome();
    const older = spawn('java', ['-cp', `${home}/classes:${home}/lib/*`, 'ChatgateMongoServer', '--port', '0', '--file', file, '--library-index-order']);
    const port = await new Promise<number>((resolve, reject) => {
      older.stdout.on('data', (chunk: Buffer) => {
        const match = /listening (\d+)/.exec(chunk.toString());
        if (match) resolve(Number(match[1]));
      });
      older.once('exit', (code) => reject(new Error(`the launcher exited (${code})`)));
    });
    let database = await connectDatabase(`mongodb://127.0.0.1:${port}/chatgate`, { dbName: 'chatgate' });
    const phones = Array.from({ length: 300 }, (_, index) => `+4477009${String(index).padStart(5, '0')}`);
    await database.models.User.insertMany(phones.map((phone) => ({ phone })));
    await database.close();
    // Its stdin closed, the launcher commits and exits.
    older.stdin.end();
    await new Promise((resolve) => older.once('exit', resolve));

    const logged: string[] = [];
    const current = await startEmbeddedDatabase({ engine: 'mongo-java-server', dataDir, log: (line) => logged.push(line) });
    running.push(current);
    // Each copy is said as it starts (and gives the start more time).
    expect(logged).toContainEqual(expect.stringMatching(/copying 300 keys of unique index chatgate\.users\._index_phone_1 /));
    database = await connectDatabase(current.uri, { dbName: 'chatgate' });
    try {
      const { User } = database.models;
      for (const phone of [phones[0]!, phones[150]!, phones[299]!]) expect((await User.findOne({ phone }).lean())?.phone).toBe(phone);
      const someone = await User.findOne({ phone: phones[7] }).lean();
      expect((await User.findById(someone!._id).lean())?.phone).toBe(phones[7]);
      await expect(User.collection.insertOne({ phone: phones[42], status: 'active' } as never)).rejects.toMatchObject({ code: 11000 });
      await User.collection.insertOne({ phone: '+447700999999', status: 'active' } as never);
      expect(await User.countDocuments({})).toBe(301);
    } finally {
      await database.close();
    }
  });

  it('says what to set when no engine can start', async () => {
    const failing = startEmbeddedDatabase({ engine: 'ferretdb', dataDir: undefined, ferretdbBin: '/nonexistent/ferretdb', log: () => undefined });
    await expect(failing).rejects.toThrow(/Set MONGODB_URI/);
  });

  it('refuses to open a data directory twice, and opens it again once stopped', async () => {
    const dataDir = await temporaryDir('chatgate-embedded-lock-');
    const ferretdbBin = await ferretdbBinary();
    const first = await startEmbeddedDatabase({ engine: 'ferretdb', dataDir, ferretdbBin, log: () => undefined });
    running.push(first);
    await expect(startEmbeddedDatabase({ engine: 'ferretdb', dataDir, ferretdbBin, log: () => undefined })).rejects.toThrow(EmbeddedDatabaseInUse);
    await running.pop()!.stop();
    const again = await startEmbeddedDatabase({ engine: 'ferretdb', dataDir, ferretdbBin, log: () => undefined });
    running.push(again);
    expect(again.engine).toBe('ferretdb');
  });

  it('takes over the lock file of a process that is gone', async () => {
    const dataDir = await temporaryDir('chatgate-embedded-stale-');
    // A pid that cannot be alive (above the kernel's limit).
    await writeFile(path.join(dataDir, 'embedded-db.lock'), JSON.stringify({ pid: 2 ** 22 + 1, engine: 'ferretdb' }));
    const database = await startEmbeddedDatabase({ engine: 'ferretdb', dataDir, ferretdbBin: await ferretdbBinary(), log: () => undefined });
    running.push(database);
    expect(JSON.parse(await readFile(path.join(dataDir, 'embedded-db.lock'), 'utf8'))).toMatchObject({ pid: process.pid, enginePid: database.pid });
  });

  it('remembers that mongod cannot be had, in one friendly line, and goes straight to mongo-java-server next time', async () => {
    const cacheDir = await temporaryDir('chatgate-cache-');
    // No mongod binary on hand, and a download that fails at once.
    vi.stubEnv('MONGOMS_DOWNLOAD_DIR', await temporaryDir('chatgate-mongod-binaries-'));
    vi.stubEnv('MONGOMS_DOWNLOAD_MIRROR', 'http://127.0.0.1:9');
    vi.stubEnv('MONGOMS_SYSTEM_BINARY', '');
    const consoleWarn = vi.spyOn(console, 'warn');
    const ferretdbBin = await ferretdbBinary();
    const mongoJavaServer = await mongoJavaServerHome();

    const firstLog: string[] = [];
    const first = await startEmbeddedDatabase({
      engine: 'auto',
      dataDir: undefined,
      ferretdbBin,
      mongoJavaServerHome: mongoJavaServer,
      cacheDir,
      log: (line) => firstLog.push(line),
    });
    running.push(first);
    expect(first.engine).toBe('mongo-java-server');
    expect(firstLog).toHaveLength(1);
    expect(firstLog[0]).toMatch(/^mongod is unavailable \(.+\); using mongo-java-server, and not trying mongod again before \d{4}-\d{2}-\d{2}$/);
    expect(consoleWarn).not.toHaveBeenCalled();
    const marker = JSON.parse(await readFile(path.join(cacheDir, 'mongod-unavailable.json'), 'utf8')) as { failedAt: string; retryAfter: string };
    expect(Date.parse(marker.retryAfter) - Date.parse(marker.failedAt)).toBe(7 * 86_400_000);

    const secondLog: string[] = [];
    const second = await startEmbeddedDatabase({
      engine: 'auto',
      dataDir: undefined,
      ferretdbBin,
      mongoJavaServerHome: mongoJavaServer,
      cacheDir,
      log: (line) => secondLog.push(line),
    });
    running.push(second);
    expect(second.engine).toBe('mongo-java-server');
    expect(secondLog).toEqual([expect.stringMatching(/^using mongo-java-server: mongod could not be had on \d{4}-\d{2}-\d{2} .*EMBEDDED_DB_ENGINE=mongod$/)]);
  });

  it('tries mongod again once the remembered failure is a week old', async () => {
    const cacheDir = await temporaryDir('chatgate-cache-');
    const longAgo = Date.now() - 8 * 86_400_000;
    await writeFile(
      path.join(cacheDir, 'mongod-unavailable.json'),
      JSON.stringify({ failedAt: new Date(longAgo).toISOString(), retryAfter: new Date(longAgo + 7 * 86_400_000).toISOString(), reason: 'old' }),
    );
    vi.stubEnv('MONGOMS_DOWNLOAD_DIR', await temporaryDir('chatgate-mongod-binaries-'));
    vi.stubEnv('MONGOMS_DOWNLOAD_MIRROR', 'http://127.0.0.1:9');
    const log: string[] = [];
    const database = await startEmbeddedDatabase({
      engine: 'auto',
      dataDir: undefined,
      mongoJavaServerHome: await mongoJavaServerHome(),
      cacheDir,
      log: (line) => log.push(line),
    });
    running.push(database);
    expect(log).toEqual([expect.stringMatching(/^mongod is unavailable/)]);
    const marker = JSON.parse(await readFile(path.join(cacheDir, 'mongod-unavailable.json'), 'utf8')) as { retryAfter: string };
    expect(Date.parse(marker.retryAfter)).toBeGreaterThan(Date.now());
  });

  describe('building FerretDB on a first start', () => {
    // A stand-in `go` first on PATH, reporting the given version and failing every other command, keeps these tests
    // to the build's first steps (the real build takes a minute or two).
    const withGo = async (version: string) => {
      const bin = await temporaryDir('chatgate-fake-go-');
      await writeFile(
        path.join(bin, 'go'),
        `#!/bin/sh\ncase "$1 $2" in\n  "env GOVERSION") echo ${version} ;;\n  "env GOPATH") echo ${bin}/gopath ;;\n  *) echo "go: no network here" >&2; exit 1 ;;\nesac\n`,
      );
      await chmod(path.join(bin, 'go'), 0o755);
      vi.stubEnv('PATH', `${bin}:${process.env.PATH ?? ''}`);
      vi.stubEnv('GOPATH', '');
      return temporaryDir('chatgate-empty-cache-');
    };

    it('logs each step as it happens and says why the build failed', async () => {
      const cacheDir = await withGo('go1.24.0');
      const log: string[] = [];
      const starting = startEmbeddedDatabase({ engine: 'ferretdb', dataDir: undefined, cacheDir, log: (line) => log.push(line) });
      await expect(starting).rejects.toThrow(/building FerretDB failed: .*go: no network here/s);
      expect(log.slice(0, 2)).toEqual([
        `FerretDB build, 0 s: building FerretDB v1.24.2 into ${cacheDir} with go1.24.0 (about two minutes, once)`,
        'FerretDB build, 0 s: downloading github.com/FerretDB/FerretDB@v1.24.2',
      ]);
    });

    it('refuses a Go older than FerretDB v1.24.2 needs, saying which', async () => {
      const cacheDir = await withGo('go1.22.5');
      const starting = startEmbeddedDatabase({ engine: 'ferretdb', dataDir: undefined, cacheDir, log: () => undefined });
      await expect(starting).rejects.toThrow('FerretDB v1.24.2 needs Go 1.24 or newer, this is go1.22.5');
    });
  });
});
