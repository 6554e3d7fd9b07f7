import { createHmac } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { DeliveryError } from '../errors.js';
import type { CodeSender } from './types.js';

export interface HttpSmsSettings {
  url: string;
  secret: string;
  timeoutMs: number;
}

// Idle connections to the provider are closed after this long; the provider may close them sooner.
const IDLE_SOCKET_MS = 30_000;

/**
 * For the many regional SMS gateways with an HTTP API: POSTs `{ to, code, text, channel }` signed with
 * `X-Signature-256: sha256=<hex HMAC of the exact body>`, so the gateway can check it came from us.
 *
 * Through `node:http` with a keep-alive agent rather than `fetch`: every code goes through here, and undici's
 * request, web-stream body and abort-signal machinery cost about a tenth of the gateway's CPU per OTP request
 * (profiled under load); a plain request on a kept connection does the same work for a fraction of it.
 */
export function createHttpSmsSender(settings: HttpSmsSettings): CodeSender {
  const target = new URL(settings.url);
  const secure = target.protocol === 'https:';
  const agent = secure ? new HttpsAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS }) : new HttpAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS });
  const open = (options: RequestOptions, onResponse: (response: IncomingMessage) => void): ClientRequest =>
    secure ? httpsRequest(target, options, onResponse) : httpRequest(target, options, onResponse);

  /** The provider's status code; its answer is read to the end, so the connection goes back to the pool. */
  function post(body: string, signature: string, retryStale: boolean): Promise<number> {
    return new Promise((resolve, reject) => {
      const request = open(
        {
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-signature-256': `sha256=${signature}` },
        },
        (response) => {
          response.once('end', () => settle(() => resolve(response.statusCode ?? 0)));
          response.once('error', (error) => settle(() => reject(error)));
          response.resume();
        },
      );
      // One deadline for the whole exchange, the answer's body included.
      const timer = setTimeout(() => request.destroy(new DeliveryError('http', `SMS gateway unreachable: no answer within ${settings.timeoutMs} ms`)), settings.timeoutMs);
      let settled = false;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        outcome();
      };
      request.once('error', (error: NodeJS.ErrnoException) => {
        // A kept connection the provider closed just as it was reused: the request never reached it, so it is sent
        // once more on a new connection (the pattern Node's documentation gives for keep-alive agents).
        if (retryStale && request.reusedSocket && error.code === 'ECONNRESET') settle(() => resolve(post(body, signature, false)));
        else settle(() => reject(error));
      });
      request.end(body);
    });
  }

  return {
    channel: 'sms',
    provider: 'http',
    canReach: () => true,
    async send({ phone, code, text, channel }) {
      const body = JSON.stringify({ to: phone, code, text, channel });
      const signature = createHmac('sha256', settings.secret).update(body).digest('hex');
      let status: number;
      try {
        status = await post(body, signature, true);
      } catch (error) {
        if (error instanceof DeliveryError) throw error;
        throw new DeliveryError('http', `SMS gateway unreachable: ${(error as Error).message}`);
      }
      if (status < 200 || status > 299) throw new DeliveryError('http', `SMS gateway answered ${status}`, { status });
    },
  };
}
