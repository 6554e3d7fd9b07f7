import { describe, expect, it } from 'vitest';
import { connectDatabase } from '../src/db/connection.js';
import { buildTestApp, signInBySms, uniquePhone } from './helpers/app.js';
import { signWidget, TELEGRAM_ENV } from './helpers/telegram.js';
import { WHATSAPP_ENV } from './helpers/whatsapp.js';
import { inject } from 'vitest';

const testApp = await buildTestApp({ BODY_LIMIT_BYTES: '2048' });
const { app } = testApp;

describe('bad input never reaches a 500', () => {
  it.each([
    ['malformed JSON', '{"phone":', 400, 'invalid_json'],
    ['an empty JSON body', '', 400, 'invalid_json'],
    ['a number where a string belongs', '{"phone": 919812345678}', 400, 'invalid_request'],
    ['an operator object where a string belongs', '{"phone": {"$gt": ""}}', 400, 'invalid_request'],
    ['an array', '[]', 400, 'invalid_request'],
    ['an unknown field', '{"phone": "+919812345678", "admin": true}', 400, 'invalid_request'],
    ['an unknown channel', '{"phone": "+919812345678", "channel": "pigeon"}', 400, 'invalid_request'],
    ['a prototype-poisoning body', '{"phone": "+919812345678", "__proto__": {"x": 1}}', 400, 'invalid_json'],
  ])('%s on /auth/otp/request is refused with a 4xx and its error code', async (_case, payload, status, error) => {
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', headers: { 'content-type': 'application/json' }, payload });
    expect(response.statusCode).toBe(status);
    expect(response.json()).toMatchObject({ error, message: expect.any(String) });
  });

  it.each([
    ['/auth/otp/verify', { challengeId: { $ne: null }, code: '123456' }],
    ['/auth/otp/verify', { phone: '+919812345678' }],
    ['/auth/token/refresh', { refreshToken: { $regex: '.*' } }],
    ['/auth/logout', { refreshToken: ['a'] }],
  ])('a body of the wrong shape on %s answers 400 invalid_request', async (url, payload) => {
    const response = await app.inject({ method: 'POST', url, payload });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ error: 'invalid_request', message: expect.any(String) });
  });

  it('a body over BODY_LIMIT_BYTES answers 413 payload_too_large', async () => {
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: 'x'.repeat(4096) } });
    expect(response.statusCode).toBe(413);
    expect(response.json()).toMatchObject({ error: 'payload_too_large' });
  });

  it('a body that is not JSON answers 415 unsupported_media_type', async () => {
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', headers: { 'content-type': 'text/plain' }, payload: 'phone=1' });
    expect(response.statusCode).toBe(415);
    expect(response.json()).toMatchObject({ error: 'unsupported_media_type' });
  });

  it('an unknown route answers 404 JSON without echoing the query string', async () => {
    const response = await app.inject({ method: 'GET', url: '/admin/users?token=secret' });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toEqual({ error: 'not_found', message: 'There is no GET /admin/users.' });
  });

  it('error answers say they are JSON', async () => {
    const refused = await app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken: 'nope' } });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['content-type']).toBe('application/json; charset=utf-8');
    const invalid = await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { code: '1' } });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.headers['content-type']).toBe('application/json; charset=utf-8');
  });

  it('an over-long path segment answers 400 invalid_request in our shape, not the router\'s 414 (found by schemathesis)', async () => {
    const response = await app.inject({ method: 'GET', url: `/auth/login-intents/${'x'.repeat(300)}` });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toEqual({ error: 'invalid_request', message: 'A part of the URL is too long.' });
  });

  it('a wrong method on a known path answers 404 JSON', async () => {
    const response = await app.inject({ method: 'DELETE', url: '/auth/otp/request' });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toMatchObject({ error: 'not_found' });
  });
});

describe('login intents without a chat channel', () => {
  it('are refused with 422 channel_unavailable, saying how to turn a channel on', async () => {
    const response = await app.inject({ method: 'POST', url: '/auth/login-intents' });
    expect(response.statusCode).toBe(422);
    const body = response.json() as { error: string; message: string };
    expect(body.error).toBe('channel_unavailable');
    expect(body.message).toContain('TELEGRAM_BOT_TOKEN');
    expect(body.message).toContain('WHATSAPP_VERIFY_TOKEN');
    expect(await testApp.database.connection.collection('login_intents').countDocuments({})).toBe(0);
  });
});

