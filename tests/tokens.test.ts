import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { Types } from 'mongoose';
import { sha256 } from '../src/services/tokens.js';
import { buildTestApp, signInBySms, uniquePhone, type TokenPair } from './helpers/app.js';

// Without the reuse grace, so these tests pin strict reuse detection; the grace has its own tests below.
const testApp = await buildTestApp({ JWT_ISSUER: 'https://auth.example.test', JWT_AUDIENCE: 'example-api', REFRESH_REUSE_GRACE_SECONDS: '0' });
const { app, clock, database } = testApp;

const refresh = (refreshToken: string) => app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken } });
const me = (accessToken: string) => app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${accessToken}` } });

describe('access tokens', () => {
  it('verify against the published JWKS with the standard claims', async () => {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const phone = uniquePhone();
    const tokens = await signInBySms(testApp, phone);
    const jwks = createRemoteJWKSet(new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(tokens.accessToken, jwks, {
      issuer: 'https://auth.example.test',
      audience: 'example-api',
      currentDate: clock.now(),
    });
    expect(protectedHeader).toMatchObject({ alg: 'ES256', kid: testApp.keys.kid, typ: 'JWT' });
    expect(payload).toMatchObject({
      iss: 'https://auth.example.test',
      aud: 'example-api',
      sub: tokens.user.id,
      amr: ['sms'],
      phone_number: phone,
      phone_number_verified: true,
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
      sid: expect.any(String),
    });
    expect(payload.exp! - payload.iat!).toBe(900);
    expect(payload.iat).toBe(Math.floor(clock.now().getTime() / 1000));
  });

  it('publish public keys only', async () => {
    const response = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('application/json');
    const { keys } = response.json() as { keys: Record<string, unknown>[] };
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: testApp.keys.kid });
    for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(keys[0]).not.toHaveProperty(secret);
  });

  it('show the signed-in user at /auth/me', async () => {
    const tokens = await signInBySms(testApp);
    const response = await me(tokens.accessToken);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ user: { id: tokens.user.id, phone: tokens.user.phone } });
  });

  it('are refused at /auth/me when missing, forged or expired', async () => {
    const tokens = await signInBySms(testApp);
    expect((await app.inject({ method: 'GET', url: '/auth/me' })).json()).toMatchObject({ error: 'unauthorized' });
    const [header, body] = tokens.accessToken.split('.');
    const forged = `${header}.${body}.${'A'.repeat(86)}`;
    expect((await me(forged)).json()).toMatchObject({ error: 'invalid_token' });
    clock.advance(901);
    const expired = await me(tokens.accessToken);
    expect(expired.statusCode).toBe(401);
    expect(expired.json()).toMatchObject({ error: 'token_expired' });
  });
});

describe('refresh tokens', () => {
  it('rotate on every use', async () => {
    const first = await signInBySms(testApp);
    const response = await refresh(first.refreshToken);
    expect(response.statusCode).toBe(200);
    const second = response.json() as TokenPair;
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.user.id).toBe(first.user.id);
    expect((await refresh(second.refreshToken)).statusCode).toBe(200);
  });

  it('are stored hashed, never as issued', async () => {
    const tokens = await signInBySms(testApp);
    const stored = await database.connection.collection('refresh_tokens').find({ userId: { $exists: true } }).toArray();
    expect(JSON.stringify(stored)).not.toContain(tokens.refreshToken.slice(5));
    expect(stored.length).toBeGreaterThan(0);
  });

  it('answer 401 token_reused when a rotated one comes back, and revoke the whole family', async () => {
    const first = await signInBySms(testApp);
    const second = (await refresh(first.refreshToken)).json() as TokenPair;
    const replay = await refresh(first.refreshToken);
    expect(replay.statusCode).toBe(401);
    expect(replay.json()).toMatchObject({ error: 'token_reused' });
    // The legitimate successor dies with the family, and so does the session behind its access token.
    expect((await refresh(second.refreshToken)).json()).toMatchObject({ error: 'token_revoked' });
    expect((await me(second.accessToken)).json()).toMatchObject({ error: 'token_revoked' });
    await testApp.app.services.audit.flush();
    const audit = await database.connection.collection('audit_events').findOne({ type: 'tokens.reuse_detected', userId: { $exists: true } });
    expect(audit).toMatchObject({ channel: 'sms', ip: '127.0.0.1' });
  });

  it('give exactly one success to concurrent refreshes with the same token', async () => {
    const tokens = await signInBySms(testApp);
    const responses = await Promise.all(Array.from({ length: 20 }, () => refresh(tokens.refreshToken)));
    const statuses = responses.map((response) => response.statusCode);
    expect(statuses.filter((status) => status === 200)).toHaveLength(1);
    expect(statuses.filter((status) => status === 401)).toHaveLength(19);
  });

  it('keep the session stored as long as its newest token is valid', async () => {
    const tokens = await signInBySms(testApp);
    const sessionId = (await testApp.database.connection.collection('refresh_tokens').findOne({ userId: { $exists: true } }, { sort: { _id: -1 } }))!.sessionId;
    clock.advance(20 * 86_400);
    const rotated = (await refresh(tokens.refreshToken)).json() as TokenPair;
    clock.advance(20 * 86_400);
    expect((await refresh(rotated.refreshToken)).statusCode).toBe(200);
    const session = await testApp.database.connection.collection('sessions').findOne({ _id: sessionId });
    expect(session!.cleanupAt.getTime()).toBeGreaterThan(clock.now().getTime() + 30 * 86_400_000);
  });

  it('expire after REFRESH_TOKEN_TTL_SECONDS', async () => {
    const tokens = await signInBySms(testApp);
    clock.advance(30 * 86_400);
    const response = await refresh(tokens.refreshToken);
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: 'token_expired' });
  });

  it('refuse an unknown token with 401 invalid_token', async () => {
    const response = await refresh('cgrt_not-a-real-token');
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: 'invalid_token' });
  });

  it('stop working for a user who is blocked meanwhile', async () => {
    const tokens = await signInBySms(testApp);
    await database.connection.collection('users').updateOne({ phone: tokens.user.phone }, { $set: { status: 'blocked' } });
    const response = await refresh(tokens.refreshToken);
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ error: 'user_blocked' });
  });
});

describe('logout', () => {
  it('with the refresh token revokes the family: 204, then refresh and /auth/me are refused', async () => {
    const tokens = await signInBySms(testApp);
    const response = await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } });
    expect(response.statusCode).toBe(204);
    expect(response.body).toBe('');
    expect((await refresh(tokens.refreshToken)).json()).toMatchObject({ error: 'token_revoked' });
    expect((await me(tokens.accessToken)).json()).toMatchObject({ error: 'token_revoked' });
  });

  it('with the access token in Authorization revokes its family', async () => {
    const tokens = await signInBySms(testApp);
    const response = await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${tokens.accessToken}` } });
    expect(response.statusCode).toBe(204);
    expect((await refresh(tokens.refreshToken)).json()).toMatchObject({ error: 'token_revoked' });
  });

  it('without any token answers 401', async () => {
    const response = await app.inject({ method: 'POST', url: '/auth/logout' });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: 'unauthorized', message: expect.any(String) });
  });

  it('leaves the other sessions of the same user alone', async () => {
    const phone = uniquePhone();
    const laptop = await signInBySms(testApp, phone);
    clock.advance(31);
    const phoneSession = await signInBySms(testApp, phone);
    await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: laptop.refreshToken } });
    expect((await refresh(phoneSession.refreshToken)).statusCode).toBe(200);
  });
});

