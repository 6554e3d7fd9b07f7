import type twilio from 'twilio';
import { DeliveryError } from '../errors.js';
import type { CodeSender } from './types.js';

export interface TwilioSettings {
  accountSid: string;
  authToken: string;
  from?: string | undefined;
  messagingServiceSid?: string | undefined;
  /** Tests hand in a stand-in for Twilio's HTTP layer; production uses the package's own. */
  httpClient?: twilio.RequestClient | undefined;
}

/**
 * SMS through Twilio's Messages API (the official `twilio` package). The package is large (about 9 MiB of memory once
 * loaded), so it is loaded here, when SMS_PROVIDER=twilio builds its sender at start, and never otherwise.
 */
export async function createTwilioSmsSender(settings: TwilioSettings): Promise<CodeSender> {
  const { default: twilio } = await import('twilio');
  const client = twilio(settings.accountSid, settings.authToken, settings.httpClient ? { httpClient: settings.httpClient } : {});
  const sender = settings.messagingServiceSid ? { messagingServiceSid: settings.messagingServiceSid } : { from: settings.from! };
  return {
    channel: 'sms',
    provider: 'twilio',
    canReach: () => true,
    async send({ phone, text }) {
      try {
        await client.messages.create({ to: phone, body: text, ...sender });
      } catch (error) {
        const detail = error as { status?: number; code?: number; message?: string };
        throw new DeliveryError('twilio', `Twilio refused the message: ${detail.message ?? 'unknown error'}`, {
          status: detail.status,
          errorCode: detail.code,
        });
      }
    },
  };
}
