import type { FastifyInstance } from 'fastify';
import type { Model } from 'mongoose';
import { oidcEntrySchema, type OidcEntry } from '../../models/oidc-entry.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Database } from '../db/connection.js';
import type { CodeSender } from '../delivery/types.js';
import { localizedSms, loginPageRoutes } from '../login-page/routes.js';
import type { Services } from '../services/index.js';
import type { SigningKeys } from '../services/signing-keys.js';
import { createIntentHandover } from './intent-handover.js';
import { configuredClients, createOidcProvider, oidcIssuer } from './provider.js';
import { oidcRoutes, providerPages } from './routes.js';

export interface SignInWithChatgateOptions {
  config: Config;
  database: Database;
  keys: SigningKeys;
  pepper: string;
  clock: Clock;
  services: Services;
  codeChannels: readonly string[];
  chatChannels: readonly ('whatsapp' | 'telegram')[];
  rateLimit: object;
  /** The SMS sender, so the hosted page can word the code in its own language. */
  smsSender?: CodeSender | undefined;
}

const SWEEP_MS = 10 * 60_000;

/** "Sign in with Chatgate": the OpenID Provider, its hosted login page, and /login for a direct visit. */
export async function registerSignInWithChatgate(app: FastifyInstance, options: SignInWithChatgateOptions): Promise<void> {
  const { config, database, services, clock } = options;
  // Registered here rather than with the gateway's models: the collection belongs to this room.
  const entries = (database.connection.models.OidcEntry as Model<OidcEntry> | undefined) ?? database.connection.model<OidcEntry>('OidcEntry', oidcEntrySchema);
  // The collection first, as src/db/connection.ts does: mongo-java-server's H2 backend fails a createIndex that races
  // mongoose's own creation of the collection.
  await entries.init();
  for (const [fields, indexOptions] of oidcEntrySchema.indexes()) {
    await entries.collection.createIndex(fields as Record<string, 1 | -1>, indexOptions as Record<string, unknown>);
  }
  const pages = providerPages(config, configuredClients(config));
  const { provider, sweepExpired, clients } = createOidcProvider({
    config,
    issuer: oidcIssuer(config),
    privateJwks: options.keys.privateJwks,
    pepper: options.pepper,
    entries,
    reservations: services.reservations,
    identities: services.identities,
    audit: services.audit,
    clock,
    ...pages,
  });
  // The provider answers its own 500s; the cause goes to our log.
  provider.on('server_error', (_ctx: unknown, error: Error) => app.log.error({ err: error }, 'oidc provider error'));
  const takeApprovedIntent = createIntentHandover({
    intents: database.models.LoginIntent,
    reservations: services.reservations,
    identities: services.identities,
    clock,
    keepSeconds: config.INTENT_TTL_SECONDS + 3600,
  });

  const page = { codeChannels: options.codeChannels, chatChannels: options.chatChannels, rateLimit: options.rateLimit, smsIn: localizedSms(config, options.smsSender, new URL(oidcIssuer(config)).host) };
  await loginPageRoutes(app, { config, services, ...page });
  await oidcRoutes(app, { config, services, provider, clients, takeApprovedIntent, ...page });

  const sweeper = setInterval(() => {
    sweepExpired().catch((error: unknown) => app.log.warn({ err: error }, 'oidc sweep failed'));
  }, SWEEP_MS);
  sweeper.unref();
  app.addHook('onClose', async () => clearInterval(sweeper));
  app.log.info({ issuer: oidcIssuer(config), clients: clients.map((client) => client.client_id) }, 'Sign in with Chatgate: OpenID Provider at /.well-known/openid-configuration, login page at /login');
}
