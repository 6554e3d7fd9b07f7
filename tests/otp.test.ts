import { describe, expect, it } from 'vitest';
import { buildTestApp, uniquePhone } from './helpers/app.js';

const { app, sms, clock, database } = await buildTestApp({
  DEFAULT_COUNTRY: 'IN',
  OTP_TEST_NUMBERS: '+15550000001:123456',
});

const post = (url: string, payload: unknown) => app.inject({ method: 'POST', url, payload: payload as object });

async function requestCode(phone: string) {
  const response = await post('/auth/otp/request', { phone });
  expect(response.statusCode, response.body).toBe(200);
  return { ...(response.json() as { challengeId: string }), code: sms.lastCodeFor(phone) };
}

describe('requesting a code', () => {
  it('sends a 6-digit code by SMS and answers with the challenge', async () => {
    const phone = uniquePhone();
    const response = await post('/auth/otp/request', { phone });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ challengeId: expect.any(String), channel: 'sms', expiresIn: 300, resendIn: 30 });
    const message = sms.sent.at(-1)!;
    expect(message.phone).toBe(phone);
    expect(message.code).toMatch(/^\d{6}$/);
    expect(message.text).toBe(`Your Chatgate code is ${message.code}. It expires in 5 minutes. Never share it.`);
  });

  it('accepts a national number of DEFAULT_COUNTRY and sends to its E.164 form', async () => {
    const response = await post('/auth/otp/request', { phone: '98123 45670' });
    expect(response.statusCode).toBe(200);
    expect(sms.sent.at(-1)!.phone).toBe('+919812345670');
  });

  it.each([
    ['letters', 'not a phone'],
    ['too short', '+9112'],
    ['an unassigned range', '+447911999999'],
  ])('refuses %s with 400 invalid_phone', async (_case, phone) => {
    const response = await post('/auth/otp/request', { phone });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ error: 'invalid_phone', message: expect.any(String) });
  });

  it('keeps the code out of the database: only an HMAC is stored', async () => {
    const phone = uniquePhone();
    const { challengeId, code } = await requestCode(phone);
    const stored = await database.connection.collection('challenges').findOne({ phone });
    expect(stored?._id.toString()).toBe(challengeId);
    expect(JSON.stringify(stored)).not.toContain(code);
    expect(Buffer.from(stored!.codeHash.buffer).length).toBe(32);
  });

  it('refuses a resend within OTP_RESEND_SECONDS with 429 rate_limited, retryAfter and Retry-After', async () => {
    const phone = uniquePhone();
    await requestCode(phone);
    clock.advance(10);
    const response = await post('/auth/otp/request', { phone });
    expect(response.statusCode).toBe(429);
    expect(response.json()).toMatchObject({ error: 'rate_limited', retryAfter: 20 });
    expect(response.headers['retry-after']).toBe('20');
    clock.advance(20);
    expect((await post('/auth/otp/request', { phone })).statusCode).toBe(200);
  });

  it('allows at most OTP_MAX_SENDS_PER_HOUR sends to one phone per hour', async () => {
    const phone = uniquePhone();
    for (let send = 0; send < 5; send++) {
      expect((await post('/auth/otp/request', { phone })).statusCode).toBe(200);
      clock.advance(31);
    }
    const refused = await post('/auth/otp/request', { phone });
    expect(refused.statusCode).toBe(429);
    // The first of the five was sent 5 × 31 s ago: the hour frees up 3600 − 155 s from now.
    expect(refused.json()).toMatchObject({ error: 'rate_limited', retryAfter: 3600 - 155 });
    clock.advance(3600 - 155);
    expect((await post('/auth/otp/request', { phone })).statusCode).toBe(200);
  });

  it('lets exactly one of many concurrent requests for one phone send', async () => {
    const phone = uniquePhone();
    const before = sms.sent.length;
    const responses = await Promise.all(Array.from({ length: 10 }, () => post('/auth/otp/request', { phone })));
    expect(responses.filter((response) => response.statusCode === 200)).toHaveLength(1);
    expect(responses.filter((response) => response.statusCode === 429)).toHaveLength(9);
    expect(sms.sent.length - before).toBe(1);
  });

  it('answers 502 delivery_failed when the provider fails, and leaves no usable code', async () => {
    const phone = uniquePhone();
    sms.failNext = true;
    const response = await post('/auth/otp/request', { phone });
    expect(response.statusCode).toBe(502);
    expect(response.json()).toEqual({ error: 'delivery_failed', message: expect.any(String), channel: 'sms' });
    const failed = await database.connection.collection('challenges').findOne({ phone });
    expect(failed?.status).toBe('failed');
    const verify = await post('/auth/otp/verify', { challengeId: failed!._id.toString(), code: '000000' });
    expect(verify.json()).toMatchObject({ error: 'not_found' });
  });

  it('refuses a channel that is not configured with 422 channel_unavailable', async () => {
    const response = await post('/auth/otp/request', { phone: uniquePhone(), channel: 'telegram' });
    expect(response.statusCode).toBe(422);
    expect(response.json()).toMatchObject({ error: 'channel_unavailable' });
  });
});

