import { beforeAll, describe, expect, it } from 'vitest';
import { createCommandCounter, type CommandCounter } from '../src/db/command-counter.js';
import { buildTestApp, signInBySms, uniquePhone, type TestApp, type TokenPair } from './helpers/app.js';

// Database round trips per request, counted with the driver's command monitoring. `depth` is the number of sequential
// round trips (commands sent side by side count once); `commands` every command sent. Audit events are written in
// batches off the request path, so their collection is left out here and counted in its own test.

let testApp: TestApp;
let counter: CommandCounter;

beforeAll(async () => {
  testApp = await buildTestApp();
  counter = createCommandCounter(testApp.database.connection);
  // Enough pooled connections for commands sent side by side: one that first had to open a connection could start
  // after its sibling finished and be counted as a round trip of its own.
  const users = testApp.database.connection.collection('users');
  await Promise.all(Array.from({ length: 8 }, () => users.findOne({ _id: 'warm-up' as never })));
  return () => counter.stop();
});

const measure = (work: () => Promise<{ statusCode: number; body: string }>) =>
  counter.count(async () => {
    const response = await work();
    if (response.statusCode !== 200) throw new Error(`${response.statusCode} ${response.body}`);
    return response;
  }, { ignore: ['audit_events'] });

const post = (url: string, payload: object, headers: Record<string, string> = {}) => testApp.app.inject({ method: 'POST', url, payload, headers });

const names = (commands: { name: string; collection: string | undefined }[]) => commands.map((command) => `${command.name} ${command.collection}`).sort();

