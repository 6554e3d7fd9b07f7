import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { decodeJwt } from 'jose';
import { configSchema, telegramOidcEnabled, type Config } from '../config.js';
import type { CodeSender } from '../delivery/types.js';
import type { Services } from '../services/index.js';
import { registerPageApi } from './api.js';
import { countryOptions } from './countries.js';
import { brandingOf, pageCsp, renderLoginBody, renderShell, type Branding } from './render.js';
import { chooseLanguage, fill, textsFor, type PageLanguage } from './texts.js';

export interface LoginPageOptions {
  config: Config;
  services: Services;
  /** The channels a code can be sent over, in the order the selector shows them. */
  codeChannels: readonly string[];
  chatChannels: readonly ('whatsapp' | 'telegram')[];
  rateLimit: object;
  smsIn?: (language: PageLanguage) => CodeSender | undefined;
}

/**
 * The SMS sender, with the code worded in the page's language and a last line for WebOTP (the browser on the phone
 * offers the code to the page of that host). Only while OTP_MESSAGE is the default: an operator's own wording is
 * theirs to keep.
 */
export function localizedSms(config: Config, sms: CodeSender | undefined, pageHost: string): ((language: PageLanguage) => CodeSender | undefined) | undefined {
  if (!sms || config.OTP_MESSAGE !== configSchema.shape.OTP_MESSAGE.parse(undefined)) return undefined;
  const senders = new Map<PageLanguage, CodeSender>();
  for (const language of config.LOGIN_LANGUAGES) {
    const template = textsFor(language).sms_code;
    senders.set(language, {
      channel: sms.channel,
      provider: sms.provider,
      canReach: (message) => sms.canReach(message),
      send: (message) => {
        const text = fill(template, { product: config.SERVICE_NAME, code: message.code, minutes: message.ttlMinutes });
        return sms.send({ ...message, text: `${text}\n\n@${pageHost} #${message.code}` });
      },
    });
  }
  return (language) => senders.get(language);
}

// The script and styles are files of their own (served with a strict CSP), read once at start. In a build, the
// compiled module sits in dist/ while the assets stay in src/, hence the second place to look.
function readAsset(name: string): string {
  const candidates = [new URL(`./assets/${name}`, import.meta.url), new URL(`../../../src/login-page/assets/${name}`, import.meta.url)];
  for (const candidate of candidates) {
    try {
      return readFileSync(fileURLToPath(candidate), 'utf8');
    } catch {
      // try the next place
    }
  }
  throw new Error(`login page asset ${name} not found`);
}

export interface PageContext {
  language: PageLanguage;
  languages: readonly PageLanguage[];
  branding: Branding;
}

/** Sends a page with its security headers: the CSP, no framing, no caching of a page that carries a sign-in. */
export function sendPage(reply: FastifyReply, html: string, csp: string, status = 200): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('content-security-policy', csp)
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-store')
    .send(html);
}

/** The country the selector starts at: DEFAULT_COUNTRY, else the region of the browser's language (en-GB: GB), else none. */
export function startingCountry(config: Config, acceptLanguage: string | undefined): string | undefined {
  if (config.DEFAULT_COUNTRY) return config.DEFAULT_COUNTRY;
  const region = /^[a-z]{2,3}-([A-Z]{2})\b/i.exec(acceptLanguage?.split(',')[0]?.trim() ?? '')?.[1]?.toUpperCase();
  if (!region) return undefined;
  const allowed = config.OTP_ALLOWED_COUNTRIES;
  // `*` alone allows every country.
  return !allowed || allowed[0] === '*' || (allowed as readonly string[]).includes(region) ? region : undefined;
}

export function loginViewOptions(
  config: Config,
  options: Pick<LoginPageOptions, 'codeChannels' | 'chatChannels'>,
  language: PageLanguage,
  acceptLanguage: string | undefined,
) {
  return {
    language,
    countries: countryOptions(language, config.OTP_ALLOWED_COUNTRIES),
    defaultCountry: startingCountry(config, acceptLanguage),
    codeChannels: options.codeChannels,
    chatChannels: options.chatChannels,
    telegramLogin: telegramOidcEnabled(config),
  };
}

/** The hosted page's files, and /login: the page without an OpenID request, which shows who signed in and the token's claims. */
export async function loginPageRoutes(app: FastifyInstance, options: LoginPageOptions): Promise<void> {
  const { config, services } = options;
  const branding = brandingOf(config);
  const assets: Record<string, { body: string; type: string }> = {
    'login.js': { body: readAsset('login.js'), type: 'text/javascript; charset=utf-8' },
    'login.css': { body: readAsset('login.css'), type: 'text/css; charset=utf-8' },
    'theme.css': { body: `:root { --primary: ${config.LOGIN_PRIMARY_COLOR}; }\n`, type: 'text/css; charset=utf-8' },
  };

  app.get<{ Params: { file: string } }>('/login/assets/:file', async (request, reply) => {
    const asset = Object.hasOwn(assets, request.params.file) ? assets[request.params.file] : undefined;
    if (!asset) return reply.callNotFound();
    return reply.header('content-type', asset.type).header('cache-control', 'public, max-age=300').header('x-content-type-options', 'nosniff').send(asset.body);
  });

  app.get<{ Querystring: { lang?: string } }>('/login', async (request, reply) => {
    const language = chooseLanguage(config.LOGIN_LANGUAGES, { explicit: request.query.lang, acceptLanguage: request.headers['accept-language'] });
    const html = renderShell({
      language,
      languages: config.LOGIN_LANGUAGES,
      branding,
      title: textsFor(language).title,
      selfPath: '/login',
      data: { api: '/login/api', view: 'login' },
      body: renderLoginBody(loginViewOptions(config, options, language, request.headers['accept-language']), branding.productName),
    });
    return sendPage(reply, html, pageCsp(branding));
  });

  await registerPageApi(app, {
    prefix: '/login/api',
    services,
    defaultCountry: config.DEFAULT_COUNTRY,
    testNumbers: config.OTP_TEST_NUMBERS,
    rateLimit: options.rateLimit,
    smsIn: options.smsIn,
    telegramLogin: telegramOidcEnabled(config),
    pagePath: () => '/login',
    async complete(request, _reply, user, channel) {
      // `complete` follows a verified code, which stamped the login already.
      const issued = await services.tokens.issueForLogin(user, channel, { ip: request.ip }, { loginRecorded: true });
      return { signedIn: { user: issued.user, claims: decodeJwt(issued.accessToken), refreshToken: issued.refreshToken } };
    },
    async pollIntent(request, _reply, intentId, pollToken) {
      const answer = await services.loginIntents.poll(intentId, pollToken, { ip: request.ip });
      if (answer.status !== 'approved') return { status: answer.status };
      return { status: 'approved', next: { signedIn: { user: answer.user, claims: decodeJwt(answer.accessToken), refreshToken: answer.refreshToken } } };
    },
  });
}
