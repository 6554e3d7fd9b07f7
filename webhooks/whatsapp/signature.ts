import { createHmac, timingSafeEqual } from 'node:crypto';

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
