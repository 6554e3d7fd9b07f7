import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
};

describe('configuration', () => {
  it('has working defaults for development', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      NODE_ENV: 'development',
      HOST: '0.0.0.0',
      PORT: 3000,
      DATA_DIR: '.data',
      SMS_PROVIDER: 'console',
      OTP_LENGTH: 6,
      OTP_TTL_SECONDS: 300,
      OTP_MAX_ATTEMPTS: 5,
      OTP_RESEND_SECONDS: 30,
      OTP_MAX_SENDS_PER_HOUR: 5,
      JWT_ALG: 'ES256',
      ACCESS_TOKEN_TTL_SECONDS: 900,
      REFRESH_TOKEN_TTL_SECONDS: 2_592_000,
      INTENT_TTL_SECONDS: 300,
      INTENT_REQUIRE_CONFIRM: true,
      BODY_LIMIT_BYTES: 65_536,
      TRUST_PROXY: false,
    });
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ PORT: '', OTP_LENGTH: '' })).toMatchObject({ PORT: 3000, OTP_LENGTH: 6 });
  });

  it.each([
    [{ OTP_LENGTH: '3' }, 'OTP_LENGTH'],
    [{ OTP_LENGTH: '11' }, 'OTP_LENGTH'],
    [{ PORT: 'eighty' }, 'PORT'],
    [{ SMS_PROVIDER: 'carrier-pigeon' }, 'SMS_PROVIDER'],
    [{ OTP_TEST_NUMBERS: '+15550000001=123456' }, 'OTP_TEST_NUMBERS'],
    [{ OTP_ALLOWED_COUNTRIES: 'india' }, 'OTP_ALLOWED_COUNTRIES'],
    [{ DEFAULT_COUNTRY: 'in' }, 'DEFAULT_COUNTRY'],
    [{ OTP_MESSAGE: 'no placeholder' }, 'OTP_MESSAGE'],
    [{ INTENT_REQUIRE_CONFIRM: 'maybe' }, 'INTENT_REQUIRE_CONFIRM'],
    [{ MONGODB_URI: 'postgres://x' }, 'MONGODB_URI'],
    [{ SMS_PROVIDER: 'twilio' }, 'TWILIO_ACCOUNT_SID'],
    [{ SMS_PROVIDER: 'http', SMS_HTTP_URL: 'https://sms.example' }, 'SMS_HTTP_SECRET'],
  ])('refuses %o, naming %s', (env, variable) => {
    expect(problemsOf(env).some((problem) => problem.startsWith(variable))).toBe(true);
  });

  it('parses test numbers, countries and proxy settings', () => {
    const config = loadConfig({
      OTP_TEST_NUMBERS: '+15550000001:123456, +15550000002:654321',
      OTP_ALLOWED_COUNTRIES: 'IN, GB',
      TRUST_PROXY: '2',
    });
    expect([...config.OTP_TEST_NUMBERS!]).toEqual([['+15550000001', '123456'], ['+15550000002', '654321']]);
    expect(config.OTP_ALLOWED_COUNTRIES).toEqual(['IN', 'GB']);
    expect(config.TRUST_PROXY).toBe(2);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8,127.0.0.1' }).TRUST_PROXY).toEqual(['10.0.0.0/8', '127.0.0.1']);
  });

  it('reads TRUST_PROXY=1 as one hop, never as "trust everything"', () => {
    expect(loadConfig({ TRUST_PROXY: '1' }).TRUST_PROXY).toBe(1);
    expect(loadConfig({ TRUST_PROXY: '0' }).TRUST_PROXY).toBe(0);
  });
});

