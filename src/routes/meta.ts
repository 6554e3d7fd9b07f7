import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Connection } from 'mongoose';
import { z } from 'zod';
import { errorResponses } from '../api-docs/schemas.js';
import { AppError } from '../errors.js';
import { sendError } from '../http/error-handler.js';
import type { SigningKeys } from '../services/signing-keys.js';

const jwks = z
  .object({ keys: z.array(z.looseObject({ kty: z.string(), kid: z.string().optional(), alg: z.string().optional(), use: z.string().optional() })) })
  .meta({ examples: [{ keys: [{ kty: 'EC', crv: 'P-256', x: '...', y: '...', kid: 'k1', alg: 'ES256', use: 'sig' }] }] });

/** Health, readiness and the published keys: what operators and token consumers ask of the gateway. */
export const metaRoutes: FastifyPluginAsyncZod<{ keys: SigningKeys; connection: Connection }> = async (app, { keys, connection }) => {
  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['meta'],
        summary: 'The public keys that verify access tokens',
        response: { 200: jwks, ...errorResponses() },
      },
    },
    async (_request, reply) =>
      // Serialised once at start (a string skips the response serializer); consumers may cache it for a few minutes.
      reply.header('content-type', 'application/json; charset=utf-8').header('cache-control', 'public, max-age=300').send(keys.publicJwksJson as never),
  );

  app.get(
    '/health',
    { schema: { tags: ['meta'], summary: 'The process is alive', response: { 200: z.object({ status: z.literal('ok') }), ...errorResponses() } } },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/ready',
    {
      schema: {
        tags: ['meta'],
        summary: 'The database answers',
        response: { 200: z.object({ status: z.literal('ready') }), ...errorResponses('service_unavailable') },
      },
    },
    async (_request, reply) => {
      try {
        // A database that hangs is as unready as one that refuses; answer within two seconds either way.
        await Promise.race([
          connection.db!.admin().command({ ping: 1 }),
          new Promise((_resolve, reject) => setTimeout(() => reject(new Error('ping timed out')), 2000).unref()),
        ]);
        return { status: 'ready' as const };
      } catch {
        return sendError(reply, new AppError('service_unavailable', 'The database does not answer.'));
      }
    },
  );
};
