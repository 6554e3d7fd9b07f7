import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as client from 'openid-client';
import { describe, expect, it } from 'vitest';
import { uniquePhone } from '../helpers/app.js';
import { authorizationRequest, discover, launchBrowser, newContext, sendCode, startOidcGateway } from '../helpers/oidc.js';

const gateway = await startOidcGateway();
const browser = await launchBrowser();

describe('Sign in with Chatgate by SMS code, in Chromium, with openid-client as the relying party', () => {
  it('discovers the provider, signs in on the hosted page, verifies the ID token, reads userinfo, refreshes and logs out', async () => {
    const config = await discover(gateway);
    const metadata = config.serverMetadata();
    expect(metadata.issuer).toBe(gateway.issuer);
    expect(metadata.jwks_uri).toBe(`${gateway.issuer}/.well-known/jwks.json`);
    expect(metadata.authorization_endpoint).toBe(`${gateway.issuer}/oidc/auth`);
    expect(metadata.code_challenge_methods_supported).toEqual(['S256']);
    expect(metadata.response_types_supported).toEqual(['code']);
    expect(metadata.grant_types_supported).not.toContain('implicit');
    expect(metadata.grant_types_supported).not.toContain('password');

    const request = await authorizationRequest(config, gateway.clients.confidential.redirect_uris[0]!);
    const context = await newContext(browser);
    const page = await context.newPage();
    await page.goto(request.url.href);
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Sign in to Acme Web');

    const phone = uniquePhone();
    await sendCode(page, phone);
    await page.getByLabel('Code', { exact: true }).fill(gateway.sms.lastCodeFor(phone));
    const landed = page.waitForURL((url) => url.href.startsWith(request.redirectUri));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await landed;

    const tokens = await client.authorizationCodeGrant(config, new URL(page.url()), {
      pkceCodeVerifier: request.verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
    const { payload: idToken, protectedHeader } = await jwtVerify(tokens.id_token!, createRemoteJWKSet(new URL(metadata.jwks_uri!)), {
      issuer: gateway.issuer,
      audience: 'web-app',
      currentDate: new Date(),
    });
    expect(protectedHeader.kid).toBe(gateway.keys.kid);
    expect(idToken).toMatchObject({ amr: ['sms'], phone_number: phone, phone_number_verified: true, nonce: request.nonce });
    expect(typeof idToken.auth_time).toBe('number');
    const user = await gateway.database.models.User.findOne({ phone }).lean();
    expect(idToken.sub).toBe(user!._id.toString());

    const userinfo = await client.fetchUserInfo(config, tokens.access_token, idToken.sub!);
    expect(userinfo).toMatchObject({ sub: idToken.sub, phone_number: phone, phone_number_verified: true });

    expect(tokens.refresh_token).toBeTruthy();
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.refresh_token).toBeTruthy();
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    // The rotated-out refresh token is spent.
    await expect(client.refreshTokenGrant(config, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });

    const logout = client.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token!,
      post_logout_redirect_uri: gateway.clients.confidential.post_logout_redirect_uris[0]!,
      state: 'bye',
    });
    await page.goto(logout.href);
    const signedOut = page.waitForURL((url) => url.href.startsWith(gateway.clients.confidential.post_logout_redirect_uris[0]!));
    await page.getByRole('button', { name: 'Yes, sign me out' }).click();
    await signedOut;
    expect(new URL(page.url()).searchParams.get('state')).toBe('bye');

    // The provider reports its events after answering, so the trail is written a moment later.
    const auditTypes = async () => (await gateway.database.models.AuditEvent.find({ type: /^oidc\./ }).lean()).map((event) => event.type);
    await expect.poll(auditTypes, { timeout: 5000 }).toEqual(expect.arrayContaining(['oidc.authorized', 'oidc.token_exchanged', 'oidc.token_refreshed', 'oidc.logout']));
    await context.close();
  });
});
