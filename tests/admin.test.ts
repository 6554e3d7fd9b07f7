import { execFile } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import { Types } from 'mongoose';
import { describe, expect, inject, it } from 'vitest';
import { buildTestApp, signInBySms, uniquePhone, type TokenPair } from './helpers/app.js';

const ADMIN_TOKEN = 'admin-token-that-is-long-enough-0123456789';
const testApp = await buildTestApp({ ADMIN_API_TOKEN: ADMIN_TOKEN, METRICS_TOKEN: 'metrics-token-0123456789', OTP_RESEND_SECONDS: '0' });
const { app, clock, database, sms } = testApp;
const db = database.connection;
// Audit events are written in batches: flush before reading them.
const auditEvents = async () => {
  await app.services.audit.flush();
  return db.collection('audit_events');
};

const admin = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object, token = ADMIN_TOKEN) =>
  app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
const me = (tokens: TokenPair) => app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${tokens.accessToken}` } });
const refresh = (refreshToken: string) => app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken } });

describe('the admin API', () => {
  it('refuses a wrong token, or none, with 401 and audits nothing', async () => {
    const before = await (await auditEvents()).countDocuments({ type: /^admin\./ });
    for (const headers of [{ authorization: 'Bearer wrong-token' }, { authorization: `Bearer ${ADMIN_TOKEN}x` }, {}]) {
      const response = await app.inject({ method: 'GET', url: '/admin/users?phone=%2B447911000001', headers });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toMatchObject({ error: 'unauthorized' });
      expect(response.headers['www-authenticate']).toContain('Bearer');
    }
    expect(await (await auditEvents()).countDocuments({ type: /^admin\./ })).toBe(before);
  });

  it('is not there without ADMIN_API_TOKEN', async () => {
    const { app: plain } = await buildTestApp();
    const response = await plain.inject({ method: 'GET', url: '/admin/users?phone=%2B447911000001', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(response.statusCode).toBe(404);
  });

  it('finds users by phone, Telegram id, WhatsApp id and id, and audits the lookup', async () => {
    const tokens = await signInBySms(testApp);
    const id = new Types.ObjectId(tokens.user.id);
    await db.collection('users').updateOne({ _id: id }, { $set: { telegram: { id: 777001 }, whatsapp: { waId: '447911999001' } } });
    for (const query of [`phone=${encodeURIComponent(tokens.user.phone!)}`, 'telegramId=777001', 'waId=447911999001', `id=${tokens.user.id}`]) {
      const response = await admin('GET', `/admin/users?${query}`);
      expect(response.statusCode).toBe(200);
      expect(response.json()).toMatchObject({ users: [{ id: tokens.user.id, status: 'active', block: null }] });
    }
    const lookup = await (await auditEvents()).findOne({ type: 'admin.lookup', 'detail.query': 'phone' });
    expect(lookup).toMatchObject({ ip: '127.0.0.1', detail: { via: 'api', found: 1 } });
    expect(lookup!.phone).not.toBe(tokens.user.phone);
  });

  it('asks for exactly one identifier', async () => {
    const response = await admin('GET', '/admin/users?phone=%2B447911000001&telegramId=5');
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('shows a user with sessions and last logins, and 404 for an unknown id', async () => {
    const tokens = await signInBySms(testApp);
    // Last logins come from the audit trail, which is written in batches.
    await app.services.audit.flush();
    const response = await admin('GET', `/admin/users/${tokens.user.id}`);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({
      user: { id: tokens.user.id, phone: tokens.user.phone },
      sessions: [{ id: decodeJwt(tokens.accessToken).sid, channel: 'sms' }],
      lastLogins: [{ channel: 'sms', ip: '127.0.0.1' }],
    });
    expect((await admin('GET', `/admin/users/${new Types.ObjectId().toString()}`)).statusCode).toBe(404);
    expect((await admin('GET', '/admin/users/not-an-id')).statusCode).toBe(404);
  });

  it('blocks a user: sessions revoked at once, no tokens, no codes sent; unblock lets them back', async () => {
    const phone = uniquePhone();
    const tokens = await signInBySms(testApp, phone);
    const blocked = await admin('POST', `/admin/users/${tokens.user.id}/block`, { reason: 'SMS pumping' });
    expect(blocked.statusCode).toBe(200);
    expect(blocked.json()).toMatchObject({ user: { status: 'blocked', block: { reason: 'SMS pumping', until: null } }, sessionsRevoked: 1 });
    expect((await me(tokens)).statusCode).toBe(401);
    expect((await refresh(tokens.refreshToken)).statusCode).toBe(401);
    const sentBefore = sms.sent.length;
    clock.advance(31);
    expect((await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } })).statusCode).toBe(200);
    expect(sms.sent.length).toBe(sentBefore);
    const event = await (await auditEvents()).findOne({ type: 'admin.user_blocked', userId: new Types.ObjectId(tokens.user.id) });
    expect(event).toMatchObject({ detail: { reason: 'SMS pumping', previousStatus: 'active', sessionsRevoked: 1, via: 'api' } });

    const unblocked = await admin('POST', `/admin/users/${tokens.user.id}/unblock`);
    expect(unblocked.json()).toMatchObject({ user: { status: 'active', block: null } });
    clock.advance(31);
    expect((await signInBySms(testApp, phone)).user.id).toBe(tokens.user.id);
  });

  it('lifts a block with `until` once that time has passed', async () => {
    const tokens = await signInBySms(testApp);
    const until = new Date(clock.now().getTime() + 3600_000).toISOString();
    expect((await admin('POST', `/admin/users/${tokens.user.id}/block`, { reason: 'cool down', until })).json()).toMatchObject({ user: { block: { until } } });
    const { createAdminService } = await import('../src/admin/service.js');
    const { createAuditTrail } = await import('../src/services/audit.js');
    const service = createAdminService({ models: database.models, audit: createAuditTrail(database.models.AuditEvent, clock, () => undefined), clock });
    expect(await service.sweepBlocks()).toMatchObject({ lifted: 0 });
    clock.advance(3601);
    expect(await service.sweepBlocks()).toMatchObject({ lifted: 1 });
    // The phone's mark goes with the block (src/services/blocked-phones.ts).
    expect(await db.collection('otp_phones').findOne({ _id: `blocked:${tokens.user.phone}` as never })).toBeNull();
    expect((await admin('GET', `/admin/users/${tokens.user.id}`)).json()).toMatchObject({ user: { status: 'active', block: null } });
  });

  it('refuses a block without a reason, or ending in the past', async () => {
    const tokens = await signInBySms(testApp);
    expect((await admin('POST', `/admin/users/${tokens.user.id}/block`, {})).json()).toMatchObject({ error: 'invalid_request' });
    const past = await admin('POST', `/admin/users/${tokens.user.id}/block`, { reason: 'x', until: '2020-01-01T00:00:00Z' });
    expect(past.statusCode).toBe(400);
  });

  it('signs a user out everywhere, or one session', async () => {
    const phone = uniquePhone();
    const first = await signInBySms(testApp, phone);
    const second = await signInBySms(testApp, phone);
    const one = await admin('DELETE', `/admin/sessions/${decodeJwt(first.accessToken).sid as string}`);
    expect(one.json()).toEqual({ sessionsRevoked: 1 });
    expect((await me(first)).statusCode).toBe(401);
    expect((await me(second)).statusCode).toBe(200);
    const all = await admin('DELETE', `/admin/users/${second.user.id}/sessions`);
    expect(all.json()).toEqual({ sessionsRevoked: 1 });
    expect((await me(second)).statusCode).toBe(401);
    expect((await admin('DELETE', `/admin/sessions/${new Types.ObjectId().toString()}`)).statusCode).toBe(404);
  });

  it('pages through the audit trail by cursor, filtered by user, type, phone and since', async () => {
    const phone = uniquePhone();
    const tokens = await signInBySms(testApp, phone);
    for (let index = 0; index < 3; index++) {
      clock.advance(60);
      await refresh((await signInBySms(testApp, phone)).refreshToken);
    }
    await app.services.audit.flush();
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { statusCode: number; json(): unknown } = await admin('GET', `/admin/audit?userId=${tokens.user.id}&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.statusCode).toBe(200);
      const body = page.json() as { events: { id: string; userId: string }[]; nextCursor: string | null };
      expect(body.events.length).toBeLessThanOrEqual(3);
      for (const event of body.events) expect(event.userId).toBe(tokens.user.id);
      seen.push(...body.events.map((event) => event.id));
      cursor = body.nextCursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBe(await (await auditEvents()).countDocuments({ userId: new Types.ObjectId(tokens.user.id) }));

    const refreshed = (await admin('GET', `/admin/audit?phone=${encodeURIComponent(phone)}&type=tokens.refreshed`)).json() as { events: { type: string }[] };
    expect(refreshed.events).toHaveLength(3);
    const recent = (await admin('GET', `/admin/audit?userId=${tokens.user.id}&type=tokens.issued&since=90s`)).json() as { events: unknown[] };
    expect(recent.events).toHaveLength(2);
    expect((await admin('GET', '/admin/audit?since=yesterday-ish')).json()).toMatchObject({ error: 'invalid_request' });
    expect((await admin('GET', '/admin/audit?type=not.a.type')).statusCode).toBe(400);
  });

  it('counts blocks, deletions and phone changes in /metrics', async () => {
    const metrics = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer metrics-token-0123456789' } });
    expect(metrics.body).toMatch(/^chatgate_users_blocked_total [1-9]/m);
    const tokens = await signInBySms(testApp);
    await app.inject({ method: 'DELETE', url: '/auth/me', headers: { authorization: `Bearer ${tokens.accessToken}` } });
    const after = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer metrics-token-0123456789' } });
    expect(after.body).toMatch(/^chatgate_accounts_deleted_total 1$/m);
  });

  it('is in the OpenAPI document with the admin security scheme', async () => {
    const document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, Record<string, { security?: unknown[] }>>;
    };
    for (const [path, method] of [['/admin/users', 'get'], ['/admin/users/{id}/block', 'post'], ['/admin/audit', 'get'], ['/admin/sessions/{id}', 'delete']] as const) {
      expect(document.paths[path]![method]!.security).toEqual([{ adminToken: [] }]);
    }
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('ADMIN_PORT', () => {
  it('serves the admin API on 127.0.0.1 at that port only, not on the main port', async () => {
    const port = await freePort();
    const other = await buildTestApp({ ADMIN_API_TOKEN: ADMIN_TOKEN, ADMIN_PORT: String(port) }, { database });
    const gateway = other.app;
    const tokens = await signInBySms(other);
    expect((await gateway.inject({ method: 'GET', url: `/admin/users/${tokens.user.id}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).statusCode).toBe(404);
    const side = await fetch(`http://127.0.0.1:${port}/admin/users/${tokens.user.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(side.status).toBe(200);
    expect(await side.json()).toMatchObject({ user: { id: tokens.user.id } });
    const wrong = await fetch(`http://127.0.0.1:${port}/admin/users/${tokens.user.id}`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
  });
});

describe('the admin CLI (npm run admin)', () => {
  const run = promisify(execFile);
  // The test database's URI: the suite's server with this file's database name.
  const uri = (() => {
    const url = new URL(inject('mongoUri'));
    url.pathname = `/${db.name}`;
    return url.toString();
  })();
  const cli = (...args: string[]) =>
    run('npm', ['run', '--silent', 'admin', '--', ...args], { env: { ...process.env, MONGODB_URI: uri }, cwd: new URL('..', import.meta.url).pathname });

  it('finds a user by phone, blocks them, revokes sessions and reads the audit trail', async () => {
    const tokens = await signInBySms(testApp);
    const found = await cli('users:find', '--phone', tokens.user.phone!, '--json');
    expect(JSON.parse(found.stdout)).toMatchObject({ users: [{ id: tokens.user.id, status: 'active' }] });

    const blocked = await cli('users:block', tokens.user.id, '--reason', 'abuse report 42');
    expect(blocked.stdout).toContain('status: blocked');
    expect(blocked.stdout).toContain('reason: abuse report 42');
    expect((await me(tokens)).statusCode).toBe(401);
    const event = await (await auditEvents()).findOne({ type: 'admin.user_blocked', userId: new Types.ObjectId(tokens.user.id) });
    expect(event).toMatchObject({ detail: { via: 'cli', reason: 'abuse report 42' } });

    const revoked = await cli('sessions:revoke', tokens.user.id, '--json');
    expect(JSON.parse(revoked.stdout)).toEqual({ sessionsRevoked: 0 });

    // The CLI reads the real clock; the test app's clock is in 2026, so "since" reaches back far enough.
    const trail = await cli('audit', '--user', tokens.user.id, '--since', '36500d', '--json');
    const types = (JSON.parse(trail.stdout) as { events: { type: string }[] }).events.map((entry) => entry.type);
    expect(types).toEqual(expect.arrayContaining(['admin.user_blocked', 'tokens.issued']));
    const plain = await cli('audit', '--user', tokens.user.id);
    expect(plain.stdout).toContain('type: admin.user_blocked');
  }, 120_000);

  it('fails with a clear message and a non-zero exit for an unknown user', async () => {
    await expect(cli('users:block', new Types.ObjectId().toString(), '--reason', 'x')).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('not_found: There is no user with this id.'),
    });
  }, 60_000);
});
