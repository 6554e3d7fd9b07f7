import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import cors from '@fastify/cors';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler, onSendHookHandler } from 'fastify';
import helmet from 'helmet';
import type { Config } from '../config.js';
import { withHookAdded } from '../http/route-hooks.js';
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

/**
 * Helmet's headers for our settings, worked out once at start: with no CSP nonces and HSTS decided per request below,
 * they are the same for every response, so running helmet's middleware (or @fastify/helmet, which rebuilds it on
 * every request) per request only costs time.
 */
export function helmetHeaders(): ReadonlyArray<readonly [string, string]> {
  const headers = new Map<string, string>();
  const collector = {
    setHeader: (name: string, value: string) => headers.set(name.toLowerCase(), value),
    removeHeader: (name: string) => headers.delete(name.toLowerCase()),
  };
  let ran = false;
  helmet({
    // Our own policies: a strict one for API answers (below), the docs page's by hash, the login pages' their own.
    contentSecurityPolicy: false,
    strictTransportSecurity: false,
    // Popup-based sign-in flows need the opener to survive.
    crossOriginOpenerPolicy: { policy: 'same-origin-allow-popups' },
  })({} as IncomingMessage, collector as unknown as ServerResponse, () => (ran = true));
  if (!ran) throw new Error('helmet did not set its headers synchronously');
  return [...headers];
}

/**
 * Of helmet's headers, the ones that protect any response, a JSON answer included (the OWASP REST set): no MIME
 * sniffing, no framing, no cross-origin no-cors reads. The others (the opener policy, the referrer policy, DNS prefetch,
 * the origin-keyed agent cluster, IE's download and XSS-auditor switches, Flash's cross-domain policies) govern what a
 * page does: a JSON answer under `default-src 'none'` has no script, link or subresource for them to act on. They go on
 * the pages only, which keeps every API answer seven headers lighter (`/health` at `LOG_LEVEL=info`: 0.61 of a bare
 * Fastify with them, 0.76 without, interleaved).
 */
const ANY_RESPONSE_HEADERS: ReadonlySet<string> = new Set(['x-content-type-options', 'x-frame-options', 'cross-origin-resource-policy']);

/** The routes that serve pages to a browser (and their JSON helpers, which lose nothing by the extra headers). */
export const isPageRoute = (url: string): boolean =>
  url === '/login' || url.startsWith('/login/') || url.startsWith('/oidc/') || url === DOCS_PREFIX || url.startsWith(`${DOCS_PREFIX}/`);

/** The docs page's policy, computed once per page text (the page is the same on every request). */
const docsPolicyFor = (() => {
  let last: { html: string; csp: string } | undefined;
  return (html: string) => {
    if (last?.html !== html) last = { html, csp: docsCsp(html) };
    return last.csp;
  };
})();

/** An onSend hook for the routes under DOCS_PREFIX: HTML pages get the docs policy instead of the API's. */
export const docsPagePolicy: onSendHookHandler = (_request, reply: FastifyReply, payload, done) => {
  if (String(reply.getHeader('content-type') ?? '').startsWith('text/html')) {
    const html = typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : undefined;
    if (html !== undefined) reply.header('content-security-policy', docsPolicyFor(html));
  }
  done(null, payload);
};

/**
 * CORS for the listed origins, and the headers every response carries: its request id, helmet's headers that protect
 * any response, the API's CSP and, over TLS, HSTS; the pages get the rest of helmet's set. Everything but the request
 * id and HSTS is fixed at start.
 */
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

  const helmetSet = helmetHeaders();
  const everywhere = helmetSet.filter(([name]) => ANY_RESPONSE_HEADERS.has(name));
  const pagesOnly = helmetSet.filter(([name]) => !ANY_RESPONSE_HEADERS.has(name));
  const hsts = wantsHsts(config);
  app.addHook('onRequest', (request, reply, done) => {
    // Helmet's headers go on the raw response, as helmet itself does, so that routes which hand the response to
    // another library (the OpenID Provider's endpoints hijack the reply) carry them too.
    const raw = reply.raw;
    for (const [name, value] of everywhere) raw.setHeader(name, value);
    reply.header(REQUEST_ID_HEADER, request.id);
    reply.header('content-security-policy', apiCsp);
    if (hsts(request)) reply.header('strict-transport-security', HSTS);
    done();
  });

  // The page routes also get the rest of helmet's set, decided per route at start rather than per request.
  const pageHeaders: onRequestHookHandler = (_request, reply, done) => {
    const raw = reply.raw;
    for (const [name, value] of pagesOnly) raw.setHeader(name, value);
    done();
  };
  app.addHook('onRoute', (route) => {
    if (isPageRoute(route.url)) route.onRequest = withHookAdded(route.onRequest, pageHeaders);
  });
}
