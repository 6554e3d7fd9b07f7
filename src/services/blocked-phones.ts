import type { Model } from 'mongoose';
import type { OtpPhone } from '../../models/otp-phone.js';
import { upsertHint } from './reservations.js';

/**
 * Marks beside the phones' documents in `otp_phones` (`_id` `blocked:<phone>`) for the phones of blocked users, so
 * that an OTP request for an SMS reads the phone's documents and not its user: one command fewer on the busiest
 * write path. The user is read only where a mark stands, and the user's status still decides.
 *
 * A mark is a hint that says "read the user", never the block itself. It is written before a user's status becomes
 * `blocked` and removed after it is `active` again, so a phone without a mark has no blocked user; a stale mark (a
 * crash between the two writes, a blocked user's phone that changed) costs that phone's requests one read. Marks that
 * are missing (users blocked before marks existed, or by an older version during a rolling upgrade) are written by
 * the block sweep (`sweepBlocks` in src/admin/service.ts), at start and every CLEANUP_INTERVAL_SECONDS. Marks have no
 * `cleanupAt`: the cleanup sweep leaves them.
 */
export function createBlockedPhones(phones: Model<OtpPhone>) {
  const keyOf = (phone: string) => `blocked:${phone}`;
  const collection = () => phones.collection;

  const mark = (phone: string): Promise<void> => upsertHint(collection(), keyOf(phone), { phone });

  return {
    keyOf,

    /** Whether documents read with the phone's (`$in` of keys including `keyOf(phone)`) hold its mark. */
    markedIn: (found: readonly { _id: unknown }[], phone: string): boolean => found.some((doc) => doc._id === keyOf(phone)),

    mark,

    async unmark(phone: string): Promise<void> {
      await collection().deleteOne({ _id: keyOf(phone) as never });
    },

    /** Writes the marks of these phones that are missing; returns how many it wrote. */
    async markAll(phoneList: readonly string[]): Promise<number> {
      if (phoneList.length === 0) return 0;
      const present = new Set(
        (await collection().find({ _id: { $in: phoneList.map(keyOf) as never[] } }, { projection: { _id: 1 } }).toArray()).map((doc) => String(doc._id)),
      );
      const missing = phoneList.filter((phone) => !present.has(keyOf(phone)));
      for (const phone of missing) await mark(phone);
      return missing.length;
    },
  };
}

export type BlockedPhones = ReturnType<typeof createBlockedPhones>;
