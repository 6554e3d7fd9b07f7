import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import mongoose from 'mongoose';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { auditEventSchema, type AuditEvent } from '../models/audit-event.js';
import { createCommandCounter } from '../src/db/command-counter.js';
import { createAuditTrail, type AuditEntry } from '../src/services/audit.js';
import { buildTestApp, uniquePhone } from './helpers/app.js';
import { createTestClock } from './helpers/clock.js';
import { connectTestDatabase } from './helpers/database.js';

const database = await connectTestDatabase();
const events = () => database.connection.collection('audit_events');

describe('the audit trail', () => {
  it('writes events recorded together in one insertMany, and shows each to listeners at once', async () => {
    const trail = createAuditTrail(database.models.AuditEvent, createTestClock(), () => undefined);
    const seen: AuditEntry[] = [];
    trail.subscribe((entry) => seen.push(entry));
    const counter = createCommandCounter(database.connection);
    const { commands } = await counter.count(async () => {
      for (let event = 0; event < 20; event++) await trail.record({ type: 'otp.sent', channel: 'sms', detail: { batch: 'one', event } });
      expect(seen).toHaveLength(20);
      await trail.flush();
    });
    counter.stop();
    expect(commands.filter((command) => command.collection === 'audit_events').map((command) => command.name)).toEqual(['insert']);
    expect(await events().countDocuments({ 'detail.batch': 'one' })).toBe(20);
    await trail.close();
  });

  it('stores phones masked', async () => {
    const trail = createAuditTrail(database.models.AuditEvent, createTestClock(), () => undefined);
    await trail.record({ type: 'otp.sent', phone: '+447911123456', detail: { batch: 'masked' } });
    await trail.close();
    const stored = await events().findOne({ 'detail.batch': 'masked' });
    expect(stored?.phone).toMatch(/^\+44\*+56$/);
  });

  it('keeps events the database refused, logs the failure, and writes them when it is back', async () => {
    const proxy = await startToggleProxy(new URL(inject('mongoUri').replace(/^mongodb:/, 'http:')));
    const dbName = `chatgate_test_${randomBytes(6).toString('hex')}`;
    const connection = await mongoose
      .createConnection(`mongodb://127.0.0.1:${proxy.port}/${dbName}`, { serverSelectionTimeoutMS: 300, retryWrites: false })
      .asPromise();
    afterAll(async () => {
      await connection.close().catch(() => undefined);
      proxy.server.close();
    });
    const model = connection.model<AuditEvent>('AuditEvent', auditEventSchema);
    const failures: Record<string, unknown>[] = [];
    const trail = createAuditTrail(model, createTestClock(), (_error, context) => failures.push(context ?? {}), {
      flushMs: 5,
      maxBatch: 100,
      maxBuffered: 1000,
    });

    proxy.down();
    await trail.record({ type: 'tokens.issued', detail: { during: 'outage' } });
    await trail.flush();
    expect(failures[0]).toMatchObject({ pendingAuditEvents: 1, retryInMs: expect.any(Number) });

    proxy.up();
    // The retries run on their own timer (with backoff) until the driver has found the server again; bounded wait.
    const outage = () => connection.collection('audit_events').countDocuments({ 'detail.during': 'outage' });
    for (let wait = 0; wait < 50 && (await outage().catch(() => 0)) === 0; wait++) await new Promise((resolve) => setTimeout(resolve, 100));
    await trail.close();
    expect(await outage()).toBe(1);
    await connection.dropDatabase();
  });

  it('is written when the app closes (graceful shutdown)', async () => {
    const closing = await buildTestApp();
    const phone = uniquePhone();
    expect((await closing.app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone }, remoteAddress: '198.51.100.77' })).statusCode).toBe(200);
    await closing.app.close();
    expect(await closing.database.connection.collection('audit_events').countDocuments({ type: 'otp.sent', ip: '198.51.100.77' })).toBe(1);
  });
});

/** A TCP proxy to the test database that can drop every connection, as a database outage looks to the driver. */
async function startToggleProxy(target: URL) {
  let isUp = true;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (!isUp) return client.destroy();
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as { port: number }).port,
    down() {
      isUp = false;
      for (const socket of sockets) socket.destroy();
    },
    up() {
      isUp = true;
    },
  };
}
