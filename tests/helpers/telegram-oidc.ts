import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { LightMyRequestResponse } from 'fastify';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';

export const TELEGRAM_OIDC = {
  clientId: '7012345678',
  clientSecret: 'web-login-client-secret-from-botfather',
  publicUrl: 'https://gateway.test',
};

/** A person as Telegram's OpenID server knows them. */
export interface TelegramAccount {
  /** Telegram's `sub` (opaque). */
  sub: string;
  /** The Telegram user id, as the bot sees it in from.id. */
  id: number;
  name?: string;
  username?: string;
  /** Digits without '+', as Telegram sends it; absent when the person does not share it. */
  phone?: string;
}

/** Rewrites the ID token the token endpoint hands out (to test what our side refuses). */
export type IdTokenTamper = { claims?: (claims: JWTPayload) => JWTPayload; signWithOtherKey?: boolean };

// oidc-provider ships no types; the slice of its API the stand-in uses.
interface OidcProviderInstance {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<{
    prompt: { name: string };
    params: Record<string, unknown>;
    session?: { accountId: string };
    grantId?: string;
  }>;
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: Record<string, unknown>, options?: { mergeWithLastSubmission?: boolean }): Promise<void>;
  Grant: new (init: { accountId: string; clientId: string }) => { addOIDCScope(scope: string): void; save(): Promise<string> };
}
type OidcProviderClass = new (issuer: string, configuration: Record<string, unknown>) => OidcProviderInstance;

export interface TelegramOidcStandIn {
  issuer: string;
  /** Who logs in next, or 'deny' to decline on the consent screen. */
  nextLogin(account: TelegramAccount | 'deny'): void;
  tamper(next: IdTokenTamper | undefined): void;
  /** Token endpoint requests as received (to check HTTP Basic client authentication and PKCE). */
  tokenRequests: { authorization: string | undefined; body: string }[];
  close(): Promise<void>;
}

/**
 * A local stand-in for oauth.telegram.org built on oidc-provider and configured like Telegram: authorization code with
 * PKCE (S256), HTTP Basic client authentication at /token, RS256 ID tokens carrying `id` and a '+'-less
 * `phone_number`, no userinfo endpoint. Its interaction is a test-only login: whoever `nextLogin` names.
 */
