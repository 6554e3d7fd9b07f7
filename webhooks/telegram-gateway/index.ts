import type { FastifyPluginAsync } from 'fastify';
import type { Clock } from '../../src/clock.js';
import { gatewayReport, isAuthenticGatewayReport } from '../../src/delivery/telegram-gateway.js';
import { AppError } from '../../src/errors.js';
import type { Services } from '../../src/services/index.js';

export interface TelegramGatewayReportOptions {
  token: string;
  services: Services;
  clock: Clock;
}

// Reports older (or newer) than this are refused, so a captured one cannot be played back later.
const MAX_SKEW_SECONDS = 600;
const REPORT_BODY_LIMIT = 64 * 1024;

/**
 * POST /webhooks/telegram-gateway: the Gateway's delivery reports (a RequestStatus), signed with X-Request-Timestamp
 * and X-Request-Signature. Each (request, status) goes to the audit trail once as `otp.delivery_report`.
 */
export const telegramGatewayReports: FastifyPluginAsync<TelegramGatewayReportOptions> = async (app, options) => {
  // The signature covers the bytes as sent: no JSON parsing before the check.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: REPORT_BODY_LIMIT }, (_request, body, done) => done(null, body));

  app.post('/webhooks/telegram-gateway', { bodyLimit: REPORT_BODY_LIMIT, config: { rateLimit: false } }, async (request, reply) => {
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const timestamp = request.headers['x-request-timestamp'];
    const signature = request.headers['x-request-signature'];
    if (typeof timestamp !== 'string' || !/^\d{1,12}$/.test(timestamp) || typeof signature !== 'string' || !isAuthenticGatewayReport(raw, timestamp, signature, options.token)) {
      throw new AppError('invalid_signature', 'The X-Request-Signature header does not match the report.');
    }
    if (Math.abs(options.clock.now().getTime() / 1000 - Number(timestamp)) > MAX_SKEW_SECONDS) {
      throw new AppError('invalid_signature', 'The report is too old; X-Request-Timestamp is outside the accepted window.');
    }

    // Signed by Telegram: whatever its shape, answer 200 so it is not sent again and again.
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      json = undefined;
    }
    const report = gatewayReport.safeParse(json);
    if (!report.success || !report.data.delivery_status) {
      request.log.warn('signed Telegram Gateway report without a delivery status; ignored');
      return reply.send({ received: 0 });
    }
    const { request_id: requestId, phone_number: phone, delivery_status: delivery, is_refunded: isRefunded } = report.data;
    const status = delivery.status;
    // Telegram retries a report until it gets a 200: one audit event per request and status.
    if (await options.services.reservations.reserve(`telegram-gateway-report:${requestId}:${status}`, 7 * 86_400)) {
      await options.services.audit.record({
        type: 'otp.delivery_report',
        channel: 'telegram',
        phone: phone ? `+${phone.replace(/^\+/, '')}` : undefined,
        detail: { provider: 'telegram-gateway', requestId, status, ...(isRefunded === undefined ? {} : { isRefunded }) },
      });
    }
    return reply.send({ received: 1 });
  });
};
