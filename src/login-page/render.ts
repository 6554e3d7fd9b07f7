import type { Config } from '../config.js';
import type { CountryOption } from './countries.js';
import { fill, textsFor, type PageLanguage, type PageTexts, type TextKey } from './texts.js';

// Server-rendered HTML of the hosted page. Everything printed goes through `html` escaping; the page's only script
// is /login/assets/login.js (no inline script, no inline style: the CSP forbids both).

export const escapeHtml = (value: string): string =>
  value.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!);

export interface Branding {
  productName: string;
  logoUrl?: string | undefined;
}

export const brandingOf = (config: Config): Branding => ({ productName: config.SERVICE_NAME, logoUrl: config.LOGIN_LOGO_URL });

/** The page's Content-Security-Policy: our own files only; `formTargets` are the origins a form may lead to. */
export function pageCsp(branding: Branding, formTargets: readonly string[] = []): string {
  const logoOrigin = branding.logoUrl ? ` ${new URL(branding.logoUrl).origin}` : '';
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self' data:${logoOrigin}`,
    "connect-src 'self'",
    `form-action 'self'${formTargets.map((target) => ` ${target}`).join('')}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
}

export interface ShellOptions {
  language: PageLanguage;
  languages: readonly PageLanguage[];
  branding: Branding;
  title: string;
  body: string;
  /** Where the language links point; `?lang=xx` is appended. */
  selfPath: string;
  /** Given to the script: the page's mode and where its API is. */
  data?: Record<string, string>;
  withScript?: boolean;
}

export function renderShell(options: ShellOptions): string {
  const texts = textsFor(options.language);
  const { branding } = options;
  const dataAttributes = Object.entries(options.data ?? {})
    .map(([name, value]) => ` data-${name}="${escapeHtml(value)}"`)
    .join('');
  const logo = branding.logoUrl ? `<img class="logo" src="${escapeHtml(branding.logoUrl)}" alt="" width="32" height="32">` : '<span class="logo-mark" aria-hidden="true"></span>';
  const languageLinks = options.languages
    .map((language) =>
      language === options.language
        ? `<span aria-current="true" lang="${language}">${escapeHtml(textsFor(language).language_name)}</span>`
        : `<a href="${escapeHtml(`${options.selfPath}?lang=${language}`)}" lang="${language}" hreflang="${language}">${escapeHtml(textsFor(language).language_name)}</a>`,
    )
    .join('');
  // The texts travel as data, not code: a JSON block is never executed, and "<" is escaped so it cannot close the tag.
  const textsJson = JSON.stringify(texts).replace(/</g, '\\u003c');
  return `<!DOCTYPE html>
<html lang="${options.language}" dir="ltr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(options.title)} · ${escapeHtml(branding.productName)}</title>
<link rel="stylesheet" href="/login/assets/login.css">
<link rel="stylesheet" href="/login/assets/theme.css">
${options.withScript === false ? '' : '<script src="/login/assets/login.js" defer></script>'}
</head>
<body>
<main class="card" id="cg"${dataAttributes}>
<header class="brand">${logo}<span class="product">${escapeHtml(branding.productName)}</span></header>
${options.body}
${options.languages.length > 1 ? `<nav class="languages" aria-label="${escapeHtml(texts.language)}">${languageLinks}</nav>` : ''}
</main>
<script type="application/json" id="cg-texts">${textsJson}</script>
</body>
</html>`;
}

export interface LoginViewOptions {
  language: PageLanguage;
  appName?: string | undefined;
  countries: CountryOption[];
  defaultCountry?: string | undefined;
  /** The channels a code can be sent over (the first is preselected). */
  codeChannels: readonly string[];
  /** The chats people can sign in through by confirming a login intent. */
  chatChannels: readonly ('whatsapp' | 'telegram')[];
}

export function renderLoginBody(options: LoginViewOptions, product: string): string {
  const t = textsFor(options.language);
  const text = (key: TextKey) => escapeHtml(t[key]);
  const heading = options.appName ? fill(t.signing_in_to, { app: options.appName }) : fill(t.signing_in_to, { app: product });
  const pick = `<option value=""${options.defaultCountry ? '' : ' selected'}>${text('country_pick')}</option>`;
  const countries = pick + options.countries
    .map((country) => `<option value="${country.code}"${country.code === options.defaultCountry ? ' selected' : ''}>${escapeHtml(country.name)} (${country.dial})</option>`)
    .join('');
  const viaLabel: Record<string, TextKey> = { auto: 'via_auto', sms: 'via_sms', whatsapp: 'via_whatsapp', telegram: 'via_telegram' };
  const channelChoice =
    options.codeChannels.length > 1
      ? `<label for="cg-channel">${text('send_via')}</label>
<select id="cg-channel" name="channel">${options.codeChannels.map((channel) => `<option value="${channel}">${text(viaLabel[channel] ?? 'via_sms')}</option>`).join('')}</select>`
      : '';
  const chatButtons = options.chatChannels
    .map((chat) => `<button type="button" class="chat chat-${chat}" data-chat="${chat}">${text(chat === 'whatsapp' ? 'continue_whatsapp' : 'continue_telegram')}</button>`)
    .join('');
  return `<h1 id="cg-title" tabindex="-1">${escapeHtml(heading)}</h1>
<p class="intro" id="cg-intro">${text('intro')}</p>
<div id="cg-error" class="error" role="alert" aria-live="assertive" hidden></div>
<p id="cg-status" class="status" role="status" aria-live="polite"></p>
<section id="cg-phone-step">
<form id="cg-phone-form" novalidate>
<label for="cg-country">${text('country')}</label>
<select id="cg-country" name="country" autocomplete="country">${countries}</select>
<label for="cg-phone">${text('phone')}</label>
<input id="cg-phone" name="phone" type="tel" autocomplete="tel" inputmode="tel" required aria-describedby="cg-phone-hint">
<p id="cg-phone-hint" class="hint">${text('phone_hint')}</p>
${channelChoice}
<button type="submit" class="primary">${text('send_code')}</button>
</form>
</section>
<section id="cg-code-step" hidden>
<p id="cg-code-sent"></p>
<form id="cg-code-form" novalidate>
<label for="cg-code">${text('code')}</label>
<input id="cg-code" name="code" type="text" autocomplete="one-time-code" inputmode="numeric" pattern="[0-9]*" maxlength="10" required>
<button type="submit" class="primary">${text('sign_in')}</button>
</form>
<div class="row"><button type="button" id="cg-resend" class="secondary" disabled>${text('resend')}</button>
<button type="button" id="cg-change" class="secondary">${text('change_phone')}</button></div>
</section>
${chatButtons ? `<div class="divider" id="cg-divider"><span>${text('or')}</span></div><section id="cg-chat-choices">${chatButtons}</section>` : ''}
<section id="cg-chat-step" hidden>
<img id="cg-qr" class="qr" alt="${text('qr_alt')}" width="220" height="220" hidden>
<p id="cg-chat-scan" class="hint" hidden>${text('chat_scan')}</p>
<a id="cg-chat-link" class="button primary" href="#" target="_blank" rel="noopener noreferrer"></a>
<p id="cg-chat-hint" class="hint"></p>
<p id="cg-chat-waiting" class="waiting">${text('chat_waiting')}</p>
<button type="button" id="cg-chat-cancel" class="secondary">${text('cancel')}</button>
</section>
<section id="cg-restart" hidden><button type="button" id="cg-restart-button" class="primary">${text('start_again')}</button></section>
<section id="cg-done" hidden>
<p id="cg-who"></p>
<h3>${text('claims')}</h3>
<pre id="cg-claims" tabindex="0"></pre>
<button type="button" id="cg-signout" class="secondary">${text('sign_out')}</button>
</section>`;
}

/** A page with a heading, a sentence and optionally a form (logout) or links. */
export function renderMessageBody(heading: string, message: string, extra = ''): string {
  return `<h1>${escapeHtml(heading)}</h1>\n<p class="intro">${escapeHtml(message)}</p>\n${extra}`;
}

export function renderConsentBody(texts: PageTexts, appName: string, product: string, scopes: readonly string[]): string {
  const known: Record<string, TextKey> = { openid: 'consent_openid', phone: 'consent_phone', profile: 'consent_profile', offline_access: 'consent_offline_access' };
  const items = scopes
    .filter((scope) => scope in known)
    .map((scope) => `<li>${escapeHtml(fill(texts[known[scope]!], { product }))}</li>`)
    .join('');
  return `<h1>${escapeHtml(fill(texts.consent_title, { app: appName }))}</h1>
<div id="cg-error" class="error" role="alert" aria-live="assertive" hidden></div>
<ul class="scopes">${items}</ul>
<div class="row"><button type="button" id="cg-allow" class="primary">${escapeHtml(texts.allow)}</button>
<button type="button" id="cg-deny" class="secondary">${escapeHtml(texts.deny)}</button></div>`;
}
