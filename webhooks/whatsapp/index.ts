import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorResponses } from '../../src/api-docs/schemas.js';
import { AppError } from '../../src/errors.js';
import { bodyDocumentedOnly } from '../../src/http/input.js';
import type { Inbox } from '../../src/services/inbox.js';
import { inboundMessage, senderContact, webhookEnvelope, type SenderContact } from './payload.js';
import { secretsMatch } from '../../src/secrets.js';
import { createFailureCounter, isValidSignature, SIGNATURE_HEADER } from './signature.js';
import type { Clock } from '../../src/clock.js';

export interface WhatsAppWebhookOptions {
  verifyToken: string;
  appSecret: string;
  phoneNumberId: string;
  inbox: Inbox;
  maxBadSignaturesPerMinute: number;
  clock: Clock;
}

// Meta sends up to 3 MB per request and batches many messages; the rest of the server keeps its small limit.
const WEBHOOK_BODY_LIMIT = 4 * 1024 * 1024;

/** GET /webhooks/whatsapp (verification handshake) and POST /webhooks/whatsapp (signed event notifications). */
const handshakeRoute = {
  schema: {
    tags: ['webhooks'],
    summary: 'WhatsApp: the verification handshake (called by Meta)',
    querystring: z.looseObject({
      'hub.mode': z.string().optional().meta({ examples: ['subscribe'] }),
      'hub.verify_token': z.string().optional(),
      'hub.challenge': z.string().optional(),
    }),
    response: {
      200: { description: 'The hub.challenge, echoed', content: { 'text/plain': { schema: z.string() } } },
      ...errorResponses('forbidden', 'invalid_request'),
    },
  },
};

const notificationRoute = {
  bodyLimit: WEBHOOK_BODY_LIMIT,
  config: { rateLimit: false as const },
  // The body's shape is documented, not validated here: the signature is checked on the raw bytes first.
  validatorCompiler: bodyDocumentedOnly,
  schema: {
    tags: ['webhooks'],
    summary: 'WhatsApp: event notifications (called by Meta, signed with X-Hub-Signature-256)',
    headers: z.looseObject({ 'x-hub-signature-256': z.string().optional().describe('sha256=<HMAC-SHA256 of the raw body under the app secret>') }),
    body: webhookEnvelope,
    response: {
      200: z.object({ received: z.number().int().describe('Messages stored for handling') }),
      ...errorResponses('invalid_signature', 'payload_too_large', 'unsupported_media_type', 'service_unavailable'),
    },
  },
};

export const whatsappWebhook: FastifyPluginAsyncZod<WhatsAppWebhookOptions> = async (app, options) => {
  // The signature covers the bytes as sent, so this route keeps them: no JSON parsing before the check.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT }, (_request, body, done) => done(null, body));

  app.get('/webhooks/whatsapp', handshakeRoute, async (request, reply) => {
    const query = request.query;
    const mode = query['hub.mode'];
    const token = query['hub.verify_token'];
    const challenge = query['hub.challenge'];
    if (mode !== 'subscribe' || typeof token !== 'string' || !secretsMatch(token, options.verifyToken)) {
      throw new AppError('forbidden', 'The verify token does not match.');
    }
    if (typeof challenge !== 'string' || challenge.length === 0 || challenge.length > 256) {
      throw new AppError('invalid_request', 'hub.challenge is missing.');
    }
    return reply.type('text/plain; charset=utf-8').send(challenge);
  });

  const badSignatures = createFailureCounter(options.maxBadSignaturesPerMinute, 60, options.clock);
  // Before the body is read: a stranger's 4 MB is neither buffered nor hashed when it cannot be signed, and an IP that
  // keeps sending bad signatures is turned away for the rest of the minute.
  const refuseUnsignedEarly = async (request: FastifyRequest) => {
    const waitSeconds = badSignatures.blockedFor(request.ip);
    if (waitSeconds > 0) {
      throw new AppError('rate_limited', `Too many bad signatures. Try again in ${waitSeconds} seconds.`, { retryAfter: waitSeconds });
    }
    const header = request.headers['x-hub-signature-256'];
    if (typeof header !== 'string' || !SIGNATURE_HEADER.test(header)) {
      badSignatures.record(request.ip);
      throw new AppError('invalid_signature', 'The X-Hub-Signature-256 header is missing or malformed.');
    }
  };

  app.post('/webhooks/whatsapp', { ...notificationRoute, onRequest: refuseUnsignedEarly }, async (request, reply) => {
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    if (!isValidSignature(raw, request.headers['x-hub-signature-256'] as string | undefined, options.appSecret)) {
      badSignatures.record(request.ip);
      throw new AppError('invalid_signature', 'The X-Hub-Signature-256 header does not match the body.');
    }

    // From here on the body is Meta's: whatever its shape, answer 200 so it is not redelivered forever.
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      request.log.warn('signed WhatsApp notification is not JSON; ignored');
      return reply.send({ received: 0 });
    }
    const envelope = webhookEnvelope.safeParse(json);
    if (!envelope.success) {
      request.log.warn({ issues: envelope.error.issues.slice(0, 3) }, 'signed WhatsApp notification has an unexpected shape; ignored');
      return reply.send({ received: 0 });
    }

    const entries: { id: string; payload: Record<string, unknown> }[] = [];
    for (const { changes } of envelope.data.entry) {
      for (const { value } of changes) {
        // Only messages to our own number: an app can serve several, and we must not answer for the others.
        if (value.metadata?.phone_number_id !== options.phoneNumberId) {
          request.log.debug({ phoneNumberId: value.metadata?.phone_number_id }, 'notification for another phone number; ignored');
          continue;
        }
        if (value.statuses?.length) request.log.debug({ statuses: value.statuses.length }, 'whatsapp status updates ignored');
        const contacts = (value.contacts ?? []).flatMap((contact) => {
          const parsed = senderContact.safeParse(contact);
          return parsed.success ? [parsed.data] : [];
        });
        for (const candidate of value.messages ?? []) {
          const message = inboundMessage.safeParse(candidate);
          if (!message.success) {
            request.log.warn({ issues: message.error.issues.slice(0, 3) }, 'whatsapp message of an unexpected shape; ignored');
            continue;
          }
          const contact = contactOf(message.data, contacts);
          entries.push({ id: message.data.id, payload: { message: message.data, ...(contact ? { contact } : {}) } });
        }
      }
    }

    await options.inbox.receive('whatsapp', entries);
    return reply.send({ received: entries.length });
  });
};

/** The wa.me deep link that opens a chat with our number, the LOGIN message already typed. */
export const whatsappLoginLink =
  (displayNumber: string) =>
  ({ code }: { code: string }): Record<string, string> => ({
    whatsapp: `https://wa.me/${displayNumber}?text=${encodeURIComponent(`LOGIN ${code}`)}`,
  });

function contactOf(message: { from?: string | undefined; from_user_id?: string | undefined }, contacts: SenderContact[]): SenderContact | undefined {
  const matching = contacts.find(
    (contact) => (message.from && contact.wa_id === message.from) || (message.from_user_id && contact.user_id === message.from_user_id),
  );
  if (matching) return matching;
  // A lone contact speaks for a message only when the message names no sender of its own to contradict it.
  return contacts.length === 1 && !message.from && !message.from_user_id ? contacts[0] : undefined;
}
