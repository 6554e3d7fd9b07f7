import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { buildTestApp, signInBySms, type TokenPair } from './helpers/app.js';
import { startStubServer } from './helpers/stub-server.js';
import { TELEGRAM_ENV } from './helpers/telegram.js';
import {
  buttonReply,
  deliver,
  graphAnswersOk,
  graphSends,
  metaEscape,
  notification,
  sign,
  textMessage,
  WHATSAPP_ENV,
  type Sender,
} from './helpers/whatsapp.js';

const graph = await startStubServer();
afterAll(() => graph.close());
const testApp = await buildTestApp({ ...WHATSAPP_ENV, WHATSAPP_GRAPH_URL: graph.url });
const { app, clock, database } = testApp;

beforeEach(() => {
  graph.requests.length = 0;
  graphAnswersOk(graph);
});

let phoneCounter = 0;
const newSender = (): Sender & { waId: string } => ({ waId: `4479110${String((phoneCounter += 1)).padStart(5, '0')}` });

interface CreatedIntent {
  intentId: string;
  pollToken: string;
  code: string;
  links: Record<string, string>;
}

async function createIntent(): Promise<CreatedIntent> {
  const response = await app.inject({
    method: 'POST',
    url: '/auth/login-intents',
    headers: { 'user-agent': 'Mozilla/5.0 (Macintosh) Safari/605.1.15' },
    remoteAddress: '203.0.113.5',
  });
  return response.json() as CreatedIntent;
}

const poll = async (intent: CreatedIntent) =>
  (
    await app.inject({ method: 'GET', url: `/auth/login-intents/${intent.intentId}`, headers: { authorization: `Bearer ${intent.pollToken}` } })
  ).json() as { status: string } & Partial<TokenPair>;

const storedMessages = () => database.connection.collection('inbound_messages');

describe('the verification handshake', () => {
  it('answers the hub challenge as plain text when the verify token matches', async () => {
    const response = await app.inject({
      method: 'GET',
      url: '/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-token-for-tests&hub.challenge=1158201444',
    });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/plain');
    expect(response.body).toBe('1158201444');
  });

  it.each([
    ['a wrong verify token', 'hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1'],
    ['no verify token', 'hub.mode=subscribe&hub.challenge=1'],
    ['another mode', 'hub.mode=unsubscribe&hub.verify_token=verify-token-for-tests&hub.challenge=1'],
  ])('refuses %s with 403', async (_case, query) => {
    const response = await app.inject({ method: 'GET', url: `/webhooks/whatsapp?${query}` });
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ error: 'forbidden' });
  });
});

describe('the verification handshake, continued', () => {
  it('answers 400 when the challenge is missing', async () => {
    const response = await app.inject({ method: 'GET', url: '/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-token-for-tests' });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ error: 'invalid_request' });
  });
});

describe('the signature check', () => {
  it.each([
    ['missing', null],
    ['made with another secret', sign('{}', 'not-the-app-secret')],
    ['malformed', 'sha256=zz'],
  ])('refuses a notification whose signature is %s with 401, storing and sending nothing', async (_case, signature) => {
    const sender = newSender();
    const payload = notification([textMessage(sender, 'OTP', clock.now())], sender);
    const response = await deliver(app, payload, { signature });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: 'invalid_signature' });
    expect(await storedMessages().countDocuments({ 'payload.message.from': sender.waId })).toBe(0);
    expect(graphSends(graph)).toHaveLength(0);
  });

  it('checks the bytes as sent: emoji and accents escaped as Meta escapes them are accepted', async () => {
    const sender = newSender();
    const body = metaEscape(JSON.stringify(notification([textMessage(sender, 'Olá 👋 café', clock.now())], sender)));
    expect(body).toContain('\\ud83d\\udc4b');
    const response = await deliver(app, body);
    expect(response.statusCode).toBe(200);
    expect(graphSends(graph)).toEqual([expect.objectContaining({ to: `+${sender.waId}`, type: 'text', text: { body: expect.stringContaining('LOGIN') } })]);
    const stored = await storedMessages().findOne({ 'payload.message.from': sender.waId });
    expect(stored?.payload.message.text.body).toBe('Olá 👋 café');
  });

  it('refuses a body signed before Meta-style escaping (a re-serialised body does not match)', async () => {
    const sender = newSender();
    const unescaped = JSON.stringify(notification([textMessage(sender, 'café', clock.now())], sender));
    const response = await deliver(app, metaEscape(unescaped), { signature: sign(unescaped) });
    expect(response.statusCode).toBe(401);
  });
});

