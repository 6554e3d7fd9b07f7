import { decodeJwt } from 'jose';
import { Types } from 'mongoose';
import { describe, expect, it } from 'vitest';
import { buildTestApp, signInBySms, uniquePhone, type TokenPair } from './helpers/app.js';

const testApp = await buildTestApp({ OTP_RESEND_SECONDS: '0' });
const { app, clock, database, sms } = testApp;
const db = database.connection;

const bearer = (tokens: TokenPair) => ({ authorization: `Bearer ${tokens.accessToken}` });
const refresh = (refreshToken: string) => app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken } });
const me = (tokens: TokenPair) => app.inject({ method: 'GET', url: '/auth/me', headers: bearer(tokens) });
const CHROME = 'Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36';

async function signInWithDevice(phone: string, userAgent = CHROME): Promise<TokenPair> {
  await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } });
  const verified = await app.inject({ method: 'POST', url: '/auth/otp/verify', headers: { 'user-agent': userAgent }, payload: { phone, code: sms.lastCodeFor(phone) } });
  return verified.json() as TokenPair;
}

async function changePhone(tokens: TokenPair, newPhone: string) {
  const requested = await app.inject({ method: 'POST', url: '/auth/phone/change', headers: bearer(tokens), payload: { newPhone } });
  expect(requested.statusCode).toBe(200);
  return app.inject({ method: 'POST', url: '/auth/phone/change/verify', headers: bearer(tokens), payload: { code: sms.lastCodeFor(newPhone) } });
}

describe('access tokens', () => {
  it('carry auth_time from the login, kept across refreshes', async () => {
    const tokens = await signInBySms(testApp);
    const loginTime = decodeJwt(tokens.accessToken).auth_time;
    expect(loginTime).toBe(Math.floor(clock.now().getTime() / 1000));
    clock.advance(120);
    const refreshed = (await refresh(tokens.refreshToken)).json() as TokenPair;
    expect(decodeJwt(refreshed.accessToken).auth_time).toBe(loginTime);
    expect(decodeJwt(refreshed.accessToken).iat).toBe(Number(loginTime) + 120);
  });
});

describe('GET /auth/sessions', () => {
  it('lists the sessions with device, IP and the current one marked', async () => {
    const phone = uniquePhone();
    const laptop = await signInWithDevice(phone, 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36');
    const mobile = await signInWithDevice(phone);
    const response = await app.inject({ method: 'GET', url: '/auth/sessions', headers: bearer(mobile) });
    expect(response.statusCode).toBe(200);
    const { sessions } = response.json() as { sessions: { id: string; current: boolean; device: string; ip: string; channel: string; createdAt: string; lastUsedAt: string }[] };
    expect(sessions).toHaveLength(2);
    expect(sessions.filter((session) => session.current)).toHaveLength(1);
    const current = sessions.find((session) => session.current)!;
    expect(current).toMatchObject({ device: 'Chrome 126 on Android', ip: '127.0.0.1', channel: 'sms', id: decodeJwt(mobile.accessToken).sid });
    expect(sessions.find((session) => !session.current)).toMatchObject({ device: expect.stringContaining('Windows'), id: decodeJwt(laptop.accessToken).sid });
  });

  it('refuses a request without a token with 401', async () => {
    const response = await app.inject({ method: 'GET', url: '/auth/sessions' });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: 'unauthorized' });
  });
});

describe('DELETE /auth/sessions/:id', () => {
  it('signs one of your own sessions out', async () => {
    const phone = uniquePhone();
    const other = await signInBySms(testApp, phone);
    const mine = await signInBySms(testApp, phone);
    const response = await app.inject({ method: 'DELETE', url: `/auth/sessions/${decodeJwt(other.accessToken).sid as string}`, headers: bearer(mine) });
    expect(response.statusCode).toBe(204);
    expect((await refresh(other.refreshToken)).json()).toMatchObject({ error: 'token_revoked' });
    expect((await me(other)).statusCode).toBe(401);
    expect((await me(mine)).statusCode).toBe(200);
  });

  it("answers 404 for someone else's session id, and leaves it alone", async () => {
    const stranger = await signInBySms(testApp);
    const mine = await signInBySms(testApp);
    const response = await app.inject({ method: 'DELETE', url: `/auth/sessions/${decodeJwt(stranger.accessToken).sid as string}`, headers: bearer(mine) });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toMatchObject({ error: 'not_found' });
    expect((await me(stranger)).statusCode).toBe(200);
  });

  it('answers 404 for an id that is no session id at all', async () => {
    const mine = await signInBySms(testApp);
    const response = await app.inject({ method: 'DELETE', url: '/auth/sessions/nonsense', headers: bearer(mine) });
    expect(response.statusCode).toBe(404);
  });
});

