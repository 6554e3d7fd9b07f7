import { describe, expect, it } from 'vitest';
import { createAdminService } from '../src/admin/service.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { buildTestApp, uniquePhone } from './helpers/app.js';

const testApp = await buildTestApp({ DEFAULT_COUNTRY: 'IN' });
const { app, sms, clock, database, logs } = testApp;

type Injectable = typeof app;
const requestFrom = (target: Injectable, phone: string, remoteAddress = '127.0.0.1') =>
  target.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone }, remoteAddress });
const verify = (payload: object) => app.inject({ method: 'POST', url: '/auth/otp/verify', payload });
// Audit events are written in batches: flush before reading them.
const auditOf = async (type: string, from: Injectable = app) => {
  await from.services.audit.flush();
  return database.connection.collection('audit_events').find({ type }).toArray();
};
const wrongFor = (code: string) => (code === '000000' ? '000001' : '000000');

/** Asks for a code and spends `wrong` checks on it by challengeId. */
async function failChecks(phone: string, wrong: number) {
  const requested = await requestFrom(app, phone);
  expect(requested.statusCode, requested.body).toBe(200);
  const { challengeId } = requested.json() as { challengeId: string };
  const code = sms.lastCodeFor(phone);
  for (let attempt = 0; attempt < wrong; attempt++) {
    expect((await verify({ challengeId, code: wrongFor(code) })).statusCode).toBe(400);
  }
  clock.advance(31);
  return { challengeId, code };
}

describe('the guessing budget of a phone', () => {
  it('refuses new codes after OTP_MAX_FAILURES_PER_DAY wrong checks, pointing to the chat login', async () => {
    const phone = uniquePhone();
    for (let code = 0; code < 3; code++) await failChecks(phone, 5);
    const before = sms.sent.length;
    const refused = await requestFrom(app, phone);
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'rate_limited', message: expect.stringMatching(/WhatsApp or Telegram/) });
    expect(sms.sent.length).toBe(before);
    expect(await auditOf('otp.failure_budget_exhausted')).toHaveLength(1);
    expect(logs.some((line) => line.includes('otp failure budget exhausted') && !line.includes(phone))).toBe(true);
    // 24 hours after the wrong checks the budget is whole again.
    clock.advance(86_400);
    expect((await requestFrom(app, phone)).statusCode).toBe(200);
  });

  it.each([
    [{ OTP_LENGTH: '4' }],
    [{ OTP_LENGTH: '5' }],
    [{ OTP_LENGTH: '6', OTP_MAX_FAILURES_PER_DAY: '101' }],
  ])('is checked at start: %o gives more than a 1-in-10,000 chance a day and is refused', (env) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(/OTP_MAX_FAILURES_PER_DAY/);
  });

  it('accepts the defaults and the NIST limit of 100 with 6 digits', () => {
    expect(loadConfig({}).OTP_MAX_FAILURES_PER_DAY).toBe(15);
    expect(loadConfig({ OTP_MAX_FAILURES_PER_DAY: '100' }).OTP_MAX_FAILURES_PER_DAY).toBe(100);
  });
});

