import type { Model } from 'mongoose';
import type { OtpPhone } from '../../models/otp-phone.js';
import type { Clock } from '../clock.js';
import { isDuplicateKey, upsertHint } from './reservations.js';

const DAY_MS = 86_400_000;

/** One read of a phone's failures: the number the next one takes, and whether it would be refused. */
export interface FailureCount {
  phone: string;
  next: number;
  /** Set when the next failure would be refused: the moment the oldest failure in the window leaves it. */
  refusedUntil?: Date | undefined;
  /** The failures seen, by number: when each was recorded. */
  seen: ReadonlyMap<number, Date>;
}

export type RecordedFailure =
  | {
      number: number;
      phone: string;
      replaces: boolean;
      /** Set when this failure filled the window: the next one is refused until then. */
      fullUntil?: Date | undefined;
      /** The numbers of the phone's failures in the read this one was recorded after. */
      seen: readonly number[];
    }
  | { refusedUntil: Date };

interface FailureDocument {
  _id: string;
  n: number;
  createdAt: Date;
}

/**
 * At most `limit` failures (wrong code checks) per phone in any 24 hours, exactly: no renewal at midnight.
 *
 * Only unique-key inserts are atomic on FerretDB, so the count is built from them. A phone's failures are numbered
 * 0, 1, 2, … without gaps; failure j is the document `otp-fail:<phone>:<j mod 2·limit>` holding `n: j`. Failure j may
 * be recorded only if failure j − limit is absent or older than 24 hours: as numbers are taken in order (j is only
 * tried by whoever saw j − 1), failures j − limit + 1 … j − 1 are all newer than j − limit, so no 24 hours ever hold
 * more than `limit` of them. The insert under the unique key decides who owns j; a loser reads again and tries the
 * next number. The ring has twice `limit` keys so that failure j − limit, which j's check reads, is not in j's place:
 * j's owner deletes it once j is recorded, freeing that key for j + limit.
 *
 * Reading all 2·limit keys costs the database one index lookup per key (about 2 ms of mongo-java-server's CPU, ten
 * times a point lookup, until its launcher compared index keys by value; a scan of the collection on FerretDB), too
 * much for every OTP request, which only needs to know whether the budget is spent. So the wrong check whose failure
 * fills the window also leaves a marker, `otp-fail:<phone>:spent`, saying until when; a request reads the phone's
 * document and that marker, and only where a marker stands does it count exactly. The
 * marker guarantees nothing: a lost one lets a request send a code whose checks the count still refuses, a stale one
 * (a right code reset the count meanwhile) costs that phone's requests the exact count until it expires.
 */
