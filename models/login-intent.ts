import { Schema, type InferSchemaType, type Types } from 'mongoose';
import { channels } from './channels.js';

// A web sign-in waiting to be completed in a chat. Its three secrets (the typed code, the deep-link start
// token and the browser's poll token) are stored as SHA-256 digests.
export const loginIntentSchema = new Schema(
  {
    _id: { type: String, required: true },
    codeHash: { type: String, required: true },
    startTokenHash: { type: String, required: true },
    pollTokenHash: { type: String, required: true },
    status: { type: String, enum: ['pending', 'approved', 'rejected', 'consumed'], required: true },
    ip: { type: String },
    userAgent: { type: String },
    // The hosted page's language, so the chat prompt and answers of this sign-in speak it too.
    language: { type: String, enum: ['en', 'es', 'pt', 'hi'] },
    createdAt: { type: Date, required: true },
    expiresAt: { type: Date, required: true },
    userId: { type: Schema.Types.ObjectId },
    channel: { type: String, enum: channels },
    decidedAt: { type: Date },
    consumedAt: { type: Date },
    cleanupAt: { type: Date, required: true },
  },
  { collection: 'login_intents', versionKey: false, _id: false },
);

loginIntentSchema.index({ codeHash: 1 }, { unique: true });
loginIntentSchema.index({ startTokenHash: 1 }, { unique: true });
loginIntentSchema.index({ cleanupAt: 1 }, { expireAfterSeconds: 0 });

export type LoginIntent = InferSchemaType<typeof loginIntentSchema> & { _id: string; userId?: Types.ObjectId | null };
