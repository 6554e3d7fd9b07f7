import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { linkedIdentitiesSchema } from '../accounts/schemas.js';
import { linkedIdentities } from '../accounts/service.js';
import { bearerSecurity, bodyErrors, errorResponses, tokenPairSchema, userSchema } from '../api-docs/schemas.js';
import { AppError } from '../errors.js';
import { bearerToken } from '../http/input.js';
import { noStore } from '../http/no-store.js';
import type { Services } from '../services/index.js';

const refreshBody = z.strictObject({ refreshToken: z.string().min(1).max(200) });
const tokenErrors = ['invalid_token', 'token_expired', 'token_reused', 'token_revoked'] as const;

export const tokenRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  app.post(
    '/auth/token/refresh',
    {
      onRequest: noStore,
      schema: {
        tags: ['tokens'],
        summary: 'Trade a refresh token for a new pair',
        description: 'The presented refresh token is spent. Presenting a spent one again signs the whole session out (`token_reused`).',
        body: refreshBody,
        response: { 200: tokenPairSchema, ...errorResponses(...bodyErrors, ...tokenErrors, 'user_blocked', 'not_found') },
      },
    },
    async (request) => services.tokens.refresh(request.body.refreshToken, { ip: request.ip }),
  );

  app.post(
    '/auth/logout',
    {
      schema: {
        tags: ['tokens'],
        summary: 'Sign the session out',
        description: 'Send `{ "refreshToken" }`, or no body and `Authorization: Bearer <accessToken>`.',
        security: [...bearerSecurity, {}],
        // No body at all (or JSON null) means: sign out by the access token.
        body: refreshBody.nullish(),
        response: { 204: z.undefined().describe('Signed out'), ...errorResponses(...bodyErrors, ...tokenErrors, 'unauthorized') },
      },
    },
    async (request, reply) => {
      const accessToken = bearerToken(request.headers.authorization);
      if (request.body) {
        await services.tokens.logout({ refreshToken: request.body.refreshToken }, { ip: request.ip });
      } else if (accessToken) {
        await services.tokens.logout({ accessToken }, { ip: request.ip });
      } else {
        throw new AppError('unauthorized', 'Send { "refreshToken" } or "Authorization: Bearer <accessToken>".');
      }
      return reply.code(204).send();
    },
  );

  app.get(
    '/auth/me',
    {
      schema: {
        tags: ['tokens'],
        summary: 'The signed-in user',
        security: bearerSecurity,
        response: {
          200: z.object({ user: userSchema, identities: linkedIdentitiesSchema }),
          ...errorResponses(...tokenErrors, 'unauthorized', 'user_blocked', 'not_found'),
        },
      },
    },
    async (request) => {
      const accessToken = bearerToken(request.headers.authorization);
      if (!accessToken) throw new AppError('unauthorized', 'Send "Authorization: Bearer <accessToken>".');
      const user = await services.tokens.currentUser(accessToken);
      return { user, identities: linkedIdentities(user) };
    },
  );
};
