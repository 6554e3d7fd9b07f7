import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { InteractionDetails, KoaContextLike, Provider } from 'oidc-provider';
import { AppError } from '../errors.js';
import { registerPageApi } from '../login-page/api.js';
import { brandingOf, escapeHtml, pageCsp, renderConsentBody, renderLoginBody, renderMessageBody, renderShell } from '../login-page/render.js';
import { loginViewOptions, sendPage } from '../login-page/routes.js';
import { chooseLanguage, fill, textsFor } from '../login-page/texts.js';
import type { Config } from '../config.js';
import type { CodeSender } from '../delivery/types.js';
import type { PageLanguage } from '../login-page/texts.js';
import type { Services } from '../services/index.js';
import type { OidcClient } from './clients.js';
import type { HandoverAnswer } from './intent-handover.js';
import { interactionPath } from './provider.js';

export interface OidcRoutesOptions {
  config: Config;
  services: Services;
  provider: Provider;
  clients: OidcClient[];
  codeChannels: readonly string[];
  chatChannels: readonly ('whatsapp' | 'telegram')[];
  rateLimit: object;
  takeApprovedIntent(intentId: string, pollToken: string | undefined): Promise<HandoverAnswer>;
  smsIn?: (language: PageLanguage) => CodeSender | undefined;
}

/** The origins a browser may be sent to after a form on our pages (the logout confirmation). */
export const clientOrigins = (clients: OidcClient[]): string[] =>
  [...new Set(clients.flatMap((client) => [...client.redirect_uris, ...client.post_logout_redirect_uris]).map((uri) => new URL(uri).origin))];

/** The provider's own pages (logout, errors) in the hosted page's look and language. */
export function providerPages(config: Config, clients: OidcClient[]) {
  const branding = brandingOf(config);
  const languageOf = (ctx: KoaContextLike) => {
    const header = ctx.headers?.['accept-language'];
    return chooseLanguage(config.LOGIN_LANGUAGES, { acceptLanguage: Array.isArray(header) ? header[0] : header });
  };
  const page = (ctx: KoaContextLike, title: string, body: string, formTargets: string[] = []) => {
    ctx.type = 'html';
    ctx.set?.('content-security-policy', pageCsp(branding, formTargets));
    ctx.set?.('cache-control', 'no-store');
    ctx.body = renderShell({ language: languageOf(ctx), languages: [languageOf(ctx)], branding, title, body, selfPath: '/login', withScript: false });
  };
  return {
    renderLogout(ctx: KoaContextLike, form: string) {
      const texts = textsFor(languageOf(ctx));
      const buttons = `${form}<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout" class="primary">${escapeHtml(texts.logout_yes)}</button>
<button type="submit" form="op.logoutForm" class="secondary">${escapeHtml(texts.logout_no)}</button>`;
      const title = fill(texts.logout_title, { product: branding.productName });
      page(ctx, title, `<h1>${escapeHtml(title)}</h1>\n${buttons}`, clientOrigins(clients));
    },
    renderLogoutDone(ctx: KoaContextLike) {
      const texts = textsFor(languageOf(ctx));
      page(ctx, texts.logout_done, renderMessageBody(texts.logout_done, ''));
    },
    renderError(ctx: KoaContextLike, out: { error: string; error_description?: string }) {
      const texts = textsFor(languageOf(ctx));
      // The provider's description is English and technical, but it is what a developer needs to fix a wrong request.
      page(ctx, texts.error_title, renderMessageBody(texts.error_title, out.error_description ?? out.error, `<p class="hint"><code>${escapeHtml(out.error)}</code></p>`));
    },
  };
}