describe('verifying a code', () => {
  it('signs the person in with the code sent to their phone', async () => {
    const phone = uniquePhone();
    const { challengeId, code } = await requestCode(phone);
    const response = await post('/auth/otp/verify', { challengeId, code });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({
      accessToken: expect.any(String),
      refreshToken: expect.stringMatching(/^cgrt_[A-Za-z0-9_-]{43}$/),
      tokenType: 'Bearer',
      expiresIn: 900,
      user: { id: expect.any(String), phone, status: 'active', lastLoginChannel: 'sms' },
    });
  });

  it('finds the active challenge by phone too', async () => {
    const phone = uniquePhone();
    const { code } = await requestCode(phone);
    const response = await post('/auth/otp/verify', { phone, code });
    expect(response.statusCode).toBe(200);
  });

  it('refuses a wrong code with 400 invalid_code and the attempts remaining', async () => {
    const phone = uniquePhone();
    const { challengeId, code } = await requestCode(phone);
    const wrong = code === '000000' ? '000001' : '000000';
    const first = await post('/auth/otp/verify', { challengeId, code: wrong });
    expect(first.statusCode).toBe(400);
    expect(first.json()).toEqual({ error: 'invalid_code', message: expect.any(String), attemptsRemaining: 4 });
    const second = await post('/auth/otp/verify', { challengeId, code: wrong });
    expect(second.json()).toMatchObject({ attemptsRemaining: 3 });
  });

  it('refuses every check after OTP_MAX_ATTEMPTS with 429 too_many_attempts, the right code included', async () => {
    const phone = uniquePhone();
    const { challengeId, code } = await requestCode(phone);
    const wrong = code === '000000' ? '000001' : '000000';
    for (let attempt = 1; attempt <= 5; attempt++) {
      expect((await post('/auth/otp/verify', { challengeId, code: wrong })).json()).toMatchObject({ attemptsRemaining: 5 - attempt });
    }
    const response = await post('/auth/otp/verify', { challengeId, code });
    expect(response.statusCode).toBe(429);
    expect(response.json()).toMatchObject({ error: 'too_many_attempts' });
  });

  it('refuses an expired code with 410 expired', async () => {
    const phone = uniquePhone();
    const { challengeId, code } = await requestCode(phone);
    clock.advance(300);
    const response = await post('/auth/otp/verify', { challengeId, code });
    expect(response.statusCode).toBe(410);
    expect(response.json()).toMatchObject({ error: 'expired' });
  });

  it('accepts a code one second before it expires', async () => {
    const phone = uniquePhone();
    const { challengeId, code } = await requestCode(phone);
    clock.advance(299);
    expect((await post('/auth/otp/verify', { challengeId, code })).statusCode).toBe(200);
  });

  it('answers 404 not_found for an unknown challenge or a phone without one', async () => {
    const unknown = await post('/auth/otp/verify', { challengeId: '6b0000000000000000000000', code: '123456' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ error: 'not_found' });
    const garbage = await post('/auth/otp/verify', { challengeId: 'not-an-id', code: '123456' });
    expect(garbage.statusCode).toBe(404);
    const noChallenge = await post('/auth/otp/verify', { phone: uniquePhone(), code: '123456' });
    expect(noChallenge.statusCode).toBe(404);
  });

  it('refuses a second use of the same code', async () => {
    const phone = uniquePhone();
    const { challengeId, code } = await requestCode(phone);
    expect((await post('/auth/otp/verify', { challengeId, code })).statusCode).toBe(200);
    const again = await post('/auth/otp/verify', { challengeId, code });
    expect(again.statusCode).toBe(404);
    expect(again.json()).toMatchObject({ error: 'not_found' });
  });

  it('only honours the newest code: a new one supersedes the old', async () => {
    const phone = uniquePhone();
    const old = await requestCode(phone);
    clock.advance(31);
    const fresh = await requestCode(phone);
    expect((await post('/auth/otp/verify', { challengeId: old.challengeId, code: old.code })).json()).toMatchObject({ error: 'not_found' });
    expect((await post('/auth/otp/verify', { phone, code: fresh.code })).statusCode).toBe(200);
  });

  it('gives exactly one success to 50 concurrent submissions of the right code', async () => {
    const phone = uniquePhone();
    const { challengeId, code } = await requestCode(phone);
    const responses = await Promise.all(Array.from({ length: 50 }, () => post('/auth/otp/verify', { challengeId, code })));
    const statuses = responses.map((response) => response.statusCode);
    expect(statuses.filter((status) => status === 200)).toHaveLength(1);
    expect(statuses.every((status) => [200, 404, 429].includes(status))).toBe(true);
  });

  it('counts every one of many concurrent wrong submissions as an attempt', async () => {
    const phone = uniquePhone();
    const { challengeId, code } = await requestCode(phone);
    const wrong = code === '000000' ? '000001' : '000000';
    const responses = await Promise.all(Array.from({ length: 20 }, () => post('/auth/otp/verify', { challengeId, code: wrong })));
    const bodies = responses.map((response) => response.json() as { error: string; attemptsRemaining?: number });
    expect(bodies.filter((body) => body.error === 'invalid_code')).toHaveLength(5);
    expect(bodies.filter((body) => body.error === 'too_many_attempts')).toHaveLength(15);
    expect(bodies.map((body) => body.attemptsRemaining).filter((left) => left !== undefined).sort()).toEqual([0, 1, 2, 3, 4]);
    expect((await post('/auth/otp/verify', { challengeId, code })).statusCode).toBe(429);
  });

  it('makes one user of two concurrent first logins for the same phone', async () => {
    const phone = uniquePhone();
    const { code } = await requestCode(phone);
    clock.advance(31);
    // Two challenges cannot both be active, so race the identity resolution itself.
    const responses = await Promise.all([post('/auth/otp/verify', { phone, code }), app.services.identities.resolveByPhone(phone)]);
    expect(responses[0].statusCode).toBe(200);
    const ids = await Promise.all(Array.from({ length: 20 }, () => app.services.identities.resolveByPhone(phone)));
    expect(new Set(ids.map((user) => user._id.toString()))).toEqual(new Set([(responses[0].json() as { user: { id: string } }).user.id]));
    expect(await database.connection.collection('users').countDocuments({ phone })).toBe(1);
  });

  it('makes one user of many concurrent first resolutions of a new phone', async () => {
    const phone = uniquePhone();
    const users = await Promise.all(Array.from({ length: 30 }, () => app.services.identities.resolveByPhone(phone)));
    expect(new Set(users.map((user) => user._id.toString())).size).toBe(1);
    expect(await database.connection.collection('users').countDocuments({ phone })).toBe(1);
  });

  it('refuses tokens to a blocked user with 403 user_blocked', async () => {
    const phone = uniquePhone();
    await app.services.identities.resolveByPhone(phone);
    // Blocked after the code was sent: a blocked user's phone is sent no code at all.
    const { code } = await requestCode(phone);
    await database.connection.collection('users').updateOne({ phone }, { $set: { status: 'blocked' } });
    const response = await post('/auth/otp/verify', { phone, code });
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ error: 'user_blocked' });
  });

  it('leaves a blocked user unstamped: no last login recorded for a refused sign-in', async () => {
    const phone = uniquePhone();
    const { code: first } = await requestCode(phone);
    const signedIn = (await post('/auth/otp/verify', { phone, code: first })).json() as { user: { lastLoginAt: string } };
    clock.advance(60);
    const { code } = await requestCode(phone);
    await database.connection.collection('users').updateOne({ phone }, { $set: { status: 'blocked' } });
    const before = await database.connection.collection('users').findOne({ phone });
    expect((await post('/auth/otp/verify', { phone, code })).statusCode).toBe(403);
    const after = await database.connection.collection('users').findOne({ phone });
    expect(after).toEqual(before);
    expect(after?.lastLoginAt?.toISOString()).toBe(signedIn.user.lastLoginAt);
  });

  it('makes one user of many concurrent first phone sign-ins, each stamped with its login', async () => {
    const phone = uniquePhone();
    const users = await Promise.all(Array.from({ length: 30 }, () => app.services.identities.resolvePhoneLogin(phone, 'sms')));
    expect(new Set(users.map((user) => user._id.toString())).size).toBe(1);
    expect(users.every((user) => user.lastLoginChannel === 'sms' && user.status === 'active' && user.phone === phone)).toBe(true);
    const stored = await database.connection.collection('users').find({ phone }).toArray();
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ _id: users[0]!._id, lastLoginChannel: 'sms', status: 'active' });
  });
});

