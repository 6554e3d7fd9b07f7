import { randomBytes, timingSafeEqual } from 'node:crypto';
import Bowser from 'bowser';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Clock } from '../../src/clock.js';
import { AppError } from '../../src/errors.js';
import { sendError } from '../../src/http/error-handler.js';
import { parseInput } from '../../src/http/input.js';
import type { Reservations } from '../../src/services/reservations.js';
import type { TelegramLoginService } from '../../src/services/telegram-login.js';
import type { AuthorizationChecks, TelegramOidcClient } from './oidc-client.js';
import { telegramConfirmPage, telegramLoginPage, telegramLoginTexts, telegramPageCsp } from './oidc-pages.js';

export interface TelegramOidcLoginOptions {
  client: TelegramOidcClient;
  login: TelegramLoginService;
  reservations: Reservations;
  clock: Clock;
  publicUrl: string;
  /** Origins besides PUBLIC_URL's that return_to may point at. */
  returnOrigins: readonly string[];
  serviceName: string;
  rateLimit: object;
}

// The time a person has in Telegram between our redirect and the callback.
const FLOW_TTL_SECONDS = 600;
// The time a person has to answer "sign in this browser?".
const CONFIRM_TTL_SECONDS = 300;
const FLOW_COOKIE = 'cg_tg_login';
const COOKIE_PATH = '/auth/telegram';

const loginQuery = z.strictObject({
  // A login intent's start token (the one in links.telegram): the login then approves that intent.
  intent: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, 'must be a login intent start token').optional(),
  return_to: z.string().min(1).max(2048).optional(),
});

const callbackQuery = z.looseObject({
  state: z.string().max(512).optional(),
  code: z.string().max(2048).optional(),
  error: z.string().max(256).optional(),
});

const storedFlow = z.object({
  state: z.string(),
  nonce: z.string(),
  codeVerifier: z.string(),
  intent: z.string().optional(),
  returnTo: z.string().optional(),
  expiresAt: z.number(),
});

type StoredFlow = z.infer<typeof storedFlow>;

const storedConfirmation = z.object({
  intentId: z.string(),
  telegramId: z.number(),
  userId: z.string(),
  returnTo: z.string().optional(),
  expiresAt: z.number(),
});

const confirmBody = z.object({
  confirmToken: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'is not a confirmation token'),
  decision: z.enum(['confirm', 'cancel']),
});

/** "Chrome on Windows": browser and system only, from a maintained parser; no URLs, markup or control characters. */
export function describeBrowser(userAgent: string | null): string {
  if (!userAgent) return 'an unknown browser';
  const { browser, os } = Bowser.parse(userAgent);
  const text = [browser.name, os.name ? `on ${os.name}` : undefined].filter(Boolean).join(' ');
  const safe = text.replace(/[^\p{L}\p{N} .-]/gu, '').trim().slice(0, 60);
  return safe || 'an unknown browser';
}

/**
 * A return_to the gateway may redirect to: a path on this gateway, or a URL on PUBLIC_URL's origin or one of
 * TELEGRAM_OIDC_RETURN_ORIGINS. Anything else would make the gateway an open redirect.
 */
export function isAllowedReturnTo(value: string, publicUrl: string, origins: readonly string[]): boolean {
  // No control characters or backslashes, which browsers read in surprising ways ("/\evil.example").
  // eslint-disable-next-line no-control-regex -- matching control characters is the point of this check
  if (/[\u0000-\u001f\u007f\\]/.test(value)) return false;
  if (value.startsWith('/')) return !value.startsWith('//');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return false;
  if (url.username || url.password) return false;
  return [new URL(publicUrl).origin, ...origins.map((origin) => new URL(origin).origin)].includes(url.origin);
}

function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return undefined;
}

const sameText = (a: string, b: string): boolean => {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
};

/** Where the browser goes back to, with the outcome in the query (and, for tokens, in the fragment only). */
function returnUrl(returnTo: string, publicUrl: string, query: Record<string, string>, fragment?: Record<string, string>): string {
  const url = new URL(returnTo, publicUrl);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  if (fragment) url.hash = new URLSearchParams(fragment).toString();
  return returnTo.startsWith('/') ? `${url.pathname}${url.search}${url.hash}` : url.href;
}

const wantsHtml = (request: FastifyRequest): boolean => /text\/html/.test(request.headers.accept ?? '');

/**
 * "Log in with Telegram" over OpenID Connect.
 * GET /auth/telegram/login[?intent=<start token>][&return_to=<allowed URL>] sends the browser to Telegram;
 * GET /auth/telegram/callback finishes there: tokens, an approved login intent, or a clear error (page or JSON).
 */