describe('the failure budget counts a rolling 24 hours', async () => {
  const FAILURES = 4;
  const HOUR = 3600;
  // Its own app (and clock) with a small budget, so one code's attempts can spend it.
  const windowed = await buildTestApp({ DEFAULT_COUNTRY: 'IN', OTP_MAX_FAILURES_PER_DAY: String(FAILURES) });
  const request = (phone: string) => requestFrom(windowed.app, phone);
  const check = (payload: object) => windowed.app.inject({ method: 'POST', url: '/auth/otp/verify', payload });

  /** Asks for a code and makes `wrong` wrong checks of it, all at the clock's present time. */
  async function wrongChecks(phone: string, wrong: number) {
    const requested = await request(phone);
    expect(requested.statusCode, requested.body).toBe(200);
    const { challengeId } = requested.json() as { challengeId: string };
    const code = windowed.sms.lastCodeFor(phone);
    for (let attempt = 0; attempt < wrong; attempt++) {
      const checked = await check({ challengeId, code: wrongFor(code) });
      expect(checked.json()).toMatchObject({ error: 'invalid_code' });
    }
    return { challengeId, code };
  }

  const expectRefused = async (phone: string, retryAfter?: number) => {
    const refused = await request(phone);
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'rate_limited', message: expect.stringMatching(/WhatsApp or Telegram/) });
    if (retryAfter !== undefined) expect(refused.json()).toMatchObject({ retryAfter });
  };

  it('does not renew at midnight UTC: wrong checks late on one day still count just after midnight', async () => {
    const phone = uniquePhone();
    windowed.clock.set(new Date('2031-03-10T23:50:00Z'));
    await wrongChecks(phone, FAILURES);
    windowed.clock.set(new Date('2031-03-11T00:05:00Z'));
    await expectRefused(phone);
  });

  it('refuses new codes until 24 hours after the wrong checks, then allows them again', async () => {
    const phone = uniquePhone();
    const start = new Date('2031-04-01T08:00:00Z');
    windowed.clock.set(start);
    await wrongChecks(phone, FAILURES);
    windowed.clock.set(new Date(start.getTime() + (24 * HOUR - 60) * 1000));
    await expectRefused(phone, 60);
    windowed.clock.set(new Date(start.getTime() + 24 * HOUR * 1000));
    expect((await request(phone)).statusCode).toBe(200);
  });

  it('slides: a failure leaves the window 24 hours after it, the ones after it stay counted', async () => {
    const phone = uniquePhone();
    const start = new Date('2031-05-01T08:00:00Z');
    windowed.clock.set(start);
    await wrongChecks(phone, 1);
    windowed.clock.set(new Date(start.getTime() + 12 * HOUR * 1000));
    await wrongChecks(phone, FAILURES - 1);
    await expectRefused(phone, 12 * HOUR);

    // The first failure has left the window: exactly one more wrong check is compared, then the budget is spent again.
    windowed.clock.set(new Date(start.getTime() + (24 * HOUR + 60) * 1000));
    const { challengeId, code } = await wrongChecks(phone, 1);
    const past = await check({ challengeId, code: wrongFor(code) });
    expect(past.statusCode).toBe(429);
    expect(past.json()).toMatchObject({ error: 'too_many_attempts', message: expect.stringMatching(/WhatsApp or Telegram/) });
    // Not even the right code is compared once the budget is spent.
    expect((await check({ challengeId, code })).json()).toMatchObject({ error: 'too_many_attempts' });
    windowed.clock.advance(31);
    await expectRefused(phone, 12 * HOUR - 60 - 31);

    // 24 hours after the later failures, the budget is whole again.
    windowed.clock.set(new Date(start.getTime() + (36 * HOUR + 60) * 1000));
    expect((await request(phone)).statusCode).toBe(200);
  });

  it('starts again from nothing after a right code', async () => {
    const phone = uniquePhone();
    windowed.clock.set(new Date('2031-06-01T08:00:00Z'));
    const { challengeId, code } = await wrongChecks(phone, FAILURES - 1);
    expect((await check({ challengeId, code })).statusCode).toBe(200);
    windowed.clock.advance(31);
    await wrongChecks(phone, FAILURES - 1);
    windowed.clock.advance(31);
    await wrongChecks(phone, 1);
    windowed.clock.advance(31);
    await expectRefused(phone);
  });

  it('is not blocked by the leftover of a check that died between recording a failure and deleting an old one', async () => {
    const phone = uniquePhone();
    const now = new Date('2031-08-10T08:00:00Z');
    windowed.clock.set(now);
    const hoursAgo = (hours: number) => new Date(now.getTime() - hours * HOUR * 1000);
    // Failures 4 to 7 of an earlier day, and failure 0 still in the key failure 8 takes (2 × the budget keys).
    const failure = (n: number, at: Date) => ({ _id: `otp-fail:${phone}:${n % (2 * FAILURES)}`, n, createdAt: at, cleanupAt: new Date(now.getTime() + HOUR * 1000) });
    await windowed.database.connection
      .collection('otp_phones')
      .insertMany([failure(0, hoursAgo(72)), ...[4, 5, 6, 7].map((n) => failure(n, hoursAgo(25)))] as never[]);
    // Those failures are past the window: the whole budget is there.
    await wrongChecks(phone, FAILURES);
    windowed.clock.advance(31);
    await expectRefused(phone, 24 * HOUR - 31);
  });

  describe("the marker that spares OTP requests the exact count", () => {
    const markerOf = (phone: string) => windowed.database.connection.collection('otp_phones').findOne({ _id: `otp-fail:${phone}:spent` as never });

    it('is left by the wrong check that fills the window, until the oldest failure in it leaves', async () => {
      const phone = uniquePhone();
      const start = new Date('2031-09-01T08:00:00Z');
      windowed.clock.set(start);
      await wrongChecks(phone, FAILURES - 1);
      expect(await markerOf(phone)).toBeNull();
      windowed.clock.advance(31);
      await wrongChecks(phone, 1);
      expect(await markerOf(phone)).toMatchObject({ until: new Date(start.getTime() + 24 * HOUR * 1000) });
    });

    it('does not refuse by itself: a marker the count does not bear out (a right code reset it meanwhile) lets the code go', async () => {
      const phone = uniquePhone();
      windowed.clock.set(new Date('2031-09-02T08:00:00Z'));
      const until = new Date(windowed.clock.now().getTime() + HOUR * 1000);
      await windowed.database.connection.collection('otp_phones').insertOne({ _id: `otp-fail:${phone}:spent` as never, until, cleanupAt: until });
      expect((await request(phone)).statusCode).toBe(200);
    });

    it('is left again by a refused check when it was lost, and a right code takes it away', async () => {
      const phone = uniquePhone();
      windowed.clock.set(new Date('2031-09-03T08:00:00Z'));
      await wrongChecks(phone, FAILURES);
      // Lost (the check that filled the window died before writing it): a request sends, but the count still refuses.
      await windowed.database.connection.collection('otp_phones').deleteOne({ _id: `otp-fail:${phone}:spent` as never });
      windowed.clock.advance(31);
      const resent = await request(phone);
      expect(resent.statusCode).toBe(200);
      const fresh = resent.json() as { challengeId: string };
      expect((await check({ challengeId: fresh.challengeId, code: windowed.sms.lastCodeFor(phone) })).json()).toMatchObject({ error: 'too_many_attempts' });
      expect(await markerOf(phone)).not.toBeNull();
      windowed.clock.advance(31);
      await expectRefused(phone);
      // A right code (once the window has room again) resets the count, and the marker goes with it.
      windowed.clock.advance(24 * HOUR);
      const again = await request(phone);
      expect(again.statusCode).toBe(200);
      const { challengeId: lastId } = again.json() as { challengeId: string };
      expect((await check({ challengeId: lastId, code: windowed.sms.lastCodeFor(phone) })).statusCode).toBe(200);
      expect(await markerOf(phone)).toBeNull();
    });
  });

  it('records no more than the budget of 30 concurrent wrong checks for one phone', async () => {
    const raced = await buildTestApp({ DEFAULT_COUNTRY: 'IN', OTP_MAX_ATTEMPTS: '20' });
    const limit = raced.config.OTP_MAX_FAILURES_PER_DAY;
    const phone = uniquePhone();
    raced.clock.set(new Date('2031-07-01T08:00:00Z'));
    const requested = await requestFrom(raced.app, phone);
    const { challengeId } = requested.json() as { challengeId: string };
    const wrong = wrongFor(raced.sms.lastCodeFor(phone));
    // Half by challenge id, half by phone: each has an attempt budget of its own (20), so all 30 reach the failure count.
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, index) =>
        raced.app.inject({ method: 'POST', url: '/auth/otp/verify', payload: index % 2 ? { challengeId, code: wrong } : { phone, code: wrong } }),
      ),
    );
    const errors = answers.map((answer) => (answer.json() as { error: string }).error);
    expect(errors.filter((error) => error === 'invalid_code')).toHaveLength(limit);
    expect(errors.filter((error) => error === 'too_many_attempts')).toHaveLength(30 - limit);
    raced.clock.advance(31);
    expect((await requestFrom(raced.app, phone)).json()).toMatchObject({ error: 'rate_limited' });
  });
});

