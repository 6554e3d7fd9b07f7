import type { Model } from 'mongoose';
import type { Channel } from '../../models/channels.js';
import type { InboundMessage } from '../../models/inbound-message.js';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { scrubExternalText } from '../logger.js';
import { isDuplicateKey, type Reservations } from './reservations.js';

/** What a channel's handler made of a message: handled, or deliberately ignored (with why). */
export type HandlingOutcome = { status: 'handled' | 'ignored'; outcome: string };

export type MessageHandler = (payload: Record<string, unknown>, context: { id: string; receivedAt: Date }) => Promise<HandlingOutcome>;

/** What happened to an inbound message, for counting: stored, a redelivery, or the end of one handling attempt. */
export interface InboxEvent {
  channel: string;
  outcome: 'received' | 'duplicate' | 'handled' | 'ignored' | 'failed' | 'gave_up';
  attempt?: number;
}

export interface InboxSettings {
  /** Failed handling is retried after these delays (seconds), then given up on. */
  retryDelaysSeconds: readonly number[];
  /** How long after arrival the sweep treats an unhandled message as stuck (its process died). */
  stuckAfterSeconds: number;
  /** How long one attempt may run before another process may take the message over. */
  leaseSeconds: number;
  keepDays: number;
}

export interface InboxDeps {
  messages: Model<InboundMessage>;
  reservations: Reservations;
  clock: Clock;
  log: { warn(object: object, message: string): void; error(object: object, message: string): void };
  settings?: Partial<InboxSettings>;
}

const defaults: InboxSettings = { retryDelaysSeconds: [10, 60, 300, 1800], stuckAfterSeconds: 60, leaseSeconds: 120, keepDays: 7 };

/**
 * Durable before acknowledged: chat messages are stored (keyed by the channel's message id) before the webhook
 * answers, handled right after, and retried from the stored record when handling fails or the process dies.
 */
