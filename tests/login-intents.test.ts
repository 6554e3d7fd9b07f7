import { describe, expect, it } from 'vitest';
import { buildTestApp, signInBySms, uniquePhone } from './helpers/app.js';
import { WHATSAPP_ENV } from './helpers/whatsapp.js';

// WhatsApp on (intents need a chat channel) but without a display number, so it offers no deep link.
const { WHATSAPP_DISPLAY_NUMBER: _noLink, ...whatsappWithoutLink } = WHATSAPP_ENV;
const testApp = await buildTestApp(whatsappWithoutLink);
const { app, clock } = testApp;
const intents = app.services.loginIntents;
const alice = { channel: 'telegram' as const, subject: '1001' };
const mallory = { channel: 'telegram' as const, subject: '6666' };

interface CreatedIntent {
  intentId: string;
  pollToken: string;
  code: string;
  expiresIn: number;
  links: Record<string, string>;
}

async function createIntent(userAgent = 'Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0'): Promise<CreatedIntent> {
  const response = await app.inject({ method: 'POST', url: '/auth/login-intents', headers: { 'user-agent': userAgent } });
  expect(response.statusCode).toBe(201);
  return response.json() as CreatedIntent;
}

const poll = (intent: CreatedIntent, token: string | null = intent.pollToken) =>
  app.inject({
    method: 'GET',
    url: `/auth/login-intents/${intent.intentId}`,
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });

describe('creating a login intent', () => {
  it('answers 201 with an id, a poll token, a short code and no links when the chat channel offers none', async () => {
    const intent = await createIntent();
    expect(intent).toEqual({
      intentId: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
      pollToken: expect.stringMatching(/^cgpt_/),
      code: expect.stringMatching(/^[A-HJ-KM-NP-Z2-9]{6}$/),
      expiresIn: 300,
      links: {},
    });
  });

  it('stores none of its secrets in the clear', async () => {
    const intent = await createIntent();
    const stored = await testApp.database.connection.collection('login_intents').findOne({ _id: intent.intentId as never });
    const text = JSON.stringify(stored);
    expect(text).not.toContain(intent.code);
    expect(text).not.toContain(intent.pollToken);
    expect(stored).toMatchObject({ ip: '127.0.0.1', userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0', status: 'pending' });
  });
});

describe('polling a login intent', () => {
  it('is pending until the chat answers', async () => {
    const intent = await createIntent();
    const response = await poll(intent);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'pending', expiresIn: 300 });
  });

  it('answers 401 for a missing or wrong poll token', async () => {
    const intent = await createIntent();
    const missing = await poll(intent, null);
    expect(missing.statusCode).toBe(401);
    expect(missing.json()).toMatchObject({ error: 'unauthorized', message: expect.any(String) });
    const other = await createIntent();
    expect((await poll(intent, other.pollToken)).statusCode).toBe(401);
  });

  it('answers 404 for an unknown intent and 400 for a malformed id', async () => {
    const response = await app.inject({ method: 'GET', url: '/auth/login-intents/unknownintent', headers: { authorization: 'Bearer x' } });
    expect(response.statusCode).toBe(404);
    const malformed = await app.inject({ method: 'GET', url: '/auth/login-intents/a.b', headers: { authorization: 'Bearer x' } });
    expect(malformed.statusCode).toBe(400);
  });

  it('hands the tokens over exactly once after approval, then says consumed', async () => {
    const intent = await createIntent();
    const summary = await intents.claim({ code: intent.code.toLowerCase().replace(/(...)/, '$1 ') }, alice);
    expect(summary).toMatchObject({ intentId: intent.intentId, ip: '127.0.0.1', userAgent: expect.stringContaining('Firefox') });
    const user = await app.services.identities.resolveByTelegram({ id: 1001, username: 'alice', firstName: 'Alice' });
    await intents.approve(intent.intentId, alice, user);

    const approved = await poll(intent);
    expect(approved.statusCode).toBe(200);
    expect(approved.json()).toMatchObject({
      status: 'approved',
      accessToken: expect.any(String),
      refreshToken: expect.any(String),
      tokenType: 'Bearer',
      expiresIn: 900,
      user: { id: user._id.toString(), telegram: { id: 1001, username: 'alice' } },
    });
    expect((await poll(intent)).json()).toEqual({ status: 'consumed' });
  });

  it('keeps the tokens for a later poll when handing them over fails', async () => {
    const intent = await createIntent();
    await intents.claim({ code: intent.code }, alice);
    const user = await app.services.identities.resolveByTelegram({ id: 1001 });
    await intents.approve(intent.intentId, alice, user);
    await testApp.database.connection.collection('users').updateOne({ _id: user._id }, { $set: { status: 'blocked' } });
    expect((await poll(intent)).json()).toMatchObject({ error: 'user_blocked' });
    await testApp.database.connection.collection('users').updateOne({ _id: user._id }, { $set: { status: 'active' } });
    expect((await poll(intent)).json()).toMatchObject({ status: 'approved', accessToken: expect.any(String) });
    expect((await poll(intent)).json()).toEqual({ status: 'consumed' });
  });

  it('gives the tokens to one of many concurrent polls', async () => {
    const intent = await createIntent();
    await intents.claim({ code: intent.code }, alice);
    await intents.approve(intent.intentId, alice, await app.services.identities.resolveByTelegram({ id: 1001 }));
    const responses = await Promise.all(Array.from({ length: 20 }, () => poll(intent)));
    const statuses = responses.map((response) => (response.json() as { status: string }).status);
    expect(statuses.filter((status) => status === 'approved')).toHaveLength(1);
    expect(statuses.filter((status) => status === 'consumed')).toHaveLength(19);
  });

  it('says rejected when the person declined in the chat', async () => {
    const intent = await createIntent();
    await intents.claim({ code: intent.code }, alice);
    await intents.reject(intent.intentId, alice);
    expect((await poll(intent)).json()).toEqual({ status: 'rejected' });
  });

  it('says expired after INTENT_TTL_SECONDS, and the chat can no longer claim it', async () => {
    const intent = await createIntent();
    clock.advance(300);
    expect((await poll(intent)).json()).toEqual({ status: 'expired' });
    await expect(intents.claim({ code: intent.code }, alice)).rejects.toMatchObject({ code: 'expired' });
  });
});

