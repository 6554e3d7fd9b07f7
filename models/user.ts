import { Schema, type InferSchemaType, type Types } from 'mongoose';
import { channels } from './channels.js';

// One person. Each identifier is unique when present (sparse), so the unique indexes are what make
// "resolve or create" race-safe: two concurrent first logins for one phone cannot make two users.
export const userSchema = new Schema(
  {
    phone: { type: String },
    telegram: {
      id: { type: Number },
      username: { type: String },
      firstName: { type: String },
      // The `sub` of Telegram's OpenID Connect ID token (the user is matched by `id`, the bot's `from.id`).
      sub: { type: String },
    },
    whatsapp: {
      waId: { type: String },
      // Business-scoped user id, for senders who use a WhatsApp username and show no phone number.
      userId: { type: String },
    },
    status: { type: String, enum: ['active', 'blocked'], default: 'active', required: true },
    // Set by an operator (src/admin); a block with `until` is lifted by a sweep once that time has passed.
    block: {
      reason: { type: String },
      at: { type: Date },
      until: { type: Date },
    },
    lastLoginAt: { type: Date },
    lastLoginChannel: { type: String, enum: channels },
  },
  { timestamps: true, collection: 'users' },
);

userSchema.index({ phone: 1 }, { unique: true, sparse: true });
userSchema.index({ 'telegram.id': 1 }, { unique: true, sparse: true });
userSchema.index({ 'whatsapp.waId': 1 }, { unique: true, sparse: true });
userSchema.index({ 'whatsapp.userId': 1 }, { unique: true, sparse: true });

export type User = InferSchemaType<typeof userSchema> & { _id: Types.ObjectId };
