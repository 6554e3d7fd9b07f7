import { decodeJwt } from 'jose';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, signInBySms, type TokenPair } from './helpers/app.js';
import { startStubServer } from './helpers/stub-server.js';
import { botApiAnswersOk, TELEGRAM_ENV } from './helpers/telegram.js';
import { logInWithTelegram, startTelegramOidcStandIn, TELEGRAM_OIDC, type TelegramAccount } from './helpers/telegram-oidc.js';

const REDIRECT_URI = `${TELEGRAM_OIDC.publicUrl}/auth/telegram/callback`;
const standIn = await startTelegramOidcStandIn(REDIRECT_URI);
const botApi = await startStubServer();
botApiAnswersOk(botApi);
afterAll(async () => {
  await standIn.close();
  await botApi.close();
});

const testApp = await buildTestApp({
  ...TELEGRAM_ENV,
  TELEGRAM_API_ROOT: botApi.url,
  TELEGRAM_OIDC_CLIENT_ID: TELEGRAM_OIDC.clientId,
  TELEGRAM_OIDC_CLIENT_SECRET: TELEGRAM_OIDC.clientSecret,
  TELEGRAM_OIDC_ISSUER: standIn.issuer,
  TELEGRAM_OIDC_RETURN_ORIGINS: 'https://app.example.com',
  PUBLIC_URL: TELEGRAM_OIDC.publicUrl,
});
const { app, clock, database } = testApp;
const users = database.connection.collection('users');

let counter = 0;
/** A Telegram account with a '+'-less UK mobile number, as Telegram sends it. */
function newAccount(overrides: Partial<TelegramAccount> = {}): TelegramAccount {
  counter += 1;
  return {
    sub: `tg-sub-${counter}-${Date.now()}`,
    id: 5_100_000 + counter,
    name: `Person ${counter}`,
    username: `person_${counter}`,
    phone: `447912${String(300_000 + counter)}`,
    ...overrides,
  };
}
const e164 = (account: TelegramAccount) => `+${account.phone}`;

beforeEach(() => {
  // The stand-in signs with the real time; our clock starts there, and tests move it from there.
  clock.set(new Date());
  standIn.tamper(undefined);
});

