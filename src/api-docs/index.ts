import type { FastifyInstance } from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { DOCS_PREFIX, docsPagePolicy } from '../observability/browser.js';

const description = `Chat-bot-first sign-in: a phone code over SMS, WhatsApp or Telegram, or a login intent that a chat confirms.
Tokens are JWTs; verify them against \`/.well-known/jwks.json\`.

Every error is \`{ "error": "<code>", "message": "<sentence>" }\`, sometimes with more fields (\`issues\`, \`retryAfter\`, ...).
Branch on \`error\`, never on \`message\`.`;

/**
 * Collects the routes' zod schemas into an OpenAPI 3.1 document. Registered before any route: the swagger plugin
 * learns routes as they are added.
 */
export async function registerApiDescription(app: FastifyInstance): Promise<void> {
  // Loaded here, with API_DOCS on, rather than by app.ts's imports: with the docs off none of it is in memory.
  const { default: swagger } = await import('@fastify/swagger');
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Chatgate', version: '0.1.0', description },
      tags: [
        { name: 'otp', description: 'Sign in with a code sent to a phone' },
        { name: 'tokens', description: 'Refresh, sign out, who am I' },
        { name: 'login-intents', description: 'Sign in on the web by confirming in a chat' },
        { name: 'telegram', description: 'The Telegram Login Widget' },
        { name: 'accounts', description: 'Your sessions, phone number, linked channels; deleting the account; token introspection' },
        { name: 'admin', description: 'For operators, with ADMIN_API_TOKEN (off unless set)' },
        { name: 'meta', description: 'Keys, health and readiness' },
        { name: 'webhooks', description: 'Called by WhatsApp (Meta) and Telegram, not by clients' },
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'An access token; on the intent poll, the poll token' },
          adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_API_TOKEN' },
        },
      },
    },
    // The OpenID Provider's endpoints are described by its discovery document, and the hosted login page's JSON calls
    // are private to its own script: neither is part of this API's contract.
    transform: (input) =>
      isOutsideTheApi(input.url) ? { schema: { ...input.schema, hide: true }, url: input.url } : jsonSchemaTransform(input),
    transformObject: jsonSchemaTransformObject,
  });
}

/** Routes served but left out of the OpenAPI document (see above). */
export const isOutsideTheApi = (url: string): boolean => url === '/login' || url.startsWith('/login/') || url.startsWith('/oidc/');

/** GET /openapi.json and the reference page at /docs, both served from this process (no CDN). */
export async function registerApiDocsRoutes(app: FastifyInstance): Promise<void> {
  // Scalar's module carries its 4 MiB page script as one string (about 25 MiB of memory once loaded, with its
  // parsers): loaded only with API_DOCS on.
  const { default: apiReference } = await import('@scalar/fastify-api-reference');
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  // The docs page's looser CSP is set in a scope of its own: no other route pays for the check.
  await app.register(async (docs) => {
    docs.addHook('onSend', docsPagePolicy);
    await docs.register(apiReference, {
      routePrefix: DOCS_PREFIX,
      configuration: {
        url: '/openapi.json',
        pageTitle: 'Chatgate API',
        // Fonts would come from Scalar's servers; the system fonts keep the page self-contained.
        withDefaultFonts: false,
        // Self-contained: no telemetry, no hosted-service extras; "Test Request" stays, so a newcomer can try the login here.
        telemetry: false,
        showDeveloperTools: 'never',
        mcp: { disabled: true },
        agent: { disabled: true },
      },
    });
  });
}
