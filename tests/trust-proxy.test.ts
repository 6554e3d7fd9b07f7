import { request } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from './helpers/app.js';
import { startForwardingProxy, type ForwardingProxy } from './helpers/forwarding-proxy.js';
import { WHATSAPP_ENV } from './helpers/whatsapp.js';

// The client connects from 127.0.0.2 and claims to be 6.6.6.6; the proxies connect onward from 127.0.0.1 and 127.0.0.3.
const CLIENT = '127.0.0.2';
const FORGED = '6.6.6.6';

const proxies: ForwardingProxy[] = [];
afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.close()));
});

async function listening(env: Record<string, string>): Promise<{ testApp: TestApp; url: string }> {
  // Login intents (whose stored IP these tests read) need a chat channel on.
  const testApp = await buildTestApp({ ...WHATSAPP_ENV, ...env });
  const url = await testApp.app.listen({ port: 0, host: '127.0.0.1' });
  return { testApp, url };
}

/** Creates a login intent through `entry` as a client at 127.0.0.2 with a forged X-Forwarded-For; answers the IP stored. */
async function ipSeenThrough(testApp: TestApp, entry: string): Promise<string | undefined> {
  const url = new URL('/auth/login-intents', entry);
  const body = await new Promise<string>((resolve, reject) => {
    const outgoing = request(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', localAddress: CLIENT, headers: { 'x-forwarded-for': FORGED } },
      (answer) => {
        let text = '';
        answer.on('data', (chunk: Buffer) => (text += chunk.toString()));
        answer.on('end', () => (answer.statusCode === 201 ? resolve(text) : reject(new Error(`${answer.statusCode}: ${text}`))));
      },
    );
    outgoing.on('error', reject);
    outgoing.end();
  });
  const { intentId } = JSON.parse(body) as { intentId: string };
  const intent = await testApp.database.models.LoginIntent.findById(intentId).lean();
  return intent?.ip ?? undefined;
}

describe('client IP behind appending proxies', () => {
  it('TRUST_PROXY=1 behind one proxy takes the address the proxy saw, not the forged header', async () => {
    const { testApp, url } = await listening({ TRUST_PROXY: '1' });
    const proxy = await startForwardingProxy(url);
    proxies.push(proxy);
    expect(await ipSeenThrough(testApp, proxy.url)).toBe(CLIENT);
  });

  it('TRUST_PROXY=2 behind two proxies takes the address the outer proxy saw', async () => {
    const { testApp, url } = await listening({ TRUST_PROXY: '2' });
    const inner = await startForwardingProxy(url);
    const outer = await startForwardingProxy(inner.url, { localAddress: '127.0.0.3' });
    proxies.push(inner, outer);
    expect(await ipSeenThrough(testApp, outer.url)).toBe(CLIENT);
  });

  it('TRUST_PROXY with the proxy address as a CIDR takes the first untrusted address', async () => {
    const { testApp, url } = await listening({ TRUST_PROXY: '127.0.0.1/32' });
    const proxy = await startForwardingProxy(url);
    proxies.push(proxy);
    expect(await ipSeenThrough(testApp, proxy.url)).toBe(CLIENT);
  });

  it('a direct client cannot choose its IP with X-Forwarded-For when no proxy is trusted', async () => {
    const { testApp, url } = await listening({});
    expect(await ipSeenThrough(testApp, url)).toBe(CLIENT);
  });
});
