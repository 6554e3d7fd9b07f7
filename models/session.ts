import { Schema, type InferSchemaType, type Types } from 'mongoose';
import { channels } from './channels.js';

// A login: the family of refresh tokens that descend from one sign-in. Revoking the session kills every
// token of the family at once, including one minted concurrently with the revocation.
export const sessionSchema = new Schema(
  {
    userId: { type: Schema.Types.ObjectId, required: true },
    channel: { type: String, enum: channels, required: true },
    createdAt: { type: Date, required: true },
    lastRefreshedAt: { type: Date },
    revokedAt: { type: Date },
    revokedReason: { type: String, enum: ['logout', 'token_reused', 'user_merged', 'logout_all', 'phone_changed', 'user_blocked', 'admin'] },
    // Where the login came from, for the person's list of sessions: the IP and a reduced device description.
    ip: { type: String },
    device: { type: String },
    cleanupAt: { type: Date, required: true },
  },
  { collection: 'sessions', versionKey: false },
);

sessionSchema.index({ userId: 1 });
sessionSchema.index({ cleanupAt: 1 }, { expireAfterSeconds: 0 });

export type Session = InferSchemaType<typeof sessionSchema> & { _id: Types.ObjectId };
