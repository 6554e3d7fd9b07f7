import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { PROBE_ROUTES, type CompletionObserver } from './completions.js';
import { verificationOutcomes, type Metrics, type VerificationOutcome } from './metrics.js';

const VERIFY_ROUTE = '/auth/otp/verify';
// Verification outcomes with no audit event of their own are read off the verify route's error codes.
const unauditedOutcomes = new Set<string>(verificationOutcomes.filter((outcome) => outcome !== 'ok' && outcome !== 'invalid_code'));

// Hashing both sides first gives equal lengths, so the comparison takes the same time whatever was sent.
const digest = (value: string) => createHash('sha256').update(value).digest();
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const match = /^Bearer (\S+)$/i.exec(header ?? '');
  return !!match && timingSafeEqual(digest(match[1]!), expected);
}

/** Request durations by route pattern; probes and scrapes are not timed. */
export function requestDurations(metrics: Metrics): CompletionObserver {
  return (route) => {
    if (route !== null && PROBE_ROUTES.has(route)) return undefined;
    const pattern = route ?? 'unmatched';
    return (request, reply) => metrics.observeRequest(request.method, pattern, reply.statusCode, reply.elapsedTime / 1000);
  };
}

/** Verification outcomes and rate-limit refusals, from the errors requests end with. */
export function instrumentRequests(app: FastifyInstance, metrics: Metrics, ipLimited: WeakSet<object>): void {
  app.addHook('onError', async (request, _reply, error) => {
    if (!(error instanceof AppError)) return;
    // The per-IP limiter's refusals were counted when it fired; any other rate_limited comes from a per-phone limit.
    if (error.code === 'rate_limited' && !ipLimited.has(request)) metrics.countRateLimited('phone');
    if (request.routeOptions.url === VERIFY_ROUTE && unauditedOutcomes.has(error.code)) {
      metrics.countVerification(error.code as VerificationOutcome);
    }
  });
}

/**
 * GET /metrics, never public by default: on the main port only behind METRICS_TOKEN, and on METRICS_PORT (bound to
 * 127.0.0.1, for a scraper on the same host or a sidecar) without one. Neither set: the route does not exist.
 */
export function exposeMetrics(app: FastifyInstance, metrics: Metrics, config: Pick<Config, 'METRICS_TOKEN' | 'METRICS_PORT'>): void {
  if (!config.METRICS_TOKEN && !config.METRICS_PORT) return;
  metrics.collectProcessMetrics();

  if (config.METRICS_TOKEN) {
    const expected = digest(config.METRICS_TOKEN);
    app.get('/metrics', async (request, reply) => {
      if (!bearerMatches(request.headers.authorization, expected)) {
        reply.header('www-authenticate', 'Bearer realm="metrics"');
        throw new AppError('unauthorized', 'Send "Authorization: Bearer <METRICS_TOKEN>".');
      }
      return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  }

  const port = config.METRICS_PORT;
  if (port) {
    let side: FastifyInstance | undefined;
    // Up when the app is ready (listen makes it ready), so a port that is taken fails the start, loudly.
    app.addHook('onReady', async () => {
      side = Fastify({ logger: false });
      side.get('/metrics', async (_request, reply) => reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()));
      await side.listen({ host: '127.0.0.1', port });
      app.log.info({ port }, `metrics on http://127.0.0.1:${port}/metrics`);
    });
    app.addHook('onClose', async () => {
      await side?.close();
    });
  }
}
