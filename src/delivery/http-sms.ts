import { createHmac } from 'node:crypto';
import { DeliveryError } from '../errors.js';
import type { CodeSender } from './types.js';

export interface HttpSmsSettings {
  url: string;
  secret: string;
  timeoutMs: number;
}

/**
 * For the many regional SMS gateways with an HTTP API: POSTs `{ to, code, text, channel }` signed with
 * `X-Signature-256: sha256=<hex HMAC of the exact body>`, so the gateway can check it came from us.
 */
export function createHttpSmsSender(settings: HttpSmsSettings): CodeSender {
  return {
    channel: 'sms',
    provider: 'http',
    canReach: () => true,
    async send({ phone, code, text, channel }) {
      const body = JSON.stringify({ to: phone, code, text, channel });
      const signature = createHmac('sha256', settings.secret).update(body).digest('hex');
      let response: Response;
      try {
        response = await fetch(settings.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-signature-256': `sha256=${signature}` },
          body,
          signal: AbortSignal.timeout(settings.timeoutMs),
        });
      } catch (error) {
        const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${settings.timeoutMs} ms` : (error as Error).message;
        throw new DeliveryError('http', `SMS gateway unreachable: ${reason}`);
      }
      // Read to the end rather than cancelled: a cancelled body makes undici drop the keep-alive connection, and the
      // next code then pays for a new one (a TCP connect per send under load).
      await response.arrayBuffer().catch(() => undefined);
      if (!response.ok) throw new DeliveryError('http', `SMS gateway answered ${response.status}`, { status: response.status });
    },
  };
}