export async function startTelegramOidcStandIn(redirectUri: string): Promise<TelegramOidcStandIn> {
  const { default: Provider } = (await import('oidc-provider' as string)) as { default: OidcProviderClass };
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const other = await generateKeyPair('RS256', { extractable: true });
  const kid = 'telegram-test-key';
  const signingJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };

  const accounts = new Map<string, TelegramAccount>();
  let next: TelegramAccount | 'deny' = 'deny';
  let tamper: IdTokenTamper | undefined;
  const tokenRequests: TelegramOidcStandIn['tokenRequests'] = [];
  let handle: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();

  const server = createServer((req, res) => handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: TELEGRAM_OIDC.clientId,
        client_secret: TELEGRAM_OIDC.clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'RS256',
      },
    ],
    jwks: { keys: [signingJwk] },
    routes: { authorization: '/auth', token: '/token', jwks: '/.well-known/jwks.json' },
    scopes: ['openid', 'profile', 'phone'],
    claims: { openid: ['sub', 'id'], profile: ['name', 'preferred_username', 'picture'], phone: ['phone_number'] },
    // Every claim in the ID token: Telegram has no userinfo endpoint.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false }, userinfo: { enabled: false } },
    pkce: { required: () => true },
    ttl: { IdToken: 60, AccessToken: 60, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
    cookies: { keys: ['stand-in-cookie-key-0123456789'] },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx: unknown, accountId: string) => {
      const account = accounts.get(accountId);
      if (!account) return undefined;
      return {
        accountId,
        claims: () => ({
          sub: account.sub,
          id: account.id,
          ...(account.name ? { name: account.name } : {}),
          ...(account.username ? { preferred_username: account.username } : {}),
          ...(account.phone ? { phone_number: account.phone } : {}),
        }),
      };
    },
  });
  const callback = provider.callback();

  async function interact(req: IncomingMessage, res: ServerResponse) {
    const details = await provider.interactionDetails(req, res);
    if (next === 'deny') {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'The user declined the login' }, { mergeWithLastSubmission: false });
      return;
    }
    if (details.prompt.name === 'login') {
      accounts.set(next.sub, next);
      await provider.interactionFinished(req, res, { login: { accountId: next.sub } }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = new provider.Grant({ accountId: details.session!.accountId, clientId: String(details.params.client_id) });
    grant.addOIDCScope(String(details.params.scope));
    await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
  }

  // Records the token request, and rewrites the ID token in the answer when a test asks for it.
  function token(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    const originalPush = req.push.bind(req);
    req.push = (chunk: Buffer | null, encoding?: BufferEncoding) => {
      if (chunk) chunks.push(Buffer.from(chunk));
      else tokenRequests.push({ authorization: req.headers.authorization, body: Buffer.concat(chunks).toString('utf8') });
      return originalPush(chunk, encoding);
    };
    const change = tamper;
    if (change) {
      const end = res.end.bind(res) as (body?: string | Buffer) => ServerResponse;
      res.end = ((body?: string | Buffer) => {
        void (async () => {
          const answer = JSON.parse(String(body)) as { id_token?: string };
          if (answer.id_token) {
            const claims = change.claims ? change.claims(decodeJwt(answer.id_token)) : decodeJwt(answer.id_token);
            answer.id_token = await new SignJWT(claims)
              .setProtectedHeader({ alg: 'RS256', kid })
              .sign(change.signWithOtherKey ? other.privateKey : privateKey);
          }
          const rewritten = JSON.stringify(answer);
          res.setHeader('content-length', Buffer.byteLength(rewritten));
          end(rewritten);
        })();
        return res;
      }) as typeof res.end;
    }
    callback(req, res);
  }

  handle = (req, res) => {
    const path = new URL(req.url ?? '/', issuer).pathname;
    if (req.method === 'GET' && path.startsWith('/interaction/')) {
      interact(req, res).catch((error: unknown) => {
        res.statusCode = 500;
        res.end(String(error));
      });
      return;
    }
    if (req.method === 'POST' && path === '/token') return token(req, res);
    callback(req, res);
  };

  return {
    issuer,
    nextLogin: (account) => {
      next = account;
    },
    tamper: (change) => {
      tamper = change;
    },
    tokenRequests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface TelegramLoginRun {
  /** Our answer to GET /auth/telegram/login. */
  start: LightMyRequestResponse;
  /** Our answer to the callback Telegram redirected the browser to. */
  callback: LightMyRequestResponse;
  callbackUrl: URL;
}

/**
 * A browser doing "Log in with Telegram" with plain HTTP: our /auth/telegram/login, then the stand-in's redirects
 * and interaction (cookies kept per host), then our callback with the flow cookie.
 */
export async function logInWithTelegram(
  app: FastifyInstance,
  options: {
    query?: string;
    /** Changes the callback URL before the browser follows it (e.g. another state). */
    alterCallback?: (url: URL) => void;
    /** Runs just before the callback (e.g. to move the clock). */
    beforeCallback?: () => void;
    /** The cookie the browser sends with the callback; by default the one our login route set. */
    cookie?: string | null;
    accept?: string;
  } = {},
): Promise<TelegramLoginRun> {
  const start = await app.inject({ method: 'GET', url: `/auth/telegram/login${options.query ? `?${options.query}` : ''}` });
  if (start.statusCode !== 302) throw new Error(`login did not redirect: ${start.statusCode} ${start.body}`);
  const flowCookie = String(start.headers['set-cookie']).split(';')[0]!;
  const jar = new Map<string, string>();
  let url = new URL(String(start.headers.location));
  for (let hop = 0; ; hop++) {
    if (hop > 12) throw new Error('too many redirects at the stand-in');
    const response = await fetch(url, { redirect: 'manual', headers: { cookie: [...jar].map(([name, value]) => `${name}=${value}`).join('; ') } });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [name, ...value] = pair!.split('=');
      jar.set(name!.trim(), value.join('='));
    }
    const location = response.headers.get('location');
    await response.body?.cancel();
    if (response.status < 300 || response.status >= 400 || !location) {
      throw new Error(`the stand-in answered ${response.status} at ${url.pathname}`);
    }
    url = new URL(location, url);
    if (url.href.startsWith(TELEGRAM_OIDC.publicUrl)) break;
  }
  options.alterCallback?.(url);
  options.beforeCallback?.();
  const cookie = options.cookie === undefined ? flowCookie : options.cookie;
  const callback = await app.inject({
    method: 'GET',
    url: `${url.pathname}${url.search}`,
    headers: { ...(cookie ? { cookie } : {}), ...(options.accept ? { accept: options.accept } : {}) },
  });
  return { start, callback, callbackUrl: url };
}
