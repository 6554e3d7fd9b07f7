import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const client = { client_id: 'web-app', redirect_uris: ['https://app.example/callback'], name: 'Web' };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ NODE_ENV: 'test', ...env });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('OpenID clients from the configuration', () => {
  it('reads OIDC_CLIENTS with its defaults: public unless a secret is given, not first-party unless said', () => {
    const config = loadConfig({ NODE_ENV: 'test', OIDC_CLIENTS: JSON.stringify([client]) });
    expect(config.OIDC_CLIENTS).toEqual([{ ...client, post_logout_redirect_uris: [], first_party: false }]);
  });

  it.each([
    ['not JSON', '[{', 'OIDC_CLIENTS: not valid JSON'],
    ['a redirect URI that is not a URL', JSON.stringify([{ ...client, redirect_uris: ['callback'] }]), 'OIDC_CLIENTS: [0].[redirect_uris].[0] Invalid URL'],
    ['no redirect URI', JSON.stringify([{ ...client, redirect_uris: [] }]), 'OIDC_CLIENTS: [0].[redirect_uris] needs at least one redirect URI'],
    ['a short secret', JSON.stringify([{ ...client, client_secret: 'short' }]), 'OIDC_CLIENTS: [0].[client_secret] must be at least 32 characters'],
    ['a duplicate client_id', JSON.stringify([client, client]), 'OIDC_CLIENTS: client_id values must be unique'],
    ['an unknown field', JSON.stringify([{ ...client, grant_types: ['implicit'] }]), 'OIDC_CLIENTS: [0] Unrecognized key: "grant_types"'],
  ])('refuses to start on %s, naming the reason', (_case, value, problem) => {
    expect(problemsOf({ OIDC_CLIENTS: value })).toEqual([problem]);
  });

  it('reads OIDC_CLIENTS_FILE, and refuses a file that cannot be read or both settings at once', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'chatgate-clients-')), 'clients.json');
    writeFileSync(file, JSON.stringify([client]));
    expect(loadConfig({ NODE_ENV: 'test', OIDC_CLIENTS_FILE: file }).OIDC_CLIENTS?.[0]?.client_id).toBe('web-app');
    expect(problemsOf({ OIDC_CLIENTS_FILE: `${file}.missing` })).toEqual([`OIDC_CLIENTS_FILE: cannot read ${file}.missing (ENOENT)`]);
    expect(problemsOf({ OIDC_CLIENTS_FILE: file, OIDC_CLIENTS: JSON.stringify([client]) })).toEqual(['OIDC_CLIENTS and OIDC_CLIENTS_FILE: set one of them, not both']);
  });

  it('in production, requires an https PUBLIC_URL as the issuer and a trusted proxy when apps are registered', () => {
    const production = {
      NODE_ENV: 'production',
      JWT_ISSUER: 'https://auth.example',
      OTP_PEPPER: 'p'.repeat(40),
      JWT_PRIVATE_JWKS: '{"keys":[]}',
      MONGODB_URI: 'mongodb://db.example/chatgate',
      SMS_PROVIDER: 'http',
      SMS_HTTP_URL: 'https://sms.example/send',
      SMS_HTTP_SECRET: 's'.repeat(32),
      OTP_ALLOWED_COUNTRIES: 'IN',
      OIDC_CLIENTS: JSON.stringify([client]),
    };
    expect(problemsOf({ ...production, PUBLIC_URL: 'http://auth.example', TRUST_PROXY: '1' })).toEqual([
      'PUBLIC_URL: must be https:// in production (http:// only to loopback)',
      'PUBLIC_URL: required in production with OIDC clients, as an https:// URL (it is the OpenID issuer)',
    ]);
    expect(problemsOf({ ...production, PUBLIC_URL: 'https://auth.example' })).toEqual([
      'TRUST_PROXY: required in production with OIDC clients (the https proxy in front says the connection is secure, so the session cookie can be Secure)',
    ]);
    expect(problemsOf({ ...production, PUBLIC_URL: 'https://auth.example', TRUST_PROXY: '1' })).toEqual([]);
  });
});
