import { Schema, type InferSchemaType } from 'mongoose';
import { channels } from './channels.js';

// A message from a chat channel, stored before we acknowledge it. `_id` is the channel's own id
// (e.g. "whatsapp:wamid.…"), so a redelivery is recognised and not handled twice.
export const inboundMessageSchema = new Schema(
  {
    _id: { type: String, required: true },
    channel: { type: String, enum: channels, required: true },
    payload: { type: Schema.Types.Mixed, required: true },
    status: { type: String, enum: ['received', 'handled', 'ignored', 'failed'], required: true },
    attempts: { type: Number, default: 0 },
    // When the retry sweep may pick it up: a little after arrival, later after each failure.
    nextAttemptAt: { type: Date, required: true },
    lastError: { type: String },
    outcome: { type: String },
    receivedAt: { type: Date, required: true },
    handledAt: { type: Date },
    cleanupAt: { type: Date, required: true },
  },
  { collection: 'inbound_messages', versionKey: false, _id: false },
);

inboundMessageSchema.index({ status: 1, nextAttemptAt: 1 });
inboundMessageSchema.index({ cleanupAt: 1 }, { expireAfterSeconds: 0 });

export type InboundMessage = InferSchemaType<typeof inboundMessageSchema> & { _id: string };
