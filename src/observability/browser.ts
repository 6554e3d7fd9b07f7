import { createHash } from 'node:crypto';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { REQUEST_ID_HEADER } from './request-id.js';

/** Where the interactive API reference is served (@scalar/fastify-api-reference); only there is a looser CSP allowed. */
export const DOCS_PREFIX = '/docs';

// API answers are JSON that nothing should render, frame or run: a policy that allows nothing at all.
const apiCsp = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HSTS = 'max-age=31536000; includeSubDomains';

const INLINE_SCRIPT = /<script(?![^>]*\bsrc\s*=)[^>]*>([\s\S]*?)<\/script>/gi;

/**
 * The docs page loads its own script from under the prefix (js/scalar.js) and starts it with one inline script that
 * carries its settings. The inline script is allowed by its hash, computed from the page itself, so exactly that
 * script runs and nothing injected would. The reference styles itself with inline styles, shows data: images, and
 * fetches the OpenAPI document and "try it" requests from this origin.
 */
export function docsCsp(html: string): string {
  const hashes = [...html.matchAll(INLINE_SCRIPT)].map(([, body]) => `'sha256-${createHash('sha256').update(body ?? '').digest('base64')}'`);
  return [
    "default-src 'none'",
    `script-src 'self' ${hashes.join(' ')}`.trim(),
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** HSTS only where the browser reached us over TLS: PUBLIC_URL is https, or a trusted proxy says the hop was https. */
function wantsHsts(config: Pick<Config, 'PUBLIC_URL' | 'TRUST_PROXY'>): (request: FastifyRequest) => boolean {
  if (config.PUBLIC_URL?.startsWith('https:')) return () => true;
  if (config.TRUST_PROXY === false) return () => false;
  return (request) => request.protocol === 'https';
}

/** CORS for the listed origins, and the security headers every response carries. */
export async function registerBrowserProtections(app: FastifyInstance, config: Config): Promise<void> {
  if (config.CORS_ORIGINS.length > 0) {
    await app.register(cors, {
      origin: config.CORS_ORIGINS.includes('*') ? '*' : config.CORS_ORIGINS,
      methods: ['GET', 'HEAD', 'POST', 'DELETE'],
      allowedHeaders: ['content-type', 'authorization'],
      exposedHeaders: [REQUEST_ID_HEADER, 'retry-after'],
      // Tokens travel in bodies and the Authorization header, never in cookies.
      credentials: false,
      maxAge: 600,
      strictPreflight: true,
    });
  }

  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: false,
    hsts: false,
    // Popup-based sign-in flows need the opener to survive.
    crossOriginOpenerPolicy: { policy: 'same-origin-allow-popups' },
  });

  const hsts = wantsHsts(config);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('content-security-policy', apiCsp);
    if (hsts(request)) reply.header('strict-transport-security', HSTS);
  });
  app.addHook('onSend', async (request, reply, payload) => {
    const path = request.url.split('?')[0] ?? '';
    const isDocsPage = path === DOCS_PREFIX || path.startsWith(`${DOCS_PREFIX}/`);
    const html = typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : undefined;
    if (isDocsPage && html !== undefined && String(reply.getHeader('content-type') ?? '').startsWith('text/html')) {
      reply.header('content-security-policy', docsCsp(html));
    }
    return payload;
  });
}