describe('signing in on the web by messaging our number', () => {
  it('links to our number with the LOGIN message typed in', async () => {
    const intent = await createIntent();
    expect(intent.links).toEqual({ whatsapp: `https://wa.me/15551234567?text=LOGIN%20${intent.code}` });
  });

  it('asks for confirmation, showing the browser, then signs in the same user an SMS login gets, with amr whatsapp', async () => {
    const sender = newSender();
    const smsUser = await signInBySms(testApp, `+${sender.waId}`);
    const intent = await createIntent();

    expect((await deliver(app, notification([textMessage(sender, `login ${intent.code.toLowerCase()}`, clock.now())], sender))).statusCode).toBe(200);
    const [prompt] = graphSends(graph);
    expect(prompt).toMatchObject({ to: `+${sender.waId}`, type: 'interactive' });
    expect(prompt!.interactive!.body.text).toContain('Device: Safari on macOS\n');
    expect(prompt!.interactive!.body.text).toContain('203.0.113.5');
    expect(prompt!.interactive!.action.buttons.map((button) => button.reply)).toEqual([
      { id: `confirm:${intent.intentId}`, title: 'Confirm' },
      { id: `cancel:${intent.intentId}`, title: 'Cancel' },
    ]);
    expect(await poll(intent)).toMatchObject({ status: 'pending' });

    await deliver(app, notification([buttonReply(sender, `confirm:${intent.intentId}`, 'Confirm', clock.now())], sender));
    expect(graphSends(graph)[1]).toMatchObject({ to: `+${sender.waId}`, text: { body: expect.stringContaining('signed in') } });

    const approved = await poll(intent);
    expect(approved).toMatchObject({ status: 'approved', tokenType: 'Bearer', user: { id: smsUser.user.id, phone: `+${sender.waId}`, whatsapp: { waId: sender.waId } } });
    const claims = decodeJwt(approved.accessToken!);
    expect(claims).toMatchObject({ sub: smsUser.user.id, amr: ['whatsapp'], phone_number: `+${sender.waId}` });
    expect(await poll(intent)).toEqual({ status: 'consumed' });
  });

  it('shows a reduced device description: no links, no markup, no control or bidi characters, no text of the requester', async () => {
    const sender = newSender();
    const userAgent =
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 ' +
      '*Approved by Telegram Support* _official_ ~verified~ `ok` https://evil.example/confirm \u0085\u202eevil';
    const created = await app.inject({ method: 'POST', url: '/auth/login-intents', headers: { 'user-agent': userAgent }, remoteAddress: '203.0.113.7' });
    const intent = created.json() as CreatedIntent;
    await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    const text = graphSends(graph)[0]!.interactive!.body.text;
    const device = /Device: (.*)\n/.exec(text)![1]!;
    expect(device).toBe('Chrome 126 on Windows 10');
    expect(text).toContain('203.0.113.7');
    for (const forbidden of ['http', 'evil', 'Support', '*', '_', '~', '`', '\u0085', '\u202e']) expect(text).not.toContain(forbidden);
  });

  it('describes a user agent it does not recognise as an unknown browser, whatever it says', async () => {
    const sender = newSender();
    const created = await app.inject({ method: 'POST', url: '/auth/login-intents', headers: { 'user-agent': 'Telegram_Support*/1.0 (approved; https://x.example)' } });
    const intent = created.json() as CreatedIntent;
    await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    expect(graphSends(graph)[0]!.interactive!.body.text).toContain('Device: unknown browser\n');
  });

  it('stops taking LOGIN codes from a sender after 10 wrong ones in an hour, even in one notification', async () => {
    const sender = newSender();
    const intent = await createIntent();
    const guesses = Array.from({ length: 12 }, (_, index) => textMessage(sender, `LOGIN ZZZZ${String(index).padStart(2, '2')}`, clock.now()));
    await deliver(app, notification([...guesses, textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    const replies = graphSends(graph);
    expect(replies.filter((reply) => reply.text?.body.includes('unknown'))).toHaveLength(10);
    expect(replies.filter((reply) => reply.text?.body.includes('Too many wrong sign-in codes'))).toHaveLength(3);
    expect(replies.some((reply) => reply.type === 'interactive')).toBe(false);

    clock.advance(3600);
    const later = await createIntent();
    graph.requests.length = 0;
    await deliver(app, notification([textMessage(sender, `LOGIN ${later.code}`, clock.now())], sender));
    expect(graphSends(graph)[0]).toMatchObject({ type: 'interactive' });
  });

  it('accepts the bare code too', async () => {
    const sender = newSender();
    const intent = await createIntent();
    await deliver(app, notification([textMessage(sender, ` ${intent.code} `, clock.now())], sender));
    expect(graphSends(graph)[0]).toMatchObject({ type: 'interactive' });
  });

  it('refuses a confirmation from another phone', async () => {
    const owner = newSender();
    const intruder = newSender();
    const intent = await createIntent();
    await deliver(app, notification([textMessage(owner, `LOGIN ${intent.code}`, clock.now())], owner));
    await deliver(app, notification([buttonReply(intruder, `confirm:${intent.intentId}`, 'Confirm', clock.now())], intruder));
    expect(graphSends(graph)[1]).toMatchObject({ to: `+${intruder.waId}`, text: { body: expect.stringContaining('another account') } });
    expect(await poll(intent)).toMatchObject({ status: 'pending' });
    expect(await database.connection.collection('users').countDocuments({ phone: `+${intruder.waId}` })).toBe(1);
  });

  it('reports rejected to the browser when the person taps Cancel', async () => {
    const sender = newSender();
    const intent = await createIntent();
    await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    await deliver(app, notification([buttonReply(sender, `cancel:${intent.intentId}`, 'Cancel', clock.now())], sender));
    expect(graphSends(graph)[1]).toMatchObject({ text: { body: expect.stringContaining('Cancelled') } });
    expect(await poll(intent)).toEqual({ status: 'rejected' });
  });

  it('says so for an unknown or expired code', async () => {
    const sender = newSender();
    await deliver(app, notification([textMessage(sender, 'LOGIN ZZZZZZ', clock.now())], sender));
    expect(graphSends(graph)[0]).toMatchObject({ text: { body: expect.stringContaining('unknown') } });

    const intent = await createIntent();
    clock.advance(301);
    await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    expect(graphSends(graph)[1]).toMatchObject({ text: { body: expect.stringContaining('expired') } });
  });

  it('does not let an old message complete a login', async () => {
    const sender = newSender();
    const intent = await createIntent();
    const sentLongAgo = new Date(clock.now().getTime() - 601_000);
    expect((await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, sentLongAgo)], sender))).statusCode).toBe(200);
    expect(graphSends(graph)).toHaveLength(0);
    expect(await storedMessages().findOne({ 'payload.message.from': sender.waId })).toMatchObject({ status: 'ignored', outcome: 'stale' });
  });

  it('handles a redelivered message once', async () => {
    const sender = newSender();
    const message = textMessage(sender, 'hello', clock.now());
    expect((await deliver(app, notification([message], sender))).statusCode).toBe(200);
    expect((await deliver(app, notification([message], sender))).statusCode).toBe(200);
    expect(graphSends(graph)).toHaveLength(1);
    expect(await storedMessages().countDocuments({ 'payload.message.from': sender.waId })).toBe(1);
  });

  it('retries handling that failed, from the stored record', async () => {
    const sender = newSender();
    const intent = await createIntent();
    graph.respond(() => ({ status: 500, body: { error: { message: 'Service temporarily unavailable', type: 'OAuthException', code: 2, fbtrace_id: 'AbC' } } }));
    expect((await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender))).statusCode).toBe(200);
    const stored = await storedMessages().findOne({ 'payload.message.from': sender.waId });
    expect(stored).toMatchObject({ status: 'failed', attempts: 1, lastError: expect.stringContaining('Service temporarily unavailable') });
    expect(testApp.logs.join('')).toContain('Service temporarily unavailable');

    graphAnswersOk(graph);
    clock.advance(11);
    await app.services.inbox.sweep();
    expect(await storedMessages().findOne({ _id: stored!._id })).toMatchObject({ status: 'handled', attempts: 2 });
    expect(graphSends(graph).at(-1)).toMatchObject({ type: 'interactive' });
  });
});

