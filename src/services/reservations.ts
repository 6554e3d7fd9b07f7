import type { Model } from 'mongoose';
import type { Reservation } from '../../models/reservation.js';
import type { Clock } from '../clock.js';

export const isDuplicateKey = (error: unknown): boolean => (error as { code?: number } | null)?.code === 11000;

export interface Reservations {
  /** True for exactly one caller per key, however many race; `data` is kept for whoever comes second. */
  reserve(key: string, keepForSeconds: number, data?: Record<string, unknown>): Promise<boolean>;
  find(key: string): Promise<Record<string, unknown> | undefined>;
  /** Gives a key back, for reservations that guard a step rather than mark something used up. */
  release(key: string): Promise<void>;
}

export function createReservations(reservations: Model<Reservation>, clock: Clock): Reservations {
  return {
    async reserve(key, keepForSeconds, data) {
      const now = clock.now();
      try {
        await reservations.collection.insertOne({
          _id: key as never,
          data,
          createdAt: now,
          cleanupAt: new Date(now.getTime() + keepForSeconds * 1000),
        });
        return true;
      } catch (error) {
        if (isDuplicateKey(error)) return false;
        throw error;
      }
    },
    async release(key) {
      await reservations.collection.deleteOne({ _id: key as never });
    },
    async find(key) {
      const found = await reservations.collection.findOne({ _id: key as never });
      return (found?.data as Record<string, unknown> | undefined) ?? (found ? {} : undefined);
    },
  };
}

/** A counter "at most `limit` per window", kept as reservation slots `<scope>:1` … `<scope>:<limit>`. */
export interface SlotRequest {
  /** Names the counter and its window, e.g. `budget:global:h:<hour>`. */
  scope: string;
  limit: number;
  keepForSeconds: number;
}

const PROBE_CHUNK = 64;

/**
 * Takes one slot of each counter, all-or-nothing. One insertMany (ordered: false) tries the next free slot of every
 * counter, as remembered by this process; a counter whose guess was taken elsewhere is re-read by point lookups and
 * tried again. Answers the scopes that are full (then every slot this call took is given back), or the slot taken per scope.
 */
export function createSlotCounter(reservations: Model<Reservation>, clock: Clock) {
  const nextHint = new Map<string, number>();
  const collection = () => reservations.collection;
  // A slot this process is about to try is claimed in the hint at once, so concurrent requests of one process try
  // different slots instead of all colliding on the same one and retrying in turn (which cost O(n²) commands under
  // load). The guarantee does not depend on it: only the unique insert decides who holds a slot.
  const claim = (scope: string, atLeast: number): number => {
    const slot = Math.max(atLeast, nextHint.get(scope) ?? 1);
    nextHint.set(scope, slot + 1);
    return slot;
  };

  async function firstFree(request: SlotRequest): Promise<number | undefined> {
    let from = nextHint.get(request.scope) ?? 1;
    while (from <= request.limit) {
      const keys = Array.from({ length: Math.min(PROBE_CHUNK, request.limit - from + 1) }, (_, index) => `${request.scope}:${from + index}`);
      const taken = new Set((await collection().find({ _id: { $in: keys as never[] } }, { projection: { _id: 1 } }).toArray()).map((doc) => String(doc._id)));
      const free = keys.findIndex((key) => !taken.has(key));
      if (free >= 0) return from + free;
      from += keys.length;
    }
    return undefined;
  }

  async function take(requests: readonly SlotRequest[]): Promise<{ full: SlotRequest[]; taken: Map<string, number> }> {
    // Hints only save round trips; forgetting them is always safe.
    if (nextHint.size > 50_000) nextHint.clear();
    const now = clock.now();
    const taken: string[] = [];
    const slots = new Map<string, number>();
    const full: SlotRequest[] = [];
    let pending = requests.map((request) => ({ request, slot: claim(request.scope, 1), probed: false }));
    while (pending.length > 0) {
      const tryable = pending.filter((entry) => entry.slot <= entry.request.limit);
      const duplicates = new Set<number>();
      if (tryable.length > 0) {
        try {
          await collection().insertMany(
            tryable.map(({ request, slot }) => ({
              _id: `${request.scope}:${slot}` as never,
              createdAt: now,
              cleanupAt: new Date(now.getTime() + request.keepForSeconds * 1000),
            })),
            { ordered: false },
          );
        } catch (error) {
          const writeErrors = (error as { writeErrors?: { index: number; code: number }[] | { index: number; code: number } }).writeErrors;
          const list = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : [];
          if (list.length === 0 || list.some((writeError) => writeError.code !== 11000)) throw error;
          for (const writeError of list) duplicates.add(writeError.index);
        }
      }
      const retry: typeof pending = [];
      for (const entry of pending) {
        const index = tryable.indexOf(entry);
        if (index >= 0 && !duplicates.has(index)) {
          taken.push(`${entry.request.scope}:${entry.slot}`);
          slots.set(entry.request.scope, entry.slot);
          continue;
        }
        // Taken by someone else (or past the limit by our guess): look once which slot is really free.
        const free = entry.probed && index >= 0 ? entry.slot + 1 : await firstFree(entry.request);
        if (free === undefined || free > entry.request.limit) {
          nextHint.set(entry.request.scope, entry.request.limit + 1);
          full.push(entry.request);
        } else {
          retry.push({ request: entry.request, slot: claim(entry.request.scope, free), probed: true });
        }
      }
      pending = retry;
    }
    if (full.length > 0 && taken.length > 0) await collection().deleteMany({ _id: { $in: taken as never[] } });
    return { full, taken: full.length > 0 ? new Map<string, number>() : slots };
  }

  return { take };
}

export type SlotCounter = ReturnType<typeof createSlotCounter>;
