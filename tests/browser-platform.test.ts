import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, uniquePhone, type TestApp } from './helpers/app.js';

// What a newcomer and a web team do first, in a real browser: try the login from /docs, and call the API from a page
// on another origin (CORS preflight included).

let browser: Browser;
beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});
afterAll(async () => browser?.close());

/** A page server on its own port, so the page's origin differs from the gateway's. */
async function startPageServer(html: string): Promise<{ origin: string; server: Server }> {
  const server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function listening(testApp: TestApp): Promise<string> {
  const address = await testApp.app.listen({ host: '127.0.0.1', port: 0 });
  return address.replace('[::1]', '127.0.0.1');
}

// The page asks for a code with a JSON body: a non-simple request, so the browser sends a preflight first.
const callerPage = (gateway: string, phone: string) => `<!doctype html><title>caller</title><script>
  window.result = fetch('${gateway}/auth/otp/request', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ phone: '${phone}' }),
  }).then((r) => r.json().then((body) => ({ status: r.status, body, requestId: r.headers.get('x-request-id') })),
          (error) => ({ failed: String(error) }));
</script>`;

describe('a page on another origin', () => {
  it('calls the API from an allowed origin: the preflight passes and the code is sent', async () => {
    const pages: Server[] = [];
    try {
      // The origin is known only once the page server listens, and the gateway needs it in its config.
      const placeholder = await startPageServer('');
      pages.push(placeholder.server);
      const testApp = await buildTestApp({ CORS_ORIGINS: placeholder.origin });
      const gateway = await listening(testApp);
      const phone = uniquePhone();
      placeholder.server.removeAllListeners('request');
      placeholder.server.on('request', (_request, response) => {
        response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(callerPage(gateway, phone));
      });
      const page = await browser.newPage();
      await page.goto(placeholder.origin);
      const result = (await page.evaluate('window.result')) as { status: number; body: Record<string, unknown>; requestId: string | null };
      expect(result.status, JSON.stringify(result.body)).toBe(200);
      // The gateway answered the browser's preflight (its one log line per request says so).
      const preflights = testApp.logs.map((line) => JSON.parse(line) as { method?: string; route?: string; statusCode?: number }).filter((line) => line.method === 'OPTIONS');
      expect(preflights.length).toBe(1);
      expect(result.body).toMatchObject({ channel: 'sms', expiresIn: expect.any(Number) });
      // Exposed to the page, so support can be given the id of a failed call.
      expect(result.requestId).toMatch(/.+/);
      expect(testApp.sms.lastCodeFor(phone)).toMatch(/^\d{6}$/);
      await page.close();
    } finally {
      for (const server of pages) server.close();
    }
  });

  it('refuses an origin that is not listed: the browser blocks the call and nothing is sent', async () => {
    const other = await startPageServer('');
    try {
      const testApp = await buildTestApp({ CORS_ORIGINS: 'https://app.example.com' });
      const gateway = await listening(testApp);
      const phone = uniquePhone();
      other.server.removeAllListeners('request');
      other.server.on('request', (_request, response) => {
        response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(callerPage(gateway, phone));
      });
      const page = await browser.newPage();
      await page.goto(other.origin);
      const result = (await page.evaluate('window.result')) as { failed?: string };
      expect(result.failed).toMatch(/TypeError/);
      // The preflight failed, so the POST itself never reached the gateway.
      expect(testApp.sms.sent.filter((message) => message.phone === phone)).toEqual([]);
      await page.close();
    } finally {
      other.server.close();
    }
  });
});

describe('the API reference at /docs', () => {
  it('lets a newcomer send a sign-in code from the page, with every request staying on the gateway', async () => {
    const testApp = await buildTestApp();
    const gateway = await listening(testApp);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const elsewhere: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(gateway)) elsewhere.push(request.url());
    });
    await page.goto(`${gateway}/docs/`);
    await page.getByText('Send a sign-in code to a phone').first().click();
    await page.getByRole('button', { name: /Test Request/i }).first().click();
    const sent = page.waitForResponse((response) => response.url().endsWith('/auth/otp/request') && response.request().method() === 'POST');
    await page.getByRole('button', { name: /^Send/i }).first().click();
    const response = await sent;
    expect(response.status()).toBe(200);
    expect(await response.json()).toMatchObject({ channel: 'sms' });
    // The example phone of the OpenAPI document got its code.
    expect(testApp.sms.sent.length).toBeGreaterThan(0);
    expect(elsewhere).toEqual([]);
    // The README shows this page.
    await page.screenshot({ path: 'docs/screenshots/api-docs-try-it.png' });
    await page.close();
  }, 60_000);
});
