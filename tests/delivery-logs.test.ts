import twilio from 'twilio';
import { afterAll, describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';
import { startStubServer } from './helpers/stub-server.js';
import { contactUpdate, deliverUpdate, TELEGRAM_ENV, textUpdate } from './helpers/telegram.js';
import { deliver, graphAnswersOk, notification, textMessage, WHATSAPP_ENV, type GraphSend } from './helpers/whatsapp.js';

// Every provider below refuses by naming the number it refused, with and without "+", as real providers do. Whatever
// path the failure takes (a reply, a prompt, a code, on the web or in a chat), the log must show it masked.
const graph = await startStubServer();
const bot = await startStubServer();
afterAll(() => Promise.all([graph.close(), bot.close()]));
const testApp = await buildTestApp({ ...WHATSAPP_ENV, ...TELEGRAM_ENV, WHATSAPP_GRAPH_URL: graph.url, TELEGRAM_API_ROOT: bot.url });
const { app, clock, sms, logs } = testApp;

// The SMS providers themselves, each refusing by naming the number.
const smsGateway = await startStubServer();
afterAll(() => smsGateway.close());
const viaHttpSms = await buildTestApp(
  { SMS_PROVIDER: 'http', SMS_HTTP_URL: `${smsGateway.url}/gateway`, SMS_HTTP_SECRET: 'gateway-shared-secret-0123456789' },
  { smsSender: undefined },
);
class LocalTwilioClient extends twilio.RequestClient {
  override request<TData>(options: Parameters<twilio.RequestClient['request']>[0] & { data?: TData }) {
    return super.request<TData>({ ...options, uri: options.uri.replace('https://api.twilio.com', smsGateway.url) });
  }
}
const viaTwilio = await buildTestApp(
  { SMS_PROVIDER: 'twilio', TWILIO_ACCOUNT_SID: 'AC00000000000000000000000000000001', TWILIO_AUTH_TOKEN: 'twilio-auth-token', TWILIO_FROM: '+15005550006' },
  { smsSender: undefined, twilioHttpClient: new LocalTwilioClient() },
);
const smsGatewayRefusesNamingTheNumber = () =>
  smsGateway.respond((request) => {
    const to = (request.json as { to?: string } | undefined)?.to ?? new URLSearchParams(request.body).get('To') ?? '';
    return { status: 400, body: { code: 21211, message: `The 'To' number ${to} (${to.slice(1)}) is not a valid phone number.`, status: 400 } };
  });

const graphRefusesNamingTheNumber = () =>
  graph.respond((request) => {
    const to = String((request.json as GraphSend).to ?? '').replace('+', '');
    return {
      status: 400,
      body: { error: { message: `(#131026) Message undeliverable to +${to} (${to})`, type: 'OAuthException', code: 131026, fbtrace_id: 'Xyz' } },
    };
  });

const telegramRefusesNamingTheNumber = (phone: string) =>
  bot.respond(() => ({ status: 400, body: { ok: false, error_code: 400, description: `Bad Request: chat of ${phone} not found (${phone.slice(1)})` } }));

let counter = 0;
const nextDigits = () => `4479112${String((counter += 1)).padStart(5, '0')}`;
const used: string[] = [];
const fresh = () => {
  const digits = nextDigits();
  used.push(digits);
  return digits;
};

describe('provider failures in the log', () => {
  it('a WhatsApp reply that fails (help text) logs the Graph error with the number masked', async () => {
    graphRefusesNamingTheNumber();
    const waId = fresh();
    await deliver(app, notification([textMessage({ waId }, 'hello?', clock.now())], { waId }));
    expect(logs.join('')).toContain('whatsapp reply failed');
  });

  it('a WhatsApp confirmation prompt that fails is logged masked', async () => {
    graphRefusesNamingTheNumber();
    const intent = (await app.inject({ method: 'POST', url: '/auth/login-intents' })).json() as { code: string };
    const waId = fresh();
    await deliver(app, notification([textMessage({ waId }, `LOGIN ${intent.code}`, clock.now())], { waId }));
    expect(logs.join('')).toContain('inbound message handling failed');
  });

  it('a WhatsApp in-chat code that fails is logged masked', async () => {
    graphRefusesNamingTheNumber();
    const waId = fresh();
    await deliver(app, notification([textMessage({ waId }, 'OTP', clock.now())], { waId }));
  });

  it('a WhatsApp template code asked for on the web that fails is logged masked', async () => {
    graphRefusesNamingTheNumber();
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: `+${fresh()}`, channel: 'whatsapp' } });
    expect(response.statusCode).toBe(502);
  });

  it('an SMS that fails is logged masked', async () => {
    sms.failNext = true;
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: `+${fresh()}` } });
    expect(response.statusCode).toBe(502);
  });

  it('a Telegram reply and a Telegram code that fail are logged masked', async () => {
    const phone = `+${fresh()}`;
    const person = { id: 777_001, first_name: 'Masked' };
    graphAnswersOk(graph);
    bot.respond(() => ({ body: { ok: true, result: { message_id: 1, date: 1, chat: { id: person.id, type: 'private' }, text: '' } } }));
    await deliverUpdate(app, contactUpdate(person, { phone_number: phone, first_name: 'Masked', user_id: person.id }, clock.now()));
    telegramRefusesNamingTheNumber(phone);
    await deliverUpdate(app, textUpdate(person, 'hello', clock.now()));
    expect(logs.join('')).toContain('telegram reply failed');
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone, channel: 'telegram' } });
    expect(response.statusCode).toBe(502);
  });

  it('an SMS refused by the http provider and by Twilio is logged masked', async () => {
    smsGatewayRefusesNamingTheNumber();
    for (const { app: gateway } of [viaHttpSms, viaTwilio]) {
      const response = await gateway.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: `+${fresh()}` } });
      expect(response.statusCode).toBe(502);
    }
    // The providers' own words reach the log, their numbers masked.
    for (const { logs: lines } of [viaHttpSms, viaTwilio]) expect(lines.join('')).toMatch(/otp delivery failed|\+44\*+\d\d/);
    expect(viaTwilio.logs.join('')).toMatch(/is not a valid phone number/);
  });

  it('no log line holds any of those numbers unmasked', () => {
    const text = [logs, viaHttpSms.logs, viaTwilio.logs].flat().join('');
    expect(used.length).toBe(8);
    for (const digits of used) expect(text).not.toContain(digits);
  });
});