describe('test numbers', () => {
  it('use their fixed code and send nothing', async () => {
    const before = sms.sent.length;
    clock.advance(3600);
    const response = await post('/auth/otp/request', { phone: '+15550000001' });
    expect(response.statusCode).toBe(200);
    expect(sms.sent.length).toBe(before);
    const verify = await post('/auth/otp/verify', { phone: '+15550000001', code: '123456' });
    expect(verify.statusCode).toBe(200);
    expect(verify.json()).toMatchObject({ user: { phone: '+15550000001' } });
  });
});

describe('allowed countries', async () => {
  const { app: limited, sms: limitedSms } = await buildTestApp({ OTP_ALLOWED_COUNTRIES: 'IN,GB' });

  it('refuses other countries with 403 country_not_allowed before anything is sent', async () => {
    const response = await limited.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: '+14155552671' } });
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ error: 'country_not_allowed', country: 'US' });
    expect(limitedSms.sent).toHaveLength(0);
  });

  it('sends to an allowed country', async () => {
    const response = await limited.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: '+919812345671' } });
    expect(response.statusCode).toBe(200);
    expect(limitedSms.sent).toHaveLength(1);
  });
});

describe('code length', async () => {
  const { app: long, sms: longSms } = await buildTestApp({ OTP_LENGTH: '8' });

  it('follows OTP_LENGTH', async () => {
    await long.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: '+919812345672' } });
    expect(longSms.sent[0]!.code).toMatch(/^\d{8}$/);
  });
});

