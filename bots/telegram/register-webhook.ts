import { Telegram } from 'telegraf';

export interface WebhookRegistration {
  token: string;
  apiRoot: string;
  publicUrl: string;
  secret: string;
}

/** Tells Telegram where to send updates, with the secret it must send back in X-Telegram-Bot-Api-Secret-Token. */
export async function registerTelegramWebhook(registration: WebhookRegistration): Promise<string> {
  const url = `${registration.publicUrl.replace(/\/$/, '')}/webhooks/telegram`;
  const telegram = new Telegram(registration.token, { apiRoot: registration.apiRoot });
  await telegram.setWebhook(url, { secret_token: registration.secret, allowed_updates: ['message', 'callback_query'] });
  return url;
}
