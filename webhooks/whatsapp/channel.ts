import type { ChatChannel } from '../../src/chat-channel.js';
import { whatsappEnabled, type Config } from '../../src/config.js';
import { createWhatsAppClient, createWhatsAppCodeSender } from '../../src/delivery/whatsapp.js';
import { createWhatsAppConversation } from './conversation.js';
import { whatsappLoginLink, whatsappWebhook } from './index.js';

/** WhatsApp, when WHATSAPP_VERIFY_TOKEN and WHATSAPP_APP_SECRET are set (config checked the rest). */
export function whatsappChannel(config: Config): ChatChannel | undefined {
  if (!whatsappEnabled(config)) return undefined;
  const client = createWhatsAppClient({
    graphUrl: config.WHATSAPP_GRAPH_URL,
    apiVersion: config.WHATSAPP_API_VERSION,
    accessToken: config.WHATSAPP_ACCESS_TOKEN!,
    phoneNumberId: config.WHATSAPP_PHONE_NUMBER_ID!,
    timeoutMs: config.WHATSAPP_SEND_TIMEOUT_MS,
  });
  return {
    name: 'whatsapp',
    // Web-requested codes are business-initiated, so they need an approved authentication template.
    codeSender: config.WHATSAPP_OTP_TEMPLATE
      ? createWhatsAppCodeSender(client, { name: config.WHATSAPP_OTP_TEMPLATE, language: config.WHATSAPP_OTP_TEMPLATE_LANGUAGE })
      : undefined,
    links: config.WHATSAPP_DISPLAY_NUMBER ? [whatsappLoginLink(config.WHATSAPP_DISPLAY_NUMBER)] : [],
    usesInbox: true,
    async register(app, { services, texts, clock }) {
      services.inbox.registerHandler(
        'whatsapp',
        createWhatsAppConversation({
          services,
          client,
          texts,
          clock,
          log: app.log,
          settings: {
            requireConfirm: config.INTENT_REQUIRE_CONFIRM,
            maxMessageAgeSeconds: config.WHATSAPP_MAX_MESSAGE_AGE_SECONDS,
            serviceName: config.SERVICE_NAME,
          },
        }),
      );
      await app.register(whatsappWebhook, {
        verifyToken: config.WHATSAPP_VERIFY_TOKEN!,
        appSecret: config.WHATSAPP_APP_SECRET!,
        phoneNumberId: config.WHATSAPP_PHONE_NUMBER_ID!,
        inbox: services.inbox,
        maxBadSignaturesPerMinute: config.WHATSAPP_MAX_BAD_SIGNATURES_PER_MINUTE,
        clock,
      });
      app.log.info({ templateCodes: !!config.WHATSAPP_OTP_TEMPLATE, links: !!config.WHATSAPP_DISPLAY_NUMBER }, 'WhatsApp is on: POST /webhooks/whatsapp');
    },
  };
}