describe('POST /auth/logout-all', () => {
  it('signs every session out, or all but the current one with keepCurrent', async () => {
    const phone = uniquePhone();
    const first = await signInBySms(testApp, phone);
    const second = await signInBySms(testApp, phone);
    const third = await signInBySms(testApp, phone);
    const kept = await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(third), payload: { keepCurrent: true } });
    expect(kept.statusCode).toBe(200);
    expect(kept.json()).toEqual({ revoked: 2 });
    expect((await me(first)).statusCode).toBe(401);
    expect((await me(second)).statusCode).toBe(401);
    expect((await me(third)).statusCode).toBe(200);
    const all = await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(third) });
    expect(all.json()).toEqual({ revoked: 1 });
    expect((await me(third)).json()).toMatchObject({ error: 'token_revoked' });
  });
});

describe('change of phone number', () => {
  it('moves the phone after the code sent to the new number, signs other sessions out and tells the old number', async () => {
    const oldPhone = uniquePhone();
    const newPhone = uniquePhone();
    const elsewhere = await signInBySms(testApp, oldPhone);
    const tokens = await signInBySms(testApp, oldPhone);
    const response = await changePhone(tokens, newPhone);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ user: { id: tokens.user.id, phone: newPhone } });
    expect((await me(tokens)).json()).toMatchObject({ user: { phone: newPhone } });
    expect((await me(elsewhere)).json()).toMatchObject({ error: 'token_revoked' });
    const notice = sms.sent.filter((message) => message.phone === oldPhone).at(-1)!;
    expect(notice.code).toBe('');
    expect(notice.text).toContain('now uses the phone number');
    expect(notice.text).not.toContain(newPhone);
    const event = await db.collection('audit_events').findOne({ type: 'account.phone_changed', userId: new Types.ObjectId(tokens.user.id) });
    expect(event).toMatchObject({ phone: expect.stringMatching(/\*/) });
    expect(JSON.stringify(event)).not.toContain(oldPhone);
    // The old number is free: signing in with it makes a new user.
    const newcomer = await signInBySms(testApp, oldPhone);
    expect(newcomer.user.id).not.toBe(tokens.user.id);
  });

  it('refuses with 409 conflict a phone another user holds, and merges nothing', async () => {
    const taken = uniquePhone();
    const holder = await signInBySms(testApp, taken);
    const tokens = await signInBySms(testApp);
    const response = await changePhone(tokens, taken);
    expect(response.statusCode).toBe(409);
    expect(response.json()).toMatchObject({ error: 'conflict', reason: 'phone_taken', message: expect.stringContaining('another account') });
    expect((await me(tokens)).json()).toMatchObject({ user: { phone: tokens.user.phone } });
    expect((await me(holder)).json()).toMatchObject({ user: { id: holder.user.id, phone: taken } });
  });

  it('refuses a wrong code with 400 invalid_code and keeps the phone', async () => {
    const tokens = await signInBySms(testApp);
    const newPhone = uniquePhone();
    await app.inject({ method: 'POST', url: '/auth/phone/change', headers: bearer(tokens), payload: { newPhone } });
    const wrong = sms.lastCodeFor(newPhone) === '000000' ? '111111' : '000000';
    const response = await app.inject({ method: 'POST', url: '/auth/phone/change/verify', headers: bearer(tokens), payload: { code: wrong } });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ error: 'invalid_code' });
    expect((await me(tokens)).json()).toMatchObject({ user: { phone: tokens.user.phone } });
  });

  it('answers 404 to a verify with no pending change', async () => {
    const tokens = await signInBySms(testApp);
    const response = await app.inject({ method: 'POST', url: '/auth/phone/change/verify', headers: bearer(tokens), payload: { code: '123456' } });
    expect(response.statusCode).toBe(404);
  });

  it('needs a sign-in from the last 10 minutes: a stale auth_time gets 401 reauthentication_required, even after a refresh', async () => {
    const tokens = await signInBySms(testApp);
    clock.advance(11 * 60);
    const refreshed = (await refresh(tokens.refreshToken)).json() as TokenPair;
    for (const url of ['/auth/phone/change', '/auth/phone/change/verify']) {
      const response = await app.inject({ method: 'POST', url, headers: bearer(refreshed), payload: url.endsWith('verify') ? { code: '123456' } : { newPhone: uniquePhone() } });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toMatchObject({ error: 'reauthentication_required', maxAgeSeconds: 600 });
    }
  });

  it('applies the OTP limits to the new number', async () => {
    const limited = await buildTestApp({ OTP_MAX_SENDS_PER_PHONE_PER_HOUR: '1', OTP_MAX_SENDS_PER_HOUR: '1', OTP_RESEND_SECONDS: '0' });
    const tokens = await signInBySms(limited);
    const newPhone = uniquePhone();
    const ask = () => limited.app.inject({ method: 'POST', url: '/auth/phone/change', headers: bearer(tokens), payload: { newPhone } });
    expect((await ask()).statusCode).toBe(200);
    const second = await ask();
    expect(second.statusCode).toBe(429);
    expect(second.json()).toMatchObject({ error: 'rate_limited' });
  });

  it('gives one of two users changing to the same new number at once the number, and the other 409', async () => {
    const newPhone = uniquePhone();
    const [ada, bob] = [await signInBySms(testApp), await signInBySms(testApp)];
    // Both prove the number (each gets its own code), then both verify at the same moment.
    for (const tokens of [ada, bob]) {
      expect((await app.inject({ method: 'POST', url: '/auth/phone/change', headers: bearer(tokens), payload: { newPhone } })).statusCode).toBe(200);
    }
    const codes = sms.sent.filter((message) => message.phone === newPhone).slice(-2).map((message) => message.code);
    const [first, second] = await Promise.all(
      [ada, bob].map((tokens, index) => app.inject({ method: 'POST', url: '/auth/phone/change/verify', headers: bearer(tokens), payload: { code: codes[index] } })),
    );
    // Only the newest code of a phone works: the second request superseded the first asker's code.
    expect([first!.statusCode, second!.statusCode]).toEqual([404, 200]);
    expect(await db.collection('users').countDocuments({ phone: newPhone })).toBe(1);
  });

  it('rests on the unique phone index: of many users moved to one free number at once, exactly one gets it', async () => {
    const newPhone = uniquePhone();
    const racers = await Promise.all(Array.from({ length: 8 }, () => signInBySms(testApp)));
    const results = await Promise.allSettled(
      racers.map((tokens) => database.models.User.updateOne({ _id: new Types.ObjectId(tokens.user.id) }, { $set: { phone: newPhone } })),
    );
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    expect(await db.collection('users').countDocuments({ phone: newPhone })).toBe(1);
  });
});