describe('production hardening', () => {
  const safe = {
    NODE_ENV: 'production',
    OTP_PEPPER: 'p'.repeat(40),
    JWT_PRIVATE_JWKS: '{"keys":[]}',
    MONGODB_URI: 'mongodb://db.internal:27017/chatgate',
    SMS_PROVIDER: 'http',
    SMS_HTTP_URL: 'https://sms.example/send',
    SMS_HTTP_SECRET: 's'.repeat(32),
    JWT_ISSUER: 'https://auth.example.com',
    OTP_ALLOWED_COUNTRIES: 'IN',
  };
  const whatsapp = {
    WHATSAPP_VERIFY_TOKEN: 'verify-token',
    WHATSAPP_APP_SECRET: 'a'.repeat(32),
    WHATSAPP_ACCESS_TOKEN: 'token',
    WHATSAPP_PHONE_NUMBER_ID: '1065',
  };

  it('starts with hop counts, proxy CIDRs, https and loopback http providers, long secrets', () => {
    expect(problemsOf({ ...safe, TRUST_PROXY: '1' })).toEqual([]);
    expect(problemsOf({ ...safe, TRUST_PROXY: '10.0.0.0/8' })).toEqual([]);
    expect(problemsOf({ ...safe, ...whatsapp, WHATSAPP_GRAPH_URL: 'http://127.0.0.1:8080' })).toEqual([]);
    expect(problemsOf({ ...safe, SMS_HTTP_URL: 'http://localhost:9000/send' })).toEqual([]);
  });

  it.each([
    ['TRUST_PROXY', { TRUST_PROXY: 'true' }],
    ['INTENT_REQUIRE_CONFIRM', { INTENT_REQUIRE_CONFIRM: 'false' }],
    ['OTP_LENGTH', { OTP_LENGTH: '5' }],
    ['SMS_HTTP_URL', { SMS_HTTP_URL: 'http://sms.example/send' }],
    ['SMS_HTTP_SECRET', { SMS_HTTP_SECRET: 's'.repeat(31) }],
    ['WHATSAPP_GRAPH_URL', { ...whatsapp, WHATSAPP_GRAPH_URL: 'http://graph.example' }],
    ['WHATSAPP_APP_SECRET', { ...whatsapp, WHATSAPP_APP_SECRET: 'a'.repeat(31) }],
    ['TELEGRAM_API_ROOT', { TELEGRAM_API_ROOT: 'http://telegram.example' }],
    [
      'TELEGRAM_WEBHOOK_SECRET',
      { TELEGRAM_BOT_TOKEN: '1:AAAAAAAAAAAAAAAAAAAAAAAA', TELEGRAM_BOT_USERNAME: 'x_bot_1', TELEGRAM_WEBHOOK_SECRET: 't'.repeat(31) },
    ],
  ])('refuses a weak %s', (variable, change) => {
    expect(problemsOf({ ...safe, ...change }).some((problem) => problem.startsWith(variable))).toBe(true);
  });
});

describe('Log in with Telegram and the Telegram Gateway', () => {
  it('defaults to Telegram\'s issuer, the scopes openid profile phone, and the Gateway\'s API root', () => {
    expect(loadConfig({})).toMatchObject({
      TELEGRAM_OIDC_ISSUER: 'https://oauth.telegram.org',
      TELEGRAM_OIDC_SCOPES: ['openid', 'profile', 'phone'],
      TELEGRAM_GATEWAY_API_ROOT: 'https://gatewayapi.telegram.org',
      TELEGRAM_GATEWAY_TIMEOUT_MS: 5000,
    });
    expect(loadConfig({ TELEGRAM_OIDC_SCOPES: ' openid  phone ' }).TELEGRAM_OIDC_SCOPES).toEqual(['openid', 'phone']);
  });

  it.each([
    [{ TELEGRAM_OIDC_CLIENT_ID: '7012345678' }, 'TELEGRAM_OIDC_CLIENT_ID and TELEGRAM_OIDC_CLIENT_SECRET'],
    [{ TELEGRAM_OIDC_CLIENT_ID: '7012345678', TELEGRAM_OIDC_CLIENT_SECRET: 'secret-from-botfather' }, 'PUBLIC_URL'],
    [{ TELEGRAM_OIDC_CLIENT_ID: 'my-bot' }, 'TELEGRAM_OIDC_CLIENT_ID'],
    [{ TELEGRAM_OIDC_SCOPES: 'profile phone' }, 'TELEGRAM_OIDC_SCOPES'],
    [{ TELEGRAM_OIDC_RETURN_ORIGINS: 'https://app.example.com/path' }, 'TELEGRAM_OIDC_RETURN_ORIGINS'],
    [{ TELEGRAM_GATEWAY_TOKEN: 'g'.repeat(40), OTP_LENGTH: '10' }, 'OTP_LENGTH'],
  ])('refuses %o, naming %s', (env, variable) => {
    expect(problemsOf(env).some((problem) => problem.startsWith(variable))).toBe(true);
  });
});

