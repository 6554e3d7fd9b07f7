import { createHash, createHmac } from 'node:crypto';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, uniquePhone } from './helpers/app.js';
import { startStubServer, type RecordedRequest, type StubResponse } from './helpers/stub-server.js';
import { botApiAnswersOk, botCalls, contactUpdate, deliverUpdate, TELEGRAM_ENV } from './helpers/telegram.js';

const GATEWAY_TOKEN = 'AAGatewayTokenForTests0123456789abcdef';
const PUBLIC_URL = 'https://auth.example.com';

const gateway = await startStubServer();
const botApi = await startStubServer();
afterAll(async () => {
  await gateway.close();
  await botApi.close();
});

const GATEWAY_ENV = {
  ...TELEGRAM_ENV,
  TELEGRAM_API_ROOT: botApi.url,
  TELEGRAM_GATEWAY_TOKEN: GATEWAY_TOKEN,
  TELEGRAM_GATEWAY_API_ROOT: gateway.url,
  TELEGRAM_GATEWAY_TIMEOUT_MS: '500',
  PUBLIC_URL,
};
const testApp = await buildTestApp({ ...GATEWAY_ENV, OTP_TEST_NUMBERS: '+15550000001:123456' });
const { app, clock, database, sms } = testApp;

type GatewayBehaviour = 'ok' | 'cannot_send' | 'account_error' | 'http_500' | 'timeout' | 'send_refused';
let behaviour: GatewayBehaviour = 'ok';
let requestCounter = 0;

function answerLikeTheGateway(request: RecordedRequest): StubResponse {
  const method = request.path.split('/').pop();
  const body = (request.json ?? {}) as { phone_number?: string };
  if (behaviour === 'timeout') return { delayMs: 1500, body: { ok: true, result: { request_id: 'late' } } };
  if (behaviour === 'http_500') return { status: 500, body: 'Internal Server Error' };
  if (behaviour === 'account_error') return { status: 200, body: { ok: false, error: 'ACCESS_TOKEN_INVALID' } };
  if (method === 'checkSendAbility' && behaviour === 'cannot_send') return { status: 200, body: { ok: false, error: 'PHONE_NUMBER_NOT_FOUND' } };
  if (method === 'sendVerificationMessage' && behaviour === 'send_refused') return { status: 200, body: { ok: false, error: 'BALANCE_NOT_ENOUGH' } };
  requestCounter += 1;
  return {
    status: 200,
    body: { ok: true, result: { request_id: `req-${requestCounter}`, phone_number: body.phone_number, request_cost: 0.01, remaining_balance: 9.99 } },
  };
}

beforeEach(() => {
  behaviour = 'ok';
  gateway.requests.length = 0;
  gateway.respond(answerLikeTheGateway);
  botApi.requests.length = 0;
  botApiAnswersOk(botApi);
  sms.sent.length = 0;
});

const gatewayCalls = () => gateway.requests.map((request) => ({ method: request.path.split('/').pop()!, body: request.json as Record<string, unknown>, auth: request.headers.authorization }));

const requestCode = (phone: string, channel: string) => app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone, channel } });

