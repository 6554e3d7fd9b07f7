import { beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, uniquePhone, type TestApp } from './helpers/app.js';

// A request for a phone this instance has not sent to lately writes its first send together with the lookups (one
// round trip), guessing that the phone has no document yet. Two instances on one database show what happens when
// the guess is wrong: the phone was sent to by the other one.

let first: TestApp;
let second: TestApp;

beforeAll(async () => {
  first = await buildTestApp();
  second = await buildTestApp({}, { database: first.database });
});

const request = (target: TestApp, phone: string) => target.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } });
const challengesOf = (phone: string) =>
  first.database.connection.collection('challenges').find({ phone }, { projection: { sendSeq: 1, status: 1 } }).sort({ sendSeq: 1 }).toArray();

describe('the first send of a phone, written with the lookups', () => {
  it('a phone another instance sent to: the guess is undone, and the new code is numbered after the earlier one and works', async () => {
    const phone = uniquePhone();
    expect((await request(first, phone)).statusCode).toBe(200);
    second.clock.advance(31);
    const answer = await request(second, phone);
    expect(answer.statusCode).toBe(200);
    expect((await challengesOf(phone)).map((challenge) => challenge.sendSeq)).toEqual([1, 2]);
    const record = await first.database.connection.collection('otp_phones').findOne({ _id: phone as never });
    expect(record).toMatchObject({ lastSeq: 2 });
    const verified = await first.app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code: second.sms.lastCodeFor(phone) } });
    expect(verified.statusCode).toBe(200);
  });

  it('another instance\'s send a moment ago still makes the wait between codes apply, and leaves no guessed code behind', async () => {
    second.clock.set(first.clock.now());
    const phone = uniquePhone();
    expect((await request(first, phone)).statusCode).toBe(200);
    const refused = await request(second, phone);
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'rate_limited', retryAfter: expect.any(Number) });
    expect((await challengesOf(phone)).map((challenge) => challenge.sendSeq)).toEqual([1]);
    expect(second.sms.sent.filter((message) => message.phone === phone)).toHaveLength(0);
  });

  it('two instances asked for a new phone at the same moment send one code', async () => {
    second.clock.set(first.clock.now());
    const phone = uniquePhone();
    const answers = await Promise.all([request(first, phone), request(second, phone)]);
    expect(answers.map((answer) => answer.statusCode).sort()).toEqual([200, 429]);
    const sent = [...first.sms.sent, ...second.sms.sent].filter((message) => message.phone === phone);
    expect(sent).toHaveLength(1);
    expect((await challengesOf(phone)).map((challenge) => challenge.status)).toEqual(['active']);
    // The phone's document holds the send that went out, so a check by phone finds its code.
    const verified = await first.app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code: sent[0]!.code } });
    expect(verified.statusCode).toBe(200);
  });
});