describe('a sign-in started on the hosted login page', () => {
  async function createPageIntent(language?: string): Promise<CreatedIntent> {
    const response = await app.inject({
      method: 'POST',
      url: '/login/api/intents',
      payload: { chat: 'whatsapp', ...(language ? { language } : {}) },
      headers: { 'user-agent': 'Mozilla/5.0 (Macintosh) Safari/605.1.15' },
      remoteAddress: '203.0.113.5',
    });
    expect(response.statusCode).toBe(201);
    return response.json() as CreatedIntent;
  }

  it('is prompted and answered in the page language: Spanish prompt, buttons and approval', async () => {
    const sender = newSender();
    const intent = await createPageIntent('es');
    await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    const [prompt] = graphSends(graph);
    const time = `${clock.now().toISOString().slice(0, 16).replace('T', ' ')} UTC`;
    expect(prompt!.interactive!.body.text).toBe(
      '¿Iniciar sesión en Chatgate?\nUn navegador pidió iniciar sesión como tú:\n• Dispositivo: Safari on macOS\n• Dirección IP: 203.0.113.5\n' +
        `• Hora: ${time}\nConfirma solo si fuiste tú, ahora mismo. Nunca confirmes una solicitud que otra persona te haya enviado.`,
    );
    expect(prompt!.interactive!.action.buttons.map((button) => button.reply)).toEqual([
      { id: `confirm:${intent.intentId}`, title: 'Confirmar' },
      { id: `cancel:${intent.intentId}`, title: 'Cancelar' },
    ]);
    await deliver(app, notification([buttonReply(sender, `confirm:${intent.intentId}`, 'Confirmar', clock.now())], sender));
    expect(graphSends(graph)[1]).toMatchObject({ text: { body: 'Listo: el sitio web ya inició sesión. Puedes volver a él.' } });
    expect(await poll(intent)).toMatchObject({ status: 'approved' });
  });

  it('answers a late button in the page language: Portuguese expired', async () => {
    const sender = newSender();
    const intent = await createPageIntent('pt');
    await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    clock.advance(301);
    await deliver(app, notification([buttonReply(sender, `confirm:${intent.intentId}`, 'Confirmar', clock.now())], sender));
    expect(graphSends(graph)[1]).toMatchObject({ text: { body: 'Esse pedido de acesso expirou. Comece de novo no site.' } });
  });

  it('stays English when the page sent no language', async () => {
    const sender = newSender();
    const intent = await createPageIntent();
    await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    const [prompt] = graphSends(graph);
    expect(prompt!.interactive!.body.text).toMatch(/^Sign in to Chatgate\?\n.*• Device: Safari on macOS\n/s);
    expect(prompt!.interactive!.action.buttons.map((button) => button.reply.title)).toEqual(['Confirm', 'Cancel']);
    await deliver(app, notification([buttonReply(sender, `cancel:${intent.intentId}`, 'Cancel', clock.now())], sender));
    expect(graphSends(graph)[1]).toMatchObject({ text: { body: 'Cancelled: that website was not signed in.' } });
  });

  it('refuses a language the page does not offer with 400', async () => {
    const response = await app.inject({ method: 'POST', url: '/login/api/intents', payload: { chat: 'whatsapp', language: 'fr' } });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ error: 'invalid_request' });
  });
});

