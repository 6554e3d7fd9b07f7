import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { createServer as createNetServer, Socket, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

// Real processes for the multi-instance tests: Redis, gateway instances, a round-robin balancer. Everything listens on
// 127.0.0.1 and is stopped by its own pid.

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`${what}: the process exited (${child.exitCode})`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not ready after ${timeoutMs} ms`);
    await sleep(100);
  }
}

function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill(signal);
  });
}

export interface RedisProcess {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  cleanup(): Promise<void>;
}

/** Debian's redis-server on a free loopback port, no persistence. */
export async function startRedis(): Promise<RedisProcess> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), 'chatgate-redis-'));
  let child: ChildProcess | undefined;
  const handle: RedisProcess = {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: 0,
    async start() {
      child = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
        stdio: 'ignore',
      });
      handle.pid = child.pid ?? 0;
      await waitFor('redis', () => canConnect(port), 10_000, child);
    },
    async stop() {
      if (child) await stopProcess(child);
    },
    async cleanup() {
      await handle.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await handle.start();
  return handle;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.connect(port, '127.0.0.1');
  });
}

export interface Gateway {
  name: string;
  url: string;
  pid: number;
  child: ChildProcess;
  /** What the process wrote (pino JSON lines). */
  output: () => string;
  stop(): Promise<void>;
  /** `kill -9`. */
  kill(): Promise<void>;
}

const serverEntry = path.resolve(import.meta.dirname, '../../dist/src/server.js');

/** One gateway process (the built server) with the given environment. */
export async function startGateway(name: string, env: Record<string, string>): Promise<Gateway> {
  const port = await freePort();
  const child = spawn(process.execPath, [serverEntry], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-200_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  try {
    // Generous: on a busy machine the first start creates indexes on a slow engine.
    await waitFor(`gateway ${name}`, async () => (await fetch(`${url}/health`)).ok, 90_000, child);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}\n${output.slice(-3000)}`);
  }
  return {
    name,
    url,
    pid: child.pid!,
    child,
    output: () => output,
    stop: () => stopProcess(child),
    kill: () => stopProcess(child, 'SIGKILL'),
  };
}

export interface Balancer {
  url: string;
  /** How many requests each upstream got. */
  counts: Map<string, number>;
  close(): Promise<void>;
}

/**
 * A round-robin load balancer as nginx would be configured: appends the peer to X-Forwarded-For, and retries the next
 * upstream when one refuses the connection or drops it before answering (an idempotent retry, nginx's
 * `proxy_next_upstream error`; POST bodies are buffered, so they can be sent again).
 */
export async function startBalancer(upstreams: () => string[]): Promise<Balancer> {
  let next = 0;
  const counts = new Map<string, number>();
  const server = createServer((incoming, outgoing) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const body = Buffer.concat(chunks);
      const peer = incoming.socket.remoteAddress ?? '';
      const given = incoming.headers['x-forwarded-for'];
      const headers: IncomingHttpHeaders = { ...incoming.headers, 'x-forwarded-for': given ? `${String(given)}, ${peer}` : peer };
      const tryUpstream = (triesLeft: number) => {
        const list = upstreams();
        const target = new URL(list[next++ % list.length]!);
        counts.set(target.origin, (counts.get(target.origin) ?? 0) + 1);
        const onward = httpRequest(
          { host: target.hostname, port: target.port, method: incoming.method, path: incoming.url, headers },
          (answer) => {
            outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(outgoing);
          },
        );
        onward.on('error', () => {
          if (outgoing.headersSent) return outgoing.destroy();
          if (triesLeft > 0) return tryUpstream(triesLeft - 1);
          outgoing.writeHead(502).end();
        });
        onward.end(body);
      };
      tryUpstream(upstreams().length);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Answer {
  status: number;
  json: Record<string, unknown>;
  headers: IncomingHttpHeaders;
}

/** One HTTP call, optionally from a chosen loopback address (a distinct client IP for the per-IP limits). */
export function call(
  base: string,
  method: string,
  urlPath: string,
  options: { body?: unknown; rawBody?: string; headers?: Record<string, string>; from?: string } = {},
): Promise<Answer> {
  const target = new URL(urlPath, base);
  const payload = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  const headers: Record<string, string> = { ...options.headers };
  if (payload !== undefined) headers['content-type'] ??= 'application/json';
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      { host: target.hostname, port: target.port, method, path: target.pathname + target.search, headers, localAddress: options.from },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> = {};
          try {
            json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
          } catch {
            json = { text };
          }
          resolve({ status: response.statusCode ?? 0, json, headers: response.headers });
        });
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}

/** A FerretDB process of our own (SQLite data in a temporary folder), which the test may stop and start again. */
export async function startOwnFerretDB(bin: string): Promise<{ uri: string; stop(): Promise<void>; start(): Promise<void>; cleanup(): Promise<void> }> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), 'chatgate-scale-ferretdb-'));
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(
      bin,
      ['--handler=sqlite', `--sqlite-url=file:${dir}/`, `--listen-addr=127.0.0.1:${port}`, '--debug-addr=-', '--telemetry=disable', `--state-dir=${dir}`, '--log-level=ERROR'],
      { stdio: 'ignore' },
    );
    await waitFor('ferretdb', () => canConnect(port), 20_000, child);
  };
  await start();
  return {
    uri: `mongodb://127.0.0.1:${port}/`,
    start,
    stop: async () => {
      if (child) await stopProcess(child, 'SIGKILL');
    },
    cleanup: async () => {
      if (child) await stopProcess(child, 'SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
