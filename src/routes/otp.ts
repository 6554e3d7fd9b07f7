import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bodyErrors, errorResponses, tokenPairSchema } from '../api-docs/schemas.js';
import { noStore } from '../http/no-store.js';
import type { Services } from '../services/index.js';

const phone = z.string().min(3).max(32).meta({ description: 'International form (+447911123456), or national with DEFAULT_COUNTRY', examples: ['+447911123456'] });

const requestBody = z.strictObject({
  phone,
  channel: z.enum(['sms', 'whatsapp', 'telegram', 'auto']).default('sms').describe('`auto` picks a chat the phone has used, else SMS'),
});

const requestAnswer = z
  .object({
    challengeId: z.string(),
    channel: z.enum(['sms', 'whatsapp', 'telegram']).describe('Where the code was sent'),
    expiresIn: z.number().int(),
    resendIn: z.number().int().describe('Seconds before another code may be asked for this phone'),
  })
  .meta({ examples: [{ challengeId: '665f1c2e9b1e8a0012345678', channel: 'sms', expiresIn: 300, resendIn: 30 }] });

const code = z.string().min(1).max(32).meta({ examples: ['123456'] });
const verifyBody = z.union([
  z.strictObject({ challengeId: z.string().min(1).max(64), code }),
  z.strictObject({ phone, code }),
]);

export const otpRoutes: FastifyPluginAsyncZod<{ services: Services; rateLimit: object }> = async (app, { services, rateLimit }) => {
  app.post(
    '/auth/otp/request',
    {
      config: { rateLimit },
      schema: {
        tags: ['otp'],
        summary: 'Send a sign-in code to a phone',
        body: requestBody,
        response: {
          200: requestAnswer,
          ...errorResponses(...bodyErrors, 'invalid_phone', 'country_not_allowed', 'user_blocked', 'channel_unavailable', 'delivery_failed'),
        },
      },
    },
    async (request) => services.otp.requestCode({ ...request.body, ip: request.ip }),
  );

  app.post(
    '/auth/otp/verify',
    {
      config: { rateLimit },
      onRequest: noStore,
      schema: {
        tags: ['otp'],
        summary: 'Exchange the code for tokens',
        description: 'By the `challengeId` the request answered with, or by the phone (its newest code).',
        body: verifyBody,
        response: {
          200: tokenPairSchema,
          ...errorResponses(...bodyErrors, 'invalid_phone', 'invalid_code', 'user_blocked', 'not_found', 'expired', 'too_many_attempts'),
        },
      },
    },
    async (request) => {
      const { user, channel } = await services.otp.verifyCode({ ...request.body, ip: request.ip });
      return services.tokens.issueForLogin(user, channel, { ip: request.ip, userAgent: request.headers['user-agent'] }, { loginRecorded: true });
    },
  );
};
