import * as client from 'openid-client';
import { describe, expect, it } from 'vitest';
import { uniquePhone } from '../helpers/app.js';
import { authorizationRequest, CookieJar, discover, follow, signInOverHttp, startOidcGateway } from '../helpers/oidc.js';

const gateway = await startOidcGateway();
const confidential = await discover(gateway, 'confidential');
const publicApp = await discover(gateway, 'public');
const callbackUri = gateway.clients.confidential.redirect_uris[0]!;

const exchange = (callback: URL, request: { verifier: string; state: string; nonce: string }, config = confidential) =>
  client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });

/** What the authorization endpoint answers, without following: a redirect to the app or a page of its own. */
async function authorize(params: Record<string, string>) {
  const url = new URL('/oidc/auth', gateway.issuer);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return fetch(url, { redirect: 'manual' });
}

describe('the OpenID Provider refuses what the protocol refuses', () => {
  it('a redirect URI that is not registered gets an error page, never a redirect', async () => {
    const response = await authorize({
      client_id: 'web-app',
      response_type: 'code',
      scope: 'openid',
      redirect_uri: 'https://evil.example/callback',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    const page = await response.text();
    expect(page).toContain('redirect_uri did not match any of the client&#39;s registered redirect_uris');
    expect(response.headers.get('content-security-policy')).toContain("script-src 'self'");
  });

  it('a public client without PKCE is sent back with invalid_request', async () => {
    const response = await authorize({ client_id: 'spa-app', response_type: 'code', scope: 'openid', redirect_uri: gateway.clients.public.redirect_uris[0]!, state: 's1' });
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!);
    expect(location.href.startsWith(gateway.clients.public.redirect_uris[0]!)).toBe(true);
    expect(Object.fromEntries(location.searchParams)).toMatchObject({ error: 'invalid_request', state: 's1' });
    expect(location.searchParams.get('error_description')).toMatch(/PKCE/);
  });

  it('the plain PKCE method is refused', async () => {
    const response = await authorize({
      client_id: 'spa-app',
      response_type: 'code',
      scope: 'openid',
      redirect_uri: gateway.clients.public.redirect_uris[0]!,
      code_challenge: 'a-plain-challenge-that-is-long-enough-for-the-rule-0123456789',
      code_challenge_method: 'plain',
    });
    const location = new URL(response.headers.get('location')!);
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('error_description')).toMatch(/code_challenge_method/);
  });

  it('the implicit flow is refused', async () => {
    const response = await authorize({ client_id: 'web-app', response_type: 'id_token', scope: 'openid', redirect_uri: callbackUri, nonce: 'n' });
    const answer = response.headers.get('location') ? new URL(response.headers.get('location')!) : undefined;
    const error = answer?.searchParams.get('error') ?? new URLSearchParams(answer?.hash.slice(1)).get('error');
    expect(error).toBe('unsupported_response_type');
  });

  it('a public client signs in with PKCE and no secret', async () => {
    const request = await authorizationRequest(publicApp, gateway.clients.public.redirect_uris[0]!);
    const { callback } = await signInOverHttp(gateway, request.url, uniquePhone());
    const tokens = await exchange(callback, request, publicApp);
    expect(tokens.claims()?.amr).toEqual(['sms']);
  });

  it('a replayed authorization code is refused, and the tokens of the first exchange stop working', async () => {
    const request = await authorizationRequest(confidential, callbackUri);
    const { callback } = await signInOverHttp(gateway, request.url, uniquePhone());
    const tokens = await exchange(callback, request);
    await expect(client.fetchUserInfo(confidential, tokens.access_token, tokens.claims()!.sub)).resolves.toMatchObject({ sub: tokens.claims()!.sub });
    await expect(exchange(callback, request)).rejects.toMatchObject({ error: 'invalid_grant' });
    await expect(client.fetchUserInfo(confidential, tokens.access_token, tokens.claims()!.sub)).rejects.toMatchObject({ status: 401 });
  });

  it('of 50 concurrent exchanges of one code exactly one gets tokens, the rest invalid_grant', async () => {
    const request = await authorizationRequest(confidential, callbackUri);
    const { callback } = await signInOverHttp(gateway, request.url, uniquePhone());
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => exchange(callback, request)));
    const won = results.filter((result) => result.status === 'fulfilled');
    const lost = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost.map((result) => (result.reason as { error?: string }).error)).toEqual(Array(49).fill('invalid_grant'));
  });

  it('of 20 concurrent refreshes with one refresh token exactly one gets a new pair', async () => {
    const request = await authorizationRequest(confidential, callbackUri);
    const { callback } = await signInOverHttp(gateway, request.url, uniquePhone());
    const tokens = await exchange(callback, request);
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => client.refreshTokenGrant(confidential, tokens.refresh_token!)));
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((result) => result.status === 'rejected').map((result) => (result.reason as { error?: string }).error)).toEqual(Array(19).fill('invalid_grant'));
  });

  it('a state that does not match is refused by the relying party library', async () => {
    const request = await authorizationRequest(confidential, callbackUri);
    const { callback } = await signInOverHttp(gateway, request.url, uniquePhone());
    const refused = (await exchange(callback, { ...request, state: 'another-state' }).catch((error: unknown) => error)) as { code?: string; cause?: Error };
    expect(refused.code).toBe('OAUTH_INVALID_RESPONSE');
    expect(refused.cause?.message).toBe('unexpected "state" response parameter value');
    // Refused before the code was sent anywhere: the request it belongs to can still use it.
    await expect(exchange(callback, request)).resolves.toHaveProperty('access_token');
  });

  it('stores no authorization code, access token or refresh token in the clear', async () => {
    const request = await authorizationRequest(confidential, callbackUri);
    const { callback } = await signInOverHttp(gateway, request.url, uniquePhone());
    const tokens = await exchange(callback, request);
    const stored = JSON.stringify(await gateway.database.connection.collection('oidc_entries').find().toArray());
    for (const secret of [callback.searchParams.get('code')!, tokens.access_token, tokens.refresh_token!]) expect(stored).not.toContain(secret);
  });

  it('revocation ends a refresh token', async () => {
    const request = await authorizationRequest(confidential, callbackUri);
    const { callback } = await signInOverHttp(gateway, request.url, uniquePhone());
    const tokens = await exchange(callback, request);
    await client.tokenRevocation(confidential, tokens.refresh_token!);
    await expect(client.refreshTokenGrant(confidential, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });
});

