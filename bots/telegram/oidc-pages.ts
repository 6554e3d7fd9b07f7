import { createHash } from 'node:crypto';
import type { ErrorCode } from '../../src/errors.js';

// What a person reads at the end of "Log in with Telegram" when no return_to page takes over.
export const telegramLoginTexts = {
  title: 'Log in with Telegram',
  signedIn: 'You are signed in. You can close this tab and go back to the page where you started.',
  tryAgain: 'Start again',
  errors: {
    access_denied: 'You did not allow the login in Telegram. Nothing was shared.',
    invalid_state: 'This login link does not belong to this browser, or it was already used. Start the login again.',
    invalid_token: 'Telegram’s answer could not be verified. Start the login again.',
    token_expired: 'Telegram’s answer came too late. Start the login again.',
    expired: 'This login took too long. Start the login again.',
    user_blocked: 'This account is blocked.',
    service_unavailable: 'Telegram did not answer. Try again in a moment.',
  } as Partial<Record<ErrorCode, string>>,
  fallbackError: 'The login did not work. Start the login again.',
  confirmTitle: 'Sign in this browser?',
  confirmBody: 'Telegram confirmed your account. A browser asks to be signed in to {service} with it: {device}, IP {ip}, started at {time} UTC. Confirm only if that browser is yours.',
  confirmButton: 'Confirm',
  cancelButton: 'Cancel',
  cancelled: 'Cancelled. That browser was not signed in.',
};

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!);

const style =
  'body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:15vh auto;padding:0 1rem;color:#1f2328}h1{font-size:1.25rem}a{color:#2481cc}button{font:inherit;padding:.5rem 1.25rem;margin-right:.5rem;border-radius:.5rem;border:1px solid #2481cc;background:#fff;color:#2481cc}button[value=confirm]{background:#2481cc;color:#fff}';

/**
 * The CSP of these pages: the gateway's default (form-action 'none', no styles) would block the confirmation form in
 * a browser. Only this one inline stylesheet (by its hash) and forms posting back to the gateway are allowed.
 */
export const telegramPageCsp = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(style).digest('base64')}'`,
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

function page(title: string, content: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${style}</style>
</head><body><main><h1>${escapeHtml(title)}</h1>${content}</main></body></html>`;
}

/** A small page that says how the login ended. */
export function telegramLoginPage(message: string, options: { retryUrl?: string } = {}): string {
  const retry = options.retryUrl ? `<p><a href="${escapeHtml(options.retryUrl)}">${escapeHtml(telegramLoginTexts.tryAgain)}</a></p>` : '';
  return page(telegramLoginTexts.title, `<p>${escapeHtml(message)}</p>${retry}`);
}

/** Confirm / Cancel for a login intent, showing which browser asked (as the chats' prompt does). */
export function telegramConfirmPage(input: { service: string; device: string; ip: string; time: string; confirmToken: string; action: string }): string {
  const body = telegramLoginTexts.confirmBody
    .replace('{service}', input.service)
    .replace('{device}', input.device)
    .replace('{ip}', input.ip)
    .replace('{time}', input.time);
  return page(
    telegramLoginTexts.confirmTitle,
    `<p>${escapeHtml(body)}</p><form method="post" action="${escapeHtml(input.action)}">` +
      `<input type="hidden" name="confirmToken" value="${escapeHtml(input.confirmToken)}">` +
      `<button type="submit" name="decision" value="confirm">${escapeHtml(telegramLoginTexts.confirmButton)}</button>` +
      `<button type="submit" name="decision" value="cancel">${escapeHtml(telegramLoginTexts.cancelButton)}</button></form>`,
  );
}
