import { z } from 'zod';

/** The ways a user can sign in, as GET /auth/me lists them. */
export const linkedIdentitiesSchema = z
  .array(
    z.discriminatedUnion('type', [
      z.object({ type: z.literal('phone'), phone: z.string() }),
      z.object({ type: z.literal('telegram'), id: z.number().int(), username: z.string().nullable() }),
      z.object({ type: z.literal('whatsapp'), waId: z.string().nullable() }),
    ]),
  )
  .meta({ id: 'LinkedIdentities', examples: [[{ type: 'phone', phone: '+447911123456' }, { type: 'telegram', id: 12345678, username: 'ada' }]] });