describe('codes in the chat', () => {
  it('replies to OTP with a code the person then uses on the web', async () => {
    const sender = newSender();
    await deliver(app, notification([textMessage(sender, 'otp', clock.now())], sender));
    const reply = graphSends(graph)[0]!;
    expect(reply).toMatchObject({ to: `+${sender.waId}`, type: 'text' });
    const code = /code is (\d{6})/.exec(reply.text!.body)![1];
    const verified = await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone: `+${sender.waId}`, code } });
    expect(verified.statusCode).toBe(200);
    expect(decodeJwt((verified.json() as TokenPair).accessToken)).toMatchObject({ amr: ['whatsapp'] });
  });

  it('retries an OTP reply the Graph API could not take', async () => {
    const sender = newSender();
    graph.respond(() => ({ status: 503, body: { error: { message: 'Temporarily unavailable', type: 'OAuthException', code: 2, fbtrace_id: 'T' } } }));
    await deliver(app, notification([textMessage(sender, 'OTP', clock.now())], sender));
    expect(await storedMessages().findOne({ 'payload.message.from': sender.waId })).toMatchObject({ status: 'failed', attempts: 1 });
    graphAnswersOk(graph);
    clock.advance(11);
    await app.services.inbox.sweep();
    expect(graphSends(graph).at(-1)).toMatchObject({ to: `+${sender.waId}`, text: { body: expect.stringMatching(/code is \d{6}/) } });
    expect(await storedMessages().findOne({ 'payload.message.from': sender.waId })).toMatchObject({ status: 'handled', outcome: 'otp_sent' });
  });

  it('answers anything else with help', async () => {
    const sender = newSender();
    await deliver(app, notification([textMessage(sender, 'what is this?', clock.now())], sender));
    expect(graphSends(graph)[0]!.text!.body).toContain('LOGIN');
  });
});

