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
