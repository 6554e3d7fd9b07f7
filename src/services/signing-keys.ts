import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';

export type SigningAlg = 'ES256' | 'RS256' | 'EdDSA';

export interface SigningKeys {
  alg: string;
  kid: string;
  privateKey: CryptoKey;
  /** The public JWKS, serialised once at start: published as is. */
  publicJwksJson: string;
  publicJwks: { keys: JWK[] };
  /** The private keys with their alg and kid, for the OpenID Provider (src/oidc), which signs ID tokens with them. */
  privateJwks: { keys: JWK[] };
}

// What is published of each key type: its public members only, copied by name. An allow-list, so a key type or member
// we do not know (ML-DSA's "priv", say) can never be published by accident; other key types are refused at start.
const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  EC: ['crv', 'x', 'y'],
  RSA: ['n', 'e'],
  OKP: ['crv', 'x'],
};

/** Imports a JWKS of private keys: the first one signs, all of them are published (for rotation). */
export async function importSigningKeys(jwksJson: string, defaultAlg: SigningAlg): Promise<SigningKeys> {
  let parsed: { keys?: JWK[] };
  try {
    parsed = JSON.parse(jwksJson) as { keys?: JWK[] };
  } catch {
    throw new Error('JWT_PRIVATE_JWKS: not valid JSON');
  }
  const keys = parsed.keys ?? [];
  if (keys.length === 0) throw new Error('JWT_PRIVATE_JWKS: needs {"keys":[...]} with at least one private key');
  const published: JWK[] = [];
  for (const [index, jwk] of keys.entries()) {
    if (jwk.kty === 'oct') throw new Error(`JWT_PRIVATE_JWKS: key ${index} is symmetric; only asymmetric keys can be published`);
    const members = PUBLIC_MEMBERS[jwk.kty ?? ''];
    if (!members) {
      throw new Error(`JWT_PRIVATE_JWKS: key ${index} has key type "${String(jwk.kty)}"; only ${Object.keys(PUBLIC_MEMBERS).join(', ')} are supported`);
    }
    const alg = jwk.alg ?? (index === 0 ? defaultAlg : undefined);
    if (!alg) throw new Error(`JWT_PRIVATE_JWKS: key ${index} needs an "alg"`);
    const kid = jwk.kid ?? (await calculateJwkThumbprint(jwk));
    const pub: JWK = { kty: jwk.kty, alg, kid, use: 'sig' };
    for (const member of members) {
      const value = (jwk as Record<string, unknown>)[member];
      if (typeof value !== 'string') throw new Error(`JWT_PRIVATE_JWKS: key ${index} lacks its public member "${member}"`);
      (pub as Record<string, unknown>)[member] = value;
    }
    published.push(pub);
  }
  const signing = keys[0]!;
  if (!signing.d) throw new Error('JWT_PRIVATE_JWKS: the first key must be a private key (with "d")');
  const alg = published[0]!.alg!;
  const privateKey = (await importJWK(signing, alg)) as CryptoKey;
  const publicJwks = { keys: published };
  const privateJwks = {
    keys: keys.flatMap((jwk, index) => (jwk.d ? [{ ...jwk, alg: published[index]!.alg, kid: published[index]!.kid, use: 'sig' }] : [])),
  };
  return { alg, kid: published[0]!.kid!, privateKey, publicJwks, publicJwksJson: JSON.stringify(publicJwks), privateJwks };
}

export async function generateSigningJwks(alg: SigningAlg): Promise<string> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}) });
  const jwk = await exportJWK(privateKey);
  jwk.alg = alg;
  jwk.kid = await calculateJwkThumbprint(jwk);
  return JSON.stringify({ keys: [jwk] });
}

/** Development only: a key pair generated once and kept in DATA_DIR (mode 0600) so tokens survive restarts. */
export async function loadOrCreateDevelopmentJwks(dataDir: string, alg: SigningAlg): Promise<{ json: string; created: boolean }> {
  const file = path.join(dataDir, `jwks-${alg.toLowerCase()}.json`);
  try {
    return { json: await readFile(file, 'utf8'), created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dataDir, { recursive: true });
  const json = await generateSigningJwks(alg);
  await writeFile(file, json, { mode: 0o600, flag: 'wx' }).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  return { json: await readFile(file, 'utf8'), created: true };
}