describe('a stranger cannot lock anyone out', () => {
  it('guesses by phone do not spend the attempts of whoever holds the challenge id', async () => {
    const phone = uniquePhone();
    const requested = await requestFrom(app, phone);
    const { challengeId } = requested.json() as { challengeId: string };
    const code = sms.lastCodeFor(phone);
    for (let guess = 0; guess < 5; guess++) expect((await verify({ phone, code: wrongFor(code) })).statusCode).toBe(400);
    expect((await verify({ phone, code: wrongFor(code) })).json()).toMatchObject({ error: 'too_many_attempts' });
    const holder = await verify({ challengeId, code });
    expect(holder.statusCode).toBe(200);
  });

  it('challenge ids carry at least 128 random bits and are no ObjectIds', async () => {
    const ids = await Promise.all(
      Array.from({ length: 3 }, async () => ((await requestFrom(app, uniquePhone())).json() as { challengeId: string }).challengeId),
    );
    for (const id of ids) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      expect(id).not.toMatch(/^[0-9a-f]{24}$/);
      expect(Buffer.from(id, 'base64url').length).toBeGreaterThanOrEqual(16);
    }
  });

  it('one IP that used up its sends to a phone does not stop another IP', async () => {
    const phone = uniquePhone();
    for (let send = 0; send < 5; send++) {
      expect((await requestFrom(app, phone, '203.0.113.40')).statusCode).toBe(200);
      clock.advance(31);
    }
    expect((await requestFrom(app, phone, '203.0.113.40')).json()).toMatchObject({ error: 'rate_limited' });
    expect((await requestFrom(app, phone, '198.51.100.40')).statusCode).toBe(200);
  });

  it('all IPs together stay within OTP_MAX_SENDS_PER_PHONE_PER_HOUR', async () => {
    const phone = uniquePhone();
    for (let send = 0; send < 10; send++) {
      expect((await requestFrom(app, phone, `203.0.113.${60 + send}`)).statusCode).toBe(200);
      clock.advance(31);
    }
    expect((await requestFrom(app, phone, '203.0.113.99')).json()).toMatchObject({ error: 'rate_limited' });
  });
});

