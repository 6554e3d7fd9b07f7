import type { FastifyRequest } from 'fastify';
import type { LoggerOptions } from 'pino';
import type { Config } from './config.js';

// Codes, tokens and secrets never reach the log, wherever they are nested. The console SMS provider writes its
// one deliberate line through its own logger (src/delivery/console-sms.ts).
const redactedPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-hub-signature-256"]',
  'req.headers["x-telegram-bot-api-secret-token"]',
  'code', '*.code',
  'token', '*.token',
  'accessToken', '*.accessToken',
  'refreshToken', '*.refreshToken',
  'pollToken', '*.pollToken',
  'startToken', '*.startToken',
  'secret', '*.secret',
  'password', '*.password',
  'authToken', '*.authToken',
];

export function loggerOptions(config: Pick<Config, 'LOG_LEVEL'>): LoggerOptions {
  return {
    level: config.LOG_LEVEL,
    redact: { paths: redactedPaths, censor: '[redacted]' },
    serializers: {
      // The query string is dropped: the WhatsApp verification handshake carries its verify token there.
      req: (request: FastifyRequest) => ({
        method: request.method,
        url: request.url.split('?')[0],
        remoteAddress: request.ip,
        userAgent: request.headers['user-agent'],
      }),
    },
  };
}