describe('production', () => {
  const safe = {
    NODE_ENV: 'production',
    OTP_PEPPER: 'p'.repeat(40),
    JWT_PRIVATE_JWKS: '{"keys":[]}',
    MONGODB_URI: 'mongodb://db.internal:27017/chatgate',
    SMS_PROVIDER: 'http',
    SMS_HTTP_URL: 'https://sms.example/send',
    SMS_HTTP_SECRET: 's'.repeat(32),
    JWT_ISSUER: 'https://auth.example.com',
    OTP_ALLOWED_COUNTRIES: 'IN,GB',
  };

  it('starts with explicit secrets, database and provider', () => {
    expect(problemsOf(safe)).toEqual([]);
  });

  it('sends to every country only when OTP_ALLOWED_COUNTRIES is explicitly *', () => {
    expect(problemsOf({ ...safe, OTP_ALLOWED_COUNTRIES: '*' })).toEqual([]);
    expect(problemsOf({ ...safe, OTP_ALLOWED_COUNTRIES: 'IN,*' }).some((problem) => problem.startsWith('OTP_ALLOWED_COUNTRIES'))).toBe(true);
  });

  it.each([
    ['OTP_PEPPER', { OTP_PEPPER: '' }],
    ['JWT_PRIVATE_JWKS', { JWT_PRIVATE_JWKS: '' }],
    ['MONGODB_URI', { MONGODB_URI: '' }],
    ['SMS_PROVIDER', { SMS_PROVIDER: 'console' }],
    ['SMS_PROVIDER', { SMS_PROVIDER: '' }],
    ['OTP_TEST_NUMBERS', { OTP_TEST_NUMBERS: '+15550000001:123456' }],
    ['JWT_ISSUER', { JWT_ISSUER: '' }],
    ['OTP_ALLOWED_COUNTRIES', { OTP_ALLOWED_COUNTRIES: '' }],
    ['RATE_LIMIT_ENABLED', { RATE_LIMIT_ENABLED: 'false' }],
    ['TELEGRAM_MODE', { TELEGRAM_BOT_TOKEN: '1:AAAAAAAAAAAAAAAAAAAAAAAA', TELEGRAM_BOT_USERNAME: 'x_bot_1', TELEGRAM_MODE: 'polling' }],
    [
      'TELEGRAM_OIDC_ISSUER',
      { TELEGRAM_OIDC_CLIENT_ID: '1', TELEGRAM_OIDC_CLIENT_SECRET: 'secret-from-botfather', PUBLIC_URL: 'https://auth.example.com', TELEGRAM_OIDC_ISSUER: 'http://oauth.telegram.org' },
    ],
    ['TELEGRAM_GATEWAY_API_ROOT', { TELEGRAM_GATEWAY_TOKEN: 'g'.repeat(40), TELEGRAM_GATEWAY_API_ROOT: 'http://gatewayapi.telegram.org' }],
  ])('refuses the development default of %s', (variable, change) => {
    expect(problemsOf({ ...safe, ...change }).some((problem) => problem.startsWith(variable))).toBe(true);
  });
});

