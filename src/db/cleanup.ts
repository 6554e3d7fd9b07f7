import type { Clock } from '../clock.js';
import type { Models } from './connection.js';

export interface CleanupSettings {
  auditRetentionDays: number;
}

export interface CleanupLog {
  info(object: object, message: string): void;
  error(object: object, message: string): void;
}

const DAY_MS = 86_400_000;

/**
 * Deletes spent data: every document whose `cleanupAt` has passed (used and expired challenges, spent reservations and
 * past counter windows, sessions and refresh tokens past their expiry, finished login intents, handled inbox
 * messages), and audit events older than the retention. The work TTL indexes would do, which FerretDB refuses. Every
 * instance runs it: deletes by date are idempotent, so instances sweeping at once only repeat each other.
 */
export function createCleanup(models: Models, clock: Clock, settings: CleanupSettings, log: CleanupLog) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;

  async function sweepOnce(): Promise<Record<string, number>> {
    const now = clock.now();
    const expiring = [models.Challenge, models.OtpPhone, models.Reservation, models.Session, models.RefreshToken, models.LoginIntent, models.InboundMessage, models.OtpFailure];
    const auditBefore = new Date(now.getTime() - settings.auditRetentionDays * DAY_MS);
    const [audit, ...spent] = await Promise.all([
      models.AuditEvent.collection.deleteMany({ at: { $lt: auditBefore } }),
      ...expiring.map((model) => model.collection.deleteMany({ cleanupAt: { $lt: now } })),
    ]);
    const deleted: Record<string, number> = { [models.AuditEvent.collection.collectionName]: audit!.deletedCount };
    expiring.forEach((model, index) => (deleted[model.collection.collectionName] = spent[index]!.deletedCount));
    return deleted;
  }

  return {
    sweepOnce,

    /** Sweeps every `intervalMs`, the first time soon after start. */
    start(intervalMs: number) {
      const sweep = () => {
        if (running) return;
        running = sweepOnce()
          .then((deleted) => {
            if (Object.values(deleted).some((count) => count > 0)) log.info({ deleted }, 'spent data deleted');
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
