import { MongoNetworkError, MongoNotConnectedError, MongoServerError, MongoServerSelectionError, MongoTopologyClosedError } from 'mongodb';

// Server answers that mean "no primary right now" (a failover or a shutdown in progress), not "your request is wrong".
const FAILOVER_CODES = new Set([91, 189, 10107, 11600, 11602, 13435, 13436]);
// A pooled socket the server closed is sometimes written to before the driver notices, and the driver then rethrows
// Node's own socket error unwrapped; recognised by its code and by coming from the driver's connection code.
const SOCKET_CODES = new Set(['EPIPE', 'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT']);
const fromDriverSocket = (error: Error): boolean =>
  SOCKET_CODES.has(String((error as NodeJS.ErrnoException).code)) && /[\\/]mongodb[\\/]lib[\\/]cmap[\\/]/.test(error.stack ?? '');

/**
 * Whether an error means the database cannot be reached or has no primary at the moment: the request may succeed
 * when tried again, so it is answered 503 service_unavailable rather than 500. Follows `cause` (wrapped errors).
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    if (
      current instanceof MongoServerSelectionError ||
      current instanceof MongoNetworkError ||
      current instanceof MongoNotConnectedError ||
      current instanceof MongoTopologyClosedError ||
      // mongoose's own copy of the selection error, and its refusal to run a command while disconnected.
      current.name === 'MongooseServerSelectionError' ||
      fromDriverSocket(current) ||
      (current.name === 'MongooseError' && /before initial connection|Connection was force closed|Client must be connected/i.test(current.message))
    ) {
      return true;
    }
    if (current instanceof MongoServerError && FAILOVER_CODES.has(Number(current.code))) return true;
  }
  return false;
}
