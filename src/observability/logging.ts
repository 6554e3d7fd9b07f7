import type { FastifyInstance } from 'fastify';
import pino, { type DestinationStream } from 'pino';
import PinoPretty from 'pino-pretty';
import type { Config } from '../config.js';
import { scrubExternalText } from '../logger.js';

/** Pretty, coloured lines for a person at a terminal in development; JSON for everything else (files, collectors). */
export const wantsPrettyLogs = (nodeEnv: Config['NODE_ENV'], stdoutIsTty: boolean): boolean => nodeEnv === 'development' && stdoutIsTty;

/**
 * Where the log goes by default. JSON goes through pino's asynchronous destination: a write never blocks a request,
 * and pino flushes it when the process exits (process.exit, a crash); only a SIGKILL can lose the last lines.
 */
export function logDestination(config: Pick<Config, 'NODE_ENV'>, stdoutIsTty = process.stdout.isTTY === true): DestinationStream {
  if (wantsPrettyLogs(config.NODE_ENV, stdoutIsTty)) {
    return PinoPretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', sync: true });
  }
  return pino.destination({ dest: 1, sync: false });
}

// Probes and scrapes come every few seconds and say nothing new: they are logged at debug only.
const quietRoutes = new Set(['/health', '/ready', '/metrics']);

/**
 * One line per request, at its completion (Fastify's own two lines are turned off in app.ts): method, route pattern,
 * status, duration and, through the request's child logger, the request id.
 */
export function logRequestCompletions(app: FastifyInstance): void {
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url;
    const level = route && quietRoutes.has(route) ? 'debug' : 'info';
    request.log[level](
      {
        method: request.method,
        // The pattern, not the URL: no ids or tokens from paths. An unmatched URL is logged scrubbed, without its query.
        route: route ?? null,
        ...(route ? {} : { path: scrubExternalText(request.url.split('?')[0] ?? '').slice(0, 200) }),
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request completed',
    );
  });
}
