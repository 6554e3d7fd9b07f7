import type { FastifyInstance, RouteHandlerMethod } from 'fastify';

/**
 * Closing waits for every route handler still running, not only for open connections: a handler whose client
 * hung up keeps working (sending a code, rotating a token) and must not find the database closed under it.
 * Register before any route.
 */
export function waitForHandlersOnClose(app: FastifyInstance, maxWaitMs = 10_000): void {
  let running = 0;
  let onIdle: (() => void) | undefined;

  app.addHook('onRoute', (route) => {
    const handler = route.handler as RouteHandlerMethod;
    route.handler = async function tracked(this: FastifyInstance, request, reply) {
      running += 1;
      try {
        return await handler.call(this, request, reply);
      } finally {
        running -= 1;
        if (running === 0) onIdle?.();
      }
    };
  });

  app.addHook('onClose', async () => {
    if (running === 0) return;
    await new Promise<void>((resolve) => {
      onIdle = resolve;
      setTimeout(resolve, maxWaitMs).unref();
    });
  });
}
