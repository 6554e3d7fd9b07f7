// npm run telegram:webhook: registers PUBLIC_URL/webhooks/telegram with Telegram (setWebhook), with the secret.
import { registerTelegramWebhook } from '../bots/telegram/register-webhook.js';
import { ConfigError, loadConfig } from '../src/config.js';

try {
  const config = loadConfig();
  if (!config.TELEGRAM_BOT_TOKEN || !config.TELEGRAM_WEBHOOK_SECRET || !config.PUBLIC_URL) {
    throw new ConfigError(['TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET and PUBLIC_URL: all three are needed to register the webhook']);
  }
  const url = await registerTelegramWebhook({
    token: config.TELEGRAM_BOT_TOKEN,
    apiRoot: config.TELEGRAM_API_ROOT,
    publicUrl: config.PUBLIC_URL,
    secret: config.TELEGRAM_WEBHOOK_SECRET,
  });
  process.stdout.write(`Telegram will send updates to ${url}\n`);
} catch (error) {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
