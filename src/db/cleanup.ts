import type { Clock } from '../clock.js';
import type { Models } from './connection.js';

export interface CleanupSettings {
  auditRetentionDays: number;
}

export interface CleanupLog {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

const DAY_MS = 86_400_000;
// Past this, the sweep's log line says it slowed requests down.
const SLOW_SWEEP_MS = 5000;

/**
 * Deletes spent data: every document whose `cleanupAt` has passed (used and expired challenges, spent reservations and
 * past counter windows, sessions and refresh tokens past their expiry, finished login intents, handled inbox
 * messages), and audit events older than the retention. The work TTL indexes would do, which FerretDB refuses. Every
 * instance runs it: deletes by date are idempotent, so instances sweeping at once only repeat each other.
 *
 * A delete by date reads its whole collection on the embedded engines (neither FerretDB nor mongo-java-server keeps a
 * range index), and mongo-java-server holds the collection, and one of its few worker threads, while it reads. So the
 * sweep goes one collection at a time: requests wait at most for one collection's read (about 2 s on mongo-java-server
 * with 100k stored sessions, on a loaded 2-core machine), never for all of them side by side, and never at start (the
 * first sweep comes one interval in).
 */
export function createCleanup(models: Models, clock: Clock, settings: CleanupSettings, log: CleanupLog) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;

  async function sweepOnce(): Promise<Record<string, number>> {
    const now = clock.now();
    const expiring = [models.Challenge, models.OtpPhone, models.Reservation, models.Session, models.RefreshToken, models.LoginIntent, models.InboundMessage];
    const auditBefore = new Date(now.getTime() - settings.auditRetentionDays * DAY_MS);
    const deleted: Record<string, number> = {};
    for (const model of expiring) {
      deleted[model.collection.collectionName] = (await model.collection.deleteMany({ cleanupAt: { $lt: now } })).deletedCount;
    }
    deleted[models.AuditEvent.collection.collectionName] = (await models.AuditEvent.collection.deleteMany({ at: { $lt: auditBefore } })).deletedCount;
    return deleted;
  }

  return {
    sweepOnce,

    /** Sweeps every `intervalMs`, the first time one interval after start (a start waits for no sweep). */
    start(intervalMs: number) {
      const sweep = () => {
        if (running) return;
        const started = performance.now();
        running = sweepOnce()
          .then((deleted) => {
            const durationMs = Math.round(performance.now() - started);
            if (durationMs > SLOW_SWEEP_MS) {
              log.warn({ deleted, durationMs }, 'the cleanup sweep was slow: requests to the collection it was reading waited meanwhile');
            } else if (Object.values(deleted).some((count) => count > 0)) log.info({ deleted, durationMs }, 'spent data deleted');
          })
          .catch((error: unknown) => log.error({ err: error }, 'cleanup sweep failed; the next one tries again'))
          .finally(() => (running = undefined));
      };
      timer = setInterval(sweep, intervalMs);
      timer.unref();
    },

    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}

export type Cleanup = ReturnType<typeof createCleanup>;
