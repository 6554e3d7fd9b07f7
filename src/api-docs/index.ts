import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { AppError } from '../errors.js';
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

/** Scalar's API reference in a Fastify instance of its own, serving the page and its script under DOCS_PREFIX. */
async function startReference(): Promise<FastifyInstance> {
  const { default: apiReference } = await import('@scalar/fastify-api-reference');
  const reference = Fastify({ logger: false });
  await reference.register(apiReference, {
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
  await reference.ready();
  return reference;
}

/**
 * GET /openapi.json and the reference page at /docs, both served from this process (no CDN). Scalar's module carries
 * its 4 MiB page script as one string, about 25 MiB of memory once loaded with its parsers, for a page developers
 * open now and then: it is loaded on the first visit to /docs (never by an API request), and its answers pass
 * through these routes, so they get the gateway's headers, limits and error shape.
 */
export async function registerApiDocsRoutes(app: FastifyInstance): Promise<void> {
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  let reference: Promise<FastifyInstance> | undefined;
  const loadReference = () =>
    (reference ??= startReference().catch((error: unknown) => {
      reference = undefined; // the next visit tries again
      throw error;
    }));
  app.addHook('onClose', async () => {
    await (await reference?.catch(() => undefined))?.close();
  });

  const serve = async (request: FastifyRequest, reply: FastifyReply) => {
    const answer = await (await loadReference()).inject({ method: 'GET', url: request.url });
    if (answer.statusCode === 404) throw new AppError('not_found', `There is no ${request.method} ${request.url.split('?')[0]}.`);
    for (const name of ['content-type', 'location']) {
      const value = answer.headers[name];
      if (typeof value === 'string') reply.header(name, value);
    }
    return reply.code(answer.statusCode).send(answer.rawPayload);
  };
  // The docs page's looser CSP is set in a scope of its own: no other route pays for the check.
  await app.register(async (docs) => {
    docs.addHook('onSend', docsPagePolicy);
    docs.get(DOCS_PREFIX, { schema: { hide: true } }, serve);
    docs.get(`${DOCS_PREFIX}/*`, { schema: { hide: true } }, serve);
  });
}