describe('only the newest code works', () => {
  it('even when an older code’s delivery finishes after a newer one was delivered', async () => {
    const phone = uniquePhone();
    const deliver = sms.send.bind(sms);
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
    let firstStarted!: () => void;
    const firstSending = new Promise<void>((resolve) => (firstStarted = resolve));
    let calls = 0;
    sms.send = async (message) => {
      calls += 1;
      if (calls === 1) {
        firstStarted();
        await firstHeld;
      }
      await deliver(message);
    };
    const slow = post('/auth/otp/request', { phone });
    await firstSending;
    clock.advance(31);
    const fresh = await post('/auth/otp/request', { phone });
    expect(fresh.statusCode).toBe(200);
    releaseFirst();
    const old = await slow;
    sms.send = deliver;
    expect(old.statusCode).toBe(200);

    const [newerMessage, olderMessage] = sms.sent.filter((message) => message.phone === phone);
    const oldId = (old.json() as { challengeId: string }).challengeId;
    const freshId = (fresh.json() as { challengeId: string }).challengeId;
    expect((await post('/auth/otp/verify', { challengeId: oldId, code: olderMessage!.code })).json()).toMatchObject({ error: 'not_found' });
    expect((await post('/auth/otp/verify', { phone, code: olderMessage!.code })).statusCode).toBe(400);
    expect((await post('/auth/otp/verify', { challengeId: freshId, code: newerMessage!.code })).statusCode).toBe(200);
  });

  it('a failed send does not start the resend wait, but counts towards the hourly cap', async () => {
    const phone = uniquePhone();
    sms.failNext = true;
    expect((await post('/auth/otp/request', { phone })).statusCode).toBe(502);
    expect((await post('/auth/otp/request', { phone })).statusCode).toBe(200);
    for (let send = 0; send < 3; send++) {
      clock.advance(31);
      expect((await post('/auth/otp/request', { phone })).statusCode).toBe(200);
    }
    clock.advance(31);
    expect((await post('/auth/otp/request', { phone })).json()).toMatchObject({ error: 'rate_limited' });
  });
});
