import { describe, expect, it } from 'vitest';
import { oidcEntrySchema, type OidcEntry } from '../../models/oidc-entry.js';
import { createOidcAdapterFactory } from '../../src/oidc/adapter.js';
import { createReservations } from '../../src/services/reservations.js';
import { createTestClock } from '../helpers/clock.js';
import { connectTestDatabase } from '../helpers/database.js';

const database = await connectTestDatabase();
const entries = database.connection.model<OidcEntry>('OidcEntry', oidcEntrySchema);
const clock = createTestClock();
const adapter = createOidcAdapterFactory(entries, createReservations(database.models.Reservation, clock), clock);

describe('the provider storage on MongoDB', () => {
  it('keeps an entry until it expires, then neither finds it nor keeps it after a sweep', async () => {
    const codes = adapter.factory('AuthorizationCode');
    await codes.upsert('code-1', { grantId: 'g1', accountId: 'a' }, 60);
    expect(await codes.find('code-1')).toEqual({ jti: 'code-1', grantId: 'g1', accountId: 'a' });
    clock.advance(61);
    expect(await codes.find('code-1')).toBeUndefined();
    expect(await adapter.sweepExpired()).toBeGreaterThanOrEqual(1);
    expect(await entries.countDocuments({ kind: 'AuthorizationCode', 'payload.grantId': 'g1' })).toBe(0);
  });

  it('consumes an entry once: of 30 concurrent consumers one wins, the others get invalid_grant, and the entry says consumed', async () => {
    const codes = adapter.factory('AuthorizationCode');
    await codes.upsert('code-2', { grantId: 'g2' }, 60);
    const results = await Promise.allSettled(Array.from({ length: 30 }, () => codes.consume('code-2')));
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((result) => result.status === 'rejected').map((result) => (result.reason as { error: string }).error)).toEqual(Array(29).fill('invalid_grant'));
    expect((await codes.find('code-2'))?.consumed).toEqual(expect.any(Number));
  });

  it('keeps codes and tokens as digests: the stored entry holds neither the id nor its jti, and find gives the jti back', async () => {
    const refreshTokens = adapter.factory('RefreshToken');
    const token = 'refresh-token-value-that-must-not-be-stored-0123';
    await refreshTokens.upsert(token, { jti: token, grantId: 'g4', accountId: 'a' }, 60);
    const stored = await entries.find({ kind: 'RefreshToken' }).lean();
    expect(JSON.stringify(stored)).not.toContain(token);
    expect(await refreshTokens.find(token)).toEqual({ jti: token, grantId: 'g4', accountId: 'a' });
    expect(await refreshTokens.find(`${token}x`)).toBeUndefined();
  });

  it('revokes everything of a grant, and finds sessions by uid', async () => {
    const tokens = adapter.factory('AccessToken');
    const sessions = adapter.factory('Session');
    await tokens.upsert('t1', { grantId: 'g3' }, 60);
    await tokens.upsert('t2', { grantId: 'g3' }, 60);
    await tokens.upsert('t3', { grantId: 'other' }, 60);
    await tokens.revokeByGrantId('g3');
    expect([await tokens.find('t1'), await tokens.find('t2'), await tokens.find('t3')]).toEqual([undefined, undefined, { jti: 't3', grantId: 'other' }]);
    await sessions.upsert('s1', { uid: 'uid-1', accountId: 'a' }, 60);
    expect(await sessions.findByUid('uid-1')).toEqual({ uid: 'uid-1', accountId: 'a' });
    await sessions.destroy('s1');
    expect(await sessions.findByUid('uid-1')).toBeUndefined();
  });
});