describe.each(['RS256', 'EdDSA'] as const)('signing with %s', async (alg) => {
  const other = await buildTestApp({ JWT_ALG: alg });

  it('issues tokens that verify against its JWKS', async () => {
    const tokens = await signInBySms(other);
    expect(decodeProtectedHeader(tokens.accessToken).alg).toBe(alg);
    const jwks = (await other.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json() as { keys: { alg: string }[] };
    expect(jwks.keys[0]!.alg).toBe(alg);
    const { createLocalJWKSet } = await import('jose');
    await expect(jwtVerify(tokens.accessToken, createLocalJWKSet(jwks as never), { currentDate: other.clock.now() })).resolves.toBeTruthy();
  });
});

describe('the refresh reuse grace', async () => {
  const graced = await buildTestApp();
  const refreshGraced = (refreshToken: string) => graced.app.inject({ method: 'POST', url: '/auth/token/refresh', payload: { refreshToken } });
  const successorsOf = async (refreshToken: string) => {
    const parent = await graced.database.connection.collection('refresh_tokens').findOne({ tokenHash: sha256(refreshToken) });
    return graced.database.connection.collection('refresh_tokens').countDocuments({ parentId: parent!._id });
  };

  it('gives 20 concurrent refreshes with one token the same successor and a fresh access token, rotating once', async () => {
    const tokens = await signInBySms(graced);
    const responses = await Promise.all(Array.from({ length: 20 }, () => refreshGraced(tokens.refreshToken)));
    expect(responses.map((response) => response.statusCode)).toEqual(Array(20).fill(200));
    const pairs = responses.map((response) => response.json() as TokenPair);
    expect(new Set(pairs.map((pair) => pair.refreshToken)).size).toBe(1);
    expect(pairs[0]!.refreshToken).not.toBe(tokens.refreshToken);
    expect(await successorsOf(tokens.refreshToken)).toBe(1);
    const session = await graced.database.connection.collection('sessions').findOne({ userId: new Types.ObjectId(tokens.user.id) });
    expect(session!.revokedAt).toBeUndefined();
    const [first] = pairs;
    expect((await graced.app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${first!.accessToken}` } })).statusCode).toBe(200);
    expect((await refreshGraced(first!.refreshToken)).statusCode).toBe(200);
  });

  it('answers a replay within REFRESH_REUSE_GRACE_SECONDS with the same successor', async () => {
    const tokens = await signInBySms(graced);
    const rotated = (await refreshGraced(tokens.refreshToken)).json() as TokenPair;
    graced.clock.advance(10);
    const replay = await refreshGraced(tokens.refreshToken);
    expect(replay.statusCode).toBe(200);
    expect((replay.json() as TokenPair).refreshToken).toBe(rotated.refreshToken);
  });

  it('revokes the family when the replay comes after the grace, even when many race', async () => {
    const tokens = await signInBySms(graced);
    const rotated = (await refreshGraced(tokens.refreshToken)).json() as TokenPair;
    graced.clock.advance(11);
    const replays = await Promise.all(Array.from({ length: 10 }, () => refreshGraced(tokens.refreshToken)));
    expect(replays.map((response) => response.statusCode)).toEqual(Array(10).fill(401));
    expect(replays.some((response) => (response.json() as { error: string }).error === 'token_reused')).toBe(true);
    expect((await refreshGraced(rotated.refreshToken)).json()).toMatchObject({ error: 'token_revoked' });
  });

  it('never stores the successor in clear', async () => {
    const tokens = await signInBySms(graced);
    const rotated = (await refreshGraced(tokens.refreshToken)).json() as TokenPair;
    const stored = await graced.database.connection.collection('refresh_tokens').find({}).toArray();
    expect(JSON.stringify(stored)).not.toContain(rotated.refreshToken.slice(5));
  });
});
