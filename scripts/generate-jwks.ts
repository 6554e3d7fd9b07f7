// Prints a fresh private JWKS for JWT_PRIVATE_JWKS. Usage: npm run keys:generate -- [ES256|RS256|EdDSA]
// To rotate: put the new key first and keep the old one after it until its tokens have expired.
import { generateSigningJwks, type SigningAlg } from '../src/services/signing-keys.js';

const alg = (process.argv[2] ?? 'ES256') as SigningAlg;
if (!['ES256', 'RS256', 'EdDSA'].includes(alg)) {
  process.stderr.write('usage: npm run keys:generate -- [ES256|RS256|EdDSA]\n');
  process.exit(1);
}
process.stdout.write(`${await generateSigningJwks(alg)}\n`);