describe('linked identities', () => {
  it('GET /auth/me lists them', async () => {
    const tokens = await signInBySms(testApp);
    await db.collection('users').updateOne({ _id: new Types.ObjectId(tokens.user.id) }, { $set: { telegram: { id: 4242, username: 'ada' } } });
    const response = await me(tokens);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({
      identities: [
        { type: 'phone', phone: tokens.user.phone },
        { type: 'telegram', id: 4242, username: 'ada' },
      ],
    });
  });

  it('DELETE /auth/identities/telegram unlinks Telegram while a phone remains', async () => {
    const tokens = await signInBySms(testApp);
    await db.collection('users').updateOne({ _id: new Types.ObjectId(tokens.user.id) }, { $set: { telegram: { id: 4343 } } });
    const response = await app.inject({ method: 'DELETE', url: '/auth/identities/telegram', headers: bearer(tokens) });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ user: { telegram: null } });
    expect((await me(tokens)).json()).toMatchObject({ identities: [{ type: 'phone' }] });
  });

  it('refuses to unlink the last way to sign in with 409 conflict', async () => {
    const tokens = await signInBySms(testApp);
    const id = new Types.ObjectId(tokens.user.id);
    await db.collection('users').updateOne({ _id: id }, { $set: { whatsapp: { userId: 'US.123' } }, $unset: { phone: '' } });
    const response = await app.inject({ method: 'DELETE', url: '/auth/identities/whatsapp', headers: bearer(tokens) });
    expect(response.statusCode).toBe(409);
    expect(response.json()).toMatchObject({ error: 'conflict', reason: 'last_identity' });
    expect(await db.collection('users').findOne({ _id: id })).toMatchObject({ whatsapp: { userId: 'US.123' } });
  });

  it('answers 404 for a channel that is not linked, 400 for an unknown kind', async () => {
    const tokens = await signInBySms(testApp);
    expect((await app.inject({ method: 'DELETE', url: '/auth/identities/whatsapp', headers: bearer(tokens) })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: '/auth/identities/phone', headers: bearer(tokens) })).json()).toMatchObject({ error: 'invalid_request' });
  });
});

