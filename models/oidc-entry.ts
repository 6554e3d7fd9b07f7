import { Schema, type InferSchemaType } from 'mongoose';

// What oidc-provider stores (sessions, interactions, grants, codes, tokens), one document per entry, keyed by
// "<model>:<id>". The payload is the provider's own object; the fields beside it are what the adapter looks up by.
export const oidcEntrySchema = new Schema(
  {
    _id: { type: String, required: true },
    kind: { type: String, required: true },
    payload: { type: Schema.Types.Mixed, required: true },
    grantId: { type: String },
    uid: { type: String },
    userCode: { type: String },
    expiresAt: { type: Date },
  },
  { collection: 'oidc_entries', versionKey: false, _id: false },
);

oidcEntrySchema.index({ grantId: 1 });
oidcEntrySchema.index({ uid: 1 });
oidcEntrySchema.index({ expiresAt: 1 });

export type OidcEntry = InferSchemaType<typeof oidcEntrySchema> & { _id: string };