describe('Log in with Telegram', () => {
  it('sends the browser to Telegram with PKCE (S256), state, nonce and the configured scopes', async () => {
    standIn.nextLogin(newAccount());
    const { start } = await logInWithTelegram(app);
    const location = new URL(String(start.headers.location));
    expect(location.origin + location.pathname).toBe(`${standIn.issuer}/auth`);
    expect(Object.fromEntries(location.searchParams)).toMatchObject({
      client_id: TELEGRAM_OIDC.clientId,
      redirect_uri: REDIRECT_URI,
      response_type: 'code',
      scope: 'openid profile phone',
      code_challenge_method: 'S256',
      state: expect.stringMatching(/^[\w-]{20,}$/),
      nonce: expect.stringMatching(/^[\w-]{20,}$/),
      code_challenge: expect.stringMatching(/^[\w-]{43}$/),
    });
    expect(String(start.headers['set-cookie'])).toMatch(/^cg_tg_login=[\w-]{43}; Path=\/auth\/telegram; Max-Age=600; HttpOnly; SameSite=Lax; Secure$/);
    expect(start.headers['cache-control']).toBe('no-store');
  });

  it('logs a new person in: tokens with amr telegram and the phone Telegram verified, in E.164', async () => {
    const account = newAccount();
    standIn.nextLogin(account);
    const { callback } = await logInWithTelegram(app);
    expect(callback.statusCode).toBe(200);
    expect(callback.headers['cache-control']).toBe('no-store');
    const tokens = callback.json() as TokenPair;
    expect(tokens.user).toMatchObject({ phone: e164(account), telegram: { id: account.id, username: account.username } });
    const claims = decodeJwt(tokens.accessToken);
    expect(claims).toMatchObject({ sub: tokens.user.id, amr: ['telegram'], phone_number: e164(account), phone_number_verified: true });
    // Matched by the Telegram id (the bot's from.id); Telegram's `sub` is kept too.
    expect(await users.findOne({ 'telegram.id': account.id })).toMatchObject({ phone: e164(account), telegram: { sub: account.sub } });

    // The code exchange used HTTP Basic client authentication and the PKCE verifier.
    const exchange = standIn.tokenRequests.at(-1)!;
    expect(exchange.authorization).toBe(`Basic ${Buffer.from(`${TELEGRAM_OIDC.clientId}:${TELEGRAM_OIDC.clientSecret}`).toString('base64')}`);
    expect(new URLSearchParams(exchange.body).get('code_verifier')).toMatch(/^[\w-]{43,128}$/);
  });

  it('finds the same user again by Telegram id on the next login', async () => {
    const account = newAccount();
    standIn.nextLogin(account);
    const first = (await logInWithTelegram(app)).callback.json() as TokenPair;
    const second = (await logInWithTelegram(app)).callback.json() as TokenPair;
    expect(second.user.id).toBe(first.user.id);
    expect(await users.countDocuments({ 'telegram.id': account.id })).toBe(1);
  });

  it('gives the same user that an SMS login of that phone gets, merging as a shared contact does (identity.linked, merged)', async () => {
    const account = newAccount();
    const bySms = await signInBySms(testApp, e164(account));
    standIn.nextLogin(account);
    const { callback } = await logInWithTelegram(app);
    expect(callback.statusCode).toBe(200);
    const byTelegram = callback.json() as TokenPair;
    expect(byTelegram.user.id).toBe(bySms.user.id);
    expect(byTelegram.user).toMatchObject({ phone: e164(account), telegram: { id: account.id } });
    // The audit trail writes in batches (a few ms behind): flush before reading it.
    await app.services.audit.flush();
    const linked = await database.connection.collection('audit_events').findOne({ type: 'identity.linked', userId: (await users.findOne({ phone: e164(account) }))!._id });
    expect(linked).toMatchObject({ channel: 'telegram', detail: { outcome: 'merged', via: 'telegram_login', retiredUserId: expect.any(String) } });
  });

  it('logs in without a phone when the person does not share it', async () => {
    const account = newAccount({ phone: undefined });
    standIn.nextLogin(account);
    const tokens = (await logInWithTelegram(app)).callback.json() as TokenPair;
    expect(tokens.user.phone).toBeNull();
    expect(decodeJwt(tokens.accessToken).phone_number).toBeUndefined();
  });

  it('keeps a phone that already belongs to a user with another Telegram account there: the person logs in as their own Telegram user, without it', async () => {
    const owner = newAccount();
    standIn.nextLogin(owner);
    const ownerTokens = (await logInWithTelegram(app)).callback.json() as TokenPair;

    const other = newAccount({ phone: owner.phone });
    standIn.nextLogin(other);
    const { callback } = await logInWithTelegram(app);
    expect(callback.statusCode).toBe(200);
    const tokens = callback.json() as TokenPair;
    expect(tokens.user.id).not.toBe(ownerTokens.user.id);
    expect(tokens.user).toMatchObject({ phone: null, telegram: { id: other.id } });
    expect(decodeJwt(tokens.accessToken).phone_number).toBeUndefined();
    expect(await users.findOne({ phone: e164(owner) })).toMatchObject({ telegram: { id: owner.id } });
  });

  it('gives a blocked user no tokens: 403 user_blocked', async () => {
    const account = newAccount();
    standIn.nextLogin(account);
    await logInWithTelegram(app);
    await users.updateOne({ 'telegram.id': account.id }, { $set: { status: 'blocked' } });
    const { callback } = await logInWithTelegram(app);
    expect(callback.statusCode).toBe(403);
    expect(callback.json()).toMatchObject({ error: 'user_blocked' });
  });
});

