import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { auditEventTypes } from '../../models/audit-event.js';
import { channels } from '../../models/channels.js';
import { bodyErrors, errorResponses, userSchema } from '../api-docs/schemas.js';
import { AppError } from '../errors.js';
import { noStore } from '../http/no-store.js';
import type { AdminService } from './service.js';

// Hashing both sides gives equal lengths, so the comparison takes the same time whatever was sent.
const digest = (value: string) => createHash('sha256').update(value).digest();

export const adminSecurity = [{ adminToken: [] }];

const blockSchema = z.object({ reason: z.string().nullable(), at: z.date().nullable(), until: z.date().nullable() }).nullable();
const adminUser = userSchema.extend({ block: blockSchema }).meta({ id: 'AdminUser' });
const sessionSchema = z.object({
  id: z.string(),
  createdAt: z.date(),
  lastUsedAt: z.date(),
  channel: z.enum(channels),
  device: z.string().nullable(),
  ip: z.string().nullable(),
});
const idParams = z.object({ id: z.string().max(64) });
const revokedAnswer = z.object({ sessionsRevoked: z.number().int() });
const adminErrors = ['unauthorized'] as const;

// A duration such as 30m, 1h, 7d, or an ISO date.
export function parseSince(value: string, now: Date): Date | undefined {
  const relative = /^(\d{1,6})([smhd])$/.exec(value);
  if (relative) {
    const seconds = { s: 1, m: 60, h: 3600, d: 86_400 }[relative[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now.getTime() - Number(relative[1]) * seconds * 1000);
  }
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/**
 * The operators' API. Every route takes `Authorization: Bearer <ADMIN_API_TOKEN>`; the token is compared in constant
 * time and a wrong one gets the same 401 as none.
 */
export const adminRoutes: FastifyPluginAsyncZod<{ admin: AdminService; token: string; now: () => Date }> = async (app, { admin, token, now }) => {
  const expected = digest(token);
  app.addHook('onRequest', noStore);
  app.addHook('onRequest', async (request, reply) => {
    const match = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '');
    if (!match || !timingSafeEqual(digest(match[1]!), expected)) {
      reply.header('www-authenticate', 'Bearer realm="admin"');
      throw new AppError('unauthorized', 'Send "Authorization: Bearer <ADMIN_API_TOKEN>".');
    }
  });
  const actor = (ip: string) => ({ via: 'api' as const, ip });

  app.get(
    '/admin/users',
    {
      schema: {
        tags: ['admin'],
        summary: 'Find users by one identifier',
        security: adminSecurity,
        querystring: z.strictObject({
          id: z.string().max(64).optional(),
          phone: z.string().max(32).optional(),
          telegramId: z.coerce.number().int().positive().optional(),
          waId: z.string().max(32).optional(),
        }),
        response: { 200: z.object({ users: z.array(adminUser) }), ...errorResponses('invalid_request', 'invalid_phone', 'not_found', ...adminErrors) },
      },
    },
    async (request) => {
      const { id, phone, telegramId, waId } = request.query;
      const given = [id !== undefined, phone !== undefined, telegramId !== undefined, waId !== undefined].filter(Boolean).length;
      if (given !== 1) throw new AppError('invalid_request', 'Give exactly one of id, phone, telegramId, waId.');
      const query = id !== undefined ? { id } : phone !== undefined ? { phone } : telegramId !== undefined ? { telegramId } : { waId: waId! };
      return { users: await admin.findUsers(query, actor(request.ip)) };
    },
  );

  app.get(
    '/admin/users/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'A user: identities, status, live sessions, last logins',
        security: adminSecurity,
        params: idParams,
        response: {
          200: z.object({
            user: adminUser,
            sessions: z.array(sessionSchema),
            lastLogins: z.array(z.object({ at: z.date(), channel: z.enum(channels).nullable(), ip: z.string().nullable() })),
          }),
          ...errorResponses('not_found', ...adminErrors),
        },
      },
    },
    async (request) => admin.getUser(request.params.id, actor(request.ip)),
  );

  app.post(
    '/admin/users/:id/block',
    {
      schema: {
        tags: ['admin'],
        summary: 'Block a user and sign them out everywhere',
        description: 'A blocked user gets no tokens and no codes. With `until`, the block is lifted within a minute after that time.',
        security: adminSecurity,
        params: idParams,
        body: z.strictObject({ reason: z.string().min(1).max(500), until: z.iso.datetime({ offset: true }).optional() }),
        response: { 200: z.object({ user: adminUser, sessionsRevoked: z.number().int() }), ...errorResponses(...bodyErrors, 'not_found', ...adminErrors) },
      },
    },
    async (request) =>
      admin.blockUser(request.params.id, { reason: request.body.reason, until: request.body.until ? new Date(request.body.until) : undefined }, actor(request.ip)),
  );

  app.post(
    '/admin/users/:id/unblock',
    {
      schema: {
        tags: ['admin'],
        summary: 'Lift a block',
        security: adminSecurity,
        params: idParams,
        response: { 200: z.object({ user: adminUser }), ...errorResponses('not_found', ...adminErrors) },
      },
    },
    async (request) => admin.unblockUser(request.params.id, actor(request.ip)),
  );

  app.delete(
    '/admin/users/:id/sessions',
    {
      schema: {
        tags: ['admin'],
        summary: 'Sign a user out everywhere',
        security: adminSecurity,
        params: idParams,
        response: { 200: revokedAnswer, ...errorResponses('not_found', ...adminErrors) },
      },
    },
    async (request) => admin.revokeUserSessions(request.params.id, actor(request.ip)),
  );

  app.delete(
    '/admin/sessions/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Sign one session out',
        security: adminSecurity,
        params: idParams,
        response: { 200: revokedAnswer, ...errorResponses('not_found', ...adminErrors) },
      },
    },
    async (request) => admin.revokeSession(request.params.id, actor(request.ip)),
  );

  app.get(
    '/admin/audit',
    {
      schema: {
        tags: ['admin'],
        summary: 'The audit trail, newest first',
        description: '`since` is a duration (30m, 1h, 7d) or an ISO date. Pass `nextCursor` back as `cursor` for the next page.',
        security: adminSecurity,
        querystring: z.strictObject({
          userId: z.string().max(64).optional(),
          phone: z.string().max(32).optional(),
          type: z.enum(auditEventTypes).optional(),
          since: z.string().max(40).optional(),
          cursor: z.string().max(64).optional(),
          limit: z.coerce.number().int().min(1).max(500).default(50),
        }),
        response: {
          200: z.object({
            events: z.array(
              z.object({
                id: z.string(),
                type: z.string(),
                at: z.date(),
                channel: z.string().nullable(),
                userId: z.string().nullable(),
                phone: z.string().nullable().describe('Masked'),
                ip: z.string().nullable(),
                detail: z.record(z.string(), z.unknown()).nullable(),
              }),
            ),
            nextCursor: z.string().nullable(),
          }),
          ...errorResponses('invalid_request', 'invalid_phone', 'not_found', ...adminErrors),
        },
      },
    },
    async (request) => {
      const { since, ...rest } = request.query;
      const sinceDate = since === undefined ? undefined : parseSince(since, now());
      if (since !== undefined && !sinceDate) throw new AppError('invalid_request', 'since: a duration such as 1h or 7d, or an ISO date.');
      return admin.listAudit({ ...rest, since: sinceDate }, actor(request.ip));
    },
  );
};
