import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';

// The real process, as `npm start` runs it (through tsx, so no build is needed for the test).
function startServer(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      ...(process.env.CHATGATE_CACHE_DIR ? { CHATGATE_CACHE_DIR: process.env.CHATGATE_CACHE_DIR } : {}),
      ...(process.env.FERRETDB_BIN ? { FERRETDB_BIN: process.env.FERRETDB_BIN } : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = async (pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(output);
      if (match) return match;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`never saw ${pattern}:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { child, exited, waitFor, output: () => output };
}

describe('the server process', () => {
  it('refuses to start in production with development defaults, naming each variable', async () => {
    const server = startServer({ NODE_ENV: 'production' });
    expect(await server.exited).toBe(1);
    for (const variable of ['OTP_PEPPER', 'JWT_PRIVATE_JWKS', 'MONGODB_URI', 'SMS_PROVIDER']) expect(server.output()).toContain(variable);
  });

  it('refuses an invalid variable by name', async () => {
    const server = startServer({ OTP_LENGTH: 'six' });
    expect(await server.exited).toBe(1);
    expect(server.output()).toContain('OTP_LENGTH');
  });

  it('serves, then shuts down cleanly on SIGTERM', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'chatgate-server-'));
    const uri = `${inject('mongoUri').replace(/\/$/, '')}/chatgate_test_server`;
    const server = startServer({ MONGODB_URI: uri, DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: '0', NODE_ENV: 'development' });
    const [, address] = await server.waitFor(/Server listening at (http:\/\/127\.0\.0\.1:\d+)/);
    await server.waitFor(/chatgate ready/);
    const health = await fetch(`${address}/health`);
    expect(health.status).toBe(200);
    const jwks = (await (await fetch(`${address}/.well-known/jwks.json`)).json()) as { keys: unknown[] };
    expect(jwks.keys).toHaveLength(1);
    expect(server.output()).toContain('JWT_PRIVATE_JWKS is unset');
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    expect(server.output()).toContain('"msg":"stopped"');
  });
});

// FerretDB processes serving a data directory, found by their command line (Linux /proc), whoever started them.
async function ferretdbProcessesOf(dataDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const commandLine = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (commandLine.some((arg) => arg.startsWith('--state-dir=') && arg.startsWith(`--state-dir=${dataDir}`))) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

// mongo-java-server launchers whose H2 file lies in a data directory, found by their command line.
async function mongoJavaServerProcessesOf(dataDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const commandLine = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (commandLine.includes('ChatgateMongoServer') && commandLine.some((arg) => arg.startsWith(`${dataDir}/`))) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('the start log', () => {
  it('says where the gateway answers, in which mode, with what, and warns loudly in development', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'chatgate-server-'));
    const uri = `${inject('mongoUri').replace(/\/$/, '')}/chatgate_test_start_log`;
    const server = startServer({ MONGODB_URI: uri, DATA_DIR: dataDir, HOST: '0.0.0.0', PORT: '0' });
    const [, port] = await server.waitFor(/Server listening at http:\/\/[^:]+:(\d+)/);
    await server.waitFor(/API docs/);
    const lines = server.output().trim().split('\n').map((line) => JSON.parse(line) as { level: number; msg: string; [field: string]: unknown });
    const said = (pattern: RegExp) => lines.find((line) => pattern.test(line.msg));
    expect(said(/^DEVELOPMENT MODE \(NODE_ENV is unset\): the console SMS provider prints codes to this log/)?.level).toBe(40);
    expect(said(/^chatgate ready at /)).toMatchObject({
      msg: `chatgate ready at http://localhost:${port} (development, Node ${process.version})`,
      url: `http://localhost:${port}`,
      environment: 'development',
      engine: 'external',
      sms: 'console',
      node: process.version,
    });
    expect(said(/^SMS provider: console, codes are printed to this log/)).toBeDefined();
    expect(said(/^chat channels: /)?.msg).toBe(
      'chat channels: SMS on; WhatsApp off (set WHATSAPP_VERIFY_TOKEN and WHATSAPP_APP_SECRET to turn it on); ' +
        'Telegram off (set TELEGRAM_BOT_TOKEN and TELEGRAM_BOT_USERNAME to turn it on)',
    );
    expect(said(/^API docs: /)?.msg).toBe(`API docs: http://localhost:${port}/docs`);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });
});

