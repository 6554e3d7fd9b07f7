import { createServer as createNetServer, type AddressInfo } from 'node:net';
import * as client from 'openid-client';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll } from 'vitest';
import type { OidcClient } from '../../src/oidc/clients.js';
import { buildTestApp, type TestApp } from './app.js';
import { startStubServer, type StubServer } from './stub-server.js';

export const CONFIDENTIAL_SECRET = 'confidential-client-secret-0123456789abcdef';

/** A port nobody listens on right now: the issuer URL must be known before the app is built. */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface OidcGateway extends TestApp {
  issuer: string;
  /** The relying party's landing page: a stand-in server that answers every request with 200. */
  rp: StubServer;
  clients: { confidential: OidcClient; public: OidcClient; thirdParty: OidcClient };
}

/** The gateway listening on 127.0.0.1 with itself as the issuer, and three registered apps. */
export async function startOidcGateway(env: Record<string, string> = {}, extraClients: OidcClient[] = []): Promise<OidcGateway> {
  const rp = await startStubServer();
  rp.respond(() => ({ status: 200, body: 'relying party' }));
  afterAll(() => rp.close());
  const clients = {
    confidential: {
      client_id: 'web-app',
      client_secret: CONFIDENTIAL_SECRET,
      redirect_uris: [`${rp.url}/callback`],
      post_logout_redirect_uris: [`${rp.url}/signed-out`],
      name: 'Acme Web',
      first_party: true,
    },
    public: {
      client_id: 'spa-app',
      redirect_uris: [`${rp.url}/spa-callback`],
      post_logout_redirect_uris: [`${rp.url}/`],
      name: 'Acme SPA',
      first_party: true,
    },
    thirdParty: {
      client_id: 'partner-app',
      client_secret: `${CONFIDENTIAL_SECRET}-partner`,
      redirect_uris: [`${rp.url}/partner-callback`],
      post_logout_redirect_uris: [],
      name: 'Partner Tools',
      first_party: false,
    },
  } satisfies OidcGateway['clients'];
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const testApp = await buildTestApp({ PUBLIC_URL: issuer, OIDC_CLIENTS: JSON.stringify([...Object.values(clients), ...extraClients]), ...env });
  await testApp.app.listen({ host: '127.0.0.1', port });
  return { ...testApp, issuer, rp, clients };
}

/** The relying party's view of the provider, as a standard library sees it (plain http is allowed: 127.0.0.1). */
export async function discover(gateway: OidcGateway, which: keyof OidcGateway['clients'] = 'confidential'): Promise<client.Configuration> {
  const registered = gateway.clients[which];
  return client.discovery(
    new URL(gateway.issuer),
    registered.client_id,
    undefined,
    registered.client_secret ? client.ClientSecretBasic(registered.client_secret) : client.None(),
    { execute: [client.allowInsecureRequests] },
  );
}

export interface AuthorizationRequest {
  url: URL;
  verifier: string;
  state: string;
  nonce: string;
  redirectUri: string;
}

export async function authorizationRequest(
  config: client.Configuration,
  redirectUri: string,
  extra: Record<string, string> = {},
): Promise<AuthorizationRequest> {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid phone profile offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    // offline_access (a refresh token) is only granted with prompt=consent, as OpenID Connect Core asks.
    prompt: 'consent',
    ...extra,
  });
  return { url, verifier, state, nonce, redirectUri };
}

/** Debian's Chromium, headless; call once at the top of a test file (it closes after the file's tests). */
export async function launchBrowser(): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  afterAll(() => browser.close());
  return browser;
}

export function newContext(
  browser: Browser,
  options: { width?: number; height?: number; locale?: string; isMobile?: boolean; hasTouch?: boolean } = {},
): Promise<BrowserContext> {
  return browser.newContext({
    viewport: { width: options.width ?? 1280, height: options.height ?? 900 },
    locale: options.locale ?? 'en-GB',
    isMobile: options.isMobile ?? false,
    hasTouch: options.hasTouch ?? false,
  });
}

/** Fills the phone step and returns once the code step shows. */
export async function sendCode(page: Page, phone: string): Promise<void> {
  await page.getByLabel('Phone number').fill(phone);
  await page.getByRole('button', { name: 'Send code' }).click();
  await page.getByLabel('Code', { exact: true }).waitFor({ state: 'visible' });
}

/** Saves a screenshot for the README (docs/screenshots). */
export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `docs/screenshots/${name}.png`, fullPage: true });
}

/** Follows the browser to the relying party's redirect URI and exchanges the code there, as the RP would. */
export async function exchangeAt(page: Page, config: client.Configuration, request: AuthorizationRequest) {
  await page.waitForURL((url) => url.href.startsWith(request.redirectUri));
  return client.authorizationCodeGrant(config, new URL(page.url()), {
    pkceCodeVerifier: request.verifier,
    expectedState: request.state,
    expectedNonce: request.nonce,
  });
}

/** A browser's cookie store, reduced to what these tests need: every cookie goes back on every request. */
export class CookieJar {
  readonly cookies = new Map<string, string>();

  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const index = pair.indexOf('=');
      const name = pair.slice(0, index).trim();
      const value = pair.slice(index + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  async fetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const response = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers as Record<string, string>), cookie: this.header() } });
    this.store(response);
    return response;
  }
}

/** Follows redirects within the gateway; stops at the first page it serves, or at a URL elsewhere (the app). */
export async function follow(jar: CookieJar, gateway: OidcGateway, start: string | URL): Promise<{ response: Response; url: string }> {
  let url = new URL(start, gateway.issuer).href;
  for (let hops = 0; hops < 10; hops++) {
    if (!url.startsWith(gateway.issuer)) return { response: new Response(null, { status: 200 }), url };
    const response = await jar.fetch(url);
    const location = response.headers.get('location');
    if (response.status < 300 || response.status >= 400 || !location) return { response, url };
    url = new URL(location, url).href;
  }
  throw new Error('too many redirects');
}

/**
 * The hosted page's steps without a browser (for protocol tests that need many codes): start the authorization,
 * prove a phone through the page API, and return the URL the browser would be sent to at the app.
 */
export async function signInOverHttp(gateway: OidcGateway, authorizationUrl: URL, phone: string, jar = new CookieJar()): Promise<{ callback: URL; jar: CookieJar }> {
  const page = await follow(jar, gateway, authorizationUrl);
  if (!page.url.includes('/oidc/interaction/')) return { callback: new URL(page.url), jar };
  const api = `${page.url.split('?')[0]}/api`;
  const post = (path: string, body: object) =>
    jar.fetch(`${api}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const sent = (await (await post('/otp/request', { phone })).json()) as { challengeId: string };
  const verified = (await (await post('/otp/verify', { challengeId: sent.challengeId, code: gateway.sms.lastCodeFor(phone) })).json()) as { redirectTo: string };
  const landed = await follow(jar, gateway, verified.redirectTo);
  return { callback: new URL(landed.url), jar };
}
