import { createHmac } from 'node:crypto';
import type { JWK } from 'jose';
import type { Model } from 'mongoose';
import Provider, { type GrantInstance, type KoaContextLike } from 'oidc-provider';
import type { OidcEntry } from '../../models/oidc-entry.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { AuditTrail } from '../services/audit.js';
import type { IdentityService } from '../services/identities.js';
import type { Reservations } from '../services/reservations.js';
import { createAccountFinder } from './account.js';
import { createOidcAdapterFactory } from './adapter.js';
import { developmentExampleClient, type OidcClient } from './clients.js';

export interface OidcProviderDeps {
  config: Config;
  issuer: string;
  /** The private halves of the gateway's signing keys: the provider signs ID tokens with the same keys. */
  privateJwks: { keys: JWK[] };
  pepper: string;
  entries: Model<OidcEntry>;
  reservations: Reservations;
  identities: IdentityService;
  audit: AuditTrail;
  clock: Clock;
  renderLogout: (ctx: KoaContextLike, form: string) => void;
  renderLogoutDone: (ctx: KoaContextLike) => void;
  renderError: (ctx: KoaContextLike, out: { error: string; error_description?: string }) => void;
}

// Where the provider's endpoints live: under /oidc, apart from the gateway's own /auth/* API.
export const OIDC_ROUTES = {
  authorization: '/oidc/auth',
  token: '/oidc/token',
  userinfo: '/oidc/me',
  end_session: '/oidc/session/end',
  revocation: '/oidc/token/revocation',
  introspection: '/oidc/token/introspection',
  // Not served by the provider: the gateway's own JWKS is the one key set (see routes/meta.ts).
  jwks: '/.well-known/jwks.json',
} as const;

export const interactionPath = (uid: string) => `/oidc/interaction/${uid}`;

export function oidcIssuer(config: Config): string {
  return (config.PUBLIC_URL ?? `http://localhost:${config.PORT}`).replace(/\/+$/, '');
}

export function configuredClients(config: Config): OidcClient[] {
  return config.OIDC_CLIENTS ?? (config.NODE_ENV === 'production' ? [] : [developmentExampleClient]);
}

interface OidcRequestContext {
  oidc: {
    client?: { clientId: string; firstParty?: boolean; [key: string]: unknown };
    session?: { accountId?: string; grantIdFor(clientId: string): string | undefined };
    result?: { consent?: { grantId?: string } };
    requestParamOIDCScopes: Set<string>;
    requestParamClaims: Set<string>;
    provider: Provider;
    entities: Record<string, { accountId?: string; clientId?: string; grantId?: string; amr?: string[] } | undefined>;
  };
  ip?: string;
}

