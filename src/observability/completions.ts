import type { FastifyInstance, FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify';
import { withHookAdded } from '../http/route-hooks.js';

/** Probes and scrapes: they come every few seconds and say nothing new, so they are neither logged at info nor timed. */
export const PROBE_ROUTES: ReadonlySet<string> = new Set(['/health', '/ready', '/metrics']);

/** Work done when a request completes (its log line, its duration metric), for one route pattern. */
export type CompletionWork = (request: FastifyRequest, reply: FastifyReply) => void;

/**
 * Decides, once per route at start, what a completed request of that route does: `route` is its pattern, or null for
 * requests no route matched. Undefined means nothing, and such a route gets no hook at all.
 */
export type CompletionObserver = (route: string | null) => CompletionWork | undefined;

/**
 * Runs the observers' work when a request completes, decided per route when the route is added rather than per
 * request: a route whose requests need nothing (a probe, with its log line below the log level) costs nothing, and
 * no request reads its route pattern back (Fastify builds a new object for every `request.routeOptions`).
 * Register before any route.
 */
export function observeCompletions(app: FastifyInstance, observers: CompletionObserver[]): void {
  const hookFor = (route: string | null): onResponseHookHandler | undefined => {
    const work = observers.map((observer) => observer(route)).filter((item): item is CompletionWork => item !== undefined);
    if (work.length === 0) return undefined;
    return (request, reply, done) => {
      for (const item of work) item(request, reply);
      done();
    };
  };

  app.addHook('onRoute', (route) => {
    const hook = hookFor(route.url);
    if (hook) route.onResponse = withHookAdded(route.onResponse, hook);
  });

  // Requests that no route matched (the not-found handler) have no route of their own to carry a hook.
  const unmatched = hookFor(null);
  if (unmatched) {
    app.addHook('onResponse', function unmatchedCompletion(request, reply, done) {
      if (!request.is404) return done();
      unmatched.call(this, request, reply, done);
    });
  }
}
