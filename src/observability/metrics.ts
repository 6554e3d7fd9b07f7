import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { AuditEntry } from '../services/audit.js';
import type { InboxEvent } from '../services/inbox.js';

// Every label here takes a handful of values (channels, providers, outcomes, route patterns): never a phone number,
// a user id, an IP or a raw URL, so the number of series stays small whatever the traffic.

export const verificationOutcomes = ['ok', 'invalid_code', 'expired', 'too_many_attempts', 'not_found'] as const;
export type VerificationOutcome = (typeof verificationOutcomes)[number];
export type RateLimitKind = 'ip' | 'phone';

// A provider name comes from our own senders, but a label must stay bounded even if a sender misbehaves.
const boundedLabel = (value: unknown): string => (typeof value === 'string' && /^[a-z0-9_-]{1,32}$/.test(value) ? value : 'other');

/** The gateway's metrics, in a registry of its own (one per app), so several apps in one process never collide. */
export function createMetrics() {
  const registry = new Registry();
  const labelled = <T extends string>(name: string, help: string, labelNames: readonly T[]) =>
    new Counter<T>({ name, help, labelNames, registers: [registry] });

  const httpDuration = new Histogram<'method' | 'route' | 'status_class'>({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route pattern and status class',
    labelNames: ['method', 'route', 'status_class'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const codesSent = labelled('chatgate_otp_codes_sent_total', 'One-time codes sent, by channel and provider', ['channel', 'provider']);
  const deliveryFailures = labelled('chatgate_otp_delivery_failures_total', 'Code deliveries that failed, by channel and provider', ['channel', 'provider']);
  const verifications = labelled('chatgate_otp_verifications_total', 'Code verifications, by outcome', ['outcome']);
  const tokensIssued = labelled('chatgate_tokens_issued_total', 'Token pairs issued at login, by channel (amr)', ['amr']);
  const tokensRefreshed = labelled('chatgate_tokens_refreshed_total', 'Refresh token rotations', []);
  const reuseDetected = labelled('chatgate_refresh_reuse_detected_total', 'Rotated-out refresh tokens presented again (session revoked)', []);
  const loginIntents = labelled('chatgate_login_intents_total', 'Login intents, by outcome (created, approved, rejected)', ['outcome']);
  const inboxMessages = labelled('chatgate_inbox_messages_total', 'Inbound chat messages, by channel and outcome', ['channel', 'outcome']);
  const inboxRetries = labelled('chatgate_inbox_retries_total', 'Handling attempts after the first, by channel', ['channel']);
  const deliveryReports = labelled('chatgate_otp_delivery_reports_total', 'Delivery reports from providers (Telegram Gateway), by provider and status', ['provider', 'status']);
  const budgetsExhausted = labelled('chatgate_otp_budgets_exhausted_total', 'Paid sends refused because a budget (OTP_BUDGET_*) was spent, by budget', ['budget']);
  const usersBlocked = labelled('chatgate_users_blocked_total', 'Users blocked by an operator', []);
  const accountsDeleted = labelled('chatgate_accounts_deleted_total', 'Accounts deleted by their owner', []);
  const phoneChanges = labelled('chatgate_phone_changes_total', 'Changes of phone number, by outcome (changed, refused)', ['outcome']);
  const rateLimited = labelled('chatgate_rate_limit_refusals_total', 'Requests refused by a rate limit, by kind (ip: per-IP limiter, phone: per-phone limits)', ['kind']);

  // Verification outcomes are fixed: show them at zero from the start, so a rate() has a series to work on.
  for (const outcome of verificationOutcomes) verifications.inc({ outcome }, 0);
  for (const kind of ['ip', 'phone'] as const) rateLimited.inc({ kind }, 0);

  let processMetrics = false;

  return {
    registry,

    /** Node process metrics cost an event-loop monitor and a GC observer, so only apps that expose metrics start them. */
    collectProcessMetrics() {
      if (processMetrics) return;
      processMetrics = true;
      collectDefaultMetrics({ register: registry });
    },

    observeRequest(method: string, route: string, statusCode: number, seconds: number) {
      httpDuration.observe({ method, route, status_class: `${Math.floor(statusCode / 100)}xx` }, seconds);
    },

    countVerification(outcome: VerificationOutcome) {
      verifications.inc({ outcome });
    },

    countRateLimited(kind: RateLimitKind) {
      rateLimited.inc({ kind });
    },

    /** Listens to the audit trail: every recorded event that has a counter moves it. */
    observeAudit(entry: AuditEntry) {
      const channel = boundedLabel(entry.channel);
      const provider = boundedLabel(entry.detail?.provider);
      switch (entry.type) {
        case 'otp.sent':
          codesSent.inc({ channel, provider });
          break;
        case 'otp.delivery_failed':
          deliveryFailures.inc({ channel, provider });
          break;
        case 'otp.verify_ok':
          verifications.inc({ outcome: 'ok' });
          break;
        case 'otp.verify_failed':
          verifications.inc({ outcome: 'invalid_code' });
          break;
        case 'tokens.issued':
          tokensIssued.inc({ amr: channel });
          break;
        case 'tokens.refreshed':
          tokensRefreshed.inc();
          break;
        case 'tokens.reuse_detected':
          reuseDetected.inc();
          break;
        case 'otp.delivery_report':
          deliveryReports.inc({ provider, status: boundedLabel(entry.detail?.status) });
          break;
        case 'otp.budget_exhausted':
          budgetsExhausted.inc({ budget: boundedLabel(entry.detail?.budget) });
          break;
        case 'intent.created':
        case 'intent.approved':
        case 'intent.rejected':
          loginIntents.inc({ outcome: entry.type.slice('intent.'.length) });
          break;
        case 'admin.user_blocked':
          usersBlocked.inc();
          break;
        case 'account.deleted':
          accountsDeleted.inc();
          break;
        case 'account.phone_changed':
          phoneChanges.inc({ outcome: 'changed' });
          break;
        case 'account.phone_change_refused':
          phoneChanges.inc({ outcome: 'refused' });
          break;
        default:
          break;
      }
    },

    /** Listens to the inbox. */
    observeInbox(event: InboxEvent) {
      const channel = boundedLabel(event.channel);
      if (event.attempt !== undefined && event.attempt > 1 && event.outcome !== 'received' && event.outcome !== 'duplicate') {
        inboxRetries.inc({ channel });
      }
      inboxMessages.inc({ channel, outcome: event.outcome });
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
