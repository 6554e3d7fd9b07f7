import { chatTextsIn, createChatVoice, type ChatLanguage, type ChatTexts } from '../../src/chat-texts.js';
import type { Clock } from '../../src/clock.js';
import type { WhatsAppAddress, WhatsAppClient } from '../../src/delivery/whatsapp.js';
import type { CodeSender } from '../../src/delivery/types.js';
import { AppError, DeliveryError } from '../../src/errors.js';
import { scrubExternalText } from '../../src/logger.js';
import type { HandlingOutcome } from '../../src/services/inbox.js';
import type { Services } from '../../src/services/index.js';
import type { Claimant, IntentSummary } from '../../src/services/login-intents.js';
import { normalizeIntentCode } from '../../src/services/login-intents.js';
import { whatsappIdToE164 } from '../../src/phone.js';
import type { StoredWhatsAppMessage } from './payload.js';

export interface WhatsAppConversationDeps {
  services: Services;
  client: WhatsAppClient;
  texts: ChatTexts;
  clock: Clock;
  log: { warn(object: object, message: string): void; debug(object: object, message: string): void };
  settings: { requireConfirm: boolean; maxMessageAgeSeconds: number; serviceName: string };
}

interface Sender {
  waId: string | undefined;
  /** The E.164 number behind waId; undefined when WhatsApp shows no number or one we cannot read. */
  phone: string | undefined;
  userId: string | undefined;
  address: WhatsAppAddress;
  claimant: Claimant;
}

const OTP_COMMAND = /^\s*(otp|code)\s*$/i;
const LOGIN_COMMAND = /^\s*login\b[\s:-]*(.*)$/i;
const BARE_CODE = /^[A-Z0-9]{6}$/;
const DECISION = /^(confirm|cancel):([A-Za-z0-9_-]{1,64})$/;

