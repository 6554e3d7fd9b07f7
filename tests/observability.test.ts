import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { deferredRequestLoggers, wantsPrettyLogs } from '../src/observability/logging.js';
import { createMetrics } from '../src/observability/metrics.js';
import { buildTestApp, signInBySms, TEST_PEPPER, testKeys, uniquePhone, type TestApp } from './helpers/app.js';
import { connectTestDatabase } from './helpers/database.js';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(([, key, value]) => [key!, value!]));
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

async function scrape(app: FastifyInstance): Promise<Sample[]> {
  const response = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  expect(response.statusCode).toBe(200);
  return parseMetrics(response.body);
}

/** The value of the one series with this name and these labels (0 when it has not appeared yet). */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value));
  return found.reduce((sum, sample) => sum + sample.value, 0);
}

const logLines = (testApp: TestApp) =>
  testApp.logs.flatMap((chunk) => chunk.split('\n')).filter((line) => line.length > 0).map((line) => JSON.parse(line) as Record<string, unknown>);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('GET /metrics', () => {
  it('does not exist without METRICS_TOKEN or METRICS_PORT', async () => {
    const { app } = await buildTestApp();
    const response = await app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toMatchObject({ error: 'not_found' });
  });

  it('refuses a missing or wrong bearer token with 401', async () => {
    const { app } = await buildTestApp({ METRICS_TOKEN });
    for (const authorization of [undefined, 'Bearer wrong-token-0123456789abcdef', `Basic ${METRICS_TOKEN}`, `Bearer ${METRICS_TOKEN}x`]) {
      const response = await app.inject({ method: 'GET', url: '/metrics', headers: authorization ? { authorization } : {} });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toMatchObject({ error: 'unauthorized' });
      expect(response.body).not.toContain('chatgate_');
    }
  });

  it('answers the Prometheus text format with process metrics for the right token', async () => {
    const { app } = await buildTestApp({ METRICS_TOKEN });
    const response = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(response.body).toContain('# TYPE http_request_duration_seconds histogram');
    expect(response.body).toContain('process_cpu_user_seconds_total');
    expect(response.body).toContain('nodejs_eventloop_lag_seconds');
  });

  it('shows the counters moving during a login, with no phone number or user id in any label', async () => {
    const testApp = await buildTestApp({ METRICS_TOKEN });
    const before = await scrape(testApp.app);
    const phone = uniquePhone();
    const tokens = await signInBySms(testApp, phone);
    const after = await scrape(testApp.app);

    const moved = (name: string, labels: Record<string, string> = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
    expect(moved('chatgate_otp_codes_sent_total', { channel: 'sms', provider: 'capture' })).toBe(1);
    expect(moved('chatgate_otp_verifications_total', { outcome: 'ok' })).toBe(1);
    expect(moved('chatgate_tokens_issued_total', { amr: 'sms' })).toBe(1);
    expect(moved('http_request_duration_seconds_count', { method: 'POST', route: '/auth/otp/verify', status_class: '2xx' })).toBe(1);
    expect(moved('http_request_duration_seconds_count', { method: 'POST', route: '/auth/otp/request', status_class: '2xx' })).toBe(1);

    const text = (await testApp.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).body;
    expect(text).not.toContain(phone.slice(1));
    expect(text).not.toContain(tokens.user.id);
  });

  it('times every route but the probes and the scrape, and unmatched URLs under one label', async () => {
    const { app } = await buildTestApp({ METRICS_TOKEN });
    for (const url of ['/health', '/ready', '/.well-known/jwks.json', '/no/such/route']) await app.inject({ method: 'GET', url });
    await scrape(app);
    const samples = await scrape(app);
    const timed = new Set(samples.filter((sample) => sample.name === 'http_request_duration_seconds_count').map((sample) => sample.labels.route));
    expect([...timed].sort()).toEqual(['/.well-known/jwks.json', 'unmatched']);
  });

  it('counts every verification outcome, including those without an audit event', async () => {
    const testApp = await buildTestApp({ METRICS_TOKEN, OTP_MAX_ATTEMPTS: '1' });
    const { app, sms, clock } = testApp;
    const verify = (payload: object) => app.inject({ method: 'POST', url: '/auth/otp/verify', payload });
    const request = async (phone: string) => {
      const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } });
      expect(response.statusCode).toBe(200);
    };
    const before = await scrape(app);

    const wrong = uniquePhone();
    await request(wrong);
    const badCode = sms.lastCodeFor(wrong) === '000000' ? '111111' : '000000';
    expect((await verify({ phone: wrong, code: badCode })).json()).toMatchObject({ error: 'invalid_code' });
    expect((await verify({ phone: wrong, code: sms.lastCodeFor(wrong) })).json()).toMatchObject({ error: 'too_many_attempts' });

    expect((await verify({ phone: uniquePhone(), code: '123456' })).json()).toMatchObject({ error: 'not_found' });

    const late = uniquePhone();
    await request(late);
    clock.advance(testApp.config.OTP_TTL_SECONDS + 1);
    expect((await verify({ phone: late, code: sms.lastCodeFor(late) })).json()).toMatchObject({ error: 'expired' });

    const after = await scrape(app);
    for (const outcome of ['invalid_code', 'too_many_attempts', 'not_found', 'expired']) {
      expect(valueOf(after, 'chatgate_otp_verifications_total', { outcome }) - valueOf(before, 'chatgate_otp_verifications_total', { outcome }), outcome).toBe(1);
    }
    expect(valueOf(after, 'chatgate_otp_verifications_total', { outcome: 'ok' })).toBe(valueOf(before, 'chatgate_otp_verifications_total', { outcome: 'ok' }));
  });

  it('counts refresh rotations, refresh token reuse and delivery failures', async () => {
    const testApp = await buildTestApp({ METRICS_TOKEN });
    const tokens = await signInBySms(testApp);
    const refresh = () => testApp.app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken: tokens.refreshToken } });
    expect((await refresh()).statusCode).toBe(200);
    // Past the refresh reuse grace, a replay is reuse.
    testApp.clock.advance(testApp.config.REFRESH_REUSE_GRACE_SECONDS + 1);
    expect((await refresh()).json()).toMatchObject({ error: 'token_reused' });

    testApp.sms.failNext = true;
    const failed = await testApp.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: uniquePhone() } });
    expect(failed.statusCode).toBe(502);

    const samples = await scrape(testApp.app);
    expect(valueOf(samples, 'chatgate_tokens_refreshed_total')).toBe(1);
    expect(valueOf(samples, 'chatgate_refresh_reuse_detected_total')).toBe(1);
    expect(valueOf(samples, 'chatgate_otp_delivery_failures_total', { channel: 'sms', provider: 'capture' })).toBe(1);
  });

  it('counts rate-limit refusals by kind: the per-IP limiter and the per-phone limits', async () => {
    const { app } = await buildTestApp({ METRICS_TOKEN, RATE_LIMIT_MAX: '2', OTP_RATE_LIMIT_MAX: '1000' });
    const phone = uniquePhone();
    const ask = () => app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } });
    expect((await ask()).statusCode).toBe(200);
    // The resend wait is a per-phone limit.
    expect((await ask()).json()).toMatchObject({ error: 'rate_limited' });
    const samples = await scrape(app);
    expect(valueOf(samples, 'chatgate_rate_limit_refusals_total', { kind: 'phone' })).toBe(1);
    expect(valueOf(samples, 'chatgate_rate_limit_refusals_total', { kind: 'ip' })).toBe(0);

    // The asks count against the OTP routes' own limit; the scrape and this JWKS read use up the global one.
    expect((await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).statusCode).toBe(200);
    const refused = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'rate_limited' });
    const limited = app.metrics.registry.getSingleMetric('chatgate_rate_limit_refusals_total');
    const values = (await limited!.get()).values;
    expect(values.find((value) => value.labels.kind === 'ip')?.value).toBe(1);
    expect(values.find((value) => value.labels.kind === 'phone')?.value).toBe(1);
  });

  it('counts inbound chat messages by outcome', async () => {
    const { app } = await buildTestApp({ METRICS_TOKEN });
    const id = `m-${uniquePhone().slice(1)}`;
    await app.services.inbox.accept('telegram', [{ id, payload: {} }]);
    await app.services.inbox.accept('telegram', [{ id, payload: {} }]);
    const samples = await scrape(app);
    expect(valueOf(samples, 'chatgate_inbox_messages_total', { channel: 'telegram', outcome: 'received' })).toBe(1);
    expect(valueOf(samples, 'chatgate_inbox_messages_total', { channel: 'telegram', outcome: 'duplicate' })).toBe(1);
  });

  it('is served on METRICS_PORT at 127.0.0.1 without a token, and not on the main port', async () => {
    const port = await freePort();
    const { app } = await buildTestApp({ METRICS_PORT: String(port) });
    const side = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(side.status).toBe(200);
    expect(await side.text()).toContain('chatgate_otp_verifications_total');
    const main = await app.inject({ method: 'GET', url: '/metrics' });
    expect(main.statusCode).toBe(404);
    await app.close();
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });
});

