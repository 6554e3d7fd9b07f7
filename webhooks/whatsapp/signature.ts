import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Meta signs the body exactly as sent, with non-ASCII escaped as \uXXXX, so the check runs on the raw bytes:
 * a re-serialised body would not match. Constant time.
 */
export function isValidSignature(rawBody: Buffer, header: string | undefined, appSecret: string): boolean {
  if (!header?.startsWith('sha256=')) return false;
  const given = Buffer.from(header.slice('sha256='.length), 'hex');
  const expected = createHmac('sha256', appSecret).update(rawBody).digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Compares two secrets of any length in constant time (by comparing their digests). */
export function secretsMatch(given: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