export function createInbox(deps: InboxDeps) {
  const { messages, reservations, clock, log } = deps;
  const settings = { ...defaults, ...deps.settings };
  const handlers = new Map<Channel, MessageHandler>();
  const running = new Set<Promise<void>>();
  const listeners: ((event: InboxEvent) => void)[] = [];
  const emit = (event: InboxEvent) => {
    for (const listener of listeners) {
      try {
        listener(event);
      } catch (error) {
        log.error({ err: error }, 'inbox listener failed');
      }
    }
  };
  let sweeper: NodeJS.Timeout | undefined;
  let stopped = false;

  async function handleOnce(id: string): Promise<void> {
    const record = await messages.findById(id).lean<InboundMessage>();
    if (!record || record.status === 'handled' || record.status === 'ignored') return;
    const attempt = await takeNextAttempt(id, (record.attempts ?? 0) + 1);
    if (attempt === undefined) return;
    if (attempt > settings.retryDelaysSeconds.length + 1) {
      await giveUp(id, attempt - 1, 'too many attempts (the last ones did not finish)');
      emit({ channel: record.channel, outcome: 'gave_up' });
      return;
    }
    const handler = handlers.get(record.channel as Channel);
    if (!handler) return;
    try {
      const result = await handler(record.payload as Record<string, unknown>, { id, receivedAt: record.receivedAt });
      await messages.updateOne({ _id: id }, { $set: { status: result.status, outcome: result.outcome, attempts: attempt, handledAt: clock.now() } });
      emit({ channel: record.channel, outcome: result.status, attempt });
    } catch (error) {
      const delay = settings.retryDelaysSeconds[attempt - 1];
      const reason = scrubExternalText(error instanceof Error ? error.message : String(error));
      log.error({ err: error, messageId: id, attempt, willRetry: delay !== undefined }, 'inbound message handling failed');
      emit({ channel: record.channel, outcome: delay === undefined ? 'gave_up' : 'failed', attempt });
      if (delay === undefined) {
        await giveUp(id, attempt, reason);
        return;
      }
      await messages.updateOne(
        { _id: id },
        { $set: { status: 'failed', attempts: attempt, lastError: reason.slice(0, 500), nextAttemptAt: new Date(clock.now().getTime() + delay * 1000) } },
      );
    }
  }

  /**
   * Whoever reserves attempt n runs it, so the prompt handler and the sweep never both do. A reservation is a
   * lease: one older than `leaseSeconds` belongs to a process that died mid-attempt, and the next attempt may start.
   */
  async function takeNextAttempt(id: string, first: number): Promise<number | undefined> {
    for (let attempt = first; ; attempt++) {
      const key = `inbox:${id}:attempt:${attempt}`;
      if (await reservations.reserve(key, settings.keepDays * 86_400, { startedAt: clock.now().toISOString() })) return attempt;
      const held = await reservations.find(key);
      const startedAt = typeof held?.startedAt === 'string' ? Date.parse(held.startedAt) : 0;
      if (clock.now().getTime() - startedAt < settings.leaseSeconds * 1000) return undefined;
    }
  }

  async function giveUp(id: string, attempts: number, reason: string) {
    // Kept for the record (and for a person to look at), out of the sweep's way.
    await messages.updateOne(
      { _id: id },
      { $set: { status: 'failed', attempts, lastError: `gave up: ${reason}`.slice(0, 500), nextAttemptAt: new Date(8.64e15) } },
    );
  }

  function track(work: Promise<void>): Promise<void> {
    const tracked = work.catch((error: unknown) => log.error({ err: error }, 'inbox processing failed')).finally(() => running.delete(tracked));
    running.add(tracked);
    return tracked;
  }

  return {
    /** Sees what happens to messages (metrics count it); a listener that throws is logged and ignored. */
    subscribe(listener: (event: InboxEvent) => void) {
      listeners.push(listener);
    },

    registerHandler(channel: Channel, handler: MessageHandler) {
      handlers.set(channel, handler);
    },

    /** Stores messages; answers which ids are new. A redelivered id is acknowledged and not stored again. */
    async accept(channel: Channel, entries: { id: string; payload: Record<string, unknown> }[]): Promise<string[]> {
      const now = clock.now();
      const fresh: string[] = [];
      for (const entry of entries) {
        const id = `${channel}:${entry.id}`;
        try {
          await messages.collection.insertOne({
            _id: id as never,
            channel,
            payload: entry.payload,
            status: 'received',
            attempts: 0,
            nextAttemptAt: new Date(now.getTime() + settings.stuckAfterSeconds * 1000),
            receivedAt: now,
            cleanupAt: new Date(now.getTime() + settings.keepDays * 86_400_000),
          });
          fresh.push(id);
          emit({ channel, outcome: 'received' });
        } catch (error) {
          if (!isDuplicateKey(error)) throw error;
          emit({ channel, outcome: 'duplicate' });
        }
      }
      return fresh;
    },

    /**
     * The webhooks' contract: store first, then acknowledge. Stores the messages and starts handling the new ones in
     * the background; a message that cannot be stored is refused (503), so its sender delivers it again.
     */
    async receive(channel: Channel, entries: { id: string; payload: Record<string, unknown> }[]): Promise<void> {
      let fresh: string[];
      try {
        fresh = await this.accept(channel, entries);
      } catch (error) {
        log.error({ err: error, channel }, 'could not store inbound messages');
        throw new AppError('service_unavailable', 'The messages could not be stored; deliver them again later.');
      }
      void this.process(fresh);
    },

    /** Handles stored messages in the background, one after another (in arrival order). */
    process(ids: string[]): Promise<void> {
      return track(
        (async () => {
          for (const id of ids) await handleOnce(id);
        })(),
      );
    },

    /** Retries what failed or got stuck. Runs on a timer; tests call it directly. */
    sweep(): Promise<void> {
      return track(
        (async () => {
          const due = await messages
            .find({ status: { $in: ['received', 'failed'] }, nextAttemptAt: { $lte: clock.now() } }, { _id: 1 })
            .sort({ nextAttemptAt: 1 })
            .limit(100)
            .lean<Pick<InboundMessage, '_id'>[]>();
          for (const { _id } of due) {
            if (stopped) return;
            await handleOnce(_id);
          }
        })(),
      );
    },

    startSweeping(intervalMs: number) {
      sweeper ??= setInterval(() => void this.sweep(), intervalMs);
      sweeper.unref();
    },

    /** Resolves once nothing is being handled: for shutdown, and for tests. */
    async idle(): Promise<void> {
      while (running.size > 0) await Promise.allSettled([...running]);
    },

    async stop() {
      stopped = true;
      if (sweeper) clearInterval(sweeper);
      sweeper = undefined;
      await this.idle();
    },
  };
}

export type Inbox = ReturnType<typeof createInbox>;