describe('request ids', () => {
  it('echoes a safe incoming X-Request-Id and logs it on the request line', async () => {
    const testApp = await buildTestApp();
    const response = await testApp.app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { 'x-request-id': 'edge-4f2a:01.b_c' } });
    expect(response.statusCode).toBe(200);
    expect(response.headers['x-request-id']).toBe('edge-4f2a:01.b_c');
    const line = logLines(testApp).find((entry) => entry.requestId === 'edge-4f2a:01.b_c');
    expect(line).toMatchObject({ msg: 'request completed', route: '/.well-known/jwks.json' });
  });

  it.each([
    ['too long', 'a'.repeat(65)],
    ['with spaces', 'id with spaces'],
    ['with a line break', 'id\\nforged'],
    ['with quotes', 'id"forged'],
  ])('replaces an incoming id %s with a random one', async (_case, given) => {
    const { app } = await buildTestApp();
    const response = await app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { 'x-request-id': given } });
    expect(response.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('gives every request its own id when none is sent', async () => {
    const { app } = await buildTestApp();
    const ids = new Set<unknown>();
    for (let i = 0; i < 5; i++) ids.add((await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).headers['x-request-id']);
    expect(ids.size).toBe(5);
  });

  it('shows the request id in a 500 answer and in the logged error', async () => {
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'info' });
    const lines: string[] = [];
    const { Writable } = await import('node:stream');
    const logStream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const app = await buildApp({ config, database: await connectTestDatabase(), keys: await testKeys(), pepper: TEST_PEPPER, logStream });
    app.get('/test/fails', async () => {
      throw new Error('an unexpected failure');
    });
    await app.ready();
    try {
      const response = await app.inject({ method: 'GET', url: '/test/fails', headers: { 'x-request-id': 'support-case-42' } });
      expect(response.statusCode).toBe(500);
      expect(response.json()).toEqual({ error: 'internal_error', message: expect.any(String), requestId: 'support-case-42' });
      const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.requestId === 'support-case-42');
      expect(logged.map((entry) => entry.msg)).toEqual(['request failed', 'request completed']);
    } finally {
      await app.close();
    }
  });
});

