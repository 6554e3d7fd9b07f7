// No container engine runs on this machine: these tests check the structure of the Dockerfile and the compose file
// (and .ci/run lints the Dockerfile with hadolint). They were validated, not run.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import packageJson from '../package.json' with { type: 'json' };

const root = new URL('../', import.meta.url);
const read = (file: string) => readFileSync(new URL(file, root), 'utf8');

interface ComposeService {
  image?: string;
  build?: string | { context: string };
  command?: string[] | string;
  healthcheck?: { test: string[] | string; interval?: string; retries?: number };
  depends_on?: Record<string, { condition: string }> | string[];
  environment?: Record<string, string> | string[];
  ports?: string[];
  volumes?: string[];
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** The Dockerfile's stages: each FROM line with its instructions, continuation lines joined. */
function dockerfileStages(text: string) {
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const stages: { from: string; name: string | undefined; instructions: string[] }[] = [];
  for (const line of instructions) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?$/i.exec(line);
    if (from) stages.push({ from: from[1] ?? '', name: from[2], instructions: [] });
    else stages.at(-1)?.instructions.push(line);
  }
  return stages;
}

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml')) as ComposeFile;
  const mongo = compose.services.mongo;
  const gateway = compose.services.gateway;

  it('runs MongoDB 8 as a single-node replica set whose healthcheck initiates the set', () => {
    expect(mongo?.image).toMatch(/^mongo:8(\.|$)/);
    expect([mongo?.command].flat().join(' ')).toMatch(/--replSet rs0/);
    const check = [mongo?.healthcheck?.test].flat().join(' ');
    expect(check).toContain('rs.initiate');
    expect(check).toContain("_id: 'rs0'");
    expect(check).toMatch(/isWritablePrimary \|\| quit\(1\)/);
    expect(mongo?.volumes?.some((volume) => volume.endsWith(':/data/db'))).toBe(true);
  });

  it('builds the gateway from the Dockerfile and starts it only once MongoDB is healthy', () => {
    expect(gateway?.build).toBe('.');
    expect(gateway?.depends_on).toEqual({ mongo: { condition: 'service_healthy' } });
    expect(gateway?.ports).toContain('3000:3000');
    expect(gateway?.volumes?.some((volume) => volume.endsWith(':/app/.data'))).toBe(true);
  });

  it('gives the gateway safe development settings and the replica-set URI', () => {
    const environment = gateway?.environment as Record<string, string>;
    expect(environment.NODE_ENV).toBe('development');
    expect(environment.SMS_PROVIDER).toBe('console');
    expect(environment.MONGODB_URI).toBe('mongodb://mongo:27017/chatgate?replicaSet=rs0');
  });

  it('bakes in no secrets', () => {
    const environment = gateway?.environment as Record<string, string>;
    const secretNames = /PEPPER|JWKS|SECRET|TOKEN|PASSWORD|AUTH/;
    expect(Object.keys(environment).filter((name) => secretNames.test(name))).toEqual([]);
    expect(read('docker-compose.yml')).not.toMatch(/password|secret:/i);
  });

  it('declares every named volume it mounts', () => {
    const mounted = Object.values(compose.services)
      .flatMap((service) => service.volumes ?? [])
      .map((volume) => volume.split(':')[0]);
    expect(mounted.sort()).toEqual(Object.keys(compose.volumes ?? {}).sort());
  });
});

describe('Dockerfile', () => {
  const stages = dockerfileStages(read('Dockerfile'));
  const [build, runtime] = stages;

  it('builds in one stage and runs from another, both on Node 24', () => {
    expect(stages.map((stage) => [stage.from, stage.name])).toEqual([
      ['node:24-slim', 'build'],
      ['node:24-slim', 'runtime'],
    ]);
    expect(build?.instructions).toContain('RUN npm run build');
  });

  it('installs production dependencies only in the runtime stage and copies the compiled code from the build', () => {
    const runs = runtime?.instructions.filter((line) => line.startsWith('RUN npm ')) ?? [];
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatch(/^RUN npm ci --omit=dev\b/);
    expect(runtime?.instructions).toContain('COPY --from=build /app/dist ./dist');
    expect(runtime?.instructions).toContain('COPY .env.example ./');
    expect(runtime?.instructions.some((line) => /\b(tsx|tsc)\b/.test(line))).toBe(false);
  });

  it('runs the compiled server as the unprivileged node user (uid 1000 in the official image)', () => {
    const users = runtime?.instructions.filter((line) => line.startsWith('USER ')) ?? [];
    expect(users.at(-1)).toBe('USER 1000:1000');
    expect(runtime?.instructions.at(-1)).toBe('CMD ["node", "--no-allocation-site-pretenuring", "--max-semi-space-size=16", "--max-old-space-size=512", "dist/src/server.js"]');
    expect(runtime?.instructions.some((line) => line.startsWith('HEALTHCHECK') && line.includes('/health'))).toBe(true);
  });

  it('starts Node with the same V8 flags as npm start', () => {
    const cmd = JSON.parse(runtime!.instructions.at(-1)!.replace(/^CMD /, '')) as string[];
    expect(cmd.join(' ')).toBe(packageJson.scripts.start);
  });

  it('leaves secrets and local data out of the build context', () => {
    const ignored = read('.dockerignore').split('\n');
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', '.env', '.data', '.git', '!.env.example']));
  });
});

describe('the production install', () => {
  // Production images omit devDependencies: nothing the server loads may import one statically.
  const devOnly = Object.keys(packageJson.devDependencies).filter((name) => !name.startsWith('@types/'));

  it('imports no dev dependency statically from the server code', async () => {
    const { globSync } = await import('node:fs');
    const files = ['src', 'models', 'bots', 'webhooks'].flatMap((dir) => globSync(`${dir}/**/*.ts`, { cwd: root }));
    expect(files.length).toBeGreaterThan(20);
    const offenders = files.flatMap((file) =>
      [...read(file).matchAll(/^import\s+(?!type\b)[^;]*?from\s+'([^']+)'/gms)]
        .map((match) => match[1] ?? '')
        .filter((specifier) => devOnly.some((name) => specifier === name || specifier.startsWith(`${name}/`)))
        .map((specifier) => `${file}: ${specifier}`),
    );
    expect(offenders).toEqual([]);
  });

  it('keeps the helper commands runnable as compiled JavaScript', () => {
    expect(packageJson.scripts.build).toMatch(/^tsc -p tsconfig\.json( |$)/);
    const tsconfig = JSON.parse(read('tsconfig.json')) as { include: string[] };
    expect(tsconfig.include).toContain('scripts');
  });
});