describe('senders whose wa_id is not their E.164 number', () => {
  async function signInByWhatsApp(sender: Sender) {
    const intent = await createIntent();
    await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    await deliver(app, notification([buttonReply(sender, `confirm:${intent.intentId}`, 'Confirm', clock.now())], sender));
    return poll(intent);
  }

  it.each([
    ['a Mexican mobile reported as 521…', '5215512345678', '+525512345678'],
    ['a Brazilian mobile reported without its ninth digit', '551187654321', '+5511987654321'],
  ])('%s is the same user as the SMS login of its E.164 number; replies still go to the wa_id', async (_case, waId, e164) => {
    const smsUser = await signInBySms(testApp, e164);
    const approved = await signInByWhatsApp({ waId });
    expect(approved).toMatchObject({ status: 'approved', user: { id: smsUser.user.id, phone: e164, whatsapp: { waId } } });
    expect(graphSends(graph).every((send) => send.to === `+${waId}`)).toBe(true);
  });

  it('tells a sender whose number cannot be read so, instead of staying silent', async () => {
    const sender = { waId: '999123456789' };
    const intent = await createIntent();
    await deliver(app, notification([textMessage(sender, `LOGIN ${intent.code}`, clock.now())], sender));
    const [reply] = graphSends(graph);
    expect(reply).toMatchObject({ to: '+999123456789', type: 'text', text: { body: expect.stringContaining('cannot read your phone number') } });
    expect(await poll(intent)).toMatchObject({ status: 'pending' });
  });
});

describe('codes requested on the web with channel whatsapp', () => {
  it('go out as the authentication template, with the code in the body and the copy-code button', async () => {
    const phone = `+${newSender().waId}`;
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone, channel: 'whatsapp' } });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ channel: 'whatsapp' });
    const [sent] = graphSends(graph);
    expect(sent).toMatchObject({ to: phone, type: 'template', template: { name: 'otp_login', language: { code: 'en_US' } } });
    const [body, button] = sent!.template!.components;
    const code = body!.parameters[0]!.text;
    expect(code).toMatch(/^\d{6}$/);
    expect(button).toMatchObject({ type: 'button', sub_type: 'url', parameters: [{ text: code }] });
    expect((await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code } })).statusCode).toBe(200);
  });

  it('answer 502 delivery_failed when the Graph API refuses, and log its error', async () => {
    graph.respond(() => ({ status: 400, body: { error: { message: '(#131026) Message undeliverable', type: 'OAuthException', code: 131026, fbtrace_id: 'Xyz' } } }));
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: `+${newSender().waId}`, channel: 'whatsapp' } });
    expect(response.statusCode).toBe(502);
    expect(response.json()).toMatchObject({ error: 'delivery_failed', channel: 'whatsapp' });
    expect(testApp.logs.join('')).toContain('"errorCode":131026');
  });
});

