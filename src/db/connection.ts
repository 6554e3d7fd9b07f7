import mongoose, { type Connection } from 'mongoose';
import { auditEventSchema, type AuditEvent } from '../../models/audit-event.js';
import { challengeSchema, type Challenge } from '../../models/challenge.js';
import { inboundMessageSchema, type InboundMessage } from '../../models/inbound-message.js';
import { loginIntentSchema, type LoginIntent } from '../../models/login-intent.js';
import { otpPhoneSchema, type OtpPhone } from '../../models/otp-phone.js';
import { refreshTokenSchema, type RefreshToken } from '../../models/refresh-token.js';
import { reservationSchema, type Reservation } from '../../models/reservation.js';
import { sessionSchema, type Session } from '../../models/session.js';
import { userSchema, type User } from '../../models/user.js';

export function registerModels(connection: Connection) {
  return {
    User: connection.model<User>('User', userSchema),
    Challenge: connection.model<Challenge>('Challenge', challengeSchema),
    OtpPhone: connection.model<OtpPhone>('OtpPhone', otpPhoneSchema),
    Reservation: connection.model<Reservation>('Reservation', reservationSchema),
    Session: connection.model<Session>('Session', sessionSchema),
    RefreshToken: connection.model<RefreshToken>('RefreshToken', refreshTokenSchema),
    LoginIntent: connection.model<LoginIntent>('LoginIntent', loginIntentSchema),
    AuditEvent: connection.model<AuditEvent>('AuditEvent', auditEventSchema),
    InboundMessage: connection.model<InboundMessage>('InboundMessage', inboundMessageSchema),
  };
}

export type Models = ReturnType<typeof registerModels>;

export interface Database {
  connection: Connection;
  models: Models;
  /** Index features the engine refused (FerretDB 1.x has no TTL indexes); those only clean up, so we carry on. */
  skippedIndexes: string[];
  close(): Promise<void>;
}

const NOT_IMPLEMENTED = 238;

export interface ConnectOptions {
  dbName?: string | undefined;
  /** How long an operation waits for a reachable server before failing (then requests answer 503). */
  serverSelectionTimeoutMS?: number | undefined;
  /** How long start-up keeps trying to reach the database before giving up. */
  startupTimeoutMS?: number | undefined;
  /** Lets src/db/command-counter.ts count round trips (tests, benchmarks); off otherwise, as every command then builds its monitoring events. */
  monitorCommands?: boolean | undefined;
}

/**
 * Settings for auth state on a replica set: every write waits for a majority (`w: "majority"`), so a failover cannot
 * bring back a spent code, reservation or rotated refresh token that only the old primary had seen; writes are retried
 * once across a failover; reads go to the primary, so a single-use check never reads a lagging secondary. Commands
 * are not buffered while the driver looks for a server: they wait at most `serverSelectionTimeoutMS`, fail, and the
 * error handler answers 503 service_unavailable; the driver reconnects by itself.
 */
export const authStateConnectionOptions = (serverSelectionTimeoutMS: number) => ({
  retryWrites: true,
  writeConcern: { w: 'majority' as const },
  readPreference: 'primary' as const,
  serverSelectionTimeoutMS,
  bufferCommands: false,
});

export async function connectDatabase(uri: string, options: ConnectOptions = {}): Promise<Database> {
  const deadline = Date.now() + (options.startupTimeoutMS ?? 10_000);
  for (;;) {
    const connection = mongoose.createConnection(uri, {
      autoIndex: false,
      autoCreate: true,
      ...authStateConnectionOptions(options.serverSelectionTimeoutMS ?? 3000),
      monitorCommands: options.monitorCommands ?? false,
      ...(options.dbName ? { dbName: options.dbName } : {}),
    });
    try {
      await connection.asPromise();
    } catch (error) {
      await connection.close().catch(() => undefined);
      // A database that is still starting (a replica set electing its primary) is waited for, up to the deadline.
      if (Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
      continue;
    }
    const models = registerModels(connection);
    const skippedIndexes = await ensureIndexes(models);
    return { connection, models, skippedIndexes, close: () => connection.close() };
  }
}

// Indexes are created one by one so that an engine lacking one option (TTL, on FerretDB) still gets the
// unique indexes that correctness depends on.
async function ensureIndexes(models: Models): Promise<string[]> {
  const skipped: string[] = [];
  for (const model of Object.values(models)) {
    // The collection first (autoCreate): mongo-java-server's H2 backend fails when createIndex implicitly creates a
    // collection that mongoose's own createCollection is creating at the same moment.
    await model.init();
    for (const [fields, options] of model.schema.indexes()) {
      try {
        await model.collection.createIndex(fields as Record<string, 1 | -1>, options as Record<string, unknown>);
      } catch (error) {
        if ((error as { code?: number }).code !== NOT_IMPLEMENTED) throw error;
        skipped.push(`${model.collection.collectionName} ${JSON.stringify(fields)} ${JSON.stringify(options)}`);
      }
    }
  }
  return skipped;
}
