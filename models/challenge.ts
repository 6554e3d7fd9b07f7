import { Schema, type InferSchemaType, type Types } from 'mongoose';
import { channels } from './channels.js';

// A one-time code sent to a phone. The code itself is never stored: only an HMAC under the server pepper.
// `sendSeq` numbers the sends to one phone; its unique index lets exactly one of two concurrent requests send.
export const challengeSchema = new Schema(
  {
    phone: { type: String, required: true },
    channel: { type: String, enum: channels, required: true },
    codeHash: { type: Buffer, required: true },
    sendSeq: { type: Number, required: true },
    // pending: being delivered; active: delivered, usable while it is the phone's newest delivered code;
    // failed: delivery failed; consumed: used.
    status: { type: String, enum: ['pending', 'active', 'failed', 'consumed'], required: true },
    // A hint for where to start reserving attempt slots; the reservations are the truth.
    attempts: { type: Number, default: 0 },
    testNumber: { type: Boolean, default: false },
    expiresAt: { type: Date, required: true },
    ip: { type: String },
    createdAt: { type: Date, required: true },
    cleanupAt: { type: Date, required: true },
  },
  { collection: 'challenges', versionKey: false },
);

challengeSchema.index({ phone: 1, sendSeq: 1 }, { unique: true });
challengeSchema.index({ cleanupAt: 1 }, { expireAfterSeconds: 0 });

export type Challenge = InferSchemaType<typeof challengeSchema> & { _id: Types.ObjectId };