/** Turns one stored WhatsApp message into service calls and a reply. */
export function createWhatsAppConversation(deps: WhatsAppConversationDeps) {
  const { services, client, texts, clock, log, settings } = deps;
  const { say, refusal, otpRefusal } = createChatVoice(texts, settings.serviceName);
  // A sign-in started on the hosted page is prompted and answered in the page's language.
  const voiceIn = (language: ChatLanguage | null) => ({ ...createChatVoice(chatTextsIn(texts, language), settings.serviceName), texts: chatTextsIn(texts, language) });

  // A reply that only reports what already happened on our side: if it fails, log it and move on.
  async function notify(to: WhatsAppAddress, body: string): Promise<void> {
    try {
      await client.sendText(to, body);
    } catch (error) {
      if (!(error instanceof DeliveryError)) throw error;
      log.warn({ provider: error.provider, reason: scrubExternalText(error.message), graph: error.providerDetail }, 'whatsapp reply failed');
    }
  }

  function senderOf({ message, contact }: StoredWhatsAppMessage): Sender | undefined {
    const waId = message.from ?? contact?.wa_id;
    const userId = message.from_user_id ?? contact?.user_id;
    if (!waId && !userId) return undefined;
    const phone = waId ? whatsappIdToE164(waId) : undefined;
    // The user id is stable whether or not the phone shows, so it names the claimant when Meta sends it.
    const claimant: Claimant = { channel: 'whatsapp', subject: userId ? `user:${userId}` : (phone ?? `+${waId}`) };
    // Meta asks for replies to go to the phone when there is one, as it reported it.
    const address: WhatsAppAddress = waId ? { phone: `+${waId}` } : { userId: userId! };
    return { waId, phone, userId, address, claimant };
  }

  async function login(sender: Sender, code: string): Promise<HandlingOutcome> {
    let summary: IntentSummary;
    try {
      summary = await services.loginIntents.claim({ code }, sender.claimant);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      await notify(sender.address, refusal(error.code, error.details.retryAfter));
      return { status: 'handled', outcome: `login_refused:${error.code}` };
    }
    if (!settings.requireConfirm) return decide(sender, 'confirm', summary.intentId);
    const voice = voiceIn(summary.language);
    // The prompt is the effect of this message: if it cannot be sent, the inbox retries the message.
    await client.sendButtons(sender.address, voice.confirmPrompt(summary), [
      { id: `confirm:${summary.intentId}`, title: voice.texts.confirmButton },
      { id: `cancel:${summary.intentId}`, title: voice.texts.cancelButton },
    ]);
    return { status: 'handled', outcome: 'login_confirmation_asked' };
  }

  async function decide(sender: Sender, decision: 'confirm' | 'cancel', intentId: string): Promise<HandlingOutcome> {
    const { say, refusal } = voiceIn(await services.loginIntents.languageOf(intentId));
    try {
      if (decision === 'confirm') {
        const user = await services.identities.resolveByWhatsApp({ waId: sender.waId, phone: sender.phone, userId: sender.userId });
        await services.loginIntents.approve(intentId, sender.claimant, user);
        await notify(sender.address, say('approved'));
        return { status: 'handled', outcome: 'login_approved' };
      }
      await services.loginIntents.reject(intentId, sender.claimant);
      await notify(sender.address, say('rejected'));
      return { status: 'handled', outcome: 'login_rejected' };
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      await notify(sender.address, error.code === 'not_found' ? say('alreadyAnswered') : refusal(error.code));
      return { status: 'handled', outcome: `decision_refused:${error.code}` };
    }
  }

  async function oneTimeCode(sender: Sender): Promise<HandlingOutcome> {
    if (!sender.waId) {
      await notify(sender.address, say('otpNeedsVisiblePhone'));
      return { status: 'handled', outcome: 'otp_refused:no_phone' };
    }
    const phone = sender.phone;
    if (!phone) {
      await notify(sender.address, say('unreadableNumber'));
      return { status: 'handled', outcome: 'otp_refused:unreadable_number' };
    }
    await services.identities.resolveByWhatsApp({ waId: sender.waId, phone, userId: sender.userId });
    // Asked for in the chat, so the code is a reply in the conversation, not a template.
    const inConversation: CodeSender = {
      channel: 'whatsapp',
      provider: 'whatsapp-cloud-api',
      canReach: () => true,
      send: async ({ code, ttlMinutes }) => {
        await client.sendText(sender.address, say('otpCode', { code, phone, minutes: ttlMinutes }));
      },
    };
    try {
      await services.otp.requestCode({ phone, channel: 'whatsapp', via: inConversation });
      return { status: 'handled', outcome: 'otp_sent' };
    } catch (error) {
      // A code that could not be sent is this message's effect missing: let the inbox try again.
      if (!(error instanceof AppError) || error.code === 'delivery_failed') throw error;
      const text = otpRefusal(error.code, error.details.retryAfter);
      if (text) await notify(sender.address, text);
      return { status: 'handled', outcome: `otp_refused:${error.code}` };
    }
  }

  return async function handleWhatsAppMessage(payload: Record<string, unknown>): Promise<HandlingOutcome> {
    const stored = payload as unknown as StoredWhatsAppMessage;
    const { message } = stored;
    const sender = senderOf(stored);
    if (!sender) return { status: 'ignored', outcome: 'no_sender' };
    // A number we cannot read would become a user of its own: say so rather than sign anyone in under it.
    if (sender.waId && !sender.phone && !sender.userId) {
      await notify(sender.address, say('unreadableNumber'));
      return { status: 'handled', outcome: 'unreadable_number' };
    }

    // A message that arrives late (Meta retried it for a while) must not complete a login made long ago.
    const ageSeconds = clock.now().getTime() / 1000 - Number(message.timestamp);
    if (ageSeconds > settings.maxMessageAgeSeconds) return { status: 'ignored', outcome: 'stale' };

    if (message.type === 'interactive' && message.interactive?.button_reply) {
      const match = DECISION.exec(message.interactive.button_reply.id);
      if (!match) return { status: 'ignored', outcome: 'unknown_button' };
      return decide(sender, match[1] as 'confirm' | 'cancel', match[2]!);
    }
    if (message.type !== 'text' || !message.text) {
      log.debug({ type: message.type }, 'whatsapp message type ignored');
      return { status: 'ignored', outcome: `type:${message.type}` };
    }

    const text = message.text.body;
    if (OTP_COMMAND.test(text)) return oneTimeCode(sender);
    const login_ = LOGIN_COMMAND.exec(text);
    const code = normalizeIntentCode(login_ ? login_[1]! : text);
    if (login_ || BARE_CODE.test(code)) return login(sender, code);
    await notify(sender.address, say('help'));
    return { status: 'handled', outcome: 'help' };
  };
}
