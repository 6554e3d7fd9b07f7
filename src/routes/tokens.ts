import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { bearerToken, parseInput } from '../http/input.js';
import type { Services } from '../services/index.js';

const refreshBody = z.strictObject({ refreshToken: z.string().min(1).max(200) });

export const tokenRoutes: FastifyPluginAsync<{ services: Services }> = async (app, { services }) => {
  app.post('/auth/token/refresh', async (request) => {
    const { refreshToken } = parseInput(refreshBody, request.body);
    return services.tokens.refresh(refreshToken, { ip: request.ip });
  });

  app.post('/auth/logout', async (request, reply) => {
    const accessToken = bearerToken(request.headers.authorization);
    if (request.body !== undefined && request.body !== null) {
      const { refreshToken } = parseInput(refreshBody, request.body);
      await services.tokens.logout({ refreshToken }, { ip: request.ip });
    } else if (accessToken) {
      await services.tokens.logout({ accessToken }, { ip: request.ip });
    } else {
      throw new AppError('unauthorized', 'Send { "refreshToken" } or "Authorization: Bearer <accessToken>".');
    }
    return reply.code(204).send();
  });

  app.get('/auth/me', async (request) => {
    const accessToken = bearerToken(request.headers.authorization);
    if (!accessToken) throw new AppError('unauthorized', 'Send "Authorization: Bearer <accessToken>".');
    return { user: await services.tokens.currentUser(accessToken) };
  });
};
