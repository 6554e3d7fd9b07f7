import { Schema, type InferSchemaType } from 'mongoose';
import { channels } from './channels.js';

// A one-time code sent to a phone. The code itself is never stored: only an HMAC under the server pepper.
// `sendSeq` numbers the sends to one phone; its unique index lets exactly one of two concurrent requests send.
export const challengeSchema = new Schema(
  {
    // 128 random bits (base64url): whoever holds it has its own attempt budget, so it must not be guessable.
    _id: { type: String, required: true },
    phone: { type: String, required: true },
    channel: { type: String, enum: channels, required: true },
    codeHash: { type: Buffer, required: true },
    sendSeq: { type: Number, required: true },
    // pending: being delivered; active: delivered, usable while it is the phone's newest delivered code;
    // failed: delivery failed; consumed: used.
    status: { type: String, enum: ['pending', 'active', 'failed', 'consumed'], required: true },
    // Requests are counted per phone and per (phone, requesting IP); this is the IP's limit key (an IPv6 /64).
    ipKey: { type: String },
    // Set when nothing was sent (a blocked user, a channel that cannot reach the phone): answered like any send.
    skipped: { type: String, enum: ['blocked_user', 'unreachable'] },
    // Present (true) only on a test number's code (OTP_TEST_NUMBERS), which is never sent.
    testNumber: { type: Boolean },
    expiresAt: { type: Date, required: true },
    createdAt: { type: Date, required: true },
    cleanupAt: { type: Date, required: true },
  },
  { collection: 'challenges', versionKey: false },
);

challengeSchema.index({ phone: 1, sendSeq: 1 }, { unique: true });
challengeSchema.index({ cleanupAt: 1 }, { expireAfterSeconds: 0 });

export type Challenge = InferSchemaType<typeof challengeSchema> & { _id: string };
