import { Schema, type InferSchemaType, type Types } from 'mongoose';

// Refresh tokens are stored as SHA-256 digests only. `parentId` is unique: a token can have one successor,
// so of two concurrent refreshes with the same token exactly one can rotate it.
export const refreshTokenSchema = new Schema(
  {
    sessionId: { type: Schema.Types.ObjectId, required: true },
    userId: { type: Schema.Types.ObjectId, required: true },
    tokenHash: { type: String, required: true },
    parentId: { type: Schema.Types.ObjectId },
    expiresAt: { type: Date, required: true },
    createdAt: { type: Date, required: true },
    cleanupAt: { type: Date, required: true },
  },
  { collection: 'refresh_tokens', versionKey: false },
);

refreshTokenSchema.index({ tokenHash: 1 }, { unique: true });
refreshTokenSchema.index({ parentId: 1 }, { unique: true, sparse: true });
refreshTokenSchema.index({ cleanupAt: 1 }, { expireAfterSeconds: 0 });

export type RefreshToken = InferSchemaType<typeof refreshTokenSchema> & { _id: Types.ObjectId };