describe('database round trips per request', () => {
  it('an OTP request for a phone this instance has not sent to lately: 1 round trip (1 lookup and 2 writes side by side, 3 commands)', async () => {
    // The paid-send budgets come from blocks of slots this instance already holds (the first send reserved them).
    await post('/auth/otp/request', { phone: uniquePhone() });
    const { depth, commands } = await measure(() => post('/auth/otp/request', { phone: uniquePhone() }));
    expect(depth).toBe(1);
    // No user read: an SMS asked for by name needs the user only for a block, which leaves a mark beside the phone.
    expect(names(commands)).toEqual(['find otp_phones', 'insert challenges', 'insert otp_phones'].sort());
    // Three keys, the phone's document, its failure marker and its block mark: not the failure count's
    // 2 × OTP_MAX_FAILURES_PER_DAY keys, each an index lookup for the database (on mongo-java-server about ten times a
    // point lookup's work before its launcher compared index keys by value, about 1.2 times since).
    const phoneRead = commands.find((command) => command.name === 'find' && command.collection === 'otp_phones');
    expect((phoneRead?.filters[0] as { _id: { $in: unknown[] } })._id.$in).toHaveLength(3);
  });

  it('a new code for a phone sent to lately: 2 sequential round trips (1 lookup, then the challenge and the phone\'s document: 3 commands)', async () => {
    const phone = uniquePhone();
    await post('/auth/otp/request', { phone });
    testApp.clock.advance(31);
    const { depth, commands } = await measure(() => post('/auth/otp/request', { phone }));
    expect(depth).toBe(2);
    expect(names(commands)).toEqual(['find otp_phones', 'insert challenges', 'update otp_phones'].sort());
  });

  it('an OTP request for the phone of a blocked user reads the user, as the mark beside the phone says', async () => {
    const phone = uniquePhone();
    const user = await testApp.app.services.identities.resolveByPhone(phone);
    await testApp.database.connection.collection('otp_phones').insertOne({ _id: `blocked:${phone}` as never, phone });
    await testApp.database.connection.collection('users').updateOne({ _id: user._id }, { $set: { status: 'blocked' } });
    const { commands } = await measure(() => post('/auth/otp/request', { phone }));
    expect(names(commands)).toContain('find users');
  });

  it('the first paid send of a window reserves a block of each budget beside the challenge: still 1 round trip', async () => {
    // An instance of its own in an hour of its own, so no budget has a block yet.
    const fresh = await buildTestApp();
    fresh.clock.set(new Date('2030-03-03T10:00:00Z'));
    // A new instance's connection pool opens connections two at a time: commands sent side by side could queue for
    // one and look sequential. Opened first, so only the request's own order is measured.
    await Promise.all(Array.from({ length: 8 }, () => fresh.database.connection.db!.admin().ping()));
    const { depth, commands } = await counter.count(async () => {
      const response = await fresh.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: uniquePhone() } });
      expect(response.statusCode).toBe(200);
    }, { ignore: ['audit_events'] });
    expect(depth).toBe(1);
    // global per hour, global per day, the country per hour, the IP per day: one block each.
    expect(names(commands).filter((name) => name === 'insert reservations')).toHaveLength(4);
  });

  it('a verify by challenge id with token issue: 6 sequential round trips, 10 commands (the login stamp rides on the user upsert)', async () => {
    const phone = uniquePhone();
    const { challengeId } = (await post('/auth/otp/request', { phone })).json() as { challengeId: string };
    const code = testApp.sms.lastCodeFor(phone);
    const { depth, commands } = await measure(() => post('/auth/otp/verify', { challengeId, code }));
    // The failure count of a rolling 24 hours is read (with the phone's document, beside the attempt slot) before the
    // check takes its place in it.
    expect(depth).toBe(6);
    expect(names(commands)).toEqual(
      [
        'find challenges',
        'find otp_phones',
        'insert reservations',
        'insert otp_phones',
        'insert reservations',
        'delete otp_phones',
        'findAndModify users',
        'update challenges',
        'insert sessions',
        'insert refresh_tokens',
      ].sort(),
    );
    // The right code starts the phone's failure count again by deleting what the check read and recorded (here its
    // own failure) and the marker: not every key of the count, which the engines look up one by one.
    const reset = commands.find((command) => command.name === 'delete' && command.collection === 'otp_phones');
    expect((reset?.filters[0] as { _id: { $in: unknown[] } })._id.$in).toHaveLength(2);
  });

  it('a verify by phone with token issue: at most 6 sequential round trips', async () => {
    const phone = uniquePhone();
    await post('/auth/otp/request', { phone });
    const code = testApp.sms.lastCodeFor(phone);
    const { depth, commands } = await measure(() => post('/auth/otp/verify', { phone, code }));
    expect(depth).toBeLessThanOrEqual(6);
    expect(commands.length).toBeLessThanOrEqual(10);
  });

  it('a refresh: 3 sequential round trips, 5 commands', async () => {
    const tokens: TokenPair = await signInBySms(testApp);
    const { depth, commands } = await measure(() => post('/auth/token/refresh', { refreshToken: tokens.refreshToken }));
    expect(depth).toBe(3);
    expect(names(commands)).toEqual(['find refresh_tokens', 'find sessions', 'find users', 'insert refresh_tokens', 'update sessions'].sort());
  });

  it('/auth/me: 1 round trip (session and user side by side)', async () => {
    const tokens = await signInBySms(testApp);
    const { depth, commands } = await measure(() =>
      testApp.app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${tokens.accessToken}` } }),
    );
    expect(depth).toBe(1);
    expect(names(commands)).toEqual(['find sessions', 'find users']);
  });

});

describe('database commands under concurrency', () => {
  it('20 concurrent OTP requests share the paid-send budgets without colliding: 4 commands each, plus a block now and then', async () => {
    const phones = Array.from({ length: 20 }, () => uniquePhone());
    const { commands } = await counter.count(async () => {
      const answers = await Promise.all(phones.map((phone) => post('/auth/otp/request', { phone })));
      expect(answers.map((answer) => answer.statusCode)).toEqual(phones.map(() => 200));
    }, { ignore: ['audit_events'] });
    // Alone, a request sends 4 commands; the budgets are handed out from blocks (here 20, 100, 6 and 100 slots), so
    // 20 sends reserve at most 8 blocks. Before concurrent takers claimed different slots of the shared budget
    // counters, each collision cost a probe and a retry: 16 commands per request at 10 at a time, 61 at 50; before
    // the blocks, 6 per request; before the failures moved beside the phone's document, 5.
    expect(commands.length).toBeLessThanOrEqual(20 * 4 + 8);
  });
});
