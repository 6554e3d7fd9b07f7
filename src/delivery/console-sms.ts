import pino from 'pino';
import type { CodeSender } from './types.js';

/**
 * Development only (refused in production by config): prints the code as one JSON log line. It has its own
 * logger because the application logger redacts codes everywhere.
 */
export function createConsoleSmsSender(level: string): CodeSender {
  const logger = pino({ level, base: undefined });
  return {
    channel: 'sms',
    provider: 'console',
    canReach: () => true,
    async send({ phone, code }) {
      logger.info({ to: phone, code }, 'otp.console');
    },
  };
}