describe('refusals', () => {
  const expectNoUser = async (account: TelegramAccount) => expect(await users.countDocuments({ 'telegram.id': account.id })).toBe(0);

  it('refuses a callback whose state does not match with 400 invalid_state, exchanging nothing', async () => {
    const account = newAccount();
    standIn.nextLogin(account);
    const exchanges = standIn.tokenRequests.length;
    const { callback } = await logInWithTelegram(app, { alterCallback: (url) => url.searchParams.set('state', 'not-the-state-we-sent') });
    expect(callback.statusCode).toBe(400);
    expect(callback.json()).toMatchObject({ error: 'invalid_state' });
    expect(standIn.tokenRequests.length).toBe(exchanges);
    await expectNoUser(account);
  });

  it.each([
    ['a wrong nonce', { claims: (claims: Record<string, unknown>) => ({ ...claims, nonce: 'someone-elses-nonce' }) }],
    ['a token signed by another key', { signWithOtherKey: true }],
    ['a wrong audience', { claims: (claims: Record<string, unknown>) => ({ ...claims, aud: '999999999' }) }],
    ['another issuer', { claims: (claims: Record<string, unknown>) => ({ ...claims, iss: 'https://oauth.telegram.example' }) }],
  ])('refuses an ID token with %s with 401 invalid_token', async (_case, tamper) => {
    const account = newAccount();
    standIn.nextLogin(account);
    standIn.tamper(tamper);
    const { callback } = await logInWithTelegram(app);
    expect(callback.statusCode).toBe(401);
    expect(callback.json()).toMatchObject({ error: 'invalid_token' });
    await expectNoUser(account);
  });

  it('refuses an expired ID token with 401 token_expired', async () => {
    const account = newAccount();
    standIn.nextLogin(account);
    // The stand-in's ID tokens live 60 s; openid-client allows 30 s of clock tolerance.
    const { callback } = await logInWithTelegram(app, { beforeCallback: () => clock.advance(120) });
    expect(callback.statusCode).toBe(401);
    expect(callback.json()).toMatchObject({ error: 'token_expired' });
    await expectNoUser(account);
  });

  it('ends a denied consent with 403 access_denied', async () => {
    standIn.nextLogin('deny');
    const { callback, callbackUrl } = await logInWithTelegram(app);
    expect(callbackUrl.searchParams.get('error')).toBe('access_denied');
    expect(callback.statusCode).toBe(403);
    expect(callback.json()).toMatchObject({ error: 'access_denied', message: expect.stringContaining('did not allow') });
  });

  it('shows a browser a clear page instead of JSON', async () => {
    standIn.nextLogin('deny');
    const { callback } = await logInWithTelegram(app, { accept: 'text/html,application/xhtml+xml' });
    expect(callback.statusCode).toBe(403);
    expect(callback.headers['content-type']).toMatch(/^text\/html/);
    expect(callback.body).toContain('You did not allow the login in Telegram');
    expect(callback.body).toContain('href="/auth/telegram/login"');
  });

  it('refuses a callback in a browser that did not start the login (no flow cookie) with 400 invalid_state', async () => {
    const account = newAccount();
    standIn.nextLogin(account);
    const { callback } = await logInWithTelegram(app, { cookie: null });
    expect(callback.statusCode).toBe(400);
    expect(callback.json()).toMatchObject({ error: 'invalid_state' });
    await expectNoUser(account);
  });

  it('completes a login once: a replayed callback gets 400 invalid_state', async () => {
    standIn.nextLogin(newAccount());
    const run = await logInWithTelegram(app);
    expect(run.callback.statusCode).toBe(200);
    const replay = await app.inject({
      method: 'GET',
      url: `${run.callbackUrl.pathname}${run.callbackUrl.search}`,
      headers: { cookie: String(run.start.headers['set-cookie']).split(';')[0]! },
    });
    expect(replay.statusCode).toBe(400);
    expect(replay.json()).toMatchObject({ error: 'invalid_state' });
  });

  it('refuses a login that took longer than ten minutes with 410 expired', async () => {
    standIn.nextLogin(newAccount());
    const { callback } = await logInWithTelegram(app, { beforeCallback: () => clock.advance(601) });
    expect(callback.statusCode).toBe(410);
    expect(callback.json()).toMatchObject({ error: 'expired' });
  });

  it('answers 503 service_unavailable, never a 500, when Telegram does not answer', async () => {
    const stub = await startStubServer();
    stub.respond(() => ({ status: 502, body: 'Bad Gateway' }));
    const unreachable = await buildTestApp(
      {
        TELEGRAM_OIDC_CLIENT_ID: TELEGRAM_OIDC.clientId,
        TELEGRAM_OIDC_CLIENT_SECRET: TELEGRAM_OIDC.clientSecret,
        TELEGRAM_OIDC_ISSUER: stub.url,
        PUBLIC_URL: TELEGRAM_OIDC.publicUrl,
      },
      { database, clock },
    );
    const response = await unreachable.app.inject({ method: 'GET', url: '/auth/telegram/login' });
    await stub.close();
    expect(response.statusCode).toBe(503);
    expect(response.json()).toMatchObject({ error: 'service_unavailable' });
  });

  it.each(['https://evil.example/cb', '//evil.example/cb', '/\\evil.example', 'javascript:alert(1)', 'https://app.example.com.evil.example/'])(
    'refuses return_to %s with 400 before sending anyone to Telegram',
    async (returnTo) => {
      const response = await app.inject({ method: 'GET', url: `/auth/telegram/login?return_to=${encodeURIComponent(returnTo)}` });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ error: 'invalid_request', message: expect.stringContaining('return_to') });
      expect(response.headers['set-cookie']).toBeUndefined();
    },
  );
});

