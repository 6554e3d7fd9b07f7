import { decodeJwt } from 'jose';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { registerTelegramWebhook } from '../bots/telegram/register-webhook.js';
import { buildTestApp, signInBySms, type TokenPair } from './helpers/app.js';
import { startStubServer } from './helpers/stub-server.js';
import { WHATSAPP_ENV } from './helpers/whatsapp.js';
import {
  botApiAnswersOk,
  botCalls,
  callbackUpdate,
  contactUpdate,
  deliverUpdate,
  signWidget,
  TELEGRAM_ENV,
  textUpdate,
  type TelegramPerson,
} from './helpers/telegram.js';

const api = await startStubServer();
afterAll(() => api.close());
const testApp = await buildTestApp({ ...TELEGRAM_ENV, TELEGRAM_API_ROOT: api.url, DEFAULT_COUNTRY: 'GB' });
const { app, clock, database, sms } = testApp;
const callsAtStart = api.requests.length;

beforeEach(() => {
  api.requests.length = 0;
  botApiAnswersOk(api);
});

let personCounter = 0;
const newPerson = (): TelegramPerson => {
  personCounter += 1;
  return { id: 900_000 + personCounter, first_name: `Tester${personCounter}`, username: `tester_${personCounter}` };
};
let phoneCounter = 0;
const newPhone = () => `+447911${String(500 + (phoneCounter += 1)).padStart(6, '0')}`;

interface CreatedIntent {
  intentId: string;
  pollToken: string;
  code: string;
  links: Record<string, string>;
}

async function createIntent(): Promise<CreatedIntent & { startToken: string }> {
  const response = await app.inject({
    method: 'POST',
    url: '/auth/login-intents',
    headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0) Chrome/141.0' },
    remoteAddress: '198.51.100.23',
  });
  const intent = response.json() as CreatedIntent;
  return { ...intent, startToken: new URL(intent.links.telegram!).searchParams.get('start')! };
}

const poll = async (intent: CreatedIntent) =>
  (
    await app.inject({ method: 'GET', url: `/auth/login-intents/${intent.intentId}`, headers: { authorization: `Bearer ${intent.pollToken}` } })
  ).json() as { status: string } & Partial<TokenPair>;

const findUser = (filter: object) => database.connection.collection('users').findOne(filter);

/** Opens the deep link: /start <token>, and returns the prompt the bot sent. */
async function openDeepLink(person: TelegramPerson, intent: { startToken: string }) {
  await deliverUpdate(app, textUpdate(person, `/start ${intent.startToken}`, clock.now()));
  return botCalls(api).find((call) => call.method === 'sendMessage' && call.body.chat_id === person.id)!;
}

async function linkOwnPhone(person: TelegramPerson, phone: string) {
  await deliverUpdate(app, contactUpdate(person, { phone_number: phone.slice(1), first_name: person.first_name, user_id: person.id }, clock.now()));
}

describe('the webhook', () => {
  it('makes no call to Telegram when the gateway starts', () => {
    expect(callsAtStart).toBe(0);
  });

  it.each([
    ['a missing', null],
    ['a wrong', 'not-the-secret-at-all'],
  ])('refuses %s secret token with 401 and handles nothing', async (_case, secret) => {
    const person = newPerson();
    const response = await deliverUpdate(app, textUpdate(person, '/start', clock.now()), secret);
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: 'unauthorized' });
    expect(api.requests).toHaveLength(0);
  });

  it('handles a redelivered update once', async () => {
    const update = textUpdate(newPerson(), '/help', clock.now());
    expect((await deliverUpdate(app, update)).statusCode).toBe(200);
    expect((await deliverUpdate(app, update)).statusCode).toBe(200);
    expect(botCalls(api).filter((call) => call.method === 'sendMessage')).toHaveLength(1);
  });

  it('answers 200 to an update of an unexpected shape and ignores it', async () => {
    const response = await deliverUpdate(app, { hello: 'world' });
    expect(response.statusCode).toBe(200);
    expect(api.requests).toHaveLength(0);
  });

  it('ignores button presses in inline messages, which have no chat', async () => {
    const person = newPerson();
    const update = callbackUpdate(person, 'confirm:abc', 1, clock.now()) as { callback_query: Record<string, unknown> };
    delete update.callback_query.message;
    update.callback_query.inline_message_id = 'AAAAAQ';
    expect((await deliverUpdate(app, update)).statusCode).toBe(200);
    expect(api.requests).toHaveLength(0);
  });

  it('ignores messages in group chats', async () => {
    const person = newPerson();
    await deliverUpdate(app, textUpdate(person, '/otp', clock.now(), { id: -100123, type: 'supergroup', title: 'Friends' }));
    expect(api.requests).toHaveLength(0);
  });
});