describe('.env.example', () => {
  it('documents every variable the configuration reads, and no other', async () => {
    const { readFile } = await import('node:fs/promises');
    const { configSchema } = await import('../src/config.js');
    const text = await readFile(new URL('../.env.example', import.meta.url), 'utf8');
    const documented = [...text.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]).sort();
    expect(documented).toEqual(Object.keys(configSchema.shape).sort());
  });
});

describe('the JWT issuer in development', () => {
  it('follows PORT, or PUBLIC_URL when set, unless JWT_ISSUER is given', () => {
    expect(loadConfig({}).JWT_ISSUER).toBe('http://localhost:3000');
    expect(loadConfig({ PORT: '8080' }).JWT_ISSUER).toBe('http://localhost:8080');
    expect(loadConfig({ PORT: '8080', PUBLIC_URL: 'https://auth.example.com/' }).JWT_ISSUER).toBe('https://auth.example.com');
    expect(loadConfig({ PORT: '8080', JWT_ISSUER: 'https://id.example.com' }).JWT_ISSUER).toBe('https://id.example.com');
  });
});

describe('secrets from files (<NAME>_FILE)', () => {
  const secretFile = async (content: string): Promise<string> => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const file = path.join(await mkdtemp(path.join(tmpdir(), 'chatgate-secret-')), 'secret');
    await writeFile(file, content, { mode: 0o600 });
    return file;
  };

  it('reads the value from the file, without its trailing newline', async () => {
    const pepper = 'f'.repeat(40);
    const config = loadConfig({
      OTP_PEPPER_FILE: await secretFile(`${pepper}\n`),
      MONGODB_URI_FILE: await secretFile('mongodb://db.internal:27017/chatgate\r\n'),
    });
    expect(config.OTP_PEPPER).toBe(pepper);
    expect(config.MONGODB_URI).toBe('mongodb://db.internal:27017/chatgate');
  });

  it('accepts a file for every secret variable', async () => {
    const { SECRET_FILE_VARIABLES, configSchema } = await import('../src/config.js');
    for (const name of SECRET_FILE_VARIABLES) expect(Object.keys(configSchema.shape)).toContain(name);
    const config = loadConfig({
      TELEGRAM_BOT_TOKEN_FILE: await secretFile('123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAA\n'),
      TELEGRAM_BOT_USERNAME: 'chatgate_bot',
      TELEGRAM_WEBHOOK_SECRET_FILE: await secretFile('w'.repeat(32)),
    });
    expect(config.TELEGRAM_BOT_TOKEN).toBe('123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    expect(config.TELEGRAM_WEBHOOK_SECRET).toBe('w'.repeat(32));
  });

  it('validates the value read from the file like any other', async () => {
    expect(problemsOf({ OTP_PEPPER_FILE: await secretFile('short\n') }).some((problem) => problem.startsWith('OTP_PEPPER'))).toBe(true);
  });

  it('refuses both NAME and NAME_FILE', async () => {
    const problems = problemsOf({ OTP_PEPPER: 'p'.repeat(40), OTP_PEPPER_FILE: await secretFile('q'.repeat(40)) });
    expect(problems).toEqual(['OTP_PEPPER: set either OTP_PEPPER or OTP_PEPPER_FILE, not both']);
  });

  it('names the variable of an unreadable file, never its content', async () => {
    const problems = problemsOf({ TWILIO_AUTH_TOKEN_FILE: '/nonexistent/twilio-token' });
    expect(problems).toEqual(['TWILIO_AUTH_TOKEN_FILE: cannot read /nonexistent/twilio-token (ENOENT)']);
    const shortProblems = problemsOf({ SMS_PROVIDER: 'http', SMS_HTTP_URL: 'https://sms.example', SMS_HTTP_SECRET_FILE: await secretFile('abc-secret') });
    expect(shortProblems.some((problem) => problem.startsWith('SMS_HTTP_SECRET'))).toBe(true);
    expect(shortProblems.join('\n')).not.toContain('abc-secret');
  });
});
