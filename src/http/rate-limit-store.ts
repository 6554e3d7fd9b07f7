import { createRequire } from 'node:module';
import type { RateLimitPluginOptions } from '@fastify/rate-limit';
import type { Redis } from 'ioredis';
import { AppError } from '../errors.js';

// Per-IP counters shared by every instance through Redis (REDIS_URL). @fastify/rate-limit's own Redis store either
// throws when Redis is down (a 500 on every route) or, with `skipOnError`, lets every request through (no limit at
// all). Neither is right for a sign-in gateway, so its stores are wrapped:
// - routes whose limit says `failClosed` (the sign-in routes) answer 503 service_unavailable while Redis is down;
// - every other route falls back to a counter in this process (the one-instance limit), so health, JWKS and the
//   webhooks keep answering and nothing is ever unlimited.
// ioredis is set to fail commands at once while disconnected (no offline queue) and reconnects by itself, so the
// shared limit comes back without a restart.

type StoreCallback = (error: Error | null, result: { current: number; ttl: number } | null) => void;

interface Store {
  incr(key: string, callback: StoreCallback, timeWindow: number, max: number): void;
  child(routeOptions: Record<string, unknown>): Store;
}

// The package's own stores: CommonJS files it does not export by name.
const requireStore = createRequire(import.meta.url);
const RedisStore = requireStore('@fastify/rate-limit/store/RedisStore.js') as new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key: string) => Store;
const LocalStore = requireStore('@fastify/rate-limit/store/LocalStore.js') as new (continueExceeding: boolean, exponentialBackoff: boolean, cache: number) => Store;

/** A route limit that answers 503 rather than count in memory while the shared store is unreachable. */
export const failClosed = <T extends object>(limit: T): T & { failClosed: true } => ({ ...limit, failClosed: true as const });

export interface SharedRateLimit {
  /** Options for @fastify/rate-limit: the store, plus the Redis client that is closed with the app. */
  options: Pick<RateLimitPluginOptions, 'store'>;
  redis: Redis;
  close(): Promise<void>;
}

export interface SharedRateLimitSettings {
  url: string;
  /** Milliseconds a Redis command may take before the request is treated as "Redis unavailable". */
  commandTimeoutMs: number;
  log: { warn(object: object, message: string): void; info(message: string): void };
}

const unavailable = () =>
  new AppError('service_unavailable', 'Sign-in is paused for a moment because the rate limiter cannot be reached. Try again shortly.', { retryAfter: 5 });

/** The shared counters; ioredis is loaded here, only when REDIS_URL is set. */
export async function createSharedRateLimit(settings: SharedRateLimitSettings): Promise<SharedRateLimit> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(settings.url, {
    // While disconnected, commands fail at once instead of waiting in a queue (a request must not hang on Redis).
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: settings.commandTimeoutMs,
    connectTimeout: 2000,
    // Reconnect for ever, at most every two seconds: the shared limit comes back by itself.
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  });
  let down = false;
  redis.on('error', (error: Error) => {
    if (down) return;
    down = true;
    settings.log.warn({ err: { message: error.message } }, 'Redis (shared rate limits) is unreachable: sign-in routes answer 503, other routes count per instance');
  });
  redis.on('ready', () => {
    if (down) settings.log.info('Redis (shared rate limits) is reachable again');
    down = false;
  });

  // The plugin instantiates the store class itself, so the Redis client reaches it through this closure.
  class ResilientStore implements Store {
    private readonly shared: Store;
    private readonly local: Store;
    private readonly closed: boolean;

    constructor(params: { continueExceeding?: boolean; exponentialBackoff?: boolean; failClosed?: boolean }, shared?: Store, local?: Store) {
      this.shared = shared ?? new RedisStore(params.continueExceeding ?? false, params.exponentialBackoff ?? false, redis, 'chatgate:rl:');
      this.local = local ?? new LocalStore(params.continueExceeding ?? false, params.exponentialBackoff ?? false, 5000);
      this.closed = params.failClosed === true;
    }

    incr(key: string, callback: StoreCallback, timeWindow: number, max: number): void {
      this.shared.incr(
        key,
        (error, result) => {
          if (!error) return callback(null, result);
          if (this.closed) return callback(unavailable(), null);
          this.local.incr(key, callback, timeWindow, max);
        },
        timeWindow,
        max,
      );
    }

    child(routeOptions: Record<string, unknown>): Store {
      return new ResilientStore(
        { failClosed: routeOptions.failClosed === true },
        this.shared.child(routeOptions),
        this.local.child(routeOptions),
      );
    }
  }

  return {
    options: { store: ResilientStore as unknown as RateLimitPluginOptions['store'] },
    redis,
    close: async () => {
      redis.disconnect();
    },
  };
}