describe('signing in on the web through the bot', () => {
  it('links to the bot with a start token that fits Telegram’s deep-link rules', async () => {
    const intent = await createIntent();
    expect(intent.links.telegram).toMatch(/^https:\/\/t\.me\/chatgate_test_bot\?start=[A-Za-z0-9_-]{1,64}$/);
  });

  it('asks for confirmation showing the browser, then signs the web session in with amr telegram', async () => {
    const person = newPerson();
    const intent = await createIntent();
    const prompt = await openDeepLink(person, intent);
    expect(prompt.body.text).toContain('Device: Chrome 141 on Windows 10');
    expect(prompt.body.text).toContain('198.51.100.23');
    expect(prompt.body.reply_markup!.inline_keyboard![0]!.map((button) => [button.text, button.callback_data])).toEqual([
      ['Confirm', `confirm:${intent.intentId}`],
      ['Cancel', `cancel:${intent.intentId}`],
    ]);
    expect(await poll(intent)).toMatchObject({ status: 'pending' });

    await deliverUpdate(app, callbackUpdate(person, `confirm:${intent.intentId}`, 77, clock.now()));
    const calls = botCalls(api);
    expect(calls.find((call) => call.method === 'answerCallbackQuery')).toBeTruthy();
    expect(calls.find((call) => call.method === 'editMessageText')?.body).toMatchObject({ chat_id: person.id, message_id: 77, text: expect.stringContaining('signed in') });

    const approved = await poll(intent);
    expect(approved).toMatchObject({ status: 'approved', user: { telegram: { id: person.id, username: person.username } } });
    expect(decodeJwt(approved.accessToken!)).toMatchObject({ amr: ['telegram'], sub: approved.user!.id });
    expect(await poll(intent)).toEqual({ status: 'consumed' });
  });

  it('refuses a confirmation from another Telegram user, privately', async () => {
    const owner = newPerson();
    const intruder = newPerson();
    const intent = await createIntent();
    await openDeepLink(owner, intent);
    api.requests.length = 0;
    await deliverUpdate(app, callbackUpdate(intruder, `confirm:${intent.intentId}`, 78, clock.now()));
    expect(botCalls(api)).toEqual([
      { method: 'answerCallbackQuery', body: expect.objectContaining({ show_alert: true, text: expect.stringContaining('another account') }) },
    ]);
    expect(await poll(intent)).toMatchObject({ status: 'pending' });
  });

  it('reports rejected to the browser when the person taps Cancel', async () => {
    const person = newPerson();
    const intent = await createIntent();
    await openDeepLink(person, intent);
    await deliverUpdate(app, callbackUpdate(person, `cancel:${intent.intentId}`, 79, clock.now()));
    expect(botCalls(api).find((call) => call.method === 'editMessageText')?.body.text).toContain('Cancelled');
    expect(await poll(intent)).toEqual({ status: 'rejected' });
  });

  it('treats the start token as single-use: another account opening the link is told it is unknown', async () => {
    const intent = await createIntent();
    await openDeepLink(newPerson(), intent);
    const other = newPerson();
    const reply = await openDeepLink(other, intent);
    expect(reply.body.text).toContain('unknown');
    expect(reply.body.reply_markup?.inline_keyboard).toBeUndefined();
  });

  it('says so for an unknown or expired token', async () => {
    const person = newPerson();
    expect((await openDeepLink(person, { startToken: 'no-such-token' })).body.text).toContain('unknown');
    const intent = await createIntent();
    clock.advance(301);
    api.requests.length = 0;
    expect((await openDeepLink(person, intent)).body.text).toContain('expired');
  });

  it('keeps the approval when Telegram refuses the final reply, and logs the refusal', async () => {
    const person = newPerson();
    const intent = await createIntent();
    await openDeepLink(person, intent);
    api.respond(() => ({ status: 400, body: { ok: false, error_code: 400, description: 'Bad Request: message to edit not found' } }));
    const response = await deliverUpdate(app, callbackUpdate(person, `confirm:${intent.intentId}`, 80, clock.now()));
    expect(response.statusCode).toBe(200);
    expect(await poll(intent)).toMatchObject({ status: 'approved' });
    expect(testApp.logs.join('')).toContain('message to edit not found');
  });

  it('retries an update whose prompt Telegram could not take, keeping the bot token out of the record and the log', async () => {
    const person = newPerson();
    const intent = await createIntent();
    // A proxy's HTML error page: Telegraf's client fails on it with the request URL (and the token) in its message.
    api.respond(() => ({ status: 404, body: '<html>Not Found</html>' }));
    const update = textUpdate(person, `/start ${intent.startToken}`, clock.now());
    expect((await deliverUpdate(app, update)).statusCode).toBe(200);
    const stored = await database.connection.collection('inbound_messages').findOne({ _id: `telegram:${update.update_id}` as never });
    expect(stored).toMatchObject({ status: 'failed', attempts: 1 });
    expect(stored!.lastError).toContain('/bot[redacted]/sendMessage');
    expect(stored!.lastError).not.toContain(TELEGRAM_ENV.TELEGRAM_BOT_TOKEN.split(':')[1]);
    expect(testApp.logs.join('')).not.toContain(TELEGRAM_ENV.TELEGRAM_BOT_TOKEN.split(':')[1]);

    botApiAnswersOk(api);
    clock.advance(11);
    await app.services.inbox.sweep();
    expect(botCalls(api).find((call) => call.method === 'sendMessage')?.body.reply_markup?.inline_keyboard).toBeTruthy();
  });
});

