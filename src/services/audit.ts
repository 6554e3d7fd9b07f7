import type { Model, Types } from 'mongoose';
import type { AuditEvent } from '../../models/audit-event.js';
import type { Channel } from '../../models/channels.js';
import type { Clock } from '../clock.js';
import { maskPhone } from '../phone.js';

export type AuditType = AuditEvent['type'];

export interface AuditEntry {
  type: AuditType;
  channel?: Channel | undefined;
  userId?: Types.ObjectId | string | undefined;
  phone?: string | undefined;
  ip?: string | undefined;
  detail?: Record<string, unknown> | undefined;
}

export type AuditListener = (entry: AuditEntry) => void;

export interface AuditTrail {
  /** Takes the event into the next batch; listeners see it at once. Never waits for the database. */
  record(entry: AuditEntry): Promise<void>;
  /** Sees every recorded event (metrics count them); a listener that throws is ignored. */
  subscribe(listener: AuditListener): void;
  /** Writes every event taken so far. */
  flush(): Promise<void>;
  /** Stops the timers and writes what is left (graceful shutdown). */
  close(): Promise<void>;
}

export interface AuditBatching {
  /** How long an event waits for others to share its write. */
  flushMs: number;
  /** A batch this big is written at once. */
  maxBatch: number;
  /** Events kept while the database refuses them; beyond this the oldest are dropped, and that is logged. */
  maxBuffered: number;
}

export const defaultAuditBatching: AuditBatching = { flushMs: 5, maxBatch: 200, maxBuffered: 50_000 };

const RETRY_MAX_MS = 30_000;

type StoredEvent = Omit<AuditEntry, 'phone'> & { phone: string | undefined; at: Date };

/**
 * The audit trail, written in batches off the request path: one insertMany per few milliseconds instead of one insert
 * per event. A failed write keeps its events and is retried with backoff (and logged each time); a crash loses at most
 * the events of the last `flushMs` (plus any still being retried).
 */
export function createAuditTrail(
  events: Model<AuditEvent>,
  clock: Clock,
  onError: (error: unknown, context?: Record<string, unknown>) => void,
  batching: AuditBatching = defaultAuditBatching,
): AuditTrail {
  const listeners: AuditListener[] = [];
  let buffer: StoredEvent[] = [];
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> | undefined;
  let failures = 0;

  const schedule = (delayMs: number) => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void writeBatches();
    }, delayMs);
  };

  // One write at a time, so a retried batch keeps its place ahead of newer events.
  function writeBatches(): Promise<void> {
    if (writing) return writing;
    if (buffer.length === 0) return Promise.resolve();
    writing = (async () => {
      try {
        while (buffer.length > 0) {
          const batch = buffer.slice(0, batching.maxBatch);
          try {
            // The driver gives each event its _id before sending, so a retry of a half-written batch skips what arrived.
            await events.collection.insertMany(batch, { ordered: false });
          } catch (error) {
            const refused = documentErrors(error);
            if (!refused) {
              // The write as a whole failed (connection, server): everything stays and is tried again.
              failures += 1;
              onError(error, { pendingAuditEvents: buffer.length, retryInMs: backoff() });
              schedule(backoff());
              return;
            }
            // Events the server refused one by one would be refused forever: logged with their type, then let go.
            const lost = refused.filter((writeError) => writeError.code !== 11000);
            if (lost.length > 0) onError(error, { refusedAuditEvents: lost.map((writeError) => batch[writeError.index]?.type) });
          }
          failures = 0;
          buffer = buffer.slice(batch.length);
        }
      } finally {
        writing = undefined;
      }
    })();
    return writing;
  }

  const backoff = () => Math.min(RETRY_MAX_MS, 100 * 2 ** Math.min(failures, 10));

  return {
    async record(entry) {
      for (const listener of listeners) {
        try {
          listener(entry);
        } catch (error) {
          onError(error);
        }
      }
      buffer.push({ ...entry, phone: maskPhone(entry.phone), at: clock.now() });
      if (buffer.length > batching.maxBuffered) {
        const dropped = buffer.length - batching.maxBuffered;
        buffer = buffer.slice(dropped);
        onError(new Error('audit buffer full while the database refuses writes'), { droppedAuditEvents: dropped });
      }
      if (buffer.length >= batching.maxBatch && failures === 0) void writeBatches();
      else schedule(batching.flushMs);
    },

    subscribe(listener) {
      listeners.push(listener);
    },

    async flush() {
      if (writing) await writing;
      if (buffer.length > 0) await writeBatches();
    },

    async close() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (writing) await writing;
      if (buffer.length > 0) await writeBatches();
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (buffer.length > 0) onError(new Error('audit events not written at shutdown'), { lostAuditEvents: buffer.length });
    },
  };
}

/** The per-document errors of a bulk write (a retried event that already arrived is a duplicate), if that is what failed. */
function documentErrors(error: unknown): { index: number; code: number }[] | undefined {
  const writeErrors = (error as { writeErrors?: { index: number; code: number }[] | { index: number; code: number } }).writeErrors;
  const list = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : [];
  return list.length > 0 ? list : undefined;
}
