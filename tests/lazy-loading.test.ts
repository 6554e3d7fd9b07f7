import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';

// Large SDKs are loaded only when the setting that uses them is on (issue 11: the gateway's memory), and then at
// start, never by a request.
const root = new URL('..', import.meta.url).pathname;

async function packagesLoadedWith(env: Record<string, string>): Promise<string[]> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'tests/helpers/packages-loaded.ts'], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TEST_MONGODB_URI: inject('mongoUri'), ...env },
    timeout: 150_000,
  });
  return JSON.parse(stdout) as string[];
}

describe('what the gateway loads', () => {
  it('leaves out Twilio, Redis and the API reference at start when SMS_PROVIDER, REDIS_URL and API_DOCS do not ask for them', async () => {
    const loaded = await packagesLoadedWith({ SMS_PROVIDER: 'console', API_DOCS: 'false' });
    expect(loaded).toContain('fastify');
    expect(loaded).toContain('helmet');
    expect(loaded).not.toContain('twilio');
    expect(loaded).not.toContain('ioredis');
    expect(loaded).not.toContain('@scalar/fastify-api-reference');
    expect(loaded).not.toContain('@fastify/swagger');
  }, 180_000);

  it('loads Twilio at start when SMS_PROVIDER=twilio, Redis with REDIS_URL, the OpenAPI document with API_DOCS', async () => {
    const loaded = await packagesLoadedWith({
      SMS_PROVIDER: 'twilio',
      TWILIO_ACCOUNT_SID: 'AC00000000000000000000000000000001',
      TWILIO_AUTH_TOKEN: 'twilio-auth-token',
      TWILIO_FROM: '+15005550006',
      API_DOCS: 'true',
      // Nothing listens there: the shared limiter reconnects in the background, which does not stop the start.
      REDIS_URL: 'redis://127.0.0.1:9',
    });
    expect(loaded).toContain('twilio');
    expect(loaded).toContain('ioredis');
    expect(loaded).toContain('@fastify/swagger');
    // The reference page's code waits for the first visit to /docs.
    expect(loaded).not.toContain('@scalar/fastify-api-reference');
  }, 180_000);

  it('loads the API reference on the first visit to /docs, and not for API requests', async () => {
    expect(await packagesLoadedWith({ API_DOCS: 'true', VISIT: '/health,/openapi.json,/.well-known/jwks.json' })).not.toContain('@scalar/fastify-api-reference');
    expect(await packagesLoadedWith({ API_DOCS: 'true', VISIT: '/docs/' })).toContain('@scalar/fastify-api-reference');
  }, 300_000);
});
