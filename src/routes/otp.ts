import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { parseInput } from '../http/input.js';
import type { Services } from '../services/index.js';

const requestBody = z.strictObject({
  phone: z.string().min(3).max(32),
  channel: z.enum(['sms', 'whatsapp', 'telegram', 'auto']).default('sms'),
});

const code = z.string().min(1).max(32);
const verifyBody = z.union([
  z.strictObject({ challengeId: z.string().min(1).max(64), code }),
  z.strictObject({ phone: z.string().min(3).max(32), code }),
]);

export const otpRoutes: FastifyPluginAsync<{ services: Services; rateLimit: object }> = async (app, { services, rateLimit }) => {
  app.post('/auth/otp/request', { config: { rateLimit } }, async (request) => {
    const body = parseInput(requestBody, request.body);
    return services.otp.requestCode({ ...body, ip: request.ip });
  });

  app.post('/auth/otp/verify', { config: { rateLimit } }, async (request) => {
    const body = parseInput(verifyBody, request.body);
    const { user, channel } = await services.otp.verifyCode({ ...body, ip: request.ip });
    return services.tokens.issueForLogin(user, channel, { ip: request.ip });
  });
};
