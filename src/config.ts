import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { defaultChatTexts } from './chat-texts.js';
import { parseOidcClients, readOidcClientsFile, type OidcClient } from './oidc/clients.js';

// The whole environment, validated once at start. `.env.example` mirrors this file: keep them together.

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const csv = z
  .string()
  .transform((value) => value.split(',').map((item) => item.trim()).filter((item) => item.length > 0));

const testNumbers = csv.transform((entries, ctx) => {
  const map = new Map<string, string>();
  for (const entry of entries) {
    const match = /^(\+[1-9]\d{6,14}):(\d{4,10})$/.exec(entry);
    if (!match) {
      ctx.addIssue({ code: 'custom', message: `"${entry}" is not "+E164:code"` });
      return z.NEVER;
    }
    map.set(match[1]!, match[2]!);
  }
  return map;
});

// TRUST_PROXY takes what Fastify's trustProxy takes: true/false, a hop count, or addresses/CIDRs. A number is always a
// hop count: read as `true`, `1` would trust every X-Forwarded-For entry and let a client behind one appending proxy
// choose its own IP.
const trustProxy = z.string().transform((value): boolean | number | string[] => {
  if (['true', 'yes'].includes(value)) return true;
  if (['false', 'no', ''].includes(value)) return false;
  if (/^\d+$/.test(value)) return Number(value);
  return value.split(',').map((item) => item.trim());
});

// Exact origins (scheme://host[:port], nothing after), or "*" for any origin (refused in production).
const isOrigin = (value: string) => {
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
};
const corsOrigins = csv.pipe(
  z.array(z.string().refine((value) => value === '*' || isOrigin(value), { message: 'must be exact origins such as https://app.example.com (no path, no trailing slash), or *' })),
);