export async function oidcRoutes(app: FastifyInstance, options: OidcRoutesOptions): Promise<void> {
  const { config, provider, clients } = options;
  const branding = brandingOf(config);
  const firstParty = new Set(clients.filter((client) => client.first_party).map((client) => client.client_id));
  const clientName = (clientId: unknown) => clients.find((client) => client.client_id === clientId)?.name;

  // The provider speaks raw Node HTTP: its endpoints are handed the request untouched (bodies unread, since the
  // provider parses its own form posts), and Fastify steps aside for the response.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    const handle = provider.callback();
    const forward = (request: FastifyRequest, reply: FastifyReply) => {
      reply.hijack();
      return new Promise<void>((resolve) => {
        reply.raw.once('close', () => resolve());
        handle(request.raw, reply.raw);
      });
    };
    scope.route({ method: ['GET', 'POST', 'OPTIONS'], url: '/oidc/*', handler: forward });
    scope.get('/.well-known/openid-configuration', forward);
  });

  /** The interaction of this browser, or a clear "expired" when it is gone (or belongs to another tab). */
  async function interactionOf(request: FastifyRequest<{ Params: { uid: string } }>, reply: FastifyReply): Promise<InteractionDetails> {
    let details: InteractionDetails | undefined;
    try {
      details = await provider.interactionDetails(request.raw, reply.raw);
    } catch {
      details = undefined;
    }
    if (!details || details.uid !== request.params.uid) {
      throw new AppError('expired', 'This sign-in attempt has expired or was already finished. Go back to the app and start again.', { reason: 'session_expired' });
    }
    return details;
  }

  app.get<{ Params: { uid: string }; Querystring: { lang?: string } }>('/oidc/interaction/:uid', async (request, reply) => {
    let details: InteractionDetails | undefined;
    try {
      details = await interactionOf(request, reply);
    } catch {
      const language = chooseLanguage(config.LOGIN_LANGUAGES, { explicit: request.query.lang, acceptLanguage: request.headers['accept-language'] });
      const texts = textsFor(language);
      const html = renderShell({ language, languages: config.LOGIN_LANGUAGES, branding, title: texts.error_title, selfPath: request.url.split('?')[0]!, withScript: false, body: renderMessageBody(texts.error_title, texts.interaction_expired) });
      return sendPage(reply, html, pageCsp(branding), 410);
    }
    const language = chooseLanguage(config.LOGIN_LANGUAGES, {
      explicit: request.query.lang,
      uiLocales: typeof details.params.ui_locales === 'string' ? details.params.ui_locales : undefined,
      acceptLanguage: request.headers['accept-language'],
    });
    const texts = textsFor(language);
    const appName = clientName(details.params.client_id) ?? String(details.params.client_id ?? '');
    const api = `${interactionPath(details.uid)}/api`;
    const shell = { language, languages: config.LOGIN_LANGUAGES, branding, selfPath: interactionPath(details.uid) };
    if (details.prompt.name === 'consent') {
      // Our own apps ask no one's permission (an app asking for offline_access still goes through this step).
      if (firstParty.has(String(details.params.client_id))) return reply.redirect(await grantConsent(request, reply, details), 303);
      const scopes = String(details.params.scope ?? '').split(' ');
      const body = renderConsentBody(texts, appName, branding.productName, scopes);
      return sendPage(reply, renderShell({ ...shell, title: fill(texts.consent_title, { app: appName }), data: { api, view: 'consent' }, body }), pageCsp(branding));
    }
    const body = renderLoginBody({ ...loginViewOptions(config, options, language, request.headers['accept-language']), appName }, branding.productName);
    return sendPage(reply, renderShell({ ...shell, title: texts.title, data: { api, view: 'login' }, body }), pageCsp(branding));
  });

  /** Grants what the consent step asks for and finishes it; returns where the browser goes next. */
  async function grantConsent(request: FastifyRequest, reply: FastifyReply, details: InteractionDetails): Promise<string> {
    if (details.prompt.name !== 'consent' || !details.session?.accountId) throw new AppError('invalid_request', 'There is nothing to consent to in this step.');
    const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
    const found = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    const grant = found ?? new provider.Grant({ accountId: details.session.accountId, clientId: String(details.params.client_id) });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
    const grantId = await grant.save();
    return provider.interactionResult(request.raw, reply.raw, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  const loginPrompt = async (request: FastifyRequest, reply: FastifyReply) => {
    const details = await interactionOf(request as FastifyRequest<{ Params: { uid: string } }>, reply);
    if (details.prompt.name !== 'login') throw new AppError('invalid_request', 'This sign-in step is already done.');
  };

  const finishLogin = async (request: FastifyRequest, reply: FastifyReply, accountId: string, channel: string) => {
    const redirectTo = await provider.interactionResult(request.raw, reply.raw, { login: { accountId, amr: [channel] } }, { mergeWithLastSubmission: false });
    return { redirectTo };
  };

  await registerPageApi(app, {
    prefix: '/oidc/interaction/:uid/api',
    services: options.services,
    defaultCountry: config.DEFAULT_COUNTRY,
    testNumbers: config.OTP_TEST_NUMBERS,
    rateLimit: options.rateLimit,
    guard: loginPrompt,
    smsIn: options.smsIn,
    complete: (request, reply, user, channel) => finishLogin(request, reply, user._id.toString(), channel),
    async pollIntent(request, reply, intentId, pollToken) {
      const answer = await options.takeApprovedIntent(intentId, pollToken);
      if (answer.status !== 'approved') return { status: answer.status };
      return { status: 'approved', next: await finishLogin(request, reply, answer.user._id.toString(), answer.channel) };
    },
  });

  app.post<{ Params: { uid: string } }>('/oidc/interaction/:uid/api/consent', { config: { rateLimit: options.rateLimit } }, async (request, reply) => {
    const details = await interactionOf(request, reply);
    return { redirectTo: await grantConsent(request, reply, details) };
  });

  app.post<{ Params: { uid: string } }>('/oidc/interaction/:uid/api/abort', { config: { rateLimit: options.rateLimit } }, async (request, reply) => {
    await interactionOf(request, reply);
    const result = { error: 'access_denied', error_description: 'The person declined to sign in.' };
    return { redirectTo: await provider.interactionResult(request.raw, reply.raw, result, { mergeWithLastSubmission: false }) };
  });
}
