import pino, { type DestinationStream } from 'pino';
import type { CodeSender } from './types.js';

/**
 * Development only (refused in production by config): prints the code as one JSON log line. It has its own
 * logger because the application logger redacts codes everywhere.
 */
export function createConsoleSmsSender(level: string, destination?: DestinationStream): CodeSender {
  const logger = pino({ level, base: undefined }, destination ?? process.stdout);
  return {
    channel: 'sms',
    provider: 'console',
    canReach: () => true,
    async send({ phone, code }) {
      logger.info({ to: phone, code }, 'otp.console');
    },
  };
}
