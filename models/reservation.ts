import { Schema, type InferSchemaType } from 'mongoose';

// A key that can be taken once. Inserting a document under a unique `_id` is atomic on every
// MongoDB-wire server (FerretDB included, whose conditional updates are not), so single-use codes,
// attempt limits, token rotation and hand-overs are all built on reservations.
export const reservationSchema = new Schema(
  {
    _id: { type: String, required: true },
    data: { type: Schema.Types.Mixed },
    createdAt: { type: Date, required: true },
    cleanupAt: { type: Date, required: true },
  },
  { collection: 'reservations', versionKey: false },
);

reservationSchema.index({ cleanupAt: 1 }, { expireAfterSeconds: 0 });

export type Reservation = InferSchemaType<typeof reservationSchema>;
