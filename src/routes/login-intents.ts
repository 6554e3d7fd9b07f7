import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { bearerToken, parseInput } from '../http/input.js';
import type { Services } from '../services/index.js';

const intentParams = z.object({ intentId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'is not an intent id') });

export const loginIntentRoutes: FastifyPluginAsync<{ services: Services; rateLimit: object }> = async (app, { services, rateLimit }) => {
  app.post('/auth/login-intents', { config: { rateLimit } }, async (request, reply) => {
    const intent = await services.loginIntents.create({ ip: request.ip, userAgent: request.headers['user-agent'] });
    // The start token travels inside the deep link only.
    const { startToken: _startToken, ...shown } = intent;
    return reply.code(201).send(shown);
  });

  app.get('/auth/login-intents/:intentId', async (request) => {
    const { intentId } = parseInput(intentParams, request.params);
    return services.loginIntents.poll(intentId, bearerToken(request.headers.authorization), { ip: request.ip });
  });
};