describe('codes through the Telegram Gateway', () => {
  it('reaches a phone that never used the bot: checkSendAbility, then our own code with its request id, ttl and callback', async () => {
    const phone = uniquePhone();
    const response = await requestCode(phone, 'telegram');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ channel: 'telegram', expiresIn: 300 });

    const calls = gatewayCalls();
    expect(calls.map((call) => call.method)).toEqual(['checkSendAbility', 'sendVerificationMessage']);
    expect(calls.every((call) => call.auth === `Bearer ${GATEWAY_TOKEN}`)).toBe(true);
    expect(calls[0]!.body).toEqual({ phone_number: phone });
    const sent = calls[1]!.body as { code: string };
    expect(sent).toEqual({
      phone_number: phone,
      code: expect.stringMatching(/^\d{6}$/),
      ttl: 300,
      request_id: 'req-1',
      callback_url: `${PUBLIC_URL}/webhooks/telegram-gateway`,
    });
    expect(botCalls(botApi)).toEqual([]);
    expect(sms.sent).toEqual([]);

    // The code stays ours: checked, hashed and single-use by the gateway, not by Telegram.
    const verified = await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code: sent.code } });
    expect(verified.statusCode).toBe(200);
    expect(verified.json()).toMatchObject({ tokenType: 'Bearer', user: { phone } });
    const stored = await database.connection.collection('challenges').findOne({ phone, status: 'consumed' });
    expect(stored?.channel).toBe('telegram');
    expect(JSON.stringify(stored)).not.toContain(sent.code);
  });

  it('prefers the bot, which is free, under auto when the phone is linked to a Telegram account', async () => {
    const phone = uniquePhone();
    const person = { id: 880_001, first_name: 'Linked' };
    await deliverUpdate(app, contactUpdate(person, { phone_number: phone.slice(1), first_name: 'Linked', user_id: person.id }, clock.now()));
    botApi.requests.length = 0;

    const response = await requestCode(phone, 'auto');
    expect(response.statusCode).toBe(200);
    expect(response.json().channel).toBe('telegram');
    expect(gatewayCalls()).toEqual([]);
    const sent = botCalls(botApi).filter((call) => call.method === 'sendMessage');
    expect(sent).toHaveLength(1);
    expect(sent[0]!.body.chat_id).toBe(person.id);
  });

  it('uses the Gateway under auto for a phone that has Telegram but never talked to the bot', async () => {
    const response = await requestCode(uniquePhone(), 'auto');
    expect(response.statusCode).toBe(200);
    expect(response.json().channel).toBe('telegram');
    expect(gatewayCalls().map((call) => call.method)).toEqual(['checkSendAbility', 'sendVerificationMessage']);
    expect(sms.sent).toEqual([]);
  });

  it.each<[string, GatewayBehaviour]>([
    ['cannot reach the phone', 'cannot_send'],
    ['refuses our account', 'account_error'],
    ['answers 500', 'http_500'],
    ['does not answer in time', 'timeout'],
  ])('falls back to SMS under auto when the Gateway %s, answering like any SMS send', async (_case, next) => {
    behaviour = next;
    const phone = uniquePhone();
    const response = await requestCode(phone, 'auto');
    expect(response.statusCode).toBe(200);
    // The same fields as any other send: nothing says why Telegram was skipped.
    expect(Object.keys(response.json()).sort()).toEqual(['challengeId', 'channel', 'expiresIn', 'resendIn']);
    expect(response.json().channel).toBe('sms');
    expect(sms.sent.map((message) => message.phone)).toEqual([phone]);
    expect(gatewayCalls().map((call) => call.method)).toEqual(['checkSendAbility']);
  });

  it('answers channel telegram alike when the Gateway cannot reach the phone, sending nothing (no enumeration)', async () => {
    behaviour = 'cannot_send';
    const phone = uniquePhone();
    const response = await requestCode(phone, 'telegram');
    // Issue 7 item 9: whether a phone has Telegram is not revealed by the answer.
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ channel: 'telegram', expiresIn: expect.any(Number) });
    expect(sms.sent).toEqual([]);
    expect(gatewayCalls().map((call) => call.method)).toEqual(['checkSendAbility']);
  });

  it('answers 502 delivery_failed for channel telegram when the Gateway does not answer, sending nothing', async () => {
    behaviour = 'timeout';
    const response = await requestCode(uniquePhone(), 'telegram');
    expect(response.statusCode).toBe(502);
    expect(response.json()).toMatchObject({ error: 'delivery_failed', channel: 'telegram' });
  });

  it('answers 502 delivery_failed when the Gateway refuses the send, and leaves no usable code', async () => {
    behaviour = 'send_refused';
    const phone = uniquePhone();
    const response = await requestCode(phone, 'telegram');
    expect(response.statusCode).toBe(502);
    expect(response.json()).toMatchObject({ error: 'delivery_failed', channel: 'telegram' });
    const code = (gatewayCalls().find((call) => call.method === 'sendVerificationMessage')!.body as { code: string }).code;
    const verify = await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code } });
    expect(verify.statusCode).toBe(404);
  });

  it('asks the Gateway nothing for a request refused by the per-phone limits (asking may cost money)', async () => {
    const phone = uniquePhone();
    expect((await requestCode(phone, 'telegram')).statusCode).toBe(200);
    gateway.requests.length = 0;
    const again = await requestCode(phone, 'telegram');
    expect(again.statusCode).toBe(429);
    expect(again.json().error).toBe('rate_limited');
    expect(gatewayCalls()).toEqual([]);
  });
});

// A second instance whose per-IP daily budget of paid sends is 2, on the same database and Gateway stand-in.
const budgetApp = await buildTestApp({ ...GATEWAY_ENV, OTP_BUDGET_IP_PER_DAY: '2' });

describe('the Gateway and the paid-send budgets', () => {
  it('counts Gateway codes in the paid-send budgets: past one, the Gateway is not even asked (asking costs money) and the answer is 429', async () => {
    const from = { remoteAddress: '10.9.8.7' };
    const ask = (phone: string) => budgetApp.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone, channel: 'telegram' }, ...from });
    expect((await ask(uniquePhone())).statusCode).toBe(200);
    expect((await ask(uniquePhone())).statusCode).toBe(200);
    expect(gatewayCalls().map((call) => call.method)).toEqual(['checkSendAbility', 'sendVerificationMessage', 'checkSendAbility', 'sendVerificationMessage']);
    gateway.requests.length = 0;

    const refused = await ask(uniquePhone());
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'rate_limited' });
    expect(gatewayCalls()).toEqual([]);
    await budgetApp.app.services.audit.flush();
    const events = await budgetApp.database.connection.collection('audit_events').find({ type: 'otp.budget_exhausted', ip: '10.9.8.7' }).toArray();
    expect(events).toHaveLength(1);
    expect(budgetApp.logs.join('')).toContain('otp send budget exhausted');
  });
});

