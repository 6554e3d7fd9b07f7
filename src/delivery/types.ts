import type { Channel } from '../../models/channels.js';
import type { User } from '../../models/user.js';

/** A one-time code on its way to a person. */
export interface CodeMessage {
  channel: Channel;
  /** E.164 */
  phone: string;
  /** The user behind the phone, when known: chat channels address them by their chat id. */
  user?: User | null | undefined;
  code: string;
  /** The rendered OTP_MESSAGE. */
  text: string;
  ttlMinutes: number;
}

/** One provider of one channel. Throws DeliveryError when the provider refuses or does not answer. */
export interface CodeSender {
  readonly channel: Channel;
  readonly provider: string;
  /** False when this sender cannot reach the user (e.g. no Telegram account linked to the phone). */
  canReach(message: Pick<CodeMessage, 'phone' | 'user'>): boolean;
  /**
   * For senders that must ask their provider whether it can reach a phone (the Telegram Gateway): the sender to use
   * for this message, or null when the provider cannot reach the phone. Throws DeliveryError when the provider fails.
   */
  prepare?(message: Pick<CodeMessage, 'phone' | 'user'>): Promise<CodeSender | null>;
  send(message: CodeMessage): Promise<void>;
}

export const renderCodeText = (template: string, code: string, minutes: number): string =>
  template.replaceAll('{code}', code).replaceAll('{minutes}', String(minutes));