describe('answers that carry a token or a code', async () => {
  const chat = await buildTestApp({ ...TELEGRAM_ENV });
  const expectNoStore = (response: { headers: Record<string, unknown> }) => {
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.headers.pragma).toBe('no-cache');
  };

  it('are marked no-store on verify and refresh', async () => {
    const phone = uniquePhone();
    await chat.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } });
    const verified = await chat.app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code: chat.sms.lastCodeFor(phone) } });
    expect(verified.statusCode).toBe(200);
    expectNoStore(verified);
    const refreshed = await chat.app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken: (verified.json() as { refreshToken: string }).refreshToken } });
    expect(refreshed.statusCode).toBe(200);
    expectNoStore(refreshed);
  });

  it('are marked no-store on the Telegram widget exchange', async () => {
    const fields = signWidget({ id: 424242, first_name: 'Ada', auth_date: Math.floor(chat.clock.now().getTime() / 1000) });
    const response = await chat.app.inject({ method: 'POST', url: '/auth/telegram/widget', payload: fields });
    expect(response.statusCode).toBe(200);
    expectNoStore(response);
  });

  it('are marked no-store on login intent creation (it carries the code) and on the poll', async () => {
    const created = await chat.app.inject({ method: 'POST', url: '/auth/login-intents' });
    expect(created.statusCode).toBe(201);
    expectNoStore(created);
    const { intentId, pollToken } = created.json() as { intentId: string; pollToken: string };
    const polled = await chat.app.inject({ method: 'GET', url: `/auth/login-intents/${intentId}`, headers: { authorization: `Bearer ${pollToken}` } });
    expect(polled.statusCode).toBe(200);
    expectNoStore(polled);
  });

  it('are not forced on answers without secrets', async () => {
    const response = await chat.app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    expect(response.headers['cache-control']).toBe('public, max-age=300');
  });
});

describe('health and readiness', () => {
  it('/health says the process is alive', async () => {
    const response = await app.inject({ method: 'GET', url: '/health' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok' });
  });

  it('/ready says ready while the database answers', async () => {
    const response = await app.inject({ method: 'GET', url: '/ready' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ready' });
  });

  it('/ready answers 503 once the database is gone', async () => {
    const own = await connectDatabase(inject('mongoUri'), { dbName: 'chatgate_test_ready' });
    const { app: lonely } = await buildTestApp({}, { database: own });
    await own.close();
    const response = await lonely.inject({ method: 'GET', url: '/ready' });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toMatchObject({ error: 'service_unavailable' });
  });
});

describe('rate limits per IP', async () => {
  const limited = await buildTestApp({ ...WHATSAPP_ENV, RATE_LIMIT_MAX: '5', OTP_RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW_SECONDS: '60' });
  const ip = (address: string) => ({ remoteAddress: address });

  it('the stricter limit on /auth/otp/* answers 429 rate_limited with Retry-After', async () => {
    const send = () => limited.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: 'bad' }, ...ip('203.0.113.7') });
    expect((await send()).statusCode).toBe(400);
    expect((await send()).statusCode).toBe(400);
    const refused = await send();
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'rate_limited', message: expect.any(String), retryAfter: expect.any(Number) });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    // Another address is not affected.
    expect((await limited.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: 'bad' }, ...ip('203.0.113.8') })).statusCode).toBe(400);
  });

  it('the global limit covers every route but the probes', async () => {
    const get = () => limited.app.inject({ method: 'GET', url: '/.well-known/jwks.json', ...ip('198.51.100.1') });
    for (let request = 0; request < 5; request++) expect((await get()).statusCode).toBe(200);
    const refused = await get();
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'rate_limited' });
  });

  it('never refuses a health or readiness probe, even from an address past its limit', async () => {
    const address = ip('198.51.100.3');
    for (let request = 0; request < 6; request++) await limited.app.inject({ method: 'GET', url: '/nowhere', ...address });
    expect((await limited.app.inject({ method: 'GET', url: '/nowhere', ...address })).statusCode).toBe(429);
    for (let request = 0; request < 8; request++) {
      const health = await limited.app.inject({ method: 'GET', url: '/health', ...address });
      expect(health.statusCode).toBe(200);
      expect(health.json()).toEqual({ status: 'ok' });
      const ready = await limited.app.inject({ method: 'GET', url: '/ready', ...address });
      expect(ready.statusCode).toBe(200);
      expect(ready.json()).toEqual({ status: 'ready' });
    }
    // The sign-in routes keep their own, stricter limit.
    const send = () => limited.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: 'bad' }, ...address });
    expect((await send()).statusCode).toBe(400);
    expect((await send()).statusCode).toBe(400);
    expect((await send()).statusCode).toBe(429);
  });

  it('ignores X-Forwarded-For unless TRUST_PROXY says so', async () => {
    const spoof = (forwarded: string) =>
      limited.app.inject({ method: 'POST', url: '/auth/login-intents', headers: { 'x-forwarded-for': forwarded }, ...ip('192.0.2.50') });
    expect((await spoof('10.0.0.1')).statusCode).toBe(201);
    expect((await spoof('10.0.0.2')).statusCode).toBe(201);
    expect((await spoof('10.0.0.3')).statusCode).toBe(429);
  });

  it('RATE_LIMIT_ENABLED=false lets every request through the per-IP limits (for benchmarks)', async () => {
    const unlimited = await buildTestApp({ RATE_LIMIT_ENABLED: 'false', RATE_LIMIT_MAX: '2', OTP_RATE_LIMIT_MAX: '1' });
    for (let request = 0; request < 4; request++) {
      const health = await unlimited.app.inject({ method: 'GET', url: '/health', ...ip('198.51.100.2') });
      expect(health.statusCode).toBe(200);
      const otp = await unlimited.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: 'bad' }, ...ip('198.51.100.2') });
      expect(otp.json()).toMatchObject({ error: 'invalid_phone' });
      const unknown = await unlimited.app.inject({ method: 'GET', url: '/nowhere', ...ip('198.51.100.2') });
      expect(unknown.statusCode).toBe(404);
    }
  });
});