describe('blocked users', () => {
  const admin = createAdminService({ models: database.models, audit: app.services.audit, clock });
  const operator = { via: 'cli' as const, name: 'test' };
  const blockMark = (phone: string) => database.connection.collection('otp_phones').findOne({ _id: `blocked:${phone}` as never });

  it('are sent nothing, get the answer any number gets, and are audited', async () => {
    const phone = uniquePhone();
    const user = await app.services.identities.resolveByPhone(phone);
    await admin.blockUser(user._id.toString(), { reason: 'SMS pumping' }, operator);
    const before = sms.sent.length;
    const response = await requestFrom(app, phone);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ challengeId: expect.any(String), channel: 'sms', expiresIn: 300, resendIn: 30 });
    expect(sms.sent.length).toBe(before);
    const [event] = await auditOf('otp.blocked_user_skipped');
    expect(event).toMatchObject({ channel: 'sms', ip: '127.0.0.1', userId: user._id });
    expect(event!.phone).not.toBe(phone);
  });

  it('blocked before their phones were marked are sent nothing once the block sweep has marked them', async () => {
    const phone = uniquePhone();
    await app.services.identities.resolveByPhone(phone);
    // As an older version blocked users: the status only, no mark beside the phone's document.
    await database.connection.collection('users').updateOne({ phone }, { $set: { status: 'blocked', block: { reason: 'old', at: clock.now() } } });
    expect(await blockMark(phone)).toBeNull();
    expect((await admin.sweepBlocks()).marked).toBeGreaterThanOrEqual(1);
    expect(await blockMark(phone)).toMatchObject({ phone });
    expect((await admin.sweepBlocks()).marked).toBe(0);
    const before = sms.sent.length;
    expect((await requestFrom(app, phone)).statusCode).toBe(200);
    expect(sms.sent.length).toBe(before);
  });

  it('get codes again once unblocked, the mark gone; a stale mark costs a read and blocks nothing', async () => {
    const phone = uniquePhone();
    const user = await app.services.identities.resolveByPhone(phone);
    await admin.blockUser(user._id.toString(), { reason: 'mistake' }, operator);
    await admin.unblockUser(user._id.toString(), operator);
    expect(await blockMark(phone)).toBeNull();
    expect((await requestFrom(app, phone)).statusCode).toBe(200);
    expect(sms.lastCodeFor(phone)).toMatch(/^\d{6}$/);
    // A mark left behind (a crash between the unblock's two writes): the user is read, and is active.
    await database.connection.collection('otp_phones').insertOne({ _id: `blocked:${phone}` as never, phone });
    clock.advance(31);
    const before = sms.sent.length;
    expect((await requestFrom(app, phone)).statusCode).toBe(200);
    expect(sms.sent.length).toBe(before + 1);
  });
});

