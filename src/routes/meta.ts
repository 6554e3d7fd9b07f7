import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Connection } from 'mongoose';
import { z } from 'zod';
import { errorResponses, probeErrorResponses } from '../api-docs/schemas.js';
import { AppError } from '../errors.js';
import { sendError } from '../http/error-handler.js';
import type { SigningKeys } from '../services/signing-keys.js';

const jwks = z
  .object({ keys: z.array(z.looseObject({ kty: z.string(), kid: z.string().optional(), alg: z.string().optional(), use: z.string().optional() })) })
  .meta({ examples: [{ keys: [{ kty: 'EC', crv: 'P-256', x: '...', y: '...', kid: 'k1', alg: 'ES256', use: 'sig' }] }] });

const HEALTHY = JSON.stringify({ status: 'ok' });

/** Health, readiness and the published keys: what operators and token consumers ask of the gateway. */
export const metaRoutes: FastifyPluginAsyncZod<{ keys: SigningKeys; connection: Connection }> = async (app, { keys, connection }) => {
  // Readiness checks asked while a ping is under way share its answer, so a flood of /ready (which the per-IP limiter
  // does not count) costs the database one ping at a time. A database that hangs is as unready as one that refuses:
  // the answer comes within two seconds either way.
  let pingUnderWay: Promise<unknown> | undefined;
  const ping = () =>
    (pingUnderWay ??= Promise.race([
      connection.db!.admin().command({ ping: 1 }),
      new Promise((_resolve, reject) => setTimeout(() => reject(new Error('ping timed out')), 2000).unref()),
    ]).finally(() => {
      pingUnderWay = undefined;
    }));

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

  // Probes are not counted by the per-IP limiter: an orchestrator or a load balancer probes from one address (often the
  // same one that forwards all traffic when no proxy is trusted), and a 429 there would take a healthy instance out of
  // rotation. /health does nothing worth limiting; /ready's database pings are shared (below).
  const probe = { rateLimit: false as const };

  app.get(
    '/health',
    {
      config: probe,
      schema: { tags: ['meta'], summary: 'The process is alive', response: { 200: z.object({ status: z.literal('ok') }), ...probeErrorResponses() } },
    },
    // A fixed answer, written once (a string skips the response serializer).
    async (_request, reply) => reply.type('application/json; charset=utf-8').send(HEALTHY as never),
  );

  app.get(
    '/ready',
    {
      config: probe,
      schema: {
        tags: ['meta'],
        summary: 'The database answers',
        response: { 200: z.object({ status: z.literal('ready') }), ...probeErrorResponses('service_unavailable') },
      },
    },
    async (_request, reply) => {
      try {
        await ping();
        return { status: 'ready' as const };
      } catch {
        return sendError(reply, new AppError('service_unavailable', 'The database does not answer.'));
      }
    },
  );
};
