import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateSigningJwks, importSigningKeys } from '../src/services/signing-keys.js';

const withExtra = async (alg: 'ES256' | 'RS256' | 'EdDSA', extra: Record<string, unknown>): Promise<string> => {
  const { keys } = JSON.parse(await generateSigningJwks(alg)) as { keys: Record<string, unknown>[] };
  return JSON.stringify({ keys: [{ ...keys[0], ...extra }] });
};

describe('the published JWKS', () => {
  it.each(['ES256', 'RS256', 'EdDSA'] as const)('holds only the public members of a %s key', async (alg) => {
    const { publicJwks, publicJwksJson } = await importSigningKeys(await withExtra(alg, { priv: 'private-seed', seed: 'x' }), alg);
    const allowed: Record<string, string[]> = { EC: ['crv', 'x', 'y'], RSA: ['n', 'e'], OKP: ['crv', 'x'] };
    const [key] = publicJwks.keys;
    expect(Object.keys(key!).sort()).toEqual([...allowed[key!.kty!]!, 'alg', 'kid', 'kty', 'use'].sort());
    expect(publicJwksJson).not.toContain('private-seed');
    expect(publicJwksJson).not.toMatch(/"d"/);
  });

  it('refuses at start a key type it does not know how to publish', async () => {
    // ML-DSA keys (kty "AKP") carry their private part as "priv", which a deny-list of RSA/EC names would publish.
    const { privateKey } = generateKeyPairSync('ml-dsa-44');
    const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ML-DSA-44' };
    await expect(importSigningKeys(JSON.stringify({ keys: [jwk] }), 'ES256')).rejects.toThrow(/key type/);
  });

  it('refuses a second key of unknown type even when the first one is fine', async () => {
    const { keys } = JSON.parse(await generateSigningJwks('ES256')) as { keys: object[] };
    const jwks = JSON.stringify({ keys: [...keys, { kty: 'XYZ', alg: 'ES256', kid: 'odd', secretish: 'leak-me' }] });
    await expect(importSigningKeys(jwks, 'ES256')).rejects.toThrow(/key 1.*key type/);
  });
});
