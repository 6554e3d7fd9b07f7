import type { Config } from '../config.js';
import { createConsoleSmsSender } from './console-sms.js';
import { createHttpSmsSender } from './http-sms.js';
import { createTwilioSmsSender, type TwilioSettings } from './twilio-sms.js';
import type { CodeSender } from './types.js';

/** The SMS sender that SMS_PROVIDER names (config has already checked its variables); a provider's SDK loads only here. */
export async function createSmsSender(config: Config, options: { twilioHttpClient?: TwilioSettings['httpClient'] } = {}): Promise<CodeSender> {
  switch (config.SMS_PROVIDER) {
    case 'twilio':
      return createTwilioSmsSender({
        accountSid: config.TWILIO_ACCOUNT_SID!,
        authToken: config.TWILIO_AUTH_TOKEN!,
        from: config.TWILIO_FROM,
        messagingServiceSid: config.TWILIO_MESSAGING_SERVICE_SID,
        httpClient: options.twilioHttpClient,
      });
    case 'http':
      return createHttpSmsSender({ url: config.SMS_HTTP_URL!, secret: config.SMS_HTTP_SECRET!, timeoutMs: config.SMS_HTTP_TIMEOUT_MS });
    case 'console':
    case undefined:
      return createConsoleSmsSender(config.LOG_LEVEL);
  }
}
