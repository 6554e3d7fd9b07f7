import { describe, expect, it } from 'vitest';
import { buildTestApp, uniquePhone } from './helpers/app.js';

// The per-phone document is a summary for fast reads; the limits rest on the unique (phone, sendSeq) index, so a
// document that is missing or behind is rebuilt from the challenges instead of letting a send through.

const testApp = await buildTestApp();
const { app, clock, database } = testApp;
const request = (phone: string) => app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } });
const phoneRecords = () => database.connection.collection('otp_phones');

describe("a phone's send record", () => {
  it('keeps the last send number and the recent sends', async () => {
    const phone = uniquePhone();
    expect((await request(phone)).statusCode).toBe(200);
    clock.advance(31);
    expect((await request(phone)).statusCode).toBe(200);
    const stored = await phoneRecords().findOne({ _id: phone as never });
    expect(stored).toMatchObject({ lastSeq: 2, sends: [{ seq: 2 }, { seq: 1 }] });
  });

  it('when lost, is rebuilt from the challenges: the wait between codes still holds', async () => {
    const phone = uniquePhone();
    expect((await request(phone)).statusCode).toBe(200);
    await phoneRecords().deleteOne({ _id: phone as never });
    clock.advance(10);
    const refused = await request(phone);
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ error: 'rate_limited', retryAfter: 20 });
    expect(await phoneRecords().findOne({ _id: phone as never })).toMatchObject({ lastSeq: 1 });
  });

  it('when behind, is rebuilt and the request goes through under the next number', async () => {
    const phone = uniquePhone();
    expect((await request(phone)).statusCode).toBe(200);
    await phoneRecords().deleteOne({ _id: phone as never });
    clock.advance(31);
    const sent = await request(phone);
    expect(sent.statusCode).toBe(200);
    const { challengeId } = sent.json() as { challengeId: string };
    expect(await database.connection.collection('challenges').findOne({ _id: challengeId as never })).toMatchObject({ sendSeq: 2 });
    const verified = await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code: testApp.sms.lastCodeFor(phone) } });
    expect(verified.statusCode).toBe(200);
  });
});
