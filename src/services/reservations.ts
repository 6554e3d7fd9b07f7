import type { Collection } from 'mongodb';
import type { Model } from 'mongoose';
import type { Reservation } from '../../models/reservation.js';
import type { Clock } from '../clock.js';

export const isDuplicateKey = (error: unknown): boolean => (error as { code?: number } | null)?.code === 11000;

/**
 * Sets fields on the document with this `_id`, making it where there is none: for hints (a marker, a mark) that only
 * say "look closer", so whichever of two concurrent writers leaves its fields is as good. Of two concurrent upserts
 * of a missing document, the loser's duplicate-key error means the other one wrote it.
 */
export async function upsertHint(collection: Collection, id: string, fields: Record<string, unknown>): Promise<void> {
  try {
    await collection.updateOne({ _id: id as never }, { $set: fields }, { upsert: true });
  } catch (error) {
    if (!isDuplicateKey(error)) throw error;
  }
}

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

/** A budget every request draws on, e.g. the paid sends of an hour: at most `limit` slots per window. */
export interface BudgetRequest {
  /** Names the budget and its window, e.g. `budget:global:h:<hour>`. */
  scope: string;
  limit: number;
  keepForSeconds: number;
}

export interface BudgetSlot {
  scope: string;
  slot: number;
}

// A window's slots are reserved in about this many blocks: a block held by an instance and not used up counts as spent
// until its window ends, so the waste per instance stays within 1/50 of the limit (and within the largest block).
const BLOCKS_PER_WINDOW = 50;

export const budgetBlockSize = (limit: number, maxBlock: number): number =>
  Math.max(1, Math.min(maxBlock, Math.floor(limit / BLOCKS_PER_WINDOW)));

/**
 * Budgets shared by every request, handed out from blocks of slots. A process reserves a block (slots
 * `(b-1)·size+1 … b·size` of a window) with one unique-key insert of `<scope>:block:<b>`, b ≤ ⌈limit / size⌉, and hands
 * its slots out in memory: most requests send no command for the budget, and the limit still rests on unique-key
 * inserts, however many instances share the database. The price: slots an instance holds and has not handed out
 * (at most one block per budget, and whatever it held when it stopped) count as spent until the window ends, so a
 * budget can refuse up to instances × block size slots early.
 */
export function createBudgetCounter(reservations: Model<Reservation>, clock: Clock, settings: { maxBlock: number }) {
  interface Pool {
    /** Slots held by this process and not handed out, as a stack. */
    free: number[];
    /** The lowest block that may still be free. */
    nextBlock: number;
    /** Every block of the window is reserved (by this process or others). */
    exhausted: boolean;
    /** One block reservation at a time per budget: concurrent requests wait for it instead of each reserving one. */
    refilling?: Promise<void> | undefined;
  }
  const pools = new Map<string, Pool>();
  const collection = () => reservations.collection;
  const blockKey = (scope: string, block: number) => `${scope}:block:${block}`;

  /** The first block from `from` on that no one has reserved yet, by point lookups (after a lost insert). */
  async function firstFreeBlock(scope: string, from: number, blocks: number): Promise<number> {
    while (from <= blocks) {
      const keys = Array.from({ length: Math.min(PROBE_CHUNK, blocks - from + 1) }, (_, index) => blockKey(scope, from + index));
      const taken = new Set((await collection().find({ _id: { $in: keys as never[] } }, { projection: { _id: 1 } }).toArray()).map((doc) => String(doc._id)));
      const free = keys.findIndex((key) => !taken.has(key));
      if (free >= 0) return from + free;
      from += keys.length;
    }
    return blocks + 1;
  }

  async function refill(request: BudgetRequest, pool: Pool): Promise<void> {
    const size = budgetBlockSize(request.limit, settings.maxBlock);
    const blocks = Math.ceil(request.limit / size);
    while (pool.nextBlock <= blocks) {
      const block = pool.nextBlock;
      const now = clock.now();
      try {
        await collection().insertOne({
          _id: blockKey(request.scope, block) as never,
          createdAt: now,
          cleanupAt: new Date(now.getTime() + request.keepForSeconds * 1000),
        });
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
        // Reserved by another process: look which block is really free, then try that one.
        pool.nextBlock = await firstFreeBlock(request.scope, block + 1, blocks);
        continue;
      }
      pool.nextBlock = block + 1;
      for (let slot = Math.min(block * size, request.limit); slot > (block - 1) * size; slot--) pool.free.push(slot);
      return;
    }
    pool.exhausted = true;
  }

  async function takeOne(request: BudgetRequest): Promise<number | undefined> {
    let pool = pools.get(request.scope);
    if (!pool) {
      pool = { free: [], nextBlock: 1, exhausted: false };
      pools.set(request.scope, pool);
    }
    for (;;) {
      const slot = pool.free.pop();
      if (slot !== undefined) return slot;
      if (pool.exhausted) return undefined;
      const current = pool;
      current.refilling ??= refill(request, current).finally(() => {
        current.refilling = undefined;
      });
      await current.refilling;
    }
  }

  /** Puts slots back for this process to hand out again (the send they were taken for did not happen). */
  function giveBack(slots: readonly BudgetSlot[]) {
    for (const { scope, slot } of slots) pools.get(scope)?.free.push(slot);
  }

  return {
    /**
     * Takes one slot of each budget, all-or-nothing: answers the budgets that are full (then nothing is taken), or the
     * slots taken.
     */
    async take(requests: readonly BudgetRequest[]): Promise<{ full: BudgetRequest[]; taken: BudgetSlot[] }> {
      // Budgets of past windows are never asked for again. Those holding no slots (most per-IP ones) are forgotten
      // first, so many requesting IPs do not drop the slots held for the shared budgets; forgetting a budget wastes at
      // most the slots it held.
      if (pools.size > 10_000) {
        for (const [scope, pool] of pools) if (pool.free.length === 0 && !pool.refilling) pools.delete(scope);
        if (pools.size > 5_000) pools.clear();
      }
      const outcomes = await Promise.allSettled(requests.map((request) => takeOne(request)));
      const taken: BudgetSlot[] = [];
      const full: BudgetRequest[] = [];
      outcomes.forEach((outcome, index) => {
        if (outcome.status === 'fulfilled' && outcome.value !== undefined) taken.push({ scope: requests[index]!.scope, slot: outcome.value });
        else if (outcome.status === 'fulfilled') full.push(requests[index]!);
      });
      const failed = outcomes.find((outcome) => outcome.status === 'rejected');
      if (failed || full.length > 0) giveBack(taken);
      if (failed) throw (failed as PromiseRejectedResult).reason;
      return { full, taken: full.length > 0 ? [] : taken };
    },
    giveBack,
  };
}

export type BudgetCounter = ReturnType<typeof createBudgetCounter>;
