import { Schema, type InferSchemaType } from 'mongoose';
import { channels } from './channels.js';

export const auditEventTypes = [
  'otp.sent',
  'otp.delivery_failed',
  'otp.delivery_report',
  'otp.verify_ok',
  'otp.verify_failed',
  'otp.budget_exhausted',
  'otp.failure_budget_exhausted',
  'otp.blocked_user_skipped',
  'tokens.issued',
  'tokens.refreshed',
  'tokens.reuse_detected',
  'session.logout',
  'intent.created',
  'intent.approved',
  'intent.rejected',
  'identity.linked',
  'oidc.authorized',
  'oidc.token_exchanged',
  'oidc.token_refreshed',
  'oidc.revoked',
  'oidc.logout',
  // Accounts (src/accounts): what people do to their own account.
  'session.revoked',
  'session.logout_all',
  'account.phone_change_requested',
  'account.phone_changed',
  'account.phone_change_refused',
  'account.identity_unlinked',
  'account.deleted',
  // The admin API and CLI (src/admin): every call, with what it changed.
  'admin.lookup',
  'admin.user_blocked',
  'admin.user_unblocked',
  'admin.block_expired',
  'admin.sessions_revoked',
  'admin.session_revoked',
] as const;

// The trail of auth events. Phones are stored masked: the trail says what happened, not whose number it was.
export const auditEventSchema = new Schema(
  {
    type: { type: String, enum: auditEventTypes, required: true },
    at: { type: Date, required: true },
    channel: { type: String, enum: channels },
    userId: { type: Schema.Types.ObjectId },
    phone: { type: String },
    ip: { type: String },
    detail: { type: Schema.Types.Mixed },
  },
  { collection: 'audit_events', versionKey: false },
);

auditEventSchema.index({ userId: 1, at: -1 });
auditEventSchema.index({ type: 1, at: -1 });

export type AuditEvent = InferSchemaType<typeof auditEventSchema>;