describe('DELETE /auth/me', () => {
  it('deletes the user, sessions and refresh tokens, keeps a pseudonymous trail, and the tokens stop working', async () => {
    const phone = uniquePhone();
    const other = await signInBySms(testApp, phone);
    const tokens = await signInBySms(testApp, phone);
    const id = new Types.ObjectId(tokens.user.id);
    const response = await app.inject({ method: 'DELETE', url: '/auth/me', headers: bearer(tokens) });
    expect(response.statusCode).toBe(204);
    expect(await db.collection('users').findOne({ _id: id })).toBeNull();
    expect(await db.collection('sessions').countDocuments({ userId: id })).toBe(0);
    expect(await db.collection('refresh_tokens').countDocuments({ userId: id })).toBe(0);
    expect(await db.collection('audit_events').countDocuments({ userId: id })).toBe(0);
    const deleted = await db.collection('audit_events').findOne({ type: 'account.deleted' }, { sort: { _id: -1 } });
    // The trail writes absent fields as null.
    expect(deleted!.phone ?? null).toBeNull();
    const trail = await db.collection('audit_events').find({ userId: deleted!.userId }).toArray();
    expect(trail.length).toBeGreaterThan(1);
    for (const event of trail) {
      expect(event.phone ?? null).toBeNull();
      expect(event.ip ?? null).toBeNull();
    }
    for (const pair of [tokens, other]) {
      expect((await me(pair)).statusCode).toBe(401);
      expect((await refresh(pair.refreshToken)).statusCode).toBe(401);
      expect((await app.inject({ method: 'POST', url: '/auth/introspect', payload: { token: pair.accessToken } })).json()).toEqual({ active: false });
    }
  });

  it('refuses a stale sign-in with 401 reauthentication_required and deletes nothing', async () => {
    const tokens = await signInBySms(testApp);
    clock.advance(601);
    const response = await app.inject({ method: 'DELETE', url: '/auth/me', headers: bearer(tokens) });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: 'reauthentication_required' });
    expect(await db.collection('users').findOne({ _id: new Types.ObjectId(tokens.user.id) })).not.toBeNull();
  });
});

describe('POST /auth/introspect', () => {
  it('says active with the claims for a live token, and inactive once its session is signed out', async () => {
    const tokens = await signInBySms(testApp);
    const live = await app.inject({ method: 'POST', url: '/auth/introspect', payload: { token: tokens.accessToken } });
    expect(live.statusCode).toBe(200);
    expect(live.json()).toMatchObject({ active: true, sub: tokens.user.id, sid: expect.any(String), exp: expect.any(Number), phone_number: tokens.user.phone });
    await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(tokens) });
    expect((await app.inject({ method: 'POST', url: '/auth/introspect', payload: { token: tokens.accessToken } })).json()).toEqual({ active: false });
  });

  it('says inactive for a forged token', async () => {
    const response = await app.inject({ method: 'POST', url: '/auth/introspect', payload: { token: 'eyJhbGciOiJub25lIn0.e30.' } });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ active: false });
  });
});
