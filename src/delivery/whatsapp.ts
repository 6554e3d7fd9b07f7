import { Client, MessageType, type WhatsappError } from '@great-detail/whatsapp';
import { HTTPError, TimeoutError } from 'ky';
import { DeliveryError } from '../errors.js';
import type { CodeSender } from './types.js';

export interface WhatsAppSettings {
  graphUrl: string;
  apiVersion: string;
  accessToken: string;
  phoneNumberId: string;
  timeoutMs: number;
}

/** Who a message goes to: a phone (`+<digits>`, as Meta advises), or the business-scoped user id of a sender who hides it. */
export type WhatsAppAddress = { phone: string } | { userId: string };

export interface ReplyButton {
  id: string;
  title: string;
}

/** The Graph API calls the gateway makes, through the maintained @great-detail/whatsapp client. */
export function createWhatsAppClient(settings: WhatsAppSettings) {
  // 9.x builds ky's `baseUrl` as `<graph>/<version>` without a trailing slash, so URL resolution drops the version
  // segment (`v23.0/123/messages` becomes `/123/messages`). A `prefix` makes every call's URL absolute and whole.
  const sdk = new Client({
    baseUrl: settings.graphUrl,
    graphVersion: settings.apiVersion,
    request: {
      prefix: `${settings.graphUrl.replace(/\/+$/, '')}/${settings.apiVersion}`,
      headers: { Authorization: `Bearer ${settings.accessToken}` },
      retry: 0,
    },
  });

  // The client ignores a timeout given at construction; it must come with each call.
  const perCall = { timeout: settings.timeoutMs };

  // `recipient` (a BSUID) is newer than the client's types; the client sends extra fields through as they are.
  const addressed = (to: WhatsAppAddress) => ('phone' in to ? { to: to.phone } : ({ recipient: to.userId } as unknown as { to: string }));

  async function send(payload: Parameters<typeof sdk.message.createMessage>[0]): Promise<string | undefined> {
    try {
      const answer = await sdk.message.createMessage(payload).json();
      return answer.messages?.[0]?.id;
    } catch (error) {
      throw await asDeliveryError(error);
    }
  }

  return {
    sendText(to: WhatsAppAddress, body: string) {
      return send({ phoneNumberID: settings.phoneNumberId, ...addressed(to), type: MessageType.Text, text: { body }, request: perCall });
    },

    /** An interactive message with up to three reply buttons; the button ids come back in the webhook. */
    sendButtons(to: WhatsAppAddress, body: string, buttons: ReplyButton[]) {
      return send({
        phoneNumberID: settings.phoneNumberId,
        ...addressed(to),
        type: MessageType.Interactive,
        interactive: {
          type: 'button',
          body: { text: body.slice(0, 1024) },
          action: { buttons: buttons.map((button) => ({ type: 'reply', reply: { id: button.id, title: button.title.slice(0, 20) } })) },
        },
        request: perCall,
      });
    },

    /** An authentication template: the code as body parameter and as the copy-code button's parameter. */
    sendAuthenticationCode(phone: string, code: string, template: { name: string; language: string }) {
      return send({
        phoneNumberID: settings.phoneNumberId,
        to: phone,
        type: MessageType.Template,
        template: {
          name: template.name,
          language: { code: template.language },
          components: [
            { type: 'body', parameters: [{ type: 'text', text: code }] },
            { type: 'button', sub_type: 'url', index: '0', parameters: [{ type: 'text', text: code }] },
          ],
        },
        request: perCall,
      } as Parameters<typeof sdk.message.createMessage>[0]);
    },
  };
}

export type WhatsAppClient = ReturnType<typeof createWhatsAppClient>;

/** Codes asked for on the web with channel "whatsapp": business-initiated, so they go out as a template. */
export function createWhatsAppCodeSender(client: WhatsAppClient, template: { name: string; language: string }): CodeSender {
  return {
    channel: 'whatsapp',
    provider: 'whatsapp-cloud-api',
    canReach: () => true,
    async send({ phone, code }) {
      await client.sendAuthenticationCode(phone, code, template);
    },
  };
}

async function asDeliveryError(error: unknown): Promise<DeliveryError> {
  if (error instanceof HTTPError) {
    // ky 2 has already read the body into `data` (the response's own body is consumed).
    const body = error.data as { error?: WhatsappError } | string | undefined;
    const graph = typeof body === 'object' ? body.error : undefined;
    return new DeliveryError('whatsapp', `Graph API answered ${error.response.status}: ${graph?.message ?? error.response.statusText}`, {
      status: error.response.status,
      errorCode: graph?.code,
      type: graph?.type,
      fbtraceId: graph?.fbtrace_id,
    });
  }
  if (error instanceof TimeoutError) return new DeliveryError('whatsapp', 'Graph API did not answer in time');
  return new DeliveryError('whatsapp', `Graph API unreachable: ${error instanceof Error ? error.message : String(error)}`);
}