export function createOidcProvider(deps: OidcProviderDeps) {
  const { config, audit } = deps;
  const adapter = createOidcAdapterFactory(deps.entries, deps.reservations, deps.clock);
  const clients = configuredClients(config);
  const firstParty = new Set(clients.filter((client) => client.first_party).map((client) => client.client_id));
  const alg = deps.privateJwks.keys[0]?.alg ?? 'ES256';
  // Cookie signing keys come from the pepper, so no extra secret needs configuring (and production already requires one).
  const cookieKey = createHmac('sha256', deps.pepper).update('chatgate oidc cookies').digest('base64url');

  const provider = new Provider(deps.issuer, {
    adapter: adapter.factory,
    clients: clients.map((client) => ({
      client_id: client.client_id,
      ...(client.client_secret
        ? { client_secret: client.client_secret, token_endpoint_auth_method: 'client_secret_basic' }
        : { token_endpoint_auth_method: 'none' }),
      client_name: client.name,
      redirect_uris: client.redirect_uris,
      post_logout_redirect_uris: client.post_logout_redirect_uris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      id_token_signed_response_alg: alg,
    })),
    jwks: deps.privateJwks,
    findAccount: createAccountFinder(deps.identities),
    claims: {
      // How and when the person proved who they are goes into every ID token.
      openid: ['sub', 'amr', 'auth_time'],
      phone: ['phone_number', 'phone_number_verified'],
      profile: ['name', 'preferred_username'],
    },
    scopes: ['openid', 'offline_access', 'phone', 'profile'],
    responseTypes: ['code'],
    // PKCE for every client, public or confidential; the provider only knows S256.
    pkce: { required: () => true },
    // Phone and profile claims in the ID token as well as from userinfo: most relying parties read the ID token only.
    conformIdTokenClaims: false,
    rotateRefreshToken: true,
    routes: OIDC_ROUTES,
    cookies: {
      keys: [cookieKey],
      // Production runs behind the https proxy of PUBLIC_URL (TRUST_PROXY is required there), so cookies are always Secure.
      long: { httpOnly: true, sameSite: 'lax', signed: true, ...(config.NODE_ENV === 'production' ? { secure: true } : {}) },
      short: { httpOnly: true, sameSite: 'lax', signed: true, ...(config.NODE_ENV === 'production' ? { secure: true } : {}) },
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => interactionPath(interaction.uid) },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx: KoaContextLike, form: string) => deps.renderLogout(ctx, form),
        postLogoutSuccessSource: async (ctx: KoaContextLike) => deps.renderLogoutDone(ctx),
      },
    },
    // First-party apps get the scopes they ask for without a consent screen.
    loadExistingGrant: async (ctx: OidcRequestContext): Promise<GrantInstance | undefined> => {
      const client = ctx.oidc.client!;
      const grantId = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session?.grantIdFor(client.clientId);
      const existing = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      if (!firstParty.has(client.clientId) || !ctx.oidc.session?.accountId) return existing;
      const grant = existing ?? new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
      if (ctx.oidc.requestParamClaims.size > 0) grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
      await grant.save();
      return grant;
    },
    renderError: async (ctx: KoaContextLike, out: { error: string; error_description?: string }) => deps.renderError(ctx, out),
    ttl: {
      AccessToken: config.ACCESS_TOKEN_TTL_SECONDS,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 3600,
      Grant: config.REFRESH_TOKEN_TTL_SECONDS,
      RefreshToken: config.REFRESH_TOKEN_TTL_SECONDS,
      Session: 14 * 86_400,
    },
    enabledJWA: { idTokenSigningAlgValues: [alg] },
    clientDefaults: { id_token_signed_response_alg: alg, grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
  });
  provider.proxy = config.TRUST_PROXY !== false;

  const accountOf = (ctx: OidcRequestContext) =>
    ctx.oidc.session?.accountId ?? ctx.oidc.entities.AccessToken?.accountId ?? ctx.oidc.entities.RefreshToken?.accountId;
  const clientOf = (ctx: OidcRequestContext) => ctx.oidc.client?.clientId;
  provider.on('authorization.success', (ctx: OidcRequestContext) => {
    void audit.record({ type: 'oidc.authorized', userId: accountOf(ctx), ip: ctx.ip, detail: { clientId: clientOf(ctx) } });
  });
  provider.on('grant.success', (ctx: OidcRequestContext) => {
    const refreshed = !!ctx.oidc.entities.RotatedRefreshToken || !!ctx.oidc.entities.RefreshToken && !ctx.oidc.entities.AuthorizationCode;
    void audit.record({
      type: refreshed ? 'oidc.token_refreshed' : 'oidc.token_exchanged',
      userId: accountOf(ctx),
      ip: ctx.ip,
      detail: { clientId: clientOf(ctx) },
    });
  });
  provider.on('end_session.success', (ctx: OidcRequestContext) => {
    void audit.record({ type: 'oidc.logout', userId: accountOf(ctx), ip: ctx.ip, detail: { clientId: clientOf(ctx) } });
  });
  provider.on('grant.revoked', (ctx: OidcRequestContext, grantId: string) => {
    void audit.record({ type: 'oidc.revoked', ip: ctx.ip, detail: { clientId: clientOf(ctx), grantId } });
  });

  return { provider, sweepExpired: () => adapter.sweepExpired(), clients };
}
