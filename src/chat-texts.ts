import type { Config } from './config.js';

// What the bots say. Plain English by default; CHAT_TEXTS (a JSON object) overrides any of them by key.
// {placeholders} are filled in by renderChatText.
export const defaultChatTexts = {
  help:
    'Hi! I can sign you in to {service}.\n' +
    '• To finish signing in on a website, send the code it shows you, e.g. LOGIN K6DC2Z.\n' +
    '• To get a one-time code for the website, send OTP.',
  telegramWelcome:
    'Hi! I can sign you in to {service}.\n' +
    '• Open the sign-in link from the website to finish signing in there.\n' +
    '• Share your phone number (button below) and send /otp to get one-time codes here instead of by SMS.',
  telegramHelp:
    '/start – open a sign-in link from the website, or start here\n' +
    '/otp – get a one-time code for the website (after sharing your phone)\n' +
    '/help – this message',
  sharePhoneButton: 'Share my phone number',
  confirmPrompt:
    'Sign in to {service}?\nA browser asked to sign in as you:\n• Device: {userAgent}\n• IP address: {ip}\n• Time: {time}\n' +
    'Only confirm if this was you, just now. Never confirm a request someone else sent you.',
  confirmButton: 'Confirm',
  cancelButton: 'Cancel',
  approved: 'Done: the website is now signed in. You can go back to it.',
  rejected: 'Cancelled: that website was not signed in.',
  unknownCode: 'That sign-in code is unknown or has already been used. Start again on the website.',
  expiredCode: 'That sign-in request has expired. Start again on the website.',
  alreadyAnswered: 'That sign-in request was already answered.',
  notYours: 'This sign-in request belongs to another account.',
  blocked: 'This account is blocked.',
  otpCode: 'Your {service} code is {code}. Enter it on the website with your phone number {phone}. It expires in {minutes} minutes. Never share it.',
  otpNeedsPhone: 'I need your phone number for that. Share it with the button below, then send /otp again.',
  otpNeedsVisiblePhone: 'Your WhatsApp account does not show us a phone number, so I cannot send a code for one. Sign in on the website with a LOGIN code instead.',
  otpRateLimited: 'Too many codes for this number. Try again in {seconds} seconds.',
  otpCountryNotAllowed: 'We do not send codes to numbers in this country.',
  phoneLinked: 'Thanks! Your phone number {phone} is now linked. Send /otp whenever you need a code.',
  phoneNotYours: 'Please share your own phone number with the button below, not someone else’s contact.',
  phoneTaken: 'That phone number already belongs to another account, so I cannot link it to this Telegram account.',
  somethingWentWrong: 'Something went wrong on our side. Please try again in a minute.',
} as const;

export type ChatTextKey = keyof typeof defaultChatTexts;
export type ChatTexts = Record<ChatTextKey, string>;

export function chatTexts(config: Pick<Config, 'CHAT_TEXTS'>): ChatTexts {
  // Unknown keys were refused by the config schema.
  return { ...defaultChatTexts, ...config.CHAT_TEXTS } as ChatTexts;
}

export const renderChatText = (template: string, values: Record<string, string | number>): string =>
  template.replace(/\{(\w+)\}/g, (whole, key: string) => (key in values ? String(values[key]) : whole));

/** The bots' common phrasing: texts with the service name filled in, refusals, and the confirmation prompt. */
export function createChatVoice(texts: ChatTexts, serviceName: string) {
  const say = (key: ChatTextKey, values: Record<string, string | number> = {}): string =>
    renderChatText(texts[key], { service: serviceName, ...values });
  // `this: void`: the channels destructure these methods, and none of them uses `this`.
  return {
    say,
    /** Why a sign-in request could not be answered, from the service's error code. */
    refusal(this: void, code: string): string {
      switch (code) {
        case 'expired':
          return say('expiredCode');
        case 'forbidden':
          return say('notYours');
        case 'user_blocked':
          return say('blocked');
        case 'not_found':
          return say('unknownCode');
        default:
          return say('somethingWentWrong');
      }
    },
    /** What to tell someone whose request for a code was refused, for the refusals a person can act on. */
    otpRefusal(this: void, code: string, retryAfter: unknown): string | undefined {
      if (code === 'rate_limited') return say('otpRateLimited', { seconds: Number(retryAfter ?? 30) });
      if (code === 'country_not_allowed') return say('otpCountryNotAllowed');
      return undefined;
    },
    /** What the person is asked to confirm: which browser asked to sign in, from where and when. */
    confirmPrompt(this: void, request: { userAgent: string | null; ip: string | null; createdAt: Date }): string {
      return say('confirmPrompt', {
        userAgent: (request.userAgent ?? 'unknown browser').slice(0, 200),
        ip: request.ip ?? 'unknown',
        time: `${request.createdAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      });
    },
  };
}
