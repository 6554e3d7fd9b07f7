import { z } from 'zod';

// The parts of Meta's webhook payload we read. The envelope is checked first and each message on its own, so one odd
// message does not cost the rest of a batch. Messages and contacts keep only the fields we read: that is what is
// stored, so nothing unexpected (a "$"-prefixed key, say) can make storing fail.

export const webhookEnvelope = z.object({
  object: z.literal('whatsapp_business_account'),
  entry: z.array(
    z.object({
      changes: z.array(
        z.object({
          field: z.string(),
          value: z.looseObject({
            metadata: z.looseObject({ phone_number_id: z.string().optional() }).optional(),
            contacts: z.array(z.unknown()).optional(),
            messages: z.array(z.unknown()).optional(),
            statuses: z.array(z.unknown()).optional(),
          }),
        }),
      ),
    }),
  ),
});

export const senderContact = z.object({
  wa_id: z.string().regex(/^\d{6,15}$/).optional(),
  // Business-scoped user id, present since 2026; the only identifier of a sender who uses a username.
  user_id: z.string().min(1).max(160).optional(),
  profile: z.object({ name: z.string().optional(), username: z.string().optional() }).optional(),
});

export const inboundMessage = z.object({
  id: z.string().min(1).max(256),
  from: z.string().regex(/^\d{6,15}$/).optional(),
  from_user_id: z.string().min(1).max(160).optional(),
  timestamp: z.string().regex(/^\d{1,12}$/),
  type: z.string(),
  text: z.object({ body: z.string().max(4096) }).optional(),
  interactive: z
    .object({
      type: z.string(),
      button_reply: z.object({ id: z.string().max(256), title: z.string().max(256) }).optional(),
    })
    .optional(),
});

export type SenderContact = z.infer<typeof senderContact>;
export type InboundWhatsAppMessage = z.infer<typeof inboundMessage>;

/** What the inbox stores for one message: the message and the contact that sent it. */
export interface StoredWhatsAppMessage {
  message: InboundWhatsAppMessage;
  contact?: SenderContact | undefined;
}