export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  HOST: z.string().default('0.0.0.0'),
  PORT: int(0, 65535).default(3000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATA_DIR: z.string().default('.data'),

  MONGODB_URI: z.string().regex(/^mongodb(\+srv)?:\/\//, 'must be a mongodb:// or mongodb+srv:// URI').optional(),
  EMBEDDED_DB_ENGINE: z.enum(['auto', 'mongod', 'mongo-java-server', 'ferretdb']).default('auto'),
  FERRETDB_BIN: z.string().optional(),
  // Where the FerretDB build and the memory of a failed mongod download are kept (default ~/.cache/chatgate).
  CHATGATE_CACHE_DIR: z.string().optional(),
  // How long a request waits for a reachable MongoDB server before it answers 503 (start-up waits longer).
  MONGODB_SERVER_SELECTION_TIMEOUT_MS: int(200, 60_000).default(3000),
  // Shared per-IP rate limits for several instances; unset: counted in each process (one instance only).
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
  REDIS_COMMAND_TIMEOUT_MS: int(50, 10_000).default(500),

  TRUST_PROXY: trustProxy.default(false),
  BODY_LIMIT_BYTES: int(1024, 10 * 1024 * 1024).default(64 * 1024),
  // false turns the per-IP limiter off, for benchmarks only (refused in production).
  RATE_LIMIT_ENABLED: bool.default(true),
  RATE_LIMIT_MAX: int(1, 1_000_000).default(300),
  RATE_LIMIT_WINDOW_SECONDS: int(1, 86_400).default(60),
  OTP_RATE_LIMIT_MAX: int(1, 1_000_000).default(20),
  // Web pages on these origins may call the API from a browser; empty: none.
  CORS_ORIGINS: corsOrigins.default([]),
  // /metrics: on the main port behind this bearer token, and/or on a loopback-only port. Neither: no /metrics.
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  METRICS_PORT: int(1, 65535).optional(),
  // The admin API (/admin/*): off unless this bearer token is set; on ADMIN_PORT (127.0.0.1 only) when that is set.
  ADMIN_API_TOKEN: z.string().min(32, 'must be at least 32 characters').optional(),
  ADMIN_PORT: int(1, 65535).optional(),
  // Spent data is deleted by a sweep in every instance (FerretDB has no TTL indexes); audit events after this many days.
  CLEANUP_INTERVAL_SECONDS: int(10, 86_400).default(300),
  AUDIT_RETENTION_DAYS: int(1, 36_500).default(90),

  DEFAULT_COUNTRY: z
    .string()
    .regex(/^[A-Z]{2}$/, 'must be an ISO 3166-1 alpha-2 code such as IN')
    .optional(),
  OTP_LENGTH: int(4, 10).default(6),
  OTP_TTL_SECONDS: int(30, 3600).default(300),
  OTP_MAX_ATTEMPTS: int(1, 20).default(5),
  OTP_RESEND_SECONDS: int(0, 3600).default(30),
  // Per phone and requesting IP (an IPv6 client by its /64); all IPs together get OTP_MAX_SENDS_PER_PHONE_PER_HOUR.
  OTP_MAX_SENDS_PER_HOUR: int(1, 1000).default(5),
  OTP_MAX_SENDS_PER_PHONE_PER_HOUR: int(1, 1000).default(10),
  // Wrong checks per phone per day (UTC) before new codes are refused; a right code starts again from nothing.
  OTP_MAX_FAILURES_PER_DAY: int(1, 100).default(15),
  // Paid sends (SMS, WhatsApp templates): the defence against SMS pumping.
  OTP_BUDGET_GLOBAL_PER_HOUR: int(1, 1_000_000).default(1000),
  OTP_BUDGET_GLOBAL_PER_DAY: int(1, 10_000_000).default(10_000),
  OTP_BUDGET_COUNTRY_PER_HOUR: int(1, 1_000_000).default(300),
  OTP_BUDGET_IP_PER_DAY: int(1, 100_000).default(20),
  // Budget slots a process reserves at once (a block: one insert); limit/50 when smaller. 1: one insert per send.
  OTP_BUDGET_BLOCK_MAX: int(1, 10_000).default(100),
  OTP_PEPPER: z.string().min(32, 'must be at least 32 characters').optional(),
  // `*` alone: every country, chosen knowingly (production refuses an unset list).
  OTP_ALLOWED_COUNTRIES: csv
    .pipe(
      z.union([
        z.tuple([z.literal('*')]),
        z.array(z.string().regex(/^[A-Z]{2}$/, 'must be ISO 3166-1 alpha-2 codes such as IN,GB, or * alone for every country')),
      ]),
    )
    .optional(),
  OTP_TEST_NUMBERS: testNumbers.optional(),
  OTP_MESSAGE: z.string().includes('{code}', { message: 'must contain {code}' }).default(
    'Your Chatgate code is {code}. It expires in {minutes} minutes. Never share it.',
  ),

  SMS_PROVIDER: z.enum(['console', 'twilio', 'http']).optional(),
  TWILIO_ACCOUNT_SID: z.string().optional(),
  TWILIO_AUTH_TOKEN: z.string().optional(),
  TWILIO_FROM: z.string().optional(),
  TWILIO_MESSAGING_SERVICE_SID: z.string().optional(),
  SMS_HTTP_URL: z.url().optional(),
  SMS_HTTP_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  SMS_HTTP_TIMEOUT_MS: int(100, 60_000).default(5000),

  JWT_PRIVATE_JWKS: z.string().optional(),
  JWT_ALG: z.enum(['ES256', 'RS256', 'EdDSA']).default('ES256'),
  // Unset in development: PUBLIC_URL, else http://localhost:<PORT> (see loadConfig). Required in production.
  JWT_ISSUER: z.string().min(1).default('http://localhost:3000'),
  JWT_AUDIENCE: z.string().min(1).default('chatgate'),
  ACCESS_TOKEN_TTL_SECONDS: int(60, 86_400).default(900),
  REFRESH_TOKEN_TTL_SECONDS: int(300, 365 * 86_400).default(30 * 86_400),
  // A replay of a just-rotated refresh token within this many seconds gets the same successor (0: off).
  REFRESH_REUSE_GRACE_SECONDS: int(0, 300).default(10),

  INTENT_TTL_SECONDS: int(30, 3600).default(300),
  INTENT_REQUIRE_CONFIRM: bool.default(true),
  // Wrong LOGIN codes (or start tokens) one chat account may send per hour before its codes are refused until the hour ends.
  INTENT_MAX_WRONG_CODES_PER_HOUR: int(1, 1000).default(10),
  // The name the bots use for the service people sign in to ("Sign in to Acme?").
  SERVICE_NAME: z.string().min(1).max(60).default('Chatgate'),
  // JSON object overriding chat reply texts by key (see src/chat-texts.ts), for WhatsApp and Telegram alike.
  CHAT_TEXTS: z
    .string()
    .transform((value, ctx) => {
      try {
        return JSON.parse(value) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object' });
        return z.NEVER;
      }
    })
    .pipe(
      z.record(z.string(), z.string()).refine(
        (texts) => Object.keys(texts).every((key) => key in defaultChatTexts),
        { message: `only these keys: ${Object.keys(defaultChatTexts).join(', ')}` },
      ),
    )
    .optional(),

  WHATSAPP_VERIFY_TOKEN: z.string().min(8, 'must be at least 8 characters').optional(),
  WHATSAPP_APP_SECRET: z.string().min(8, 'must be at least 8 characters').optional(),
  WHATSAPP_ACCESS_TOKEN: z.string().optional(),
  WHATSAPP_PHONE_NUMBER_ID: z.string().regex(/^\d+$/, 'must be the numeric phone number id').optional(),
  WHATSAPP_API_VERSION: z.string().regex(/^v\d+\.\d+$/, 'must look like v23.0').default('v23.0'),
  WHATSAPP_GRAPH_URL: z.url().default('https://graph.facebook.com'),
  WHATSAPP_DISPLAY_NUMBER: z
    .string()
    .transform((value) => value.replace(/[\s()+-]/g, ''))
    .pipe(z.string().regex(/^\d{6,15}$/, 'must be the business number in international form, e.g. +15551234567'))
    .optional(),
  WHATSAPP_OTP_TEMPLATE: z.string().optional(),
  WHATSAPP_OTP_TEMPLATE_LANGUAGE: z.string().default('en_US'),
  WHATSAPP_MAX_MESSAGE_AGE_SECONDS: int(10, 86_400).default(600),
  WHATSAPP_SEND_TIMEOUT_MS: int(500, 60_000).default(10_000),
  // Failed signature checks allowed per client IP per minute on POST /webhooks/whatsapp; past it, 429 until the minute ends.
  WHATSAPP_MAX_BAD_SIGNATURES_PER_MINUTE: int(1, 1_000_000).default(100),
  // Chat inbox: an attempt older than the lease belongs to a dead process and is taken over; unhandled messages are
  // retried by a sweep every INBOX_SWEEP_SECONDS once INBOX_STUCK_AFTER_SECONDS have passed since they arrived.
  INBOX_LEASE_SECONDS: int(1, 3600).default(120),
  INBOX_STUCK_AFTER_SECONDS: int(1, 3600).default(60),
  INBOX_SWEEP_SECONDS: int(1, 3600).default(15),

  TELEGRAM_BOT_TOKEN: z.string().regex(/^\d+:[A-Za-z0-9_-]{20,}$/, 'must be the token BotFather gave, e.g. 123456:AA…').optional(),
  TELEGRAM_BOT_USERNAME: z
    .string()
    .transform((value) => value.replace(/^@/, ''))
    .pipe(z.string().regex(/^[A-Za-z][A-Za-z0-9_]{3,31}$/, 'must be the bot username, e.g. chatgate_bot'))
    .optional(),
  TELEGRAM_MODE: z.enum(['webhook', 'polling']).default('webhook'),
  TELEGRAM_WEBHOOK_SECRET: z
    .string()
    .regex(/^[A-Za-z0-9_-]{16,256}$/, 'must be 16 to 256 characters of A-Z a-z 0-9 _ -')
    .optional(),
  TELEGRAM_API_ROOT: z.url().default('https://api.telegram.org'),
  TELEGRAM_WIDGET_MAX_AGE_SECONDS: int(60, 30 * 86_400).default(86_400),
  // Where the gateway is reachable from the internet; `npm run telegram:webhook` registers PUBLIC_URL/webhooks/telegram.
  PUBLIC_URL: z.url().optional(),
  // GET /openapi.json and the /docs page; a deployment that keeps its API description private turns them off.
  API_DOCS: bool.default(true),

  // "Log in with Telegram" (OpenID Connect, relying party): on when the client id and secret from BotFather are set.
  TELEGRAM_OIDC_CLIENT_ID: z.string().regex(/^\d{1,20}$/, 'must be the numeric Client ID BotFather shows under Bot Settings > Web Login').optional(),
  TELEGRAM_OIDC_CLIENT_SECRET: z.string().min(8, 'must be the Client Secret BotFather shows').optional(),
  TELEGRAM_OIDC_ISSUER: z.url().default('https://oauth.telegram.org'),
  TELEGRAM_OIDC_SCOPES: z
    .string()
    .transform((value) => value.split(/\s+/).filter((scope) => scope.length > 0))
    .pipe(z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be OAuth scope names')).refine((scopes) => scopes.includes('openid'), 'must include openid'))
    .default(['openid', 'profile', 'phone']),
  // Besides paths on this gateway, where GET /auth/telegram/login may send the browser back to (comma-separated origins).
  TELEGRAM_OIDC_RETURN_ORIGINS: csv
    .pipe(z.array(z.url().refine((value) => new URL(value).origin === value.replace(/\/$/, ''), 'must be origins such as https://app.example.com')))
    .optional(),
  // Codes through the Telegram Gateway API to any phone with a Telegram account: on when the token is set.
  TELEGRAM_GATEWAY_TOKEN: z.string().min(16, 'must be the API token from the Gateway account settings').optional(),
  TELEGRAM_GATEWAY_API_ROOT: z.url().default('https://gatewayapi.telegram.org'),
  TELEGRAM_GATEWAY_TIMEOUT_MS: int(500, 60_000).default(5000),

  // OpenID Provider and hosted login page (src/oidc, src/login-page).
  OIDC_CLIENTS: z.string().optional(),
  OIDC_CLIENTS_FILE: z.string().optional(),
  LOGIN_LOGO_URL: z.url().optional(),
  LOGIN_PRIMARY_COLOR: z.string().regex(/^#[0-9a-fA-F]{6}$/, 'must be a colour like #0b6e4f').default('#0b6e4f'),
  LOGIN_LANGUAGES: csv.pipe(z.array(z.enum(['en', 'es', 'pt', 'hi']))).default(['en', 'es', 'pt', 'hi']),
});

export type Config = Omit<z.infer<typeof configSchema>, 'OIDC_CLIENTS'> & { OIDC_CLIENTS?: OidcClient[] | undefined };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Secrets that may also be given as a file, `<NAME>_FILE` (Docker and Kubernetes secrets): the file's content, without
 * its trailing newline, becomes the value. Add a secret variable here when it is added to the schema.
 */
export const SECRET_FILE_VARIABLES = [
  'OTP_PEPPER',
  'JWT_PRIVATE_JWKS',
  'TWILIO_AUTH_TOKEN',
  'SMS_HTTP_SECRET',
  'WHATSAPP_APP_SECRET',
  'WHATSAPP_ACCESS_TOKEN',
  'WHATSAPP_VERIFY_TOKEN',
  'TELEGRAM_BOT_TOKEN',
  'TELEGRAM_WEBHOOK_SECRET',
  'MONGODB_URI',
  'METRICS_TOKEN',
  'TELEGRAM_OIDC_CLIENT_SECRET',
  'TELEGRAM_GATEWAY_TOKEN',
  'REDIS_URL',
  'ADMIN_API_TOKEN',
] as const;

// Reads every `<NAME>_FILE`; the problems name the variable and the path, never what the file holds.
function readSecretFiles(present: Record<string, string>): { values: Record<string, string>; problems: string[] } {
  const values: Record<string, string> = {};
  const problems: string[] = [];
  for (const name of SECRET_FILE_VARIABLES) {
    const file = present[`${name}_FILE`];
    if (file === undefined) continue;
    if (present[name] !== undefined) {
      problems.push(`${name}: set either ${name} or ${name}_FILE, not both`);
      continue;
    }
    try {
      values[name] = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      problems.push(`${name}_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    }
  }
  return { values, problems };
}

/** Parses the environment; throws ConfigError naming every bad or missing variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty value in a .env file means "unset", so defaults apply.
  const given = Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''),
  );
  const secretFiles = readSecretFiles(given);
  if (secretFiles.problems.length > 0) throw new ConfigError(secretFiles.problems);
  const present: Record<string, string> = { ...given, ...secretFiles.values };
  const parsed = configSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join('.') || 'environment'}: ${issue.message}`));
  }
  const { OIDC_CLIENTS: clientsJson, ...config } = parsed.data;
  const clients = oidcClients(clientsJson, config.OIDC_CLIENTS_FILE);
  const problems = [...productionProblems(config, present), ...providerProblems(config), ...guessingProblems(config), ...clients.problems];
  if (config.NODE_ENV === 'production' && clients.list && !config.PUBLIC_URL?.startsWith('https://')) {
    problems.push('PUBLIC_URL: required in production with OIDC clients, as an https:// URL (it is the OpenID issuer)');
  }
  if (config.NODE_ENV === 'production' && clients.list && config.TRUST_PROXY === false) {
    problems.push('TRUST_PROXY: required in production with OIDC clients (the https proxy in front says the connection is secure, so the session cookie can be Secure)');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    ...config,
    OIDC_CLIENTS: clients.list,
    SMS_PROVIDER: config.SMS_PROVIDER ?? (config.NODE_ENV === 'production' ? undefined : 'console'),
    // Development tokens name the address this gateway really answers on (production requires JWT_ISSUER).
    JWT_ISSUER: present.JWT_ISSUER ? config.JWT_ISSUER : (config.PUBLIC_URL?.replace(/\/+$/, '') ?? `http://localhost:${config.PORT}`),
  };
}

export const whatsappEnabled = (config: Config): boolean => !!(config.WHATSAPP_VERIFY_TOKEN && config.WHATSAPP_APP_SECRET);
export const telegramEnabled = (config: Config): boolean => !!config.TELEGRAM_BOT_TOKEN;
export const telegramOidcEnabled = (config: Config): boolean => !!(config.TELEGRAM_OIDC_CLIENT_ID && config.TELEGRAM_OIDC_CLIENT_SECRET);
export const telegramGatewayEnabled = (config: Config): boolean => !!config.TELEGRAM_GATEWAY_TOKEN;

function oidcClients(json: string | undefined, file: string | undefined): { list?: OidcClient[]; problems: string[] } {
  if (json && file) return { problems: ['OIDC_CLIENTS and OIDC_CLIENTS_FILE: set one of them, not both'] };
  const parsed = json ? parseOidcClients(json, 'OIDC_CLIENTS') : file ? readOidcClientsFile(file) : undefined;
  if (!parsed) return { problems: [] };
  return 'problem' in parsed ? { problems: [parsed.problem] } : { list: parsed.clients, problems: [] };
}

// Development conveniences that would be holes in production.
function productionProblems(config: Config, given: Record<string, string | undefined>): string[] {
  if (config.NODE_ENV !== 'production') return [];
  const problems: string[] = [];
  // Tokens saying they come from localhost would be accepted by any service configured the same careless way.
  if (!given.JWT_ISSUER) problems.push('JWT_ISSUER: required in production (the public URL of this gateway, e.g. https://auth.example.com)');
  if (!config.OTP_PEPPER) problems.push('OTP_PEPPER: required in production (at least 32 random characters)');
  if (!config.JWT_PRIVATE_JWKS) problems.push('JWT_PRIVATE_JWKS: required in production (generated keys are for development)');
  if (!config.MONGODB_URI) problems.push('MONGODB_URI: required in production (the embedded database is for development)');
  if (!config.SMS_PROVIDER) problems.push('SMS_PROVIDER: required in production (twilio or http)');
  if (config.SMS_PROVIDER === 'console') problems.push('SMS_PROVIDER: "console" prints codes to the log and is refused in production');
  if (config.OTP_TEST_NUMBERS) problems.push('OTP_TEST_NUMBERS: fixed codes are refused in production');
  if (!config.RATE_LIMIT_ENABLED) problems.push('RATE_LIMIT_ENABLED: false (no per-IP limits) is for benchmarks and refused in production');
  if (config.CORS_ORIGINS.includes('*')) problems.push('CORS_ORIGINS: "*" (any origin) is refused in production; list the exact origins');
  if (!config.OTP_ALLOWED_COUNTRIES) {
    problems.push('OTP_ALLOWED_COUNTRIES: required in production (e.g. IN,GB; or * to accept every country knowingly)');
  }
  problems.push(...productionHardeningProblems(config));
  return problems;
}

const isLoopbackHost = (host: string): boolean =>
  host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

// Settings that weaken a guarantee rather than turn on a development convenience (issue 7, items 1 and 10).
function productionHardeningProblems(config: Config): string[] {
  const problems: string[] = [];
  if (config.TRUST_PROXY === true) {
    problems.push('TRUST_PROXY: "true" trusts every X-Forwarded-For entry, so clients choose their IP; give the hop count or the proxy addresses/CIDRs');
  }
  if (!config.INTENT_REQUIRE_CONFIRM) {
    problems.push('INTENT_REQUIRE_CONFIRM: "false" signs in whoever sends a code without asking; refused in production');
  }
  if (config.OTP_LENGTH < 6) problems.push('OTP_LENGTH: at least 6 digits in production');
  for (const name of ['WHATSAPP_GRAPH_URL', 'TELEGRAM_API_ROOT', 'SMS_HTTP_URL', 'PUBLIC_URL'] as const) {
    const value = config[name];
    if (!value) continue;
    const url = new URL(value);
    if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) problems.push(`${name}: must be https:// in production (http:// only to loopback)`);
  }
  for (const name of ['WHATSAPP_APP_SECRET', 'TELEGRAM_WEBHOOK_SECRET', 'SMS_HTTP_SECRET'] as const) {
    const value = config[name];
    if (value && value.length < 32) problems.push(`${name}: at least 32 characters in production`);
  }
  return problems;
}

function providerProblems(config: Config): string[] {
  const problems: string[] = [];
  if (config.TELEGRAM_BOT_TOKEN) {
    if (!config.TELEGRAM_BOT_USERNAME) problems.push('TELEGRAM_BOT_USERNAME: required with TELEGRAM_BOT_TOKEN');
    if (config.TELEGRAM_MODE === 'webhook' && !config.TELEGRAM_WEBHOOK_SECRET) {
      problems.push('TELEGRAM_WEBHOOK_SECRET: required with TELEGRAM_BOT_TOKEN in webhook mode');
    }
  }
  if (config.NODE_ENV === 'production' && config.TELEGRAM_BOT_TOKEN && config.TELEGRAM_MODE === 'polling') {
    problems.push('TELEGRAM_MODE: polling is for local development; use webhook in production');
  }
  // WhatsApp is on when its webhook can be verified; then the bot must also be able to answer.
  if (config.WHATSAPP_VERIFY_TOKEN || config.WHATSAPP_APP_SECRET) {
    for (const name of ['WHATSAPP_VERIFY_TOKEN', 'WHATSAPP_APP_SECRET', 'WHATSAPP_ACCESS_TOKEN', 'WHATSAPP_PHONE_NUMBER_ID'] as const) {
      if (!config[name]) problems.push(`${name}: required when WhatsApp is on (WHATSAPP_VERIFY_TOKEN or WHATSAPP_APP_SECRET is set)`);
    }
  }
  if (config.SMS_PROVIDER === 'twilio') {
    if (!config.TWILIO_ACCOUNT_SID) problems.push('TWILIO_ACCOUNT_SID: required with SMS_PROVIDER=twilio');
    if (!config.TWILIO_AUTH_TOKEN) problems.push('TWILIO_AUTH_TOKEN: required with SMS_PROVIDER=twilio');
    if (!config.TWILIO_FROM && !config.TWILIO_MESSAGING_SERVICE_SID) {
      problems.push('TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID: one is required with SMS_PROVIDER=twilio');
    }
  }
  if (config.SMS_PROVIDER === 'http') {
    if (!config.SMS_HTTP_URL) problems.push('SMS_HTTP_URL: required with SMS_PROVIDER=http');
    if (!config.SMS_HTTP_SECRET) problems.push('SMS_HTTP_SECRET: required with SMS_PROVIDER=http');
  }
  problems.push(...telegramLoginProblems(config));
  return problems;
}

// "Log in with Telegram" and the Telegram Gateway.
function telegramLoginProblems(config: Config): string[] {
  const problems: string[] = [];
  if (!!config.TELEGRAM_OIDC_CLIENT_ID !== !!config.TELEGRAM_OIDC_CLIENT_SECRET) {
    problems.push('TELEGRAM_OIDC_CLIENT_ID and TELEGRAM_OIDC_CLIENT_SECRET: set both (BotFather > Bot Settings > Web Login) or neither');
  }
  if (telegramOidcEnabled(config)) {
    // The redirect URI registered with BotFather is PUBLIC_URL/auth/telegram/callback.
    if (!config.PUBLIC_URL) problems.push('PUBLIC_URL: required with TELEGRAM_OIDC_CLIENT_ID (the redirect URI is PUBLIC_URL/auth/telegram/callback)');
    if (config.NODE_ENV === 'production' && !config.TELEGRAM_OIDC_ISSUER.startsWith('https://')) {
      problems.push('TELEGRAM_OIDC_ISSUER: must be https:// in production');
    }
  }
  if (config.TELEGRAM_GATEWAY_TOKEN) {
    // The Gateway sends our own code only when it is 4 to 8 digits.
    if (config.OTP_LENGTH > 8) problems.push(`OTP_LENGTH: the Telegram Gateway takes codes of 4 to 8 digits, not ${config.OTP_LENGTH}`);
    if (config.NODE_ENV === 'production' && !config.TELEGRAM_GATEWAY_API_ROOT.startsWith('https://')) {
      problems.push('TELEGRAM_GATEWAY_API_ROOT: must be https:// in production');
    }
  }
  return problems;
}

/**
 * The most wrong codes one phone can be tried with in any 24 hours: two attempt budgets per code (the challenge id's
 * holder's and by phone) times the sends, bounded by OTP_MAX_FAILURES_PER_DAY. That bound is exact because the failures
 * are counted in a rolling 24 hours; a count per calendar day would allow twice as many around midnight.
 */
export const dailyGuessBudget = (config: Config): number =>
  Math.min(config.OTP_MAX_FAILURES_PER_DAY, 2 * config.OTP_MAX_ATTEMPTS * config.OTP_MAX_SENDS_PER_PHONE_PER_HOUR * 24);

// An attacker who targets one phone may have at most a 1-in-10,000 chance in 24 hours of guessing its code.
function guessingProblems(config: Config): string[] {
  const guesses = dailyGuessBudget(config);
  if (guesses * 10_000 <= 10 ** config.OTP_LENGTH) return [];
  return [
    `OTP_MAX_FAILURES_PER_DAY: ${guesses} guesses a day at ${config.OTP_LENGTH}-digit codes give more than a 1-in-10,000 chance a day; ` +
      `allow at most ${Math.floor(10 ** config.OTP_LENGTH / 10_000)} or use longer codes (OTP_LENGTH)`,
  ];
}
