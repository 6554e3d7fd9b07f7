import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { docsCsp } from '../src/observability/browser.js';
import { buildTestApp, TEST_PEPPER, testKeys, uniquePhone } from './helpers/app.js';
import { connectTestDatabase } from './helpers/database.js';

const ALLOWED = 'https://app.example.com';
const OTHER = 'https://evil.example.net';

const preflight = (app: FastifyInstance, url: string, origin: string, method = 'POST') =>
  app.inject({
    method: 'OPTIONS',
    url,
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'content-type,authorization' },
  });

describe('CORS', () => {
  it.each(['/auth/otp/request', '/auth/otp/verify', '/auth/token/refresh', '/auth/login-intents'])(
    'answers a preflight to %s from an allowed origin',
    async (url) => {
      const { app } = await buildTestApp({ CORS_ORIGINS: `${ALLOWED}, http://localhost:5173` });
      const response = await preflight(app, url, ALLOWED);
      expect(response.statusCode).toBe(204);
      expect(response.headers['access-control-allow-origin']).toBe(ALLOWED);
      expect(String(response.headers['access-control-allow-methods']).split(/,\s*/)).toContain('POST');
      expect(response.headers['access-control-allow-headers']).toBe('content-type, authorization');
      expect(response.headers['access-control-max-age']).toBe('600');
      expect(response.headers['access-control-allow-credentials']).toBeUndefined();
    },
  );

  it('answers a preflight to the JWKS', async () => {
    const { app } = await buildTestApp({ CORS_ORIGINS: ALLOWED });
    const response = await preflight(app, '/.well-known/jwks.json', ALLOWED, 'GET');
    expect(response.statusCode).toBe(204);
    expect(response.headers['access-control-allow-origin']).toBe(ALLOWED);
  });

  it('gives another origin no CORS headers, so its browser refuses the call', async () => {
    const { app } = await buildTestApp({ CORS_ORIGINS: ALLOWED });
    for (const origin of [OTHER, `${ALLOWED}.evil.example.net`, 'https://app.example.com:8443']) {
      const response = await preflight(app, '/auth/otp/request', origin);
      expect(response.headers['access-control-allow-origin']).toBeUndefined();
    }
  });

  it('lets an allowed origin read the answer of an actual call, and its request id', async () => {
    const { app } = await buildTestApp({ CORS_ORIGINS: ALLOWED });
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', headers: { origin: ALLOWED }, payload: { phone: uniquePhone() } });
    expect(response.statusCode).toBe(200);
    expect(response.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(response.headers.vary).toMatch(/origin/i);
    expect(response.headers['access-control-expose-headers']).toBe('x-request-id, retry-after');
    expect(response.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('allows no cross-origin access when CORS_ORIGINS is empty', async () => {
    const { app } = await buildTestApp();
    const response = await preflight(app, '/auth/otp/request', ALLOWED);
    expect(response.statusCode).toBe(404);
    expect(response.headers['access-control-allow-origin']).toBeUndefined();
    const call = await app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { origin: ALLOWED } });
    expect(call.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('refuses origins that are not exact, and "*" in production', () => {
    const problems = (env: Record<string, string>) => {
      try {
        loadConfig(env);
        return [];
      } catch (error) {
        if (error instanceof ConfigError) return error.problems;
        throw error;
      }
    };
    for (const origins of ['https://app.example.com/', 'https://app.example.com/login', 'app.example.com', 'https://a.example.com,nope']) {
      expect(problems({ CORS_ORIGINS: origins }).some((problem) => problem.startsWith('CORS_ORIGINS'))).toBe(true);
    }
    expect(loadConfig({ CORS_ORIGINS: '*' }).CORS_ORIGINS).toEqual(['*']);
    expect(problems({ NODE_ENV: 'production', CORS_ORIGINS: '*' })).toContain('CORS_ORIGINS: "*" (any origin) is refused in production; list the exact origins');
    expect(problems({ NODE_ENV: 'production', CORS_ORIGINS: ALLOWED }).some((problem) => problem.startsWith('CORS_ORIGINS'))).toBe(false);
  });
});

// Helmet's headers that only a page acts on (src/observability/browser.ts).
const PAGE_ONLY_HEADERS = [
  'cross-origin-opener-policy',
  'origin-agent-cluster',
  'referrer-policy',
  'x-dns-prefetch-control',
  'x-download-options',
  'x-permitted-cross-domain-policies',
  'x-xss-protection',
];

describe('security headers', () => {
  it.each([
    ['a JSON answer', '/health', 200],
    ['a readiness probe', '/ready', 200],
    ['an error', '/no/such/route', 404],
  ])('are on %s', async (_case, url, status) => {
    const { app } = await buildTestApp();
    const response = await app.inject({ method: 'GET', url });
    expect(response.statusCode).toBe(status);
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['content-security-policy']).toBe("default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    expect(response.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(response.headers['cross-origin-resource-policy']).toBe('same-origin');
    expect(response.headers['strict-transport-security']).toBeUndefined();
    // What only a page acts on stays off JSON answers, which have nothing for it to govern.
    for (const pageOnly of PAGE_ONLY_HEADERS) expect(response.headers[pageOnly]).toBeUndefined();
  });

  it("are on the OpenID Provider's answers, which it writes to the raw response itself", async () => {
    const { app } = await buildTestApp();
    const discovery = await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' });
    expect(discovery.statusCode).toBe(200);
    expect(discovery.headers['x-content-type-options']).toBe('nosniff');
    expect(discovery.headers['x-frame-options']).toBe('SAMEORIGIN');
    // An authorization request without a client: the provider answers with its own HTML error page.
    const page = await app.inject({ method: 'GET', url: '/oidc/auth' });
    expect(page.statusCode).toBe(400);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['cross-origin-opener-policy']).toBe('same-origin-allow-popups');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    for (const pageOnly of PAGE_ONLY_HEADERS) expect(page.headers[pageOnly]).toBeDefined();
  });

  it("are on the hosted login page in full: helmet's whole set", async () => {
    const { app } = await buildTestApp();
    const response = await app.inject({ method: 'GET', url: '/login' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    for (const pageOnly of PAGE_ONLY_HEADERS) expect(response.headers[pageOnly]).toBeDefined();
  });

  it('sends HSTS when PUBLIC_URL is https', async () => {
    const { app } = await buildTestApp({ PUBLIC_URL: 'https://auth.example.com' });
    const response = await app.inject({ method: 'GET', url: '/health' });
    expect(response.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
  });

  it('behind a trusted proxy, sends HSTS only when the proxy says the browser used https', async () => {
    const { app } = await buildTestApp({ TRUST_PROXY: 'true' });
    const overTls = await app.inject({ method: 'GET', url: '/health', headers: { 'x-forwarded-proto': 'https' } });
    expect(overTls.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    const plain = await app.inject({ method: 'GET', url: '/health', headers: { 'x-forwarded-proto': 'http' } });
    expect(plain.headers['strict-transport-security']).toBeUndefined();
  });

  it('ignores X-Forwarded-Proto from a client when no proxy is trusted', async () => {
    const { app } = await buildTestApp();
    const response = await app.inject({ method: 'GET', url: '/health', headers: { 'x-forwarded-proto': 'https' } });
    expect(response.headers['strict-transport-security']).toBeUndefined();
  });

  it('allows exactly the inline scripts of the docs page, by hash', () => {
    const csp = docsCsp('<html><script src="js/x.js"></script><script type="text/javascript">start()</script></html>');
    const hash = createHash('sha256').update('start()').digest('base64');
    expect(csp).toContain(`script-src 'self' 'sha256-${hash}';`);
    expect(csp).not.toContain('unsafe-eval');
    expect(csp).not.toMatch(/script-src[^;]*unsafe-inline/);
  });
});

describe('the docs page under its CSP', () => {
  // The app as built serves the reference (API_DOCS is on by default), under the headers every answer carries.
  const docsApp = (async () => {
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' });
    const app = await buildApp({ config, database: await connectTestDatabase(), keys: await testKeys(), pepper: TEST_PEPPER });
    await app.listen({ host: '127.0.0.1', port: 0 });
    return app;
  })();
  afterAll(async () => (await docsApp).close());

  it('serves the docs page with a policy that names its inline script and keeps API answers strict', async () => {
    const app = await docsApp;
    const page = await app.inject({ method: 'GET', url: '/docs/' });
    expect(page.statusCode).toBe(200);
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toMatch(/script-src 'self' 'sha256-[A-Za-z0-9+/=]+'/);
    expect(csp).toContain("connect-src 'self'");
    const api = await app.inject({ method: 'GET', url: '/health' });
    expect(api.headers['content-security-policy']).toBe("default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
  });

  it('renders in Chromium without a single CSP violation', async () => {
    const app = await docsApp;
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('the docs app is not listening');
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    try {
      const page = await browser.newPage();
      const violations: string[] = [];
      page.on('console', (message) => {
        if (/content security policy/i.test(message.text())) violations.push(message.text());
      });
      await page.goto(`http://127.0.0.1:${address.port}/docs/`);
      await page.waitForSelector('text=Chatgate', { timeout: 15_000 });
      expect(violations).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 30_000);
});
