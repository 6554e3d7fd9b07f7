import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../../src/clock.js';

/** The only shape Meta sends: HMAC-SHA256 in lower-case hex. Anything else is refused before the body is read. */
export const SIGNATURE_HEADER = /^sha256=[0-9a-f]{64}$/;

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

/**
 * Failed signature checks per client IP in fixed windows, kept in the process like the other per-IP limits. The map
 * is emptied with each new window, so a flood of addresses cannot grow it beyond one window's worth.
 */
export function createFailureCounter(max: number, windowSeconds: number, clock: Clock) {
  let windowStart = 0;
  const failures = new Map<string, number>();
  const roll = (): number => {
    const now = clock.now().getTime();
    if (now - windowStart >= windowSeconds * 1000) {
      windowStart = now;
      failures.clear();
    }
    return now;
  };
  return {
    record(ip: string) {
      roll();
      failures.set(ip, (failures.get(ip) ?? 0) + 1);
    },
    /** Seconds until this IP may try again; 0 when it may now. */
    blockedFor(ip: string): number {
      const now = roll();
      if ((failures.get(ip) ?? 0) < max) return 0;
      return Math.max(1, Math.ceil((windowStart + windowSeconds * 1000 - now) / 1000));
    },
  };
}
