import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bearerSecurity, errorResponses, intentPollSchema } from '../api-docs/schemas.js';
import { AppError } from '../errors.js';
import { bearerToken } from '../http/input.js';
import { noStore } from '../http/no-store.js';
import type { Services } from '../services/index.js';

const intentParams = z.object({ intentId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'is not an intent id') });

const createdIntent = z
  .object({
    intentId: z.string(),
    pollToken: z.string().describe('Poll GET /auth/login-intents/{intentId} with "Authorization: Bearer <pollToken>"'),
    code: z.string().describe('Shown to the person, who sends "LOGIN <code>" to the bot'),
    expiresIn: z.number().int(),
    links: z
      .object({ telegram: z.string().optional(), whatsapp: z.string().optional() })
      .describe('Deep links that open a chat with the code or start token already filled in'),
  })
  .meta({
    examples: [
      {
        intentId: 'q2Xv0c7mXvJ0Yk3bP1y9Aw',
        pollToken: 'cgpt_0n2vS3...',
        code: 'K7PX2M',
        expiresIn: 300,
        links: { telegram: 'https://t.me/chatgate_bot?start=...', whatsapp: 'https://wa.me/447911123456?text=LOGIN%20K7PX2M' },
      },
    ],
  });

export interface LoginIntentRouteOptions {
  services: Services;
  rateLimit: object;
  /** Whether any chat channel (WhatsApp, Telegram) is on: without one, an intent could never be approved. */
  chatChannelsOn: boolean;
}

export const loginIntentRoutes: FastifyPluginAsyncZod<LoginIntentRouteOptions> = async (app, { services, rateLimit, chatChannelsOn }) => {
  app.post(
    '/auth/login-intents',
    {
      config: { rateLimit },
      onRequest: noStore,
      schema: {
        tags: ['login-intents'],
        summary: 'Start a web sign-in that a chat confirms',
        response: { 201: createdIntent, ...errorResponses('channel_unavailable') },
      },
    },
    async (request, reply) => {
      if (!chatChannelsOn) {
        throw new AppError(
          'channel_unavailable',
          'No chat channel is configured on this gateway, so a sign-in request could never be confirmed. ' +
            'Turn on Telegram (TELEGRAM_BOT_TOKEN) or WhatsApp (WHATSAPP_VERIFY_TOKEN and WHATSAPP_APP_SECRET), or sign in with a code (POST /auth/otp/request).',
        );
      }
      const intent = await services.loginIntents.create({ ip: request.ip, userAgent: request.headers['user-agent'] });
      // The start token travels inside the deep link only; the response schema leaves it out.
      return reply.code(201).send(intent);
    },
  );

  app.get(
    '/auth/login-intents/:intentId',
    {
      onRequest: noStore,
      schema: {
        tags: ['login-intents'],
        summary: 'Poll a sign-in request',
        description: 'Answers `pending` until the chat confirms, then `approved` with tokens exactly once, then `consumed`.',
        security: bearerSecurity,
        params: intentParams,
        response: { 200: intentPollSchema, ...errorResponses('invalid_request', 'unauthorized', 'not_found', 'user_blocked') },
      },
    },
    async (request) => services.loginIntents.poll(request.params.intentId, bearerToken(request.headers.authorization), { ip: request.ip }),
  );
};
