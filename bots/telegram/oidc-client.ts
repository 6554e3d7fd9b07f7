import * as oidc from 'openid-client';
import type { Clock } from '../../src/clock.js';
import { AppError } from '../../src/errors.js';

export interface TelegramOidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  scopes: readonly string[];
  /** PUBLIC_URL/auth/telegram/callback, registered with BotFather as an Allowed URL. */
  redirectUri: string;
  timeoutSeconds: number;
}

/** What one login needs to remember between the redirect to Telegram and the callback. */
export interface AuthorizationChecks {
  state: string;
  nonce: string;
  codeVerifier: string;
}

/**
 * Telegram's OpenID Connect server through openid-client: discovery, PKCE (S256), state and nonce, the code exchange
 * with HTTP Basic client authentication, and the ID token checked against the issuer's JWKS (signature, iss, aud,
 * exp, nonce). Telegram has no userinfo endpoint: every claim is in the ID token.
 */
export function createTelegramOidcClient(settings: TelegramOidcSettings, clock: Clock) {
  // Plain http only for a local stand-in issuer (production refuses it in config).
  const insecure = settings.issuer.startsWith('http://');
  // HTTP Basic exactly as Telegram documents it, base64("<client_id>:<client_secret>") with the client_id in the body too
  // (openid-client's ClientSecretBasic would form-encode both first, which Telegram does not describe).
  const basic = `Basic ${Buffer.from(`${settings.clientId}:${settings.clientSecret}`).toString('base64')}`;
  const clientAuth: oidc.ClientAuth = (_server, client, body, headers) => {
    body.set('client_id', client.client_id);
    headers.set('authorization', basic);
  };
  let serverMetadata: Promise<oidc.ServerMetadata> | undefined;
  let jwksCache: oidc.ExportedJWKSCache | undefined;

  function discover(): Promise<oidc.ServerMetadata> {
    serverMetadata ??= oidc
      .discovery(new URL(settings.issuer), settings.clientId, undefined, clientAuth, {
        execute: insecure ? [oidc.allowInsecureRequests] : [],
        timeout: settings.timeoutSeconds,
      })
      .then((configuration) => configuration.serverMetadata())
      .catch(() => {
        // Try again on the next login rather than remembering an outage.
        serverMetadata = undefined;
        throw new AppError('service_unavailable', 'Telegram did not answer; try again in a moment.');
      });
    return serverMetadata;
  }

  // A configuration per use, so the ID token's times are checked against our clock (tests move it).
  async function configuration(): Promise<oidc.Configuration> {
    const skewSeconds = Math.round((clock.now().getTime() - Date.now()) / 1000);
    const configuration = new oidc.Configuration(
      await discover(),
      settings.clientId,
      { id_token_signed_response_alg: 'RS256', [oidc.clockSkew]: skewSeconds },
      clientAuth,
    );
    configuration.timeout = settings.timeoutSeconds;
    if (insecure) oidc.allowInsecureRequests(configuration);
    // openid-client trusts an ID token from the token endpoint over TLS by default; we check its signature too.
    oidc.enableNonRepudiationChecks(configuration);
    if (jwksCache) oidc.setJwksCache(configuration, jwksCache);
    return configuration;
  }

  return {
    /** Fresh random state, nonce and PKCE verifier for one login. */
    newChecks(): AuthorizationChecks {
      return { state: oidc.randomState(), nonce: oidc.randomNonce(), codeVerifier: oidc.randomPKCECodeVerifier() };
    },

    async authorizationUrl(checks: AuthorizationChecks): Promise<URL> {
      try {
        return oidc.buildAuthorizationUrl(await configuration(), {
          redirect_uri: settings.redirectUri,
          response_type: 'code',
          scope: settings.scopes.join(' '),
          state: checks.state,
          nonce: checks.nonce,
          code_challenge: await oidc.calculatePKCECodeChallenge(checks.codeVerifier),
          code_challenge_method: 'S256',
        });
      } catch (error) {
        throw asAppError(error);
      }
    },

    /** Exchanges the callback's code and returns the verified ID token claims. */
    async exchange(callbackUrl: URL, checks: AuthorizationChecks): Promise<Record<string, unknown>> {
      try {
        const current = await configuration();
        const tokens = await oidc.authorizationCodeGrant(current, callbackUrl, {
          pkceCodeVerifier: checks.codeVerifier,
          expectedState: checks.state,
          expectedNonce: checks.nonce,
          idTokenExpected: true,
        });
        jwksCache = oidc.getJwksCache(current) ?? jwksCache;
        const claims = tokens.claims();
        if (!claims) throw new AppError('invalid_token', 'Telegram sent no ID token.');
        return { ...claims };
      } catch (error) {
        throw asAppError(error);
      }
    },
  };
}

export type TelegramOidcClient = ReturnType<typeof createTelegramOidcClient>;

/** openid-client's errors, in our catalogue. */
function asAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof oidc.AuthorizationResponseError) {
    if (error.error === 'access_denied') return new AppError('access_denied', 'You did not allow the login in Telegram.');
    return new AppError('invalid_request', `Telegram refused the login (${error.error.slice(0, 64)}).`);
  }
  if (error instanceof oidc.ResponseBodyError) {
    return new AppError('invalid_token', `Telegram did not accept the login code (${error.error.slice(0, 64)}); sign in with Telegram again.`);
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED') return new AppError('token_expired', 'The Telegram ID token has expired; sign in with Telegram again.');
  // The ID token (or the answer carrying it) failed a check; an answer that is not OAuth at all (a 5xx page) is an outage.
  if (typeof code === 'string' && /^OAUTH_(JWT_|JWS_|KEY_SELECTION|JSON_ATTRIBUTE|INVALID_RESPONSE|PARSE)/.test(code)) {
    return new AppError('invalid_token', 'The Telegram ID token is not valid.', { reason: code });
  }
  // Discovery, the token endpoint or the JWKS did not answer.
  return new AppError('service_unavailable', 'Telegram did not answer; try again in a moment.');
}
