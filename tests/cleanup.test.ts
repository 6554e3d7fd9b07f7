import { describe, expect, it } from 'vitest';
import { buildTestApp, signInBySms, uniquePhone } from './helpers/app.js';
import { WHATSAPP_ENV } from './helpers/whatsapp.js';

// Spent data leaves by the sweep every instance runs (FerretDB refuses TTL indexes); the clock is moved, not waited for.

// WhatsApp on, so login intents can be made.
const testApp = await buildTestApp(WHATSAPP_ENV);
const { app, clock, database } = testApp;
const count = (collection: string, filter: object = {}) => database.connection.collection(collection).countDocuments(filter);
const spentCollections = ['challenges', 'otp_phones', 'reservations', 'sessions', 'refresh_tokens', 'login_intents'];
const DAY = 86_400;

describe('the cleanup sweep', () => {
  it('deletes a used code an hour after it expires, and keeps the session it opened', async () => {
    const tokens = await signInBySms(testApp);
    expect(await count('challenges', { phone: tokens.user.phone })).toBe(1);
    await app.services.cleanup.sweepOnce();
    expect(await count('challenges', { phone: tokens.user.phone })).toBe(1);

    clock.advance(300 + 3600 + 1);
    const deleted = await app.services.cleanup.sweepOnce();
    expect(deleted.challenges).toBeGreaterThanOrEqual(1);
    expect(await count('challenges', { phone: tokens.user.phone })).toBe(0);
    const refreshed = await app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken: tokens.refreshToken } });
    expect(refreshed.statusCode).toBe(200);
  });

  it('deletes sessions, refresh tokens (rotated-out ones included), reservations, login intents and phone records once spent, and keeps audit events for AUDIT_RETENTION_DAYS', async () => {
    const tokens = await signInBySms(testApp);
    expect((await app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken: tokens.refreshToken } })).statusCode).toBe(200);
    expect((await app.inject({ method: 'POST', url: '/auth/login-intents' })).statusCode).toBe(201);
    await app.services.audit.flush();
    for (const collection of spentCollections) expect(await count(collection), collection).toBeGreaterThan(0);
    const auditEvents = await count('audit_events');
    expect(auditEvents).toBeGreaterThan(0);

    // Past the refresh tokens' expiry (30 days) and the day they are kept after it.
    clock.advance(32 * DAY);
    await app.services.cleanup.sweepOnce();
    for (const collection of spentCollections) expect(await count(collection), collection).toBe(0);
    expect(await count('audit_events')).toBe(auditEvents);

    clock.advance(90 * DAY - 32 * DAY + 1);
    await app.services.cleanup.sweepOnce();
    expect(await count('audit_events')).toBe(0);
  });

  it('keeps what is still in use: a fresh code works after a sweep', async () => {
    const phone = uniquePhone();
    const requested = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } });
    const { challengeId } = requested.json() as { challengeId: string };
    clock.advance(60);
    await app.services.cleanup.sweepOnce();
    const verified = await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { challengeId, code: testApp.sms.lastCodeFor(phone) } });
    expect(verified.statusCode).toBe(200);
  });

  it('is safe when several instances sweep at once', async () => {
    await signInBySms(testApp);
    await app.services.audit.flush();
    clock.advance(400 * DAY);
    const results = await Promise.all([app.services.cleanup.sweepOnce(), app.services.cleanup.sweepOnce(), app.services.cleanup.sweepOnce()]);
    expect(results).toHaveLength(3);
    for (const collection of [...spentCollections, 'audit_events']) expect(await count(collection), collection).toBe(0);
  });

  it('numbers a phone’s sends afresh once its record is gone, without a clash', async () => {
    const phone = uniquePhone();
    expect((await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } })).statusCode).toBe(200);
    clock.advance(DAY);
    await app.services.cleanup.sweepOnce();
    expect(await count('otp_phones', { _id: phone })).toBe(0);
    expect((await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } })).statusCode).toBe(200);
    expect(await count('challenges', { phone, sendSeq: 1 })).toBe(1);
  });

  it('reads one collection at a time, so requests to the others are never held up by it all at once', async () => {
    await signInBySms(testApp);
    // The deletes the driver sends, and how many of them were in flight at once (other work on the connection aside).
    const client = database.connection.getClient();
    const deleting = new Set<number>();
    const deletedFrom: string[] = [];
    let mostAtOnce = 0;
    const started = (event: { requestId: number; commandName: string; command: Record<string, unknown> }) => {
      if (event.commandName !== 'delete') return;
      deleting.add(event.requestId);
      deletedFrom.push(String(event.command.delete));
      mostAtOnce = Math.max(mostAtOnce, deleting.size);
    };
    const ended = (event: { requestId: number }) => deleting.delete(event.requestId);
    client.on('commandStarted', started).on('commandSucceeded', ended).on('commandFailed', ended);
    try {
      await app.services.cleanup.sweepOnce();
    } finally {
      client.off('commandStarted', started).off('commandSucceeded', ended).off('commandFailed', ended);
    }
    expect(deletedFrom.sort()).toEqual([...spentCollections, 'audit_events', 'inbound_messages'].sort());
    expect(mostAtOnce).toBe(1);
  });
});
