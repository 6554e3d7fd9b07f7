import { Schema, type InferSchemaType } from 'mongoose';

// One document per phone (`_id` is the E.164 number) with its recent sends, newest first, so an OTP request reads
// its limits with one point lookup instead of a sorted query over the challenges. Only a summary: which request
// may send still rests on the unique (phone, sendSeq) index of the challenges.
export const otpPhoneSchema = new Schema(
  {
    _id: { type: String, required: true },
    lastSeq: { type: Number, required: true },
    sends: [
      {
        _id: false,
        seq: { type: Number, required: true },
        at: { type: Date, required: true },
        ipKey: { type: String },
        // Delivery failed: counts towards the hourly caps, not towards the wait between codes.
        failed: { type: Boolean },
      },
    ],
    cleanupAt: { type: Date, required: true },
  },
  { collection: 'otp_phones', versionKey: false, _id: false },
);

export type OtpPhone = InferSchemaType<typeof otpPhoneSchema> & { _id: string };
export type OtpPhoneSend = { seq: number; at: Date; ipKey?: string | undefined; failed?: boolean | undefined };