describe('what the Gateway is not asked', () => {
  it('asks nothing for a test number, whose fixed code is never sent', async () => {
    const response = await requestCode('+15550000001', 'telegram');
    expect(response.statusCode).toBe(200);
    expect(response.json().channel).toBe('telegram');
    expect(gatewayCalls()).toEqual([]);
  });

  it('leaves Log in with Telegram off without its client id and secret: 404', async () => {
    const response = await app.inject({ method: 'GET', url: '/auth/telegram/login' });
    expect(response.statusCode).toBe(404);
  });
});

describe('Gateway delivery reports', () => {
  const sign = (timestamp: string, body: string, token = GATEWAY_TOKEN) =>
    createHmac('sha256', createHash('sha256').update(token).digest()).update(`${timestamp}\n${body}`).digest('hex');

  const report = (requestId: string, phone: string, status: string) =>
    JSON.stringify({ request_id: requestId, phone_number: phone, request_cost: 0.01, is_refunded: status === 'expired', delivery_status: { status, updated_at: 1_763_719_200 } });

  const post = (body: string, headers: Record<string, string>) =>
    app.inject({ method: 'POST', url: '/webhooks/telegram-gateway', headers: { 'content-type': 'application/json', ...headers }, payload: body });

  // Audit events are written in batches: flush before reading them.
  const reportsFor = async (requestId: string) => {
    await app.services.audit.flush();
    return database.connection.collection('audit_events').find({ type: 'otp.delivery_report', 'detail.requestId': requestId }).toArray();
  };

  it.each(['delivered', 'read', 'expired', 'revoked'])('records a signed "%s" report in the audit trail, phone masked', async (status) => {
    const requestId = `report-${status}`;
    const phone = uniquePhone();
    const body = report(requestId, phone, status);
    const timestamp = String(Math.floor(clock.now().getTime() / 1000));
    const response = await post(body, { 'x-request-timestamp': timestamp, 'x-request-signature': sign(timestamp, body) });
    expect(response.statusCode).toBe(200);
    const events = await reportsFor(requestId);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ channel: 'telegram', detail: { provider: 'telegram-gateway', requestId, status, isRefunded: status === 'expired' } });
    expect(events[0]!.phone).not.toBe(phone);
    expect(events[0]!.phone).toMatch(/^\+44\*+\d\d$/);
  });

  it('records a report Telegram sends again (after a lost 200) only once', async () => {
    const body = report('report-twice', uniquePhone(), 'delivered');
    const timestamp = String(Math.floor(clock.now().getTime() / 1000));
    for (let i = 0; i < 3; i++) {
      const response = await post(body, { 'x-request-timestamp': timestamp, 'x-request-signature': sign(timestamp, body) });
      expect(response.statusCode).toBe(200);
    }
    expect(await reportsFor('report-twice')).toHaveLength(1);
  });

  it.each([
    ['no signature', (_timestamp: string, _body: string) => ({})],
    ['a signature under another token', (timestamp: string, body: string) => ({ 'x-request-timestamp': timestamp, 'x-request-signature': sign(timestamp, body, 'another-token-entirely-0123456789') })],
    ['a signature of other bytes', (timestamp: string, body: string) => ({ 'x-request-timestamp': timestamp, 'x-request-signature': sign(timestamp, `${body} `) })],
    ['a signature for another timestamp', (timestamp: string, body: string) => ({ 'x-request-timestamp': timestamp, 'x-request-signature': sign(String(Number(timestamp) - 1), body) })],
    ['a malformed signature', (timestamp: string) => ({ 'x-request-timestamp': timestamp, 'x-request-signature': 'zz' })],
  ])('refuses a report with %s with 401 and records nothing', async (_case, headersFor) => {
    const requestId = `forged-${_case.replace(/\W/g, '-')}`;
    const body = report(requestId, uniquePhone(), 'delivered');
    const timestamp = String(Math.floor(clock.now().getTime() / 1000));
    const response = await post(body, headersFor(timestamp, body) as Record<string, string>);
    expect(response.statusCode).toBe(401);
    expect(response.json().error).toBe('invalid_signature');
    expect(await reportsFor(requestId)).toHaveLength(0);
  });

  it('refuses a correctly signed report that is too old to be fresh (a replay) with 401', async () => {
    const body = report('report-stale', uniquePhone(), 'delivered');
    const timestamp = String(Math.floor(clock.now().getTime() / 1000) - 3600);
    const response = await post(body, { 'x-request-timestamp': timestamp, 'x-request-signature': sign(timestamp, body) });
    expect(response.statusCode).toBe(401);
    expect(await reportsFor('report-stale')).toHaveLength(0);
  });

  it('acknowledges a signed body it cannot read with 200, so Telegram does not resend it forever', async () => {
    const body = '{"not":"a report"}';
    const timestamp = String(Math.floor(clock.now().getTime() / 1000));
    const response = await post(body, { 'x-request-timestamp': timestamp, 'x-request-signature': sign(timestamp, body) });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ received: 0 });
  });
});
