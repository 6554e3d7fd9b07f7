import { compileErrors, validate } from '@readme/openapi-parser';
import { describe, expect, it } from 'vitest';
import { isOutsideTheApi } from '../src/api-docs/index.js';
import { buildTestApp } from './helpers/app.js';
import { TELEGRAM_ENV } from './helpers/telegram.js';
import { WHATSAPP_ENV } from './helpers/whatsapp.js';

// Every channel on, so every route the gateway can serve is registered.
const { app } = await buildTestApp({ ...WHATSAPP_ENV, ...TELEGRAM_ENV });

interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, { content?: Record<string, { schema: JsonSchema }> }> }>>;
  components: { securitySchemes: Record<string, unknown>; schemas: Record<string, JsonSchema> };
}
interface JsonSchema {
  properties?: Record<string, { enum?: string[] }>;
}

const documentResponse = await app.inject({ method: 'GET', url: '/openapi.json' });
const document = documentResponse.json() as OpenApiDocument;

/** The routes the app serves, as `METHOD /openapi/{style}` strings (from Fastify's own route table). */
function registeredRoutes(): string[] {
  const routes: string[] = [];
  // printRoutes draws a tree: each level is indented by four characters and adds its segment to its parent's path.
  const parents: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│ ]*)[├└]── (\S+) \(([^)]+)\)/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    const path = (depth > 0 ? parents[depth - 1]! : '') + match[2]!;
    parents[depth] = path;
    for (const method of match[3]!.split(', ')) routes.push(`${method} ${path.replace(/:(\w+)/g, '{$1}')}`);
  }
  // HEAD is Fastify's automatic twin of GET; the docs page, the document itself, the OpenID Provider's endpoints and the
  // login page's own calls are not part of the API (isOutsideTheApi). The tree prints the provider's wildcard route
  // `/oidc/*` without its prefix, as `*`.
  return routes
    .filter((route) => !route.startsWith('HEAD ') && !/ \/(docs|openapi\.json)/.test(route) && !route.endsWith(' *'))
    .filter((route) => !isOutsideTheApi(route.split(' ')[1]!))
    .sort();
}

const errorCodes = (path: string, method: string, status: number): string[] =>
  document.paths[path]![method]!.responses[String(status)]!.content!['application/json']!.schema.properties!.error!.enum!;

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1 by a real validator', async () => {
    expect(documentResponse.statusCode).toBe(200);
    expect(document.openapi).toBe('3.1.0');
    const result = await validate(structuredClone(document) as never);
    expect(result.valid ? 'valid' : compileErrors(result)).toBe('valid');
    expect(result.warnings).toEqual([]);
  });

  it('covers every public route the app serves', () => {
    const documented = Object.entries(document.paths)
      .flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`))
      .sort();
    const served = registeredRoutes();
    expect(documented.filter((route) => isOutsideTheApi(route.split(' ')[1]!))).toEqual([]);
    expect(served).toContain('POST /auth/otp/request');
    expect(served).toContain('GET /auth/login-intents/{intentId}');
    expect(documented).toEqual(served);
  });

  it('lists the error codes of each route by status', () => {
    expect(errorCodes('/auth/otp/verify', 'post', 400)).toEqual(expect.arrayContaining(['invalid_request', 'invalid_json', 'invalid_code', 'invalid_phone']));
    expect(errorCodes('/auth/otp/verify', 'post', 429)).toEqual(expect.arrayContaining(['too_many_attempts', 'rate_limited']));
    expect(errorCodes('/auth/token/refresh', 'post', 401)).toEqual(expect.arrayContaining(['invalid_token', 'token_expired', 'token_reused', 'token_revoked']));
    expect(errorCodes('/auth/login-intents', 'post', 422)).toEqual(['channel_unavailable']);
  });

  it('documents no 429 for the probes, which the per-IP limiter never refuses', () => {
    expect(Object.keys(document.paths['/health']!.get!.responses)).not.toContain('429');
    expect(Object.keys(document.paths['/ready']!.get!.responses).sort()).toEqual(['200', '500', '503']);
    expect(Object.keys(document.paths['/.well-known/jwks.json']!.get!.responses)).toContain('429');
  });

  it('marks the bearer routes with the bearer security scheme', () => {
    expect(document.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(document.paths['/auth/me']!.get!.security).toEqual([{ bearerAuth: [] }]);
    expect(document.paths['/auth/login-intents/{intentId}']!.get!.security).toEqual([{ bearerAuth: [] }]);
    expect(document.paths['/auth/otp/request']!.post!.security).toBeUndefined();
  });

  it('carries examples and the shared schemas as components', () => {
    expect(Object.keys(document.components.schemas)).toEqual(expect.arrayContaining(['User', 'TokenPair', 'LoginIntentStatus']));
    expect(JSON.stringify(document.components.schemas.TokenPair)).toContain('"examples"');
  });
});

describe('the reference page', () => {
  it('loads its script from this server, not from a CDN', async () => {
    const redirect = await app.inject({ method: 'GET', url: '/docs' });
    expect(redirect.statusCode).toBe(301);
    const page = await app.inject({ method: 'GET', url: '/docs/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    const sources = [...page.body.matchAll(/<(?:script|link)[^>]+(?:src|href)="([^"]+)"/g)].map((match) => match[1]!);
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) expect(source).not.toMatch(/^(https?:)?\/\//);
    const script = await app.inject({ method: 'GET', url: new URL(sources.find((source) => source.endsWith('.js'))!, 'http://gateway/docs/').pathname });
    expect(script.statusCode).toBe(200);
    expect(script.headers['content-type']).toMatch(/javascript/);
    expect(page.body).toContain('/openapi.json');
  });

  it('answers an unknown path under /docs with the usual not_found', async () => {
    const response = await app.inject({ method: 'GET', url: '/docs/no-such-file.js' });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toEqual({ error: 'not_found', message: 'There is no GET /docs/no-such-file.js.' });
    expect(response.headers['x-content-type-options']).toBe('nosniff');
  });
});

describe('API_DOCS=false', async () => {
  const { app: quiet } = await buildTestApp({ API_DOCS: 'false' });

  it('serves neither the document nor the page', async () => {
    expect((await quiet.inject({ method: 'GET', url: '/openapi.json' })).statusCode).toBe(404);
    expect((await quiet.inject({ method: 'GET', url: '/docs/' })).statusCode).toBe(404);
    expect((await quiet.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: 'x' } })).json()).toMatchObject({ error: 'invalid_request' });
  });
});