describe('a sign-in started on the hosted login page in Hindi', () => {
  it('is prompted in Hindi with Hindi buttons, the device, IP and time as they are, and the Hindi approval', async () => {
    const person = newPerson();
    const response = await app.inject({
      method: 'POST',
      url: '/login/api/intents',
      payload: { chat: 'telegram', language: 'hi' },
      headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0) Chrome/141.0' },
      remoteAddress: '198.51.100.23',
    });
    expect(response.statusCode).toBe(201);
    const created = response.json() as CreatedIntent & { link: string };
    const intent = { ...created, startToken: new URL(created.link).searchParams.get('start')! };
    const prompt = await openDeepLink(person, intent);
    expect(prompt.body.text).toMatch(/^Chatgate में साइन इन करें\?\n/);
    expect(prompt.body.text).toContain('• डिवाइस: Chrome 141 on Windows 10\n• IP पता: 198.51.100.23\n');
    expect(prompt.body.reply_markup!.inline_keyboard![0]!.map((button) => button.text)).toEqual(['पुष्टि करें', 'रद्द करें']);
    await deliverUpdate(app, callbackUpdate(person, `confirm:${intent.intentId}`, 80, clock.now()));
    expect(botCalls(api).find((call) => call.method === 'editMessageText')?.body.text).toBe('हो गया: वेबसाइट में साइन इन हो गया है। आप उस पर वापस जा सकते हैं।');
    expect(await poll(intent)).toMatchObject({ status: 'approved' });
  });
});

describe('/start alone, /help and anything else', () => {
  it('welcomes the person and offers to share their phone number', async () => {
    const person = newPerson();
    await deliverUpdate(app, textUpdate(person, '/start', clock.now()));
    const [welcome] = botCalls(api);
    expect(welcome!.body.text).toContain('Share your phone number');
    expect(welcome!.body.reply_markup!.keyboard![0]![0]).toMatchObject({ text: 'Share my phone number', request_contact: true });
  });

  it('answers /help and other text with the command list', async () => {
    const person = newPerson();
    await deliverUpdate(app, textUpdate(person, '/help', clock.now()));
    await deliverUpdate(app, textUpdate(person, 'hi there', clock.now()));
    expect(botCalls(api).map((call) => call.body.text)).toEqual([expect.stringContaining('/otp'), expect.stringContaining('/otp')]);
  });
});

