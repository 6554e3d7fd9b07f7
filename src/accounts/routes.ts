import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { channels } from '../../models/channels.js';
import { bearerSecurity, bodyErrors, errorResponses, userSchema } from '../api-docs/schemas.js';
import { AppError } from '../errors.js';
import { bearerToken } from '../http/input.js';
import { noStore } from '../http/no-store.js';
import type { AccountService, Caller } from './service.js';

const sessionSchema = z
  .object({
    id: z.string(),
    createdAt: z.date(),
    lastUsedAt: z.date().describe('The last refresh, or the sign-in'),
    channel: z.enum(channels).describe('The channel the sign-in was proved on'),
    device: z.string().nullable().describe('Browser and system, as far as the sign-in request told (e.g. "Chrome 126 on Android 14")'),
    ip: z.string().nullable().describe('The IP address the sign-in came from'),
    current: z.boolean().describe('The session of the token this request was made with'),
  })
  .meta({ id: 'Session' });

const sessionList = z.object({ sessions: z.array(sessionSchema) });
const authErrors = ['unauthorized', 'invalid_token', 'token_expired', 'token_revoked', 'user_blocked'] as const;
const unlinkParams = z.object({ kind: z.enum(['telegram', 'whatsapp']) });

const introspection = z
  .object({
    active: z.boolean(),
    sub: z.string().optional(),
    sid: z.string().optional(),
    exp: z.number().int().optional(),
    iat: z.number().int().optional(),
    auth_time: z.number().int().optional(),
    iss: z.string().optional(),
    aud: z.union([z.string(), z.array(z.string())]).optional(),
    amr: z.array(z.string()).optional(),
    token_type: z.literal('Bearer').optional(),
    phone_number: z.string().optional(),
  })
  .meta({ id: 'Introspection', examples: [{ active: false }] });

