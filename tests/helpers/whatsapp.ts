import { createHmac } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { StubServer } from './stub-server.js';

export const WHATSAPP_ENV = {
  WHATSAPP_VERIFY_TOKEN: 'verify-token-for-tests',
  WHATSAPP_APP_SECRET: 'app-secret-for-tests',
  WHATSAPP_ACCESS_TOKEN: 'graph-access-token',
  WHATSAPP_PHONE_NUMBER_ID: '106540352242922',
  WHATSAPP_DISPLAY_NUMBER: '+1 555 123 4567',
  WHATSAPP_OTP_TEMPLATE: 'otp_login',
  WHATSAPP_OTP_TEMPLATE_LANGUAGE: 'en_US',
};

let counter = 0;
export const messageId = (): string => `wamid.HBgLMTYzMTU1NTEyMzQVAgASGBQz${Date.now().toString(36)}${(counter += 1)}`;

/** Meta escapes every non-ASCII character as \uXXXX (surrogate pairs for emoji) in the bodies it signs. */
export const metaEscape = (json: string): string => json.replace(/[\u007f-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);

export interface Sender {
  /** The phone digits (wa_id); absent for a sender who uses a username. */
  waId?: string;
  userId?: string;
  name?: string;
}

/** A notification shaped like Meta's documented examples, carrying the given messages. */
export function notification(messages: object[], sender: Sender, extra: object = {}): object {
  const contact: Record<string, unknown> = { profile: { name: sender.name ?? 'Kerry Fisher' } };
  if (sender.waId) contact.wa_id = sender.waId;
  if (sender.userId) contact.user_id = sender.userId;
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '102290129340398',
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15551234567', phone_number_id: WHATSAPP_ENV.WHATSAPP_PHONE_NUMBER_ID },
              contacts: [contact],
              messages,
              ...extra,
            },
          },
        ],
      },
    ],
  };
}

const fromFields = (sender: Sender) => ({
  ...(sender.waId ? { from: sender.waId } : {}),
  ...(sender.userId ? { from_user_id: sender.userId } : {}),
});

export const textMessage = (sender: Sender, body: string, at: Date, id = messageId()) => ({
  ...fromFields(sender),
  id,
  timestamp: String(Math.floor(at.getTime() / 1000)),
  text: { body },
  type: 'text',
});

export const buttonReply = (sender: Sender, buttonId: string, title: string, at: Date, id = messageId()) => ({
  context: { from: '15551234567', id: 'wamid.prompt' },
  ...fromFields(sender),
  id,
  timestamp: String(Math.floor(at.getTime() / 1000)),
  type: 'interactive',
  interactive: { type: 'button_reply', button_reply: { id: buttonId, title } },
});

export const sign = (body: string, secret = WHATSAPP_ENV.WHATSAPP_APP_SECRET): string =>
  `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** POSTs a body to the webhook the way Meta does (escaped and signed), then waits until it has been handled. */
export async function deliver(app: FastifyInstance, payload: object | string, options: { signature?: string | null } = {}) {
  const body = typeof payload === 'string' ? payload : metaEscape(JSON.stringify(payload));
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const signature = options.signature === undefined ? sign(body) : options.signature;
  if (signature !== null) headers['x-hub-signature-256'] = signature;
  const response = await app.inject({ method: 'POST', url: '/webhooks/whatsapp', headers, payload: body });
  await app.services.inbox.idle();
  return response;
}

export interface GraphSend {
  to?: string;
  recipient?: string;
  type: string;
  text?: { body: string };
  interactive?: { body: { text: string }; action: { buttons: { reply: { id: string; title: string } }[] } };
  template?: { name: string; language: { code: string }; components: { type: string; sub_type?: string; parameters: { text: string }[] }[] };
}

/** The stand-in Graph API: answers like Meta and keeps what was sent. */
export function graphSends(graph: StubServer): GraphSend[] {
  return graph.requests.filter((request) => request.path === `/v23.0/${WHATSAPP_ENV.WHATSAPP_PHONE_NUMBER_ID}/messages`).map((request) => request.json as GraphSend);
}

export const graphAnswersOk = (graph: StubServer) =>
  graph.respond((request) => ({
    status: 200,
    body: { messaging_product: 'whatsapp', contacts: [{ input: (request.json as GraphSend).to, wa_id: '1' }], messages: [{ id: 'wamid.sent' }] },
  }));
