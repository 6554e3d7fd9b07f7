import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';

// The real process, as `npm start` runs it (through tsx, so no build is needed for the test).
function startServer(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
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
