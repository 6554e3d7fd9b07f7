import mongoose, { type Connection } from 'mongoose';
import { auditEventSchema, type AuditEvent } from '../../models/audit-event.js';
import { challengeSchema, type Challenge } from '../../models/challenge.js';
import { inboundMessageSchema, type InboundMessage } from '../../models/inbound-message.js';
import { loginIntentSchema, type LoginIntent } from '../../models/login-intent.js';
import { refreshTokenSchema, type RefreshToken } from '../../models/refresh-token.js';
import { reservationSchema, type Reservation } from '../../models/reservation.js';
import { sessionSchema, type Session } from '../../models/session.js';
import { userSchema, type User } from '../../models/user.js';

export function registerModels(connection: Connection) {
  return {
    User: connection.model<User>('User', userSchema),
    Challenge: connection.model<Challenge>('Challenge', challengeSchema),
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

export async function connectDatabase(uri: string, options: { dbName?: string | undefined } = {}): Promise<Database> {
  const connection = mongoose.createConnection(uri, {
    autoIndex: false,
    autoCreate: true,
    serverSelectionTimeoutMS: 10_000,
    ...(options.dbName ? { dbName: options.dbName } : {}),
  });
  await connection.asPromise();
  const models = registerModels(connection);
  const skippedIndexes = await ensureIndexes(models);
  return { connection, models, skippedIndexes, close: () => connection.close() };
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