export function createFailureBudget(phones: Model<OtpPhone>, clock: Clock, limit: number, windowMs = DAY_MS) {
  const ringSize = 2 * limit;
  // The failures live beside the phones' documents (`otp_phones`, a small collection: documents leave within hours),
  // so that the OTP request and the verify read a phone's document and its failures with one `$in`.
  const collection = () => phones.collection;
  const keyOf = (phone: string, number: number) => `otp-fail:${phone}:${number % ringSize}`;
  const keysOf = (phone: string) => Array.from({ length: ringSize }, (_, index) => `otp-fail:${phone}:${index}`);
  const spentKeyOf = (phone: string) => `otp-fail:${phone}:spent`;

  /** Leaves the marker that the phone's budget is spent until `until` (an upsert: a hint, see above). */
  const markSpent = (phone: string, until: Date): Promise<void> => upsertHint(collection(), spentKeyOf(phone), { until, cleanupAt: until });

  /** One command: the phone's keys, by `$in` (index lookups on MongoDB; a scan of this small collection on FerretDB). */
  async function read(phone: string): Promise<FailureCount> {
    const found = (await collection()
      .find({ _id: { $in: keysOf(phone) as never[] } }, { projection: { n: 1, createdAt: 1 } })
      .toArray()) as unknown as FailureDocument[];
    return countOf(phone, found);
  }

  /** The count from documents read elsewhere (any that are not this phone's failures are passed over). */
  function countOf(phone: string, found: readonly { _id: unknown; n?: unknown; createdAt?: unknown }[]): FailureCount {
    const prefix = `otp-fail:${phone}:`;
    const seen = new Map<number, Date>();
    for (const failure of found) {
      if (typeof failure.n === 'number' && String(failure._id).startsWith(prefix) && failure.createdAt instanceof Date) seen.set(failure.n, failure.createdAt);
    }
    const next = Math.max(-1, ...seen.keys()) + 1;
    const oldest = seen.get(next - limit);
    const leavesAt = oldest ? oldest.getTime() + windowMs : 0;
    return { phone, next, seen, refusedUntil: leavesAt > clock.now().getTime() ? new Date(leavesAt) : undefined };
  }

  /** Records the next failure of the phone, starting from `count` (a read made just before), unless the budget is spent. */
  async function record(count: FailureCount): Promise<RecordedFailure> {
    const { phone } = count;
    let current = count;
    // Each lost insert means another check recorded a failure (at most `limit` fit in the window) or a right code
    // reset the count: the loop ends. The bound only turns a fault no one has seen into a refusal instead of a hang.
    for (let tries = 0; tries < 4 * ringSize + 8; tries++) {
      if (current.refusedUntil) return { refusedUntil: current.refusedUntil };
      const number = current.next;
      const key = keyOf(phone, number);
      const stale = [...current.seen.keys()].find((seen) => seen < number && seen % ringSize === number % ringSize);
      if (stale !== undefined) {
        // A leftover of an earlier lap sits in this key: the owner of the failure `limit` after it did not delete it
        // (its check died in between, or its right code lost the race to be used). It is 2·limit numbers back or more,
        // so older than failure number − limit, which was just found absent or past the window: it counts for
        // nothing and goes. A guarded
        // delete is not atomic on FerretDB: if another check deleted it too and recorded `number` in its place
        // in between, that failure could be deleted with it. At worst one failure is then counted again or missed,
        // one guess too many in 24 hours, and only after a crash left the leftover: rare enough to accept.
        await collection().deleteOne({ _id: key as never, n: stale });
      }
      const now = clock.now();
      try {
        await collection().insertOne({
          _id: key as never,
          n: number,
          createdAt: now,
          // Swept once out of the window, where it no longer counts.
          cleanupAt: new Date(now.getTime() + windowMs),
        });
        // The window is full when the failure `limit − 1` before this one is still in it: the next one waits for it.
        const firstInWindow = limit === 1 ? now : current.seen.get(number + 1 - limit);
        const fullUntil = firstInWindow && firstInWindow.getTime() + windowMs > now.getTime() ? new Date(firstInWindow.getTime() + windowMs) : undefined;
        return { number, phone, replaces: current.seen.has(number - limit), fullUntil, seen: [...current.seen.keys()] };
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
      }
      current = await read(phone);
    }
    return { refusedUntil: clock.now() };
  }

  return {
    read,
    countOf,
    keysOf,
    spentKeyOf,
    record,
    markSpent,

    /**
     * Whether the phone's budget may be spent, from documents read elsewhere (the phone's marker among them): when it
     * may, only the exact count (`read`) says.
     */
    maybeSpent(phone: string, found: readonly { _id: unknown; until?: unknown }[]): boolean {
      const marker = found.find((doc) => doc._id === spentKeyOf(phone));
      return marker?.until instanceof Date && marker.until.getTime() > clock.now().getTime();
    },

    /**
     * After a wrong check: deletes the failure `limit` before the recorded one (nothing reads it any more, and its key
     * is the place of the failure `limit` after; only the owner of the recorded failure does this, and only the
     * document of that number), and leaves the marker when this failure filled the window.
     */
    async settleWrongCheck(recorded: RecordedFailure) {
      if (!('number' in recorded)) return;
      const replaced = recorded.number - limit;
      await Promise.all([
        recorded.replaces ? collection().deleteOne({ _id: keyOf(recorded.phone, replaced) as never, n: replaced }) : undefined,
        recorded.fullUntil ? markSpent(recorded.phone, recorded.fullUntil) : undefined,
      ]);
    },

    /**
     * A right code starts the count again: one delete of the failures its check read and of the one it recorded, and
     * of the marker; not of every key of the phone, an `$in` of 2 × limit keys, each an index lookup on the embedded
     * engines (four times a short one's cost before mongo-java-server's launcher compared keys by value, about 1.3
     * times after), on every login. A key it did not read held nothing when it
     * read, or holds a failure a concurrent check recorded since, which then still counts: the count can only come
     * out higher than before this change, never lower.
     */
    async reset(recorded: Extract<RecordedFailure, { number: number }>) {
      const numbers = new Set([...recorded.seen, recorded.number]);
      const keys = [...numbers].map((number) => keyOf(recorded.phone, number));
      await collection().deleteMany({ _id: { $in: [...keys, spentKeyOf(recorded.phone)] as never[] } });
    },
  };
}

export type FailureBudget = ReturnType<typeof createFailureBudget>;