describe('sessions', () => {
  it('a second sign-in in the same browser needs no new proof; prompt=login and max_age=0 ask again', async () => {
    const first = await authorizationRequest(confidential, callbackUri);
    const { jar } = await signInOverHttp(gateway, first.url, uniquePhone());

    const again = await authorizationRequest(confidential, callbackUri);
    const silent = await follow(jar, gateway, again.url);
    expect(silent.url.startsWith(callbackUri)).toBe(true);
    await expect(exchange(new URL(silent.url), again)).resolves.toHaveProperty('access_token');

    for (const extra of [{ prompt: 'login' }, { max_age: '0' }] as Record<string, string>[]) {
      const fresh = await authorizationRequest(confidential, callbackUri, extra);
      const page = await follow(jar, gateway, fresh.url);
      expect(page.url).toContain('/oidc/interaction/');
      expect(await page.response.text()).toContain('Send code');
    }
  });

  it('the session cookie is httpOnly and SameSite=Lax', async () => {
    const request = await authorizationRequest(confidential, callbackUri);
    const jar = new CookieJar();
    const page = await follow(jar, gateway, request.url);
    const api = `${page.url}/api`;
    const phone = uniquePhone();
    const sent = (await (await jar.fetch(`${api}/otp/request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ phone }) })).json()) as { challengeId: string };
    const verified = (await (await jar.fetch(`${api}/otp/verify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ challengeId: sent.challengeId, code: gateway.sms.lastCodeFor(phone) }) })).json()) as { redirectTo: string };
    const resumed = await fetch(verified.redirectTo, { redirect: 'manual', headers: { cookie: jar.header() } });
    const session = resumed.headers.getSetCookie().find((line) => line.startsWith('_session='));
    expect(session).toMatch(/httponly/i);
    expect(session).toMatch(/samesite=lax/i);
  });

  it('an interaction that has expired is shown as such, and its page API refuses with a clear reason', async () => {
    const request = await authorizationRequest(confidential, callbackUri);
    const jar = new CookieJar();
    const page = await follow(jar, gateway, request.url);
    const before = gateway.clock.now();
    gateway.clock.advance(2 * 3600);
    try {
      const expired = await jar.fetch(page.url);
      expect(expired.status).toBe(410);
      expect(await expired.text()).toContain('This sign-in attempt has expired or was already finished.');
      const refused = await jar.fetch(`${page.url}/api/otp/request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ phone: uniquePhone() }) });
      expect(refused.status).toBe(410);
      expect(await refused.json()).toMatchObject({ error: 'expired', reason: 'session_expired' });
    } finally {
      gateway.clock.set(before);
    }
  });
});