describe('senders who use a username and show no phone number', () => {
  const hidden = { userId: 'US.13491208655302741918', name: 'Kerry' };

  it('can sign in: the user is keyed by their business-scoped id, with no phone', async () => {
    const intent = await createIntent();
    await deliver(app, notification([textMessage(hidden, `LOGIN ${intent.code}`, clock.now())], hidden));
    expect(graphSends(graph)[0]).toMatchObject({ recipient: hidden.userId, type: 'interactive' });
    expect(graphSends(graph)[0]!.to).toBeUndefined();
    await deliver(app, notification([buttonReply(hidden, `confirm:${intent.intentId}`, 'Confirm', clock.now())], hidden));
    const approved = await poll(intent);
    expect(approved).toMatchObject({ status: 'approved', user: { phone: null } });
    expect(decodeJwt(approved.accessToken!)).not.toHaveProperty('phone_number');
    expect(await database.connection.collection('users').findOne({ 'whatsapp.userId': hidden.userId })).toMatchObject({ status: 'active' });
  });

  it('keep their user when their phone later shows, and the phone is attached to it', async () => {
    const person = { userId: 'US.99887766554433221100', name: 'Sam' };
    const intent = await createIntent();
    await deliver(app, notification([textMessage(person, `LOGIN ${intent.code}`, clock.now())], person));
    // Meta's 2026 shape: the same person, now with the phone visible, sends both ids.
    const visible = { ...person, waId: '447911777888' };
    await deliver(app, notification([buttonReply(visible, `confirm:${intent.intentId}`, 'Confirm', clock.now())], visible));
    const approved = await poll(intent);
    expect(approved).toMatchObject({ status: 'approved', user: { phone: '+447911777888' } });
    const users = await database.connection.collection('users').find({ 'whatsapp.userId': person.userId }).toArray();
    expect(users).toHaveLength(1);
    expect(users[0]).toMatchObject({ phone: '+447911777888', whatsapp: { userId: person.userId, waId: '447911777888' } });
  });

  it('cannot get a phone-bound code', async () => {
    await deliver(app, notification([textMessage(hidden, 'OTP', clock.now())], hidden));
    expect(graphSends(graph)[0]).toMatchObject({ recipient: hidden.userId, text: { body: expect.stringContaining('does not show us a phone number') } });
  });
});

