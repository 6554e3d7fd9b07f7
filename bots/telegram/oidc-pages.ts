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
};

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!);

/** A small page that says how the login ended. */
export function telegramLoginPage(message: string, options: { retryUrl?: string } = {}): string {
  const retry = options.retryUrl ? `<p><a href="${escapeHtml(options.retryUrl)}">${escapeHtml(telegramLoginTexts.tryAgain)}</a></p>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(telegramLoginTexts.title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:15vh auto;padding:0 1rem;color:#1f2328}h1{font-size:1.25rem}a{color:#2481cc}</style>
</head><body><main><h1>${escapeHtml(telegramLoginTexts.title)}</h1><p>${escapeHtml(message)}</p>${retry}</main></body></html>`;
}