describe('answering a login intent from a chat', () => {
  it('only lets the account that claimed it approve it', async () => {
    const intent = await createIntent();
    await intents.claim({ code: intent.code }, alice);
    const malloryUser = await app.services.identities.resolveByTelegram({ id: 6666 });
    await expect(intents.approve(intent.intentId, mallory, malloryUser)).rejects.toMatchObject({ code: 'forbidden' });
    await expect(intents.claim({ code: intent.code }, mallory)).rejects.toMatchObject({ code: 'not_found' });
    expect((await poll(intent)).json()).toMatchObject({ status: 'pending' });
  });

  it('lets the claimant claim again (a resent message) but decide only once', async () => {
    const intent = await createIntent();
    await intents.claim({ code: intent.code }, alice);
    await intents.claim({ code: intent.code }, alice);
    const user = await app.services.identities.resolveByTelegram({ id: 1001 });
    await intents.approve(intent.intentId, alice, user);
    await expect(intents.reject(intent.intentId, alice)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('refuses an approval for an unclaimed intent', async () => {
    const intent = await createIntent();
    const user = await app.services.identities.resolveByTelegram({ id: 1001 });
    await expect(intents.approve(intent.intentId, alice, user)).rejects.toMatchObject({ code: 'forbidden' });
  });

  it('refuses unknown codes and start tokens', async () => {
    await expect(intents.claim({ code: 'ZZZZZZ' }, alice)).rejects.toMatchObject({ code: 'not_found' });
    await expect(intents.claim({ startToken: 'nope' }, alice)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('refuses to approve for a blocked user', async () => {
    const intent = await createIntent();
    await intents.claim({ code: intent.code }, alice);
    const tokens = await signInBySms(testApp, uniquePhone());
    await testApp.database.connection.collection('users').updateOne({ phone: tokens.user.phone }, { $set: { status: 'blocked' } });
    const blocked = await app.services.identities.findByPhone(tokens.user.phone!);
    await expect(intents.approve(intent.intentId, alice, blocked!)).rejects.toMatchObject({ code: 'user_blocked' });
  });
});

describe('wrong codes per chat sender', () => {
  it('of 30 concurrent wrong codes from one sender, exactly 10 are looked up and the rest refused with rate_limited', async () => {
    const guesser = { channel: 'whatsapp' as const, subject: '+447911999001' };
    // The right code hides among the guesses: past the tenth wrong one, even it must not be looked up.
    const target = await createIntent();
    const guesses = Array.from({ length: 30 }, (_, index) => `WRNG${String(index).padStart(2, '3')}`);
    const results = await Promise.allSettled([...guesses, target.code].map((code) => intents.claim({ code }, guesser)));
    const codes = results.map((result) => (result.status === 'rejected' ? (result.reason as { code: string }).code : 'claimed'));
    const lookedUp = codes.filter((code) => code !== 'rate_limited').length;
    expect(lookedUp).toBeLessThanOrEqual(11);
    expect(codes.filter((code) => code === 'not_found').length).toBeLessThanOrEqual(10);
    expect(codes.filter((code) => code === 'rate_limited').length).toBeGreaterThanOrEqual(20);
    // Another sender is not affected.
    const intent = await createIntent();
    await expect(intents.claim({ code: intent.code }, { channel: 'whatsapp', subject: '+447911999002' })).resolves.toMatchObject({ intentId: intent.intentId });
  });
});
