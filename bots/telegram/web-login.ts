import type { FastifyInstance } from 'fastify';
import type { Model } from 'mongoose';
import type { User } from '../../models/user.js';
import { telegramGatewayReports } from '../../webhooks/telegram-gateway/index.js';
import type { Clock } from '../../src/clock.js';
import { telegramGatewayEnabled, telegramOidcEnabled, type Config } from '../../src/config.js';
import { combineTelegramSenders, createTelegramGatewayClient, createTelegramGatewaySender } from '../../src/delivery/telegram-gateway.js';
import type { CodeSender } from '../../src/delivery/types.js';
import type { Services } from '../../src/services/index.js';
import { createTelegramLoginService } from '../../src/services/telegram-login.js';
import { createTelegramOidcClient } from './oidc-client.js';
import { telegramOidcLogin } from './oidc-login.js';

const publicBase = (config: Config): string | undefined => config.PUBLIC_URL?.replace(/\/$/, '');

/**
 * With TELEGRAM_GATEWAY_TOKEN: wraps the bot's sender (if any) so channel "telegram" reaches, through the Gateway,
 * phones whose Telegram account never talked to the bot.
 */
export function telegramGatewayCodeSender(config: Config): ((bot: CodeSender | undefined) => CodeSender) | undefined {
  if (!telegramGatewayEnabled(config)) return undefined;
  const client = createTelegramGatewayClient({
    apiRoot: config.TELEGRAM_GATEWAY_API_ROOT,
    token: config.TELEGRAM_GATEWAY_TOKEN!,
    timeoutMs: config.TELEGRAM_GATEWAY_TIMEOUT_MS,
  });
  const base = publicBase(config);
  const gateway = createTelegramGatewaySender(client, {
    ttlSeconds: config.OTP_TTL_SECONDS,
    callbackUrl: base ? `${base}/webhooks/telegram-gateway` : undefined,
  });
  return (bot) => combineTelegramSenders(bot, gateway);
}

export interface TelegramWebLoginContext {
  services: Services;
  users: Model<User>;
  clock: Clock;
  strictRateLimit: object;
}

/** Mounts "Log in with Telegram" (OpenID Connect) and the Gateway's delivery reports, each when configured. */
export async function telegramWebLogin(app: FastifyInstance, config: Config, context: TelegramWebLoginContext): Promise<void> {
  const { services, clock } = context;
  if (telegramGatewayEnabled(config)) {
    await app.register(telegramGatewayReports, { token: config.TELEGRAM_GATEWAY_TOKEN!, services, clock });
    app.log.info({ reports: !!config.PUBLIC_URL }, 'Telegram Gateway is on');
  }
  if (!telegramOidcEnabled(config)) {
    app.log.info('Log in with Telegram is off (set TELEGRAM_OIDC_CLIENT_ID and TELEGRAM_OIDC_CLIENT_SECRET to turn it on)');
    return;
  }
  const publicUrl = publicBase(config)!;
  const client = createTelegramOidcClient(
    {
      issuer: config.TELEGRAM_OIDC_ISSUER,
      clientId: config.TELEGRAM_OIDC_CLIENT_ID!,
      clientSecret: config.TELEGRAM_OIDC_CLIENT_SECRET!,
      scopes: config.TELEGRAM_OIDC_SCOPES,
      redirectUri: `${publicUrl}/auth/telegram/callback`,
      timeoutSeconds: 10,
    },
    clock,
  );
  const login = createTelegramLoginService({
    users: context.users,
    identities: services.identities,
    loginIntents: services.loginIntents,
    tokens: services.tokens,
    audit: services.audit,
    log: app.log,
    requireConfirm: config.INTENT_REQUIRE_CONFIRM,
  });
  await app.register(telegramOidcLogin, {
    client,
    login,
    reservations: services.reservations,
    clock,
    publicUrl,
    returnOrigins: config.TELEGRAM_OIDC_RETURN_ORIGINS ?? [],
    serviceName: config.SERVICE_NAME,
    rateLimit: context.strictRateLimit,
  });
  app.log.info({ issuer: config.TELEGRAM_OIDC_ISSUER }, 'Log in with Telegram is on');
}
