import type { FastifyBaseLogger, FastifyReply, FastifyServerOptions } from 'fastify';
import pino, { type Bindings, type ChildLoggerOptions, type DestinationStream, type Logger } from 'pino';
import PinoPretty from 'pino-pretty';
import type { Config } from '../config.js';
import { scrubExternalText } from '../logger.js';
import { PROBE_ROUTES, type CompletionObserver } from './completions.js';

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

/**
 * One line per request, at its completion (Fastify's own two lines are turned off in app.ts): method, route pattern,
 * status, duration and, through the request's child logger, the request id. Probes are logged at debug only; when
 * that level is off, their routes get no logging work at all.
 */
export function requestCompletionLog(logger: Pick<Logger, 'isLevelEnabled'>): CompletionObserver {
  return (route) => {
    const level = route !== null && PROBE_ROUTES.has(route) ? 'debug' : 'info';
    if (!logger.isLevelEnabled(level)) return undefined;
    const durationMs = (reply: FastifyReply) => Math.round(reply.elapsedTime * 10) / 10;
    if (route === null) {
      // An unmatched URL is logged scrubbed, without its query: it may carry ids, numbers or tokens.
      return (request, reply) =>
        request.log[level](
          {
            method: request.method,
            route: null,
            path: scrubExternalText(request.url.split('?')[0] ?? '').slice(0, 200),
            status: reply.statusCode,
            durationMs: durationMs(reply),
          },
          'request completed',
        );
    }
    // The pattern, not the URL: no ids or tokens from paths.
    return (request, reply) =>
      request.log[level]({ method: request.method, route, status: reply.statusCode, durationMs: durationMs(reply) }, 'request completed');
  };
}

type LineLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * A request's logger whose pino child (the one that carries the request id) is made on the first line the request
 * writes at an enabled level. Making a child runs its bindings through the redaction rules, a visible share of a
 * cheap request's time, and a probe writes nothing at info.
 */
class DeferredRequestLogger implements FastifyBaseLogger {
  private made: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
  ) {}

  private get real(): FastifyBaseLogger {
    return (this.made ??= this.parent.child(this.bindings));
  }

  get level(): string {
    return this.made?.level ?? this.parent.level;
  }

  set level(level: string) {
    this.real.level = level;
  }

  private write(level: LineLevel, line: unknown[]): void {
    if (!this.made && !this.parent.isLevelEnabled(level)) return;
    const real = this.real;
    (real[level] as (...args: unknown[]) => void).apply(real, line);
  }

  fatal(...line: unknown[]): void {
    this.write('fatal', line);
  }
  error(...line: unknown[]): void {
    this.write('error', line);
  }
  warn(...line: unknown[]): void {
    this.write('warn', line);
  }
  info(...line: unknown[]): void {
    this.write('info', line);
  }
  debug(...line: unknown[]): void {
    this.write('debug', line);
  }
  trace(...line: unknown[]): void {
    this.write('trace', line);
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.real.child(bindings, options);
  }
}

/**
 * Fastify's childLoggerFactory: request loggers that make their pino child only when they write. A route with a log
 * level of its own gets its child at once, as Fastify would make it.
 */
export function deferredRequestLoggers(parent: Logger): NonNullable<FastifyServerOptions['childLoggerFactory']> {
  return (_logger, bindings, options) =>
    options.level === undefined && options.serializers === undefined ? new DeferredRequestLogger(parent, bindings) : parent.child(bindings, options);
}
