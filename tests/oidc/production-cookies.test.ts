import { describe, expect, it } from 'vitest';
import { generateSigningJwks } from '../../src/services/signing-keys.js';
import { buildTestApp, TEST_PEPPER } from '../helpers/app.js';

// The production settings the configuration insists on, with the one OpenID app.
const { app } = await buildTestApp({
  NODE_ENV: 'production',
  PUBLIC_URL: 'https://auth.example',
  TRUST_PROXY: '1',
  JWT_ISSUER: 'https://auth.example',
  OTP_PEPPER: TEST_PEPPER,
  JWT_PRIVATE_JWKS: await generateSigningJwks('ES256'),
  MONGODB_URI: 'mongodb://unused.example/chatgate',
  SMS_PROVIDER: 'http',
  SMS_HTTP_URL: 'https://sms.example/send',
  SMS_HTTP_SECRET: 'sms-secret-0123456789-0123456789-01',
  OTP_ALLOWED_COUNTRIES: 'IN',
  OIDC_CLIENTS: JSON.stringify([{ client_id: 'web-app', redirect_uris: ['https://app.example/callback'], name: 'Web', first_party: true }]),
});

describe('OpenID cookies in production', () => {
  it('are Secure, httpOnly and SameSite=Lax behind the https proxy', async () => {
    const response = await app.inject({
      method: 'GET',
      url: '/oidc/auth?client_id=web-app&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fapp.example%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256',
      headers: { host: 'auth.example', 'x-forwarded-proto': 'https' },
    });
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toMatch(/^\/oidc\/interaction\/[\w-]+$/);
    const cookies = ([] as string[]).concat(response.headers['set-cookie'] ?? []);
    expect(cookies.filter((cookie) => cookie.startsWith('_interaction='))).toHaveLength(1);
    for (const cookie of cookies) {
      expect(cookie).toMatch(/; secure/i);
      expect(cookie).toMatch(/; httponly/i);
      expect(cookie).toMatch(/; samesite=lax/i);
    }
  });

  it('publishes the https issuer in discovery', async () => {
    const response = await app.inject({ method: 'GET', url: '/.well-known/openid-configuration', headers: { host: 'auth.example', 'x-forwarded-proto': 'https' } });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ issuer: 'https://auth.example', jwks_uri: 'https://auth.example/.well-known/jwks.json', token_endpoint: 'https://auth.example/oidc/token' });
  });
});
