import type { FastifyPluginAsync } from 'fastify';
import type { Connection } from 'mongoose';
import type { SigningKeys } from '../services/signing-keys.js';

/** Health, readiness and the published keys: what operators and token consumers ask of the gateway. */
export const metaRoutes: FastifyPluginAsync<{ keys: SigningKeys; connection: Connection }> = async (app, { keys, connection }) => {
  app.get('/.well-known/jwks.json', async (_request, reply) =>
    // Serialised once at start; consumers may cache it for a few minutes.
    reply.header('content-type', 'application/json; charset=utf-8').header('cache-control', 'public, max-age=300').send(keys.publicJwksJson),
  );

  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/ready', async (_request, reply) => {
    try {
      // A database that hangs is as unready as one that refuses; answer within two seconds either way.
      await Promise.race([
        connection.db!.admin().command({ ping: 1 }),
        new Promise((_resolve, reject) => setTimeout(() => reject(new Error('ping timed out')), 2000).unref()),
      ]);
      return { status: 'ready' };
    } catch {
      return reply.code(503).send({ error: 'service_unavailable', message: 'The database does not answer.' });
    }
  });
};
