import type { FastifyRequest } from 'fastify';
import { stdSerializers, type LoggerOptions } from 'pino';
import type { Config } from './config.js';
import { maskPhone } from './phone.js';

// Codes, tokens and secrets never reach the log: these paths are redacted at the top level and one level down (pino
// paths do not reach deeper), and nothing logs them deeper. The console SMS provider writes its one deliberate line
// through its own logger (src/delivery/console-sms.ts). Provider error codes are logged as `errorCode`, not `code`.
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

const BOT_TOKEN_IN_URL = /\/bot\d+:[A-Za-z0-9_-]+/g;
// With or without "+": providers also echo the number in international digits alone (Graph's "to", a wa_id).
const PHONE = /\+\d{6,15}|(?<![\dA-Za-z])\d{8,15}(?![\dA-Za-z])/g;

/**
 * Cleans text that came from outside before it is logged or stored: Telegram's HTTP client puts the bot token in the
 * URLs of its errors, and providers repeat the phone number they refused.
 */
export const scrubExternalText = (text: string): string =>
  text.replace(BOT_TOKEN_IN_URL, '/bot[redacted]').replace(PHONE, (phone) => maskPhone(phone) ?? '***');

function scrubbedError(error: Error) {
  const serialized = stdSerializers.err(error) as ReturnType<typeof stdSerializers.err> & Record<string, unknown>;
  // Duplicate-key errors carry the clashing value (a phone number, say).
  delete serialized.keyValue;
  delete serialized.errorResponse;
  serialized.message = scrubExternalText(serialized.message);
  if (serialized.stack) serialized.stack = scrubExternalText(serialized.stack);
  return serialized;
}

export function loggerOptions(config: Pick<Config, 'LOG_LEVEL'>): LoggerOptions {
  return {
    level: config.LOG_LEVEL,
    redact: { paths: redactedPaths, censor: '[redacted]' },
    serializers: {
      err: scrubbedError,
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