/** Self-service account routes; each takes the caller's access token. */
export const accountRoutes: FastifyPluginAsyncZod<{ accounts: AccountService; rateLimit: object }> = async (app, { accounts, rateLimit }) => {
  const caller = (request: FastifyRequest): Promise<Caller> => {
    const token = bearerToken(request.headers.authorization);
    if (!token) throw new AppError('unauthorized', 'Send "Authorization: Bearer <accessToken>".');
    return accounts.authenticate(token);
  };
  const routeConfig = { rateLimit };

  app.get(
    '/auth/sessions',
    {
      config: routeConfig,
      schema: {
        tags: ['accounts'],
        summary: 'Where you are signed in',
        security: bearerSecurity,
        response: { 200: sessionList, ...errorResponses(...authErrors, 'not_found') },
      },
    },
    async (request) => ({ sessions: await accounts.listSessions(await caller(request)) }),
  );

  app.delete(
    '/auth/sessions/:id',
    {
      config: routeConfig,
      schema: {
        tags: ['accounts'],
        summary: 'Sign one of your sessions out',
        description: 'An id that is not one of your sessions answers 404, like an unknown one.',
        security: bearerSecurity,
        params: z.object({ id: z.string().max(64) }),
        response: { 204: z.undefined().describe('Signed out'), ...errorResponses(...authErrors, 'invalid_request', 'not_found') },
      },
    },
    async (request, reply) => {
      await accounts.revokeSession(await caller(request), request.params.id, request.ip);
      return reply.code(204).send();
    },
  );

  app.post(
    '/auth/logout-all',
    {
      config: routeConfig,
      schema: {
        tags: ['accounts'],
        summary: 'Sign out everywhere',
        description: '`keepCurrent: true` keeps the session of this access token.',
        security: bearerSecurity,
        body: z.strictObject({ keepCurrent: z.boolean().default(false) }).nullish(),
        response: { 200: z.object({ revoked: z.number().int() }), ...errorResponses(...bodyErrors, ...authErrors, 'not_found') },
      },
    },
    async (request) => ({ revoked: await accounts.logoutAll(await caller(request), request.body?.keepCurrent ?? false, request.ip) }),
  );

  app.post(
    '/auth/phone/change',
    {
      config: routeConfig,
      schema: {
        tags: ['accounts'],
        summary: 'Send a code to a new phone number',
        description: 'Needs a sign-in from the last 10 minutes (the access token\'s `auth_time`), else 401 `reauthentication_required`. Every limit of /auth/otp/request applies.',
        security: bearerSecurity,
        body: z.strictObject({
          newPhone: z.string().min(3).max(32).meta({ examples: ['+447911123456'] }),
          channel: z.enum(['sms', 'whatsapp', 'telegram', 'auto']).default('sms'),
        }),
        response: {
          200: z.object({ channel: z.enum(channels), expiresIn: z.number().int(), resendIn: z.number().int() }),
          ...errorResponses(...bodyErrors, ...authErrors, 'reauthentication_required', 'invalid_phone', 'country_not_allowed', 'channel_unavailable', 'delivery_failed', 'not_found'),
        },
      },
    },
    async (request) => accounts.requestPhoneChange(await caller(request), { ...request.body, ip: request.ip }),
  );

  app.post(
    '/auth/phone/change/verify',
    {
      config: routeConfig,
      onRequest: noStore,
      schema: {
        tags: ['accounts'],
        summary: 'Move your account to the new phone number',
        description:
          'Refused with 409 `conflict` when another account holds the number (no merge). Signs your other sessions out and tells the old number by SMS.',
        security: bearerSecurity,
        body: z.strictObject({ code: z.string().min(1).max(32) }),
        response: {
          200: z.object({ user: userSchema }),
          ...errorResponses(...bodyErrors, ...authErrors, 'reauthentication_required', 'invalid_code', 'not_found', 'expired', 'too_many_attempts', 'conflict'),
        },
      },
    },
    async (request) => ({ user: await accounts.verifyPhoneChange(await caller(request), { code: request.body.code, ip: request.ip }) }),
  );

  app.delete(
    '/auth/identities/:kind',
    {
      config: routeConfig,
      schema: {
        tags: ['accounts'],
        summary: 'Unlink Telegram or WhatsApp',
        description: 'Refused with 409 `conflict` when it is your last way to sign in.',
        security: bearerSecurity,
        params: unlinkParams,
        response: { 200: z.object({ user: userSchema }), ...errorResponses('invalid_request', ...authErrors, 'not_found', 'conflict') },
      },
    },
    async (request) => ({ user: await accounts.unlinkIdentity(await caller(request), request.params.kind, request.ip) }),
  );

  app.delete(
    '/auth/me',
    {
      config: routeConfig,
      schema: {
        tags: ['accounts'],
        summary: 'Delete your account',
        description:
          'Needs a sign-in from the last 10 minutes. Removes the user, sessions and refresh tokens; the audit trail keeps a record under a random id, without phone or IP.',
        security: bearerSecurity,
        response: { 204: z.undefined().describe('Deleted'), ...errorResponses(...authErrors, 'reauthentication_required', 'not_found') },
      },
    },
    async (request, reply) => {
      await accounts.deleteAccount(await caller(request));
      return reply.code(204).send();
    },
  );

  app.post(
    '/auth/introspect',
    {
      onRequest: noStore,
      schema: {
        tags: ['accounts'],
        summary: 'Is this access token still good? (RFC 7662)',
        description:
          'For services that consume access tokens: `active` is false once the session is signed out, the user blocked or deleted. A JWT checked only against the JWKS stays valid until it expires (ACCESS_TOKEN_TTL_SECONDS).',
        body: z.strictObject({ token: z.string().min(1).max(4096), token_type_hint: z.string().max(40).optional() }),
        response: { 200: introspection, ...errorResponses(...bodyErrors) },
      },
    },
    async (request) => accounts.introspect(request.body.token),
  );
};