describe('returning to a page', () => {
  it('sends the tokens back to an allowed return_to in the URL fragment only', async () => {
    const account = newAccount();
    standIn.nextLogin(account);
    const { callback } = await logInWithTelegram(app, { query: `return_to=${encodeURIComponent('https://app.example.com/signed-in?from=tg')}` });
    expect(callback.statusCode).toBe(303);
    const location = new URL(String(callback.headers.location));
    expect(location.origin + location.pathname).toBe('https://app.example.com/signed-in');
    expect(Object.fromEntries(location.searchParams)).toEqual({ from: 'tg', telegram_login: 'ok' });
    const fragment = new URLSearchParams(location.hash.slice(1));
    expect(fragment.get('token_type')).toBe('Bearer');
    expect(decodeJwt(fragment.get('access_token')!)).toMatchObject({ amr: ['telegram'], phone_number: e164(account) });
    expect(fragment.get('refresh_token')).toMatch(/^cgrt_/);
  });

  it('sends errors back to return_to as telegram_error', async () => {
    standIn.nextLogin('deny');
    const { callback } = await logInWithTelegram(app, { query: 'return_to=%2Flogin%3Fstep%3D2' });
    expect(callback.statusCode).toBe(303);
    expect(callback.headers.location).toBe('/login?step=2&telegram_login=error&telegram_error=access_denied');
  });

  async function createIntent() {
    const response = await app.inject({
      method: 'POST',
      url: '/auth/login-intents',
      headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36 <b>Support</b>' },
      remoteAddress: '198.51.100.23',
    });
    const created = response.json() as { intentId: string; pollToken: string; links: { telegram: string } };
    return { ...created, startToken: new URL(created.links.telegram).searchParams.get('start')! };
  }
  const pollIntent = async (intent: { intentId: string; pollToken: string }) =>
    (await app.inject({ method: 'GET', url: `/auth/login-intents/${intent.intentId}`, headers: { authorization: `Bearer ${intent.pollToken}` } })).json() as {
      status: string;
    } & TokenPair;

  it('completes a login intent once the person confirms the browser shown: the browser polling it gets the tokens', async () => {
    const intent = await createIntent();
    const account = newAccount();
    standIn.nextLogin(account);
    const { callback } = await logInWithTelegram(app, {
      query: `intent=${intent.startToken}&return_to=${encodeURIComponent('/interaction/abc')}`,
      accept: 'text/html',
    });
    expect(callback.statusCode).toBe(200);
    expect(callback.body).toContain('Sign in this browser?');
    expect(callback.body).toContain('Chrome on Windows, IP 198.51.100.23');
    expect(callback.body).not.toContain('Support');
    // Nothing is approved before the answer: a link to someone else's intent gets no tokens by itself.
    expect((await pollIntent(intent)).status).toBe('pending');

    const confirmToken = /name="confirmToken" value="([\w-]{43})"/.exec(callback.body)![1]!;
    const confirmed = await app.inject({
      method: 'POST',
      url: '/auth/telegram/confirm',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
      payload: `confirmToken=${confirmToken}&decision=confirm`,
    });
    expect(confirmed.statusCode).toBe(303);
    expect(confirmed.headers.location).toBe('/interaction/abc?telegram_login=approved');

    const approved = await pollIntent(intent);
    expect(approved.status).toBe('approved');
    expect(decodeJwt(approved.accessToken)).toMatchObject({ amr: ['telegram'], phone_number: e164(account) });
    expect(approved.user).toMatchObject({ telegram: { id: account.id } });

    const again = await app.inject({ method: 'POST', url: '/auth/telegram/confirm', payload: { confirmToken, decision: 'confirm' } });
    expect(again.statusCode).toBe(400);
    expect(again.json().error).toBe('invalid_state');
  });

  it('lets the person cancel a login intent they do not recognise (JSON clients too)', async () => {
    const intent = await createIntent();
    standIn.nextLogin(newAccount());
    const { callback } = await logInWithTelegram(app, { query: `intent=${intent.startToken}` });
    expect(callback.statusCode).toBe(200);
    const pending = callback.json() as { status: string; confirmToken: string; device: string; ip: string };
    expect(pending).toMatchObject({ status: 'confirmation_required', device: 'Chrome on Windows', ip: '198.51.100.23' });

    const cancelled = await app.inject({ method: 'POST', url: '/auth/telegram/confirm', payload: { confirmToken: pending.confirmToken, decision: 'cancel' } });
    expect(cancelled.statusCode).toBe(200);
    expect(cancelled.json()).toEqual({ status: 'rejected' });
    expect((await pollIntent(intent)).status).toBe('rejected');
  });

  it('approves a login intent at once with INTENT_REQUIRE_CONFIRM=false', async () => {
    const direct = await buildTestApp(
      {
        ...TELEGRAM_ENV,
        TELEGRAM_API_ROOT: botApi.url,
        TELEGRAM_OIDC_CLIENT_ID: TELEGRAM_OIDC.clientId,
        TELEGRAM_OIDC_CLIENT_SECRET: TELEGRAM_OIDC.clientSecret,
        TELEGRAM_OIDC_ISSUER: standIn.issuer,
        PUBLIC_URL: TELEGRAM_OIDC.publicUrl,
        INTENT_REQUIRE_CONFIRM: 'false',
      },
      { database, clock },
    );
    const created = (await direct.app.inject({ method: 'POST', url: '/auth/login-intents' })).json() as { intentId: string; pollToken: string; links: { telegram: string } };
    standIn.nextLogin(newAccount());
    const { callback } = await logInWithTelegram(direct.app, { query: `intent=${new URL(created.links.telegram).searchParams.get('start')}&return_to=%2Fdone` });
    expect(callback.statusCode).toBe(303);
    expect(callback.headers.location).toBe('/done?telegram_login=approved');
    const poll = await direct.app.inject({ method: 'GET', url: `/auth/login-intents/${created.intentId}`, headers: { authorization: `Bearer ${created.pollToken}` } });
    expect(poll.json().status).toBe('approved');
  });

  it('refuses an unknown login intent with 404 and issues nothing', async () => {
    const account = newAccount();
    standIn.nextLogin(account);
    const { callback } = await logInWithTelegram(app, { query: `intent=${'x'.repeat(43)}` });
    expect(callback.statusCode).toBe(404);
    expect(callback.json()).toMatchObject({ error: 'not_found' });
  });
});
