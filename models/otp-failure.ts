import { Schema, type InferSchemaType } from 'mongoose';

// A phone's wrong code checks of the last 24 hours, numbered (src/services/failure-budget.ts). Taken, like
// reservations, by inserts under a unique `_id`; kept apart from them because the count is read with one `$in` over
// the phone's keys, which FerretDB and mongo-java-server answer by scanning the collection: this one stays small
// (a right code deletes its phone's failures, the sweep the ones past the window).
export const otpFailureSchema = new Schema(
  {
    _id: { type: String, required: true },
    n: { type: Number, required: true },
    createdAt: { type: Date, required: true },
    cleanupAt: { type: Date, required: true },
  },
  { collection: 'otp_failures', versionKey: false },
);

otpFailureSchema.index({ cleanupAt: 1 }, { expireAfterSeconds: 0 });

export type OtpFailure = InferSchemaType<typeof otpFailureSchema>;