describe('other notifications', () => {
  it('acknowledges status updates without handling anything', async () => {
    const response = await deliver(
      app,
      notification([], newSender(), {
        statuses: [{ id: 'wamid.out', status: 'delivered', timestamp: '1603059201', recipient_id: '16315551234', conversation: { id: 'c1' }, pricing: { billable: true } }],
      }),
    );
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ received: 0 });
    expect(graphSends(graph)).toHaveLength(0);
  });

  it('ignores messages to another phone number of the same app', async () => {
    const sender = newSender();
    const payload = notification([textMessage(sender, 'OTP', clock.now())], sender) as { entry: { changes: { value: { metadata: { phone_number_id: string } } }[] }[] };
    payload.entry[0]!.changes[0]!.value.metadata.phone_number_id = '999999999';
    expect((await deliver(app, payload)).json()).toEqual({ received: 0 });
    expect(await storedMessages().countDocuments({ 'payload.message.from': sender.waId })).toBe(0);
    expect(graphSends(graph)).toHaveLength(0);
  });

  it('stores only the fields it reads, so odd keys cannot break storing', async () => {
    const sender = newSender();
    const message = { ...textMessage(sender, 'hello', clock.now()), $where: 'x', context: { forwarded: true } };
    expect((await deliver(app, notification([message], sender))).statusCode).toBe(200);
    const stored = await storedMessages().findOne({ 'payload.message.from': sender.waId });
    expect(stored).toMatchObject({ status: 'handled' });
    expect(Object.keys(stored!.payload.message).sort()).toEqual(['from', 'id', 'text', 'timestamp', 'type']);
  });

  it('acknowledges reactions and media and ignores them', async () => {
    const sender = newSender();
    const reaction = { from: sender.waId, id: 'wamid.reaction1', timestamp: String(Math.floor(clock.now().getTime() / 1000)), type: 'reaction', reaction: { message_id: 'wamid.x', emoji: '👍' } };
    const image = { from: sender.waId, id: 'wamid.image1', timestamp: reaction.timestamp, type: 'image', image: { id: 'media1', mime_type: 'image/jpeg' } };
    expect((await deliver(app, notification([reaction, image], sender))).statusCode).toBe(200);
    expect(graphSends(graph)).toHaveLength(0);
    expect(await storedMessages().findOne({ _id: 'whatsapp:wamid.image1' as never })).toMatchObject({ status: 'ignored', outcome: 'type:image' });
  });

  it.each([
    ['not JSON', 'this is not json'],
    ['JSON of another shape', '{"hello":"world"}'],
    ['an envelope whose message lacks an id', JSON.stringify(notification([{ from: '447911000999', timestamp: '1', type: 'text', text: { body: 'x' } }], { waId: '447911000999' }))],
  ])('answers 200 to a signed body that is %s, and stores nothing', async (_case, body) => {
    const before = await storedMessages().countDocuments();
    const response = await deliver(app, body);
    expect(response.statusCode).toBe(200);
    expect(await storedMessages().countDocuments()).toBe(before);
  });

  it('handles every message of a large batch (over the default body limit)', async () => {
    const sender = newSender();
    const messages = Array.from({ length: 40 }, (_, index) => textMessage(sender, `hello ${index} ${'x'.repeat(2000)}`, clock.now()));
    const body = metaEscape(JSON.stringify(notification(messages, sender)));
    expect(body.length).toBeGreaterThan(65_536);
    expect((await deliver(app, body)).statusCode).toBe(200);
    expect(await storedMessages().countDocuments({ 'payload.message.from': sender.waId, status: 'handled' })).toBe(40);
  });
});

describe('without INTENT_REQUIRE_CONFIRM', async () => {
  const direct = await buildTestApp({ ...WHATSAPP_ENV, WHATSAPP_GRAPH_URL: graph.url, INTENT_REQUIRE_CONFIRM: 'false' });

  it('approves at once', async () => {
    const sender = newSender();
    const created = (await direct.app.inject({ method: 'POST', url: '/auth/login-intents' })).json() as CreatedIntent;
    await deliver(direct.app, notification([textMessage(sender, `LOGIN ${created.code}`, direct.clock.now())], sender));
    const polled = await direct.app.inject({ method: 'GET', url: `/auth/login-intents/${created.intentId}`, headers: { authorization: `Bearer ${created.pollToken}` } });
    expect(polled.json()).toMatchObject({ status: 'approved' });
  });
});

describe('with WhatsApp off', async () => {
  // Telegram on, so login intents are offered at all (with no chat channel they are refused).
  const off = await buildTestApp(TELEGRAM_ENV);

  it('answers 404 on the webhook routes and offers no link', async () => {
    expect((await off.app.inject({ method: 'GET', url: '/webhooks/whatsapp?hub.mode=subscribe' })).statusCode).toBe(404);
    expect((await off.app.inject({ method: 'POST', url: '/webhooks/whatsapp', payload: {} })).statusCode).toBe(404);
    expect(((await off.app.inject({ method: 'POST', url: '/auth/login-intents' })).json() as CreatedIntent).links).not.toHaveProperty('whatsapp');
    expect(off.logs.join('')).toContain('WhatsApp is off');
  });
});
