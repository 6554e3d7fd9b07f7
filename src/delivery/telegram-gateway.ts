import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { DeliveryError } from '../errors.js';
import type { CodeSender } from './types.js';

export interface TelegramGatewaySettings {
  apiRoot: string;
  token: string;
  timeoutMs: number;
  /** How long the code is valid; the message is deleted from the chat after it (Telegram takes 30 to 3600 s). */
  ttlSeconds: number;
  /** Where the Gateway POSTs delivery reports (PUBLIC_URL/webhooks/telegram-gateway), when there is a public URL. */
  callbackUrl?: string | undefined;
}

// The part of RequestStatus the gateway reads; Telegram may add fields.
const requestStatus = z.looseObject({
  request_id: z.string().min(1).max(256),
  phone_number: z.string().max(32).optional(),
  request_cost: z.number().optional(),
  is_refunded: z.boolean().optional(),
  delivery_status: z.looseObject({ status: z.string().max(32), updated_at: z.number().optional() }).optional(),
});

export type GatewayRequestStatus = z.infer<typeof requestStatus>;

const answer = z.union([
  z.object({ ok: z.literal(true), result: z.unknown() }),
  z.object({ ok: z.literal(false), error: z.string().max(256).default('UNKNOWN_ERROR') }),
]);

// Refusals about our account or Telegram itself (token, balance, flood, internal): the Gateway failed. Any other refusal
// of checkSendAbility is about the phone (no Telegram account, invalid, banned): it cannot be reached.
const ACCOUNT_ERRORS = /ACCESS_TOKEN|BALANCE|FUNDS|FLOOD|TOO_MANY|INTERNAL|TIMEOUT|METHOD/i;

export class GatewayRefusal extends Error {
  constructor(readonly errorCode: string) {
    super(`Telegram Gateway answered ${errorCode}`);
    this.name = 'GatewayRefusal';
  }
}

/** The Gateway API methods the gateway uses: JSON over HTTPS with the token as a Bearer header. */
export function createTelegramGatewayClient(settings: Pick<TelegramGatewaySettings, 'apiRoot' | 'token' | 'timeoutMs'>) {
  const root = settings.apiRoot.replace(/\/$/, '');

  async function call(method: string, parameters: Record<string, unknown>): Promise<GatewayRequestStatus> {
    let response: Response;
    try {
      response = await fetch(`${root}/${method}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${settings.token}` },
        body: JSON.stringify(parameters),
        signal: AbortSignal.timeout(settings.timeoutMs),
      });
    } catch (error) {
      const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${settings.timeoutMs} ms` : 'network error';
      throw new DeliveryError('telegram-gateway', `Telegram Gateway unreachable (${reason})`);
    }
    const body = answer.safeParse(await response.json().catch(() => undefined));
    if (!body.success) throw new DeliveryError('telegram-gateway', `Telegram Gateway answered ${response.status} without a readable body`, { status: response.status });
    if (!body.data.ok) throw new GatewayRefusal(body.data.error);
    const status = requestStatus.safeParse(body.data.result);
    if (!status.success) throw new DeliveryError('telegram-gateway', 'Telegram Gateway answered without a request_id');
    return status.data;
  }

  return {
    /** The request id to send with (that send is then free), or null when the Gateway cannot reach the phone. */
    async checkSendAbility(phone: string): Promise<string | null> {
      try {
        return (await call('checkSendAbility', { phone_number: phone })).request_id;
      } catch (error) {
        if (error instanceof GatewayRefusal && !ACCOUNT_ERRORS.test(error.errorCode)) return null;
        if (error instanceof GatewayRefusal) throw new DeliveryError('telegram-gateway', error.message, { errorCode: error.errorCode });
        throw error;
      }
    },

    async sendVerificationMessage(parameters: { phone: string; code: string; ttlSeconds: number; requestId?: string | undefined; callbackUrl?: string | undefined }) {
      try {
        return await call('sendVerificationMessage', {
          phone_number: parameters.phone,
          code: parameters.code,
          ttl: Math.min(3600, Math.max(30, parameters.ttlSeconds)),
          ...(parameters.requestId ? { request_id: parameters.requestId } : {}),
          ...(parameters.callbackUrl ? { callback_url: parameters.callbackUrl } : {}),
        });
      } catch (error) {
        if (error instanceof GatewayRefusal) throw new DeliveryError('telegram-gateway', error.message, { errorCode: error.errorCode });
        throw error;
      }
    },
  };
}

export type TelegramGatewayClient = ReturnType<typeof createTelegramGatewayClient>;

/**
 * Codes for channel "telegram" through the Gateway: asks checkSendAbility first (free when it cannot send; its
 * request id makes the send itself free), then sends our own code, so checking it stays ours.
 */
export function createTelegramGatewaySender(client: TelegramGatewayClient, settings: Pick<TelegramGatewaySettings, 'ttlSeconds' | 'callbackUrl'>): CodeSender {
  const sendWith = (requestId: string | undefined): CodeSender => ({
    channel: 'telegram',
    provider: 'telegram-gateway',
    canReach: () => true,
    async send({ phone, code }) {
      await client.sendVerificationMessage({ phone, code, ttlSeconds: settings.ttlSeconds, requestId, callbackUrl: settings.callbackUrl });
    },
  });
  return {
    ...sendWith(undefined),
    async prepare({ phone }) {
      const requestId = await client.checkSendAbility(phone);
      return requestId ? sendWith(requestId) : null;
    },
  };
}

/**
 * Channel "telegram" with both senders: the bot (free) when the phone's Telegram account talked to it, else the
 * Gateway when it can reach the phone.
 */
export function combineTelegramSenders(bot: CodeSender | undefined, gateway: CodeSender): CodeSender {
  const choose = async (message: Parameters<CodeSender['canReach']>[0]): Promise<CodeSender | null> => {
    if (bot?.canReach(message)) return bot;
    return gateway.prepare ? gateway.prepare(message) : gateway;
  };
  return {
    channel: 'telegram',
    provider: 'telegram',
    canReach: () => true,
    prepare: choose,
    async send(message) {
      const sender = await choose(message);
      if (!sender) throw new DeliveryError('telegram-gateway', 'Telegram Gateway cannot reach this phone');
      await sender.send(message);
    },
  };
}

/**
 * The Gateway's report check: hex HMAC-SHA256 of "<X-Request-Timestamp>\n<raw body>" under the SHA-256 of the API
 * token, compared in constant time.
 */
export function isAuthenticGatewayReport(rawBody: Buffer, timestamp: string, signature: string, token: string): boolean {
  if (!/^[0-9a-f]{64}$/i.test(signature)) return false;
  const key = createHash('sha256').update(token).digest();
  const expected = createHmac('sha256', key).update(`${timestamp}\n`).update(rawBody).digest();
  return timingSafeEqual(expected, Buffer.from(signature, 'hex'));
}

export const gatewayReport = requestStatus;