describe('request logs', () => {
  it('writes one line per request with method, route, status, duration and request id', async () => {
    const testApp = await buildTestApp();
    const phone = uniquePhone();
    const response = await testApp.app.inject({ method: 'POST', url: '/auth/otp/request?x=1', payload: { phone } });
    expect(response.statusCode).toBe(200);
    const requestId = response.headers['x-request-id'];
    const lines = logLines(testApp).filter((entry) => entry.requestId === requestId);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, msg: 'request completed', method: 'POST', route: '/auth/otp/request', status: 200 });
    expect(typeof lines[0]!.durationMs).toBe('number');
    expect(testApp.logs.join('')).not.toContain('incoming request');
    expect(testApp.logs.join('')).not.toContain(phone);
  });

  it('logs an unmatched URL by its path, scrubbed and without the query', async () => {
    const testApp = await buildTestApp();
    const response = await testApp.app.inject({ method: 'GET', url: '/users/+447911123456?token=secret-value' });
    expect(response.statusCode).toBe(404);
    const line = logLines(testApp).find((entry) => entry.requestId === response.headers['x-request-id']);
    expect(line).toMatchObject({ route: null, status: 404 });
    expect(JSON.stringify(line)).not.toContain('7911123456');
    expect(JSON.stringify(line)).not.toContain('secret-value');
  });

  it('does not log /health, /ready or /metrics at info, but does at debug', async () => {
    const quiet = await buildTestApp({ METRICS_TOKEN });
    const chatty = await buildTestApp({ METRICS_TOKEN, LOG_LEVEL: 'debug' });
    for (const testApp of [quiet, chatty]) {
      for (const url of ['/health', '/ready']) expect((await testApp.app.inject({ method: 'GET', url })).statusCode).toBe(200);
      await scrape(testApp.app);
    }
    const routesLogged = (testApp: TestApp) => logLines(testApp).filter((entry) => entry.msg === 'request completed').map((entry) => entry.route);
    expect(routesLogged(quiet)).toEqual([]);
    expect(routesLogged(chatty)).toEqual(['/health', '/ready', '/metrics']);
  });

  it("writes a request's lines with its id, and nothing below the level", () => {
    const written: Record<string, unknown>[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (written.push(JSON.parse(chunk.toString()) as Record<string, unknown>), done()) });
    const parent = pino({ level: 'info' }, sink);
    const requestLog = deferredRequestLoggers(parent).call(null as never, parent, { requestId: 'req-1' }, {}, null as never);
    requestLog.debug({ detail: 1 }, 'below the level');
    requestLog.trace('below the level');
    expect(requestLog.level).toBe('info');
    requestLog.info({ status: 200 }, 'request completed');
    requestLog.warn('plain text');
    requestLog.child({ part: 'inner' }).error('from a child');
    expect(written.map(({ requestId, msg, status, part, level }) => ({ requestId, msg, status, part, level }))).toEqual([
      { requestId: 'req-1', msg: 'request completed', status: 200, part: undefined, level: 30 },
      { requestId: 'req-1', msg: 'plain text', status: undefined, part: undefined, level: 40 },
      { requestId: 'req-1', msg: 'from a child', status: undefined, part: 'inner', level: 50 },
    ]);
    requestLog.level = 'debug';
    requestLog.debug('now written');
    expect(written.at(-1)).toMatchObject({ requestId: 'req-1', msg: 'now written', level: 20 });
  });

  it.each([
    ['development', true, true],
    ['development', false, false],
    ['production', true, false],
    ['test', true, false],
  ] as const)('pretty logs for NODE_ENV=%s with a terminal=%s: %s', (nodeEnv, tty, pretty) => {
    expect(wantsPrettyLogs(nodeEnv, tty)).toBe(pretty);
  });
});

describe('domain counters from audit events', () => {
  it('counts Telegram Gateway delivery reports by status and spent paid-send budgets by name', async () => {
    const metrics = createMetrics();
    metrics.observeAudit({ type: 'otp.delivery_report', channel: 'telegram', detail: { provider: 'telegram-gateway', status: 'delivered' } });
    metrics.observeAudit({ type: 'otp.delivery_report', channel: 'telegram', detail: { provider: 'telegram-gateway', status: 'delivered' } });
    metrics.observeAudit({ type: 'otp.budget_exhausted', channel: 'sms', detail: { budget: 'country_hour' } });
    const text = await metrics.registry.metrics();
    expect(text).toContain('chatgate_otp_delivery_reports_total{provider="telegram-gateway",status="delivered"} 2');
    expect(text).toContain('chatgate_otp_budgets_exhausted_total{budget="country_hour"} 1');
  });
});