describe('the embedded database of the server process', () => {
  const dataDirs: string[] = [];
  const children: Array<ReturnType<typeof startServer>['child']> = [];
  const embeddedServer = async (env: Record<string, string> = {}) => {
    const dataDir = env.DATA_DIR ?? (await mkdtemp(path.join(tmpdir(), 'chatgate-orphan-')));
    dataDirs.push(dataDir);
    const server = startServer({ EMBEDDED_DB_ENGINE: 'ferretdb', HOST: '127.0.0.1', PORT: '0', NODE_ENV: 'development', DATA_DIR: dataDir, ...env });
    children.push(server.child);
    return { ...server, dataDir };
  };

  // Whatever a test leaves behind is ended by pid: the gateways it started and the FerretDB of its data directories.
  afterEach(async () => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const dataDir of dataDirs.splice(0)) {
      for (const pid of await ferretdbProcessesOf(dataDir)) process.kill(pid, 'SIGKILL');
      for (const pid of await mongoJavaServerProcessesOf(dataDir)) process.kill(pid, 'SIGKILL');
    }
  });

  it('stops its mongo-java-server when the gateway is killed with SIGKILL, and a next gateway starts on the same DATA_DIR', async () => {
    const server = await embeddedServer({ EMBEDDED_DB_ENGINE: 'mongo-java-server' });
    await server.waitFor(/chatgate ready/, 60_000);
    expect(server.output()).toContain('database: embedded mongo-java-server 1.47.0 (H2 backend, data in ');
    expect(await mongoJavaServerProcessesOf(server.dataDir)).toHaveLength(1);
    server.child.kill('SIGKILL');
    await server.exited;
    expect(await eventually(() => mongoJavaServerProcessesOf(server.dataDir), (pids) => pids.length === 0, 5000)).toEqual([]);
    const next = await embeddedServer({ EMBEDDED_DB_ENGINE: 'mongo-java-server', DATA_DIR: server.dataDir });
    await next.waitFor(/chatgate ready/, 60_000);
    next.child.kill('SIGTERM');
    expect(await next.exited).toBe(0);
    expect(await mongoJavaServerProcessesOf(server.dataDir)).toEqual([]);
  }, 130_000);

  it('stops its FerretDB within a few seconds when the gateway is killed with SIGKILL', async () => {
    const server = await embeddedServer();
    await server.waitFor(/chatgate ready/, 60_000);
    expect(await ferretdbProcessesOf(server.dataDir)).toHaveLength(1);
    server.child.kill('SIGKILL');
    await server.exited;
    expect(await eventually(() => ferretdbProcessesOf(server.dataDir), (pids) => pids.length === 0, 5000)).toEqual([]);
  }, 70_000);

  it('exits non-zero and leaves no FerretDB behind when its port is taken', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const server = await embeddedServer({ PORT: String((taken.address() as AddressInfo).port) });
      expect(await server.exited).not.toBe(0);
      expect(server.output()).toMatch(/chatgate failed to start: .*EADDRINUSE/);
      expect(await eventually(() => ferretdbProcessesOf(server.dataDir), (pids) => pids.length === 0, 3000)).toEqual([]);
    } finally {
      taken.close();
    }
  }, 70_000);

  it('refuses a second start on a DATA_DIR whose embedded database another gateway runs', async () => {
    const first = await embeddedServer();
    await first.waitFor(/chatgate ready/, 60_000);
    const second = await embeddedServer({ DATA_DIR: first.dataDir });
    const stillRunning = new Promise<string>((resolve) => setTimeout(() => resolve('still running after 30 s'), 30_000).unref());
    expect(await Promise.race([second.exited, stillRunning])).toBe(1);
    expect(second.output()).toContain(`DATA_DIR ${first.dataDir} is in use: process ${first.child.pid} runs its embedded database`);
    expect(await ferretdbProcessesOf(first.dataDir)).toHaveLength(1);
    const [, address] = await first.waitFor(/Server listening at (http:\/\/127\.0\.0\.1:\d+)/);
    expect((await fetch(`${address}/health`)).status).toBe(200);
  }, 70_000);

  it('takes over the data directory of a gateway that was killed', async () => {
    const first = await embeddedServer();
    await first.waitFor(/chatgate ready/, 60_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const second = await embeddedServer({ DATA_DIR: first.dataDir });
    await second.waitFor(/chatgate ready/, 60_000);
    expect(await eventually(() => ferretdbProcessesOf(first.dataDir), (pids) => pids.length === 1, 5000)).toHaveLength(1);
  }, 70_000);
});