export const telegramOidcLogin: FastifyPluginAsync<TelegramOidcLoginOptions> = async (app, options) => {
  const { client, login, reservations, clock, publicUrl } = options;
  const secureCookie = publicUrl.startsWith('https://');
  const flowKey = (flowId: string) => `telegram-login:${flowId}`;
  const confirmKey = (token: string) => `telegram-login-confirm:${token}`;
  const loginUrl = `${COOKIE_PATH}/login`;

  const cookie = (value: string, maxAge: number) =>
    // Lax: the callback is a top-level GET navigation coming from Telegram's site, which Lax lets through.
    `${FLOW_COOKIE}=${value}; Path=${COOKIE_PATH}; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secureCookie ? '; Secure' : ''}`;

  function endWithError(request: FastifyRequest, reply: FastifyReply, error: AppError, returnTo?: string): FastifyReply {
    reply.header('cache-control', 'no-store');
    if (returnTo) return reply.redirect(returnUrl(returnTo, publicUrl, { telegram_login: 'error', telegram_error: error.code }), 303);
    if (wantsHtml(request)) {
      const text = telegramLoginTexts.errors[error.code] ?? telegramLoginTexts.fallbackError;
      return reply.code(error.status).type('text/html; charset=utf-8').header('content-security-policy', telegramPageCsp).send(telegramLoginPage(text, { retryUrl: loginUrl }));
    }
    return sendError(reply, error);
  }

  app.get('/auth/telegram/login', { config: { rateLimit: options.rateLimit } }, async (request, reply) => {
    const query = parseInput(loginQuery, request.query);
    if (query.return_to && !isAllowedReturnTo(query.return_to, publicUrl, options.returnOrigins)) {
      throw new AppError('invalid_request', 'return_to must be a path on this gateway or a URL on an allowed origin (TELEGRAM_OIDC_RETURN_ORIGINS).');
    }
    const checks = client.newChecks();
    let target: URL;
    try {
      target = await client.authorizationUrl(checks);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      return endWithError(request, reply, error);
    }
    const flowId = randomBytes(32).toString('base64url');
    const flow: StoredFlow = {
      ...checks,
      ...(query.intent ? { intent: query.intent } : {}),
      ...(query.return_to ? { returnTo: query.return_to } : {}),
      expiresAt: clock.now().getTime() + FLOW_TTL_SECONDS * 1000,
    };
    await reservations.reserve(flowKey(flowId), FLOW_TTL_SECONDS + 3600, flow);
    reply.header('set-cookie', cookie(flowId, FLOW_TTL_SECONDS)).header('cache-control', 'no-store');
    return reply.redirect(target.href, 302);
  });

  app.get('/auth/telegram/callback', { config: { rateLimit: options.rateLimit } }, async (request, reply) => {
    const query = parseInput(callbackQuery, request.query);
    // The flow is bound to the browser that started it: a callback URL sent to someone else does nothing.
    const flowId = readCookie(request.headers.cookie, FLOW_COOKIE);
    reply.header('set-cookie', cookie('', 0));
    if (!flowId || !/^[A-Za-z0-9_-]{43}$/.test(flowId)) {
      return endWithError(request, reply, new AppError('invalid_state', 'This Telegram login was not started in this browser, or it has ended. Start it again.'));
    }
    const parsed = storedFlow.safeParse(await reservations.find(flowKey(flowId)));
    if (!parsed.success) {
      return endWithError(request, reply, new AppError('invalid_state', 'This Telegram login is unknown or already finished. Start it again.'));
    }
    const flow = parsed.data;
    // Each flow completes once, however many times its callback is replayed.
    if (!(await reservations.reserve(`${flowKey(flowId)}:done`, FLOW_TTL_SECONDS + 3600))) {
      return endWithError(request, reply, new AppError('invalid_state', 'This Telegram login was already used. Start it again.'));
    }
    await reservations.release(flowKey(flowId));
    if (flow.expiresAt <= clock.now().getTime()) {
      return endWithError(request, reply, new AppError('expired', 'This Telegram login took too long. Start it again.'), flow.returnTo);
    }
    if (!query.state || !sameText(query.state, flow.state)) {
      return endWithError(request, reply, new AppError('invalid_state', 'The state Telegram sent back does not match this login. Start it again.'), flow.returnTo);
    }

    const callbackUrl = new URL(`${publicUrl.replace(/\/$/, '')}/auth/telegram/callback`);
    for (const [key, value] of Object.entries(request.query as Record<string, unknown>)) {
      if (typeof value === 'string') callbackUrl.searchParams.set(key, value);
    }
    const checks: AuthorizationChecks = { state: flow.state, nonce: flow.nonce, codeVerifier: flow.codeVerifier };
    try {
      const claims = await client.exchange(callbackUrl, checks);
      const result = await login.complete({ claims, intentStartToken: flow.intent, context: { ip: request.ip } });
      reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
      if (result.kind === 'intent_confirm') {
        const confirmToken = randomBytes(32).toString('base64url');
        await reservations.reserve(confirmKey(confirmToken), CONFIRM_TTL_SECONDS + 3600, {
          intentId: result.summary.intentId,
          telegramId: result.telegramId,
          userId: result.userId,
          ...(flow.returnTo ? { returnTo: flow.returnTo } : {}),
          expiresAt: clock.now().getTime() + CONFIRM_TTL_SECONDS * 1000,
        });
        const device = describeBrowser(result.summary.userAgent);
        const ip = result.summary.ip ?? 'unknown';
        if (wantsHtml(request)) {
          const time = result.summary.createdAt.toISOString().slice(11, 16);
          const action = `${COOKIE_PATH}/confirm`;
          return reply.type('text/html; charset=utf-8').header('content-security-policy', telegramPageCsp).send(telegramConfirmPage({ service: options.serviceName, device, ip, time, confirmToken, action }));
        }
        return reply.send({ status: 'confirmation_required', confirmToken, device, ip, createdAt: result.summary.createdAt });
      }
      if (result.kind === 'intent_approved') {
        if (flow.returnTo) return reply.redirect(returnUrl(flow.returnTo, publicUrl, { telegram_login: 'approved' }), 303);
        if (wantsHtml(request)) return reply.type('text/html; charset=utf-8').header('content-security-policy', telegramPageCsp).send(telegramLoginPage(telegramLoginTexts.signedIn));
        return reply.send({ status: 'approved' });
      }
      const { tokens } = result;
      if (flow.returnTo) {
        // Tokens ride in the fragment, which browsers never send to a server or put in a Referer.
        return reply.redirect(
          returnUrl(flow.returnTo, publicUrl, { telegram_login: 'ok' }, {
            access_token: tokens.accessToken,
            refresh_token: tokens.refreshToken,
            token_type: tokens.tokenType,
            expires_in: String(tokens.expiresIn),
          }),
          303,
        );
      }
      return reply.send(tokens);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      request.log.info({ code: error.code, reason: error.details.reason }, 'telegram login refused');
      return endWithError(request, reply, error, flow.returnTo);
    }
  });

  // The confirmation page posts a plain HTML form; JSON clients post JSON.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) =>
    done(null, Object.fromEntries(new URLSearchParams(String(body)))),
  );

  app.post('/auth/telegram/confirm', { config: { rateLimit: options.rateLimit } }, async (request, reply) => {
    const { confirmToken, decision } = parseInput(confirmBody, request.body);
    const key = confirmKey(confirmToken);
    const parsed = storedConfirmation.safeParse(await reservations.find(key));
    if (!parsed.success) return endWithError(request, reply, new AppError('invalid_state', 'This confirmation is unknown or already answered.'));
    const pending = parsed.data;
    if (!(await reservations.reserve(`${key}:done`, CONFIRM_TTL_SECONDS + 3600))) {
      return endWithError(request, reply, new AppError('invalid_state', 'This confirmation was already answered.'));
    }
    await reservations.release(key);
    if (pending.expiresAt <= clock.now().getTime()) {
      return endWithError(request, reply, new AppError('expired', 'This confirmation took too long. Start the login again.'), pending.returnTo);
    }
    try {
      await login.answerIntent({ intentId: pending.intentId, telegramId: pending.telegramId, userId: pending.userId, decision });
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      return endWithError(request, reply, error, pending.returnTo);
    }
    reply.header('cache-control', 'no-store');
    const outcome = decision === 'confirm' ? 'approved' : 'rejected';
    if (pending.returnTo) return reply.redirect(returnUrl(pending.returnTo, publicUrl, { telegram_login: outcome }), 303);
    if (wantsHtml(request)) {
      return reply.type('text/html; charset=utf-8').header('content-security-policy', telegramPageCsp).send(telegramLoginPage(decision === 'confirm' ? telegramLoginTexts.signedIn : telegramLoginTexts.cancelled));
    }
    return reply.send({ status: outcome });
  });
};