describe('sharing a phone number', () => {
  it('links the sender’s own contact to their Telegram user', async () => {
    const person = newPerson();
    const phone = newPhone();
    await linkOwnPhone(person, phone);
    expect(botCalls(api)[0]!.body).toMatchObject({ text: expect.stringContaining(phone), reply_markup: { remove_keyboard: true } });
    expect(await findUser({ 'telegram.id': person.id })).toMatchObject({ phone });
  });

  it('refuses someone else’s contact card', async () => {
    const person = newPerson();
    await deliverUpdate(app, contactUpdate(person, { phone_number: newPhone().slice(1), first_name: 'Someone', user_id: 12345 }, clock.now()));
    await deliverUpdate(app, contactUpdate(person, { phone_number: newPhone().slice(1), first_name: 'No account' }, clock.now()));
    expect(botCalls(api).map((call) => call.body.text)).toEqual([expect.stringContaining('your own'), expect.stringContaining('your own')]);
    expect((await findUser({ 'telegram.id': person.id }))?.phone).toBeUndefined();
  });

  it('moves a Telegram-only account onto the existing user of that phone: one user across SMS and Telegram', async () => {
    const person = newPerson();
    const phone = newPhone();
    const viaSms = await signInBySms(testApp, phone);
    // Signed in with Telegram before sharing the phone: a separate, Telegram-only user with a session.
    const widgetLogin = await app.inject({
      method: 'POST',
      url: '/auth/telegram/widget',
      payload: signWidget({ id: person.id, first_name: person.first_name, auth_date: Math.floor(clock.now().getTime() / 1000) }),
    });
    const telegramTokens = widgetLogin.json() as TokenPair;
    const telegramOnly = await findUser({ 'telegram.id': person.id });
    expect(telegramOnly?._id.toString()).toBe(telegramTokens.user.id);
    expect(telegramOnly?._id.toString()).not.toBe(viaSms.user.id);

    await linkOwnPhone(person, phone);
    const merged = await findUser({ 'telegram.id': person.id });
    expect(merged?._id.toString()).toBe(viaSms.user.id);
    expect(merged).toMatchObject({ phone, telegram: { id: person.id, username: person.username } });
    expect(await findUser({ _id: telegramOnly!._id })).toBeNull();
    await app.services.audit.flush();
    const audit = await database.connection.collection('audit_events').findOne({ type: 'identity.linked', 'detail.outcome': 'merged', userId: merged!._id });
    expect(audit?.detail).toEqual({ outcome: 'merged', retiredUserId: telegramOnly!._id.toString() });
    const staleRefresh = await app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken: telegramTokens.refreshToken } });
    expect(staleRefresh.statusCode).toBe(401);
    expect(staleRefresh.json()).toMatchObject({ error: 'token_revoked' });
    const staleMe = await app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${telegramTokens.accessToken}` } });
    expect(staleMe.json()).toMatchObject({ error: 'token_revoked' });

    // Signing in through the bot now gives the SMS user.
    const intent = await createIntent();
    await openDeepLink(person, intent);
    await deliverUpdate(app, callbackUpdate(person, `confirm:${intent.intentId}`, 81, clock.now()));
    expect((await poll(intent)).user?.id).toBe(viaSms.user.id);
  });

  it('a merge left unfinished by a process that died is taken over once its lease has run out', async () => {
    const person = newPerson();
    const phone = newPhone();
    const viaSms = await signInBySms(testApp, phone);
    await deliverUpdate(app, textUpdate(person, '/start', clock.now()));
    // What a process that died mid-merge leaves behind: the lock, never released (FerretDB has no TTL).
    expect(await app.services.reservations.reserve(`telegram-merge:${person.id}`, 60, { startedAt: clock.now().toISOString() })).toBe(true);

    await linkOwnPhone(person, phone);
    expect(botCalls(api).at(-1)?.body.text).toContain('Something went wrong');
    expect((await findUser({ 'telegram.id': person.id }))?._id.toString()).not.toBe(viaSms.user.id);

    clock.advance(121);
    api.requests.length = 0;
    await linkOwnPhone(person, phone);
    expect(botCalls(api).at(-1)?.body.text).toContain('is now linked');
    expect((await findUser({ 'telegram.id': person.id }))?._id.toString()).toBe(viaSms.user.id);
  });

  it('refuses to move a Telegram account onto a blocked user', async () => {
    const person = newPerson();
    const phone = newPhone();
    await signInBySms(testApp, phone);
    await database.connection.collection('users').updateOne({ phone }, { $set: { status: 'blocked' } });
    await linkOwnPhone(person, phone);
    expect(botCalls(api).at(-1)!.body.text).toContain('already belongs to another account');
    expect((await findUser({ phone }))?.telegram).toBeUndefined();
  });

  it('refuses to link a phone whose user already has another Telegram account', async () => {
    const first = newPerson();
    const second = newPerson();
    const phone = newPhone();
    await linkOwnPhone(first, phone);
    await linkOwnPhone(second, phone);
    expect(botCalls(api)[1]!.body.text).toContain('already belongs to another account');
    expect((await findUser({ 'telegram.id': second.id }))?.phone).toBeUndefined();
    expect((await findUser({ phone }))?.telegram.id).toBe(first.id);
  });
});

describe('/otp', () => {
  it('asks for the phone number first when none is linked', async () => {
    const person = newPerson();
    await deliverUpdate(app, textUpdate(person, '/otp', clock.now()));
    expect(botCalls(api)[0]!.body).toMatchObject({ text: expect.stringContaining('phone number'), reply_markup: { keyboard: [[expect.objectContaining({ request_contact: true })]] } });
  });

  it('sends a code in the chat that signs the person in on the web', async () => {
    const person = newPerson();
    const phone = newPhone();
    await linkOwnPhone(person, phone);
    api.requests.length = 0;
    await deliverUpdate(app, textUpdate(person, '/otp', clock.now()));
    const [reply] = botCalls(api);
    const code = /code is (\d{6})/.exec(reply!.body.text!)![1];
    const verified = await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code } });
    expect(verified.statusCode).toBe(200);
    const tokens = verified.json() as TokenPair;
    expect(decodeJwt(tokens.accessToken)).toMatchObject({ amr: ['telegram'] });
    expect(tokens.user).toMatchObject({ phone, telegram: { id: person.id } });
  });
});

describe('codes requested on the web', () => {
  it('go through the bot with channel telegram when the phone is linked', async () => {
    const person = newPerson();
    const phone = newPhone();
    await linkOwnPhone(person, phone);
    api.requests.length = 0;
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone, channel: 'telegram' } });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ channel: 'telegram' });
    const [sent] = botCalls(api);
    expect(sent).toMatchObject({ method: 'sendMessage', body: { chat_id: person.id } });
    const code = /code is (\d{6})/.exec(sent!.body.text!)![1];
    expect((await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code } })).statusCode).toBe(200);
  });

  it('answer alike whether or not the phone has Telegram linked, sending nothing to an unlinked one', async () => {
    const person = newPerson();
    const linked = newPhone();
    await linkOwnPhone(person, linked);
    api.requests.length = 0;
    const smsBefore = sms.sent.length;
    const unlinked = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: newPhone(), channel: 'telegram' } });
    expect(botCalls(api)).toHaveLength(0);
    expect(sms.sent.length).toBe(smsBefore);
    const reachable = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: linked, channel: 'telegram' } });
    expect(unlinked.statusCode).toBe(200);
    expect(reachable.statusCode).toBe(200);
    const shape = (body: Record<string, unknown>) => ({ ...body, challengeId: typeof body.challengeId });
    expect(shape(unlinked.json())).toEqual(shape(reachable.json()));
    expect(unlinked.json()).toMatchObject({ channel: 'telegram' });
  });

  it('count telegram requests for an unlinked phone in the per-phone limits', async () => {
    const phone = newPhone();
    expect((await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone, channel: 'telegram' } })).statusCode).toBe(200);
    const again = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone, channel: 'telegram' } });
    expect(again.statusCode).toBe(429);
    expect(again.json()).toMatchObject({ error: 'rate_limited' });
  });

  it('pick telegram with channel auto when the phone is linked, and SMS otherwise', async () => {
    const person = newPerson();
    const linked = newPhone();
    await linkOwnPhone(person, linked);
    const viaTelegram = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: linked, channel: 'auto' } });
    expect(viaTelegram.json()).toMatchObject({ channel: 'telegram' });
    const smsBefore = sms.sent.length;
    const viaSms = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: newPhone(), channel: 'auto' } });
    expect(viaSms.json()).toMatchObject({ channel: 'sms' });
    expect(sms.sent.length).toBe(smsBefore + 1);
  });

  it('answer 502 delivery_failed when the Bot API refuses', async () => {
    const person = newPerson();
    const phone = newPhone();
    await linkOwnPhone(person, phone);
    api.respond(() => ({ status: 403, body: { ok: false, error_code: 403, description: 'Forbidden: bot was blocked by the user' } }));
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone, channel: 'telegram' } });
    expect(response.statusCode).toBe(502);
    expect(testApp.logs.join('')).toContain('bot was blocked by the user');
  });
});

describe('the Telegram Login Widget', () => {
  const widget = (fields: Record<string, unknown>) => app.inject({ method: 'POST', url: '/auth/telegram/widget', payload: fields });
  const fieldsFor = (person: TelegramPerson, authDate: number) =>
    signWidget({ id: person.id, first_name: person.first_name, username: person.username!, photo_url: 'https://t.me/i/userpic/320/x.jpg', auth_date: authDate });

  it('signs the person in with amr telegram when the hash is right', async () => {
    const person = newPerson();
    const response = await widget(fieldsFor(person, Math.floor(clock.now().getTime() / 1000) - 60));
    expect(response.statusCode).toBe(200);
    const tokens = response.json() as TokenPair;
    expect(decodeJwt(tokens.accessToken)).toMatchObject({ amr: ['telegram'] });
    expect(tokens.user).toMatchObject({ telegram: { id: person.id, username: person.username } });
  });

  it('matches Telegram’s own hash for a fixed example (string fields, last name and photo included)', async () => {
    // Computed independently (Python's hmac) from Telegram's description of the check.
    const response = await widget({
      id: '424242',
      first_name: 'Ann',
      last_name: 'Lee',
      username: 'ann_tg',
      photo_url: 'https://t.me/i/userpic/320/ann.jpg',
      auth_date: '1795255000',
      hash: '56bbf75cb23ea0dd9ea8f0d38855f5a5462c37bf782e54f3de1c3f09c8753824',
    });
    expect(response.statusCode).toBe(200);
    expect((response.json() as TokenPair).user).toMatchObject({ telegram: { id: 424242, username: 'ann_tg', firstName: 'Ann' } });
  });

  it('accepts a login once: a replayed payload is refused with 401 token_reused', async () => {
    const fields = fieldsFor(newPerson(), Math.floor(clock.now().getTime() / 1000));
    expect((await widget(fields)).statusCode).toBe(200);
    const replay = await widget(fields);
    expect(replay.statusCode).toBe(401);
    expect(replay.json()).toMatchObject({ error: 'token_reused' });
  });

  it('refuses tampered data with 401', async () => {
    const person = newPerson();
    const fields = fieldsFor(person, Math.floor(clock.now().getTime() / 1000));
    const response = await widget({ ...fields, id: person.id + 1 });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: 'invalid_signature' });
    const otherBot = signWidget({ id: person.id, first_name: 'x', auth_date: Math.floor(clock.now().getTime() / 1000) }, '1:another-bot-token-aaaaaaaaaaaa');
    expect((await widget(otherBot)).statusCode).toBe(401);
  });

  it('refuses an auth_date older than TELEGRAM_WIDGET_MAX_AGE_SECONDS with 401', async () => {
    const response = await widget(fieldsFor(newPerson(), Math.floor(clock.now().getTime() / 1000) - 86_401));
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: 'token_expired' });
  });

  it('refuses fields of the wrong shape with 400', async () => {
    const response = await widget({ id: { $gt: 0 }, auth_date: 1, hash: 'x' });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ error: 'invalid_request' });
  });
});

describe('registering the webhook', () => {
  it('calls setWebhook with our URL and the secret', async () => {
    const url = await registerTelegramWebhook({
      token: TELEGRAM_ENV.TELEGRAM_BOT_TOKEN,
      apiRoot: api.url,
      publicUrl: 'https://auth.example.com/',
      secret: TELEGRAM_ENV.TELEGRAM_WEBHOOK_SECRET,
    });
    expect(url).toBe('https://auth.example.com/webhooks/telegram');
    expect(api.requests[0]!.path).toBe(`/bot${TELEGRAM_ENV.TELEGRAM_BOT_TOKEN}/setWebhook`);
    expect(api.requests[0]!.json).toMatchObject({ url, secret_token: TELEGRAM_ENV.TELEGRAM_WEBHOOK_SECRET, allowed_updates: ['message', 'callback_query'] });
  });
});

describe('without INTENT_REQUIRE_CONFIRM', async () => {
  const direct = await buildTestApp({ ...TELEGRAM_ENV, TELEGRAM_API_ROOT: api.url, INTENT_REQUIRE_CONFIRM: 'false' });

  it('approves at once on /start', async () => {
    const created = (await direct.app.inject({ method: 'POST', url: '/auth/login-intents' })).json() as CreatedIntent;
    const startToken = new URL(created.links.telegram!).searchParams.get('start')!;
    await deliverUpdate(direct.app, textUpdate(newPerson(), `/start ${startToken}`, direct.clock.now()));
    const polled = await direct.app.inject({ method: 'GET', url: `/auth/login-intents/${created.intentId}`, headers: { authorization: `Bearer ${created.pollToken}` } });
    expect(polled.json()).toMatchObject({ status: 'approved' });
  });
});

describe('with Telegram off', async () => {
  // WhatsApp on, so login intents are offered at all (with no chat channel they are refused).
  const off = await buildTestApp(WHATSAPP_ENV);

  it('answers 404 on its routes and offers no link', async () => {
    expect((await off.app.inject({ method: 'POST', url: '/webhooks/telegram', payload: { update_id: 1 } })).statusCode).toBe(404);
    expect((await off.app.inject({ method: 'POST', url: '/auth/telegram/widget', payload: {} })).statusCode).toBe(404);
    expect(((await off.app.inject({ method: 'POST', url: '/auth/login-intents' })).json() as CreatedIntent).links).not.toHaveProperty('telegram');
    expect(off.logs.join('')).toContain('Telegram is off');
  });
});

describe('polling mode (local development)', async () => {
  const pollingApi = await startStubServer();
  afterAll(() => pollingApi.close());
  const person = newPerson();
  let served = false;
  pollingApi.respond(async (request) => {
    const method = request.path.split('/').pop();
    if (method === 'getUpdates') {
      if (served) return { body: { ok: true, result: [] }, delayMs: 200 };
      served = true;
      return { body: { ok: true, result: [textUpdate(person, '/help', new Date())] } };
    }
    if (method === 'sendMessage') return { body: { ok: true, result: { message_id: 1, date: 1, chat: { id: person.id, type: 'private' } } } };
    return { body: { ok: true, result: true } };
  });
  const polling = await buildTestApp({ ...TELEGRAM_ENV, TELEGRAM_MODE: 'polling', TELEGRAM_WEBHOOK_SECRET: '', TELEGRAM_API_ROOT: pollingApi.url });

  it('fetches updates itself, answers them, and has no webhook route', async () => {
    const deadline = Date.now() + 5000;
    while (!pollingApi.requests.some((request) => request.path.endsWith('/sendMessage')) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const methods = pollingApi.requests.map((request) => request.path.split('/').pop());
    expect(methods).toContain('getUpdates');
    expect(methods).not.toContain('getMe');
    expect(pollingApi.requests.find((request) => request.path.endsWith('/sendMessage'))?.json).toMatchObject({ chat_id: person.id, text: expect.stringContaining('/otp') });
    expect((await polling.app.inject({ method: 'POST', url: '/webhooks/telegram', payload: { update_id: 1 } })).statusCode).toBe(404);
    await polling.app.close();
  });
});