describe('behind a trusted proxy', async () => {
  const proxied = await buildTestApp({ ...WHATSAPP_ENV, TRUST_PROXY: 'true', OTP_RATE_LIMIT_MAX: '1' });

  it('takes the client address from X-Forwarded-For, for limits and for the intent record', async () => {
    const create = (forwarded: string) =>
      proxied.app.inject({ method: 'POST', url: '/auth/login-intents', headers: { 'x-forwarded-for': forwarded }, remoteAddress: '10.0.0.9' });
    const first = await create('203.0.113.20');
    expect(first.statusCode).toBe(201);
    expect((await create('203.0.113.21')).statusCode).toBe(201);
    expect((await create('203.0.113.20')).statusCode).toBe(429);
    const summary = await proxied.app.services.loginIntents.claim({ code: (first.json() as { code: string }).code }, { channel: 'telegram', subject: '1' });
    expect(summary.ip).toBe('203.0.113.20');
  });
});

describe('logs and the audit trail', () => {
  it('never contain codes, tokens or full phone numbers', async () => {
    const phone = uniquePhone();
    const tokens = await signInBySms(testApp, phone);
    await app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken: tokens.refreshToken } });
    await app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${tokens.accessToken}` } });
    testApp.sms.failNext = true;
    const refusedPhone = uniquePhone();
    await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: refusedPhone } });
    const logs = testApp.logs.join('');
    expect(logs).toContain('otp delivery failed');
    expect(logs).toContain('provider refused +44');
    const code = testApp.sms.lastCodeFor(phone);
    for (const secret of [code, tokens.refreshToken, tokens.accessToken, phone, refusedPhone]) expect(logs).not.toContain(secret);
    expect(logs).toMatch(/"\+44\*+\d\d"/);
  });

  it('records sent codes, verifications, issued and refreshed tokens, reuse and logout with channel, user and IP', async () => {
    const phone = uniquePhone();
    const requested = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone }, remoteAddress: '203.0.113.99' });
    const { challengeId } = requested.json() as { challengeId: string };
    const code = testApp.sms.lastCodeFor(phone);
    await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { challengeId, code: code === '000000' ? '000001' : '000000' }, remoteAddress: '203.0.113.99' });
    const verified = await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { challengeId, code }, remoteAddress: '203.0.113.99' });
    const tokens = verified.json() as { refreshToken: string; user: { id: string } };
    await app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken: tokens.refreshToken }, remoteAddress: '203.0.113.99' });
    // A replay after REFRESH_REUSE_GRACE_SECONDS is reuse.
    testApp.clock.advance(11);
    await app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken: tokens.refreshToken }, remoteAddress: '203.0.113.99' });
    await app.services.audit.flush();
    const events = await testApp.database.connection
      .collection('audit_events')
      .find({ ip: '203.0.113.99' })
      .sort({ _id: 1 })
      .toArray();
    expect(events.map((event) => event.type)).toEqual([
      'otp.sent',
      'otp.verify_failed',
      'otp.verify_ok',
      'tokens.issued',
      'tokens.refreshed',
      'tokens.reuse_detected',
    ]);
    expect(events.every((event) => event.channel === 'sms')).toBe(true);
    expect(events.slice(2).every((event) => event.userId?.toString() === tokens.user.id)).toBe(true);
    expect(events[0]!.phone).not.toBe(phone);
    expect(events[0]!.phone).toMatch(/^\+44\*+\d\d$/);
  });
});

describe('closing', () => {
  it('waits for requests in flight to finish their work', async () => {
    const closing = await buildTestApp();
    const slowSend = closing.sms.send.bind(closing.sms);
    let sendStarted!: () => void;
    const sending = new Promise<void>((resolve) => (sendStarted = resolve));
    closing.sms.send = async (message) => {
      sendStarted();
      await new Promise((resolve) => setTimeout(resolve, 300));
      await slowSend(message);
    };
    const phone = uniquePhone();
    const inFlight = closing.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } });
    await sending;
    await closing.app.close();
    // By the time close() returns, the handler has stored, sent and activated the code.
    const stored = await closing.database.connection.collection('challenges').findOne({ phone });
    expect(stored?.status).toBe('active');
    expect((await inFlight).statusCode).toBe(200);
  });
});