describe('budgets for paid sends', () => {
  /** An app of its own on a day of its own, so other tests' sends are not counted in its budgets. */
  async function budgetApp(env: Record<string, string>, day: string) {
    const built = await buildTestApp({ DEFAULT_COUNTRY: 'IN', ...env });
    built.clock.set(new Date(`${day}T10:00:00Z`));
    return built;
  }

  it('refuse past OTP_BUDGET_GLOBAL_PER_HOUR with 429, an audit event and an error log, sending nothing', async () => {
    const limited = await budgetApp({ OTP_BUDGET_GLOBAL_PER_HOUR: '3' }, '2027-01-01');
    for (let send = 0; send < 3; send++) {
      expect((await requestFrom(limited.app, uniquePhone(), `203.0.113.${send + 1}`)).statusCode).toBe(200);
    }
    const refused = await requestFrom(limited.app, uniquePhone(), '203.0.113.9');
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'rate_limited', retryAfter: expect.any(Number) });
    expect(limited.sms.sent).toHaveLength(3);
    const events = await auditOf('otp.budget_exhausted', limited.app);
    expect(events.some((event) => (event.detail as { budget?: string }).budget === 'global_hour')).toBe(true);
    expect(limited.logs.some((line) => line.includes('"level":50') && line.includes('otp send budget exhausted'))).toBe(true);
    limited.clock.advance(3600);
    expect((await requestFrom(limited.app, uniquePhone(), '203.0.113.9')).statusCode).toBe(200);
  });

  it('refuse past OTP_BUDGET_GLOBAL_PER_DAY', async () => {
    const limited = await budgetApp({ OTP_BUDGET_GLOBAL_PER_DAY: '2' }, '2027-01-02');
    for (let send = 0; send < 2; send++) {
      expect((await requestFrom(limited.app, uniquePhone(), `203.0.113.${send + 1}`)).statusCode).toBe(200);
    }
    limited.clock.advance(3600);
    expect((await requestFrom(limited.app, uniquePhone(), '203.0.113.9')).json()).toMatchObject({ error: 'rate_limited' });
    expect(limited.sms.sent).toHaveLength(2);
  });

  it('refuse past OTP_BUDGET_COUNTRY_PER_HOUR for that country only', async () => {
    const limited = await budgetApp({ OTP_BUDGET_COUNTRY_PER_HOUR: '2' }, '2027-01-03');
    for (let send = 0; send < 2; send++) {
      expect((await requestFrom(limited.app, uniquePhone(), `203.0.113.${send + 1}`)).statusCode).toBe(200);
    }
    expect((await requestFrom(limited.app, uniquePhone(), '203.0.113.9')).json()).toMatchObject({ error: 'rate_limited' });
    expect((await requestFrom(limited.app, '+919812345680', '203.0.113.9')).statusCode).toBe(200);
  });

  it('refuse past OTP_BUDGET_IP_PER_DAY, counting an IPv6 client by its /64', async () => {
    const limited = await budgetApp({ OTP_BUDGET_IP_PER_DAY: '2' }, '2027-01-04');
    expect((await requestFrom(limited.app, uniquePhone(), '2001:db8:1:2::1')).statusCode).toBe(200);
    expect((await requestFrom(limited.app, uniquePhone(), '2001:db8:1:2:ffff::7')).statusCode).toBe(200);
    expect((await requestFrom(limited.app, uniquePhone(), '2001:db8:1:2::3')).json()).toMatchObject({ error: 'rate_limited' });
    expect((await requestFrom(limited.app, uniquePhone(), '2001:db8:1:3::1')).statusCode).toBe(200);
    expect((await requestFrom(limited.app, uniquePhone(), '203.0.113.5')).statusCode).toBe(200);
  });
});

describe('the per-IP request limit', async () => {
  const limited = await buildTestApp({ OTP_RATE_LIMIT_MAX: '2' });

  // @fastify/rate-limit (11.x) counts IPv6 by /64 itself; this pins it, as our own per-IP budgets do the same.
  it('keys an IPv6 client by its /64', async () => {
    const send = (address: string) => limited.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: 'bad' }, remoteAddress: address });
    expect((await send('2001:db8:5:6::1')).statusCode).toBe(400);
    expect((await send('2001:db8:5:6::2')).statusCode).toBe(400);
    expect((await send('2001:db8:5:6:abcd::3')).json()).toMatchObject({ error: 'rate_limited' });
    expect((await send('2001:db8:5:7::1')).statusCode).toBe(400);
  });
});
