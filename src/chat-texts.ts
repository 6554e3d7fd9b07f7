import Bowser from 'bowser';
import type { Config } from './config.js';
import es from './chat-texts/es.json' with { type: 'json' };
import hi from './chat-texts/hi.json' with { type: 'json' };
import pt from './chat-texts/pt.json' with { type: 'json' };

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
  tooManyLoginCodes: 'Too many wrong sign-in codes. Try again in {minutes} minutes.',
  notYours: 'This sign-in request belongs to another account.',
  blocked: 'This account is blocked.',
  otpCode: 'Your {service} code is {code}. Enter it on the website with your phone number {phone}. It expires in {minutes} minutes. Never share it.',
  otpNeedsPhone: 'I need your phone number for that. Share it with the button below, then send /otp again.',
  unreadableNumber: 'Sorry, we cannot read your phone number as a number we can sign in, so I cannot help with it here. Please sign in on the website instead.',
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

// The languages a sign-in started on the hosted page can speak in the chat (the page's languages). Only the texts of
// a sign-in (prompt, buttons, answers) are translated, in chat-texts/*.json keyed like defaultChatTexts; everything
// else, and any key a language lacks, stays English. CHAT_TEXTS overrides English only: translations are kept.
export const chatLanguages = ['en', 'es', 'pt', 'hi'] as const;
export type ChatLanguage = (typeof chatLanguages)[number];
export const chatTranslations: Record<Exclude<ChatLanguage, 'en'>, Partial<ChatTexts>> = { es, pt, hi };

/** The texts in a sign-in's language: its translations over the (possibly overridden) English ones. */
export function chatTextsIn(texts: ChatTexts, language: ChatLanguage | null | undefined): ChatTexts {
  if (!language || language === 'en') return texts;
  return { ...texts, ...chatTranslations[language] };
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
    refusal(this: void, code: string, retryAfter?: unknown): string {
      switch (code) {
        case 'rate_limited':
          return say('tooManyLoginCodes', { minutes: Math.max(1, Math.ceil(Number(retryAfter ?? 3600) / 60)) });
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
        userAgent: describeDevice(request.userAgent),
        ip: request.ip ?? 'unknown',
        time: `${request.createdAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      });
    },
  };
}

// The names the parser knows: whatever else a user agent claims to be is not shown.
const KNOWN_BROWSERS = new Set<string>(Object.values(Bowser.BROWSER_MAP));
const KNOWN_SYSTEMS = new Set<string>(Object.values(Bowser.OS_MAP));
const MAJOR_VERSION = /^\d{1,4}/;

/**
 * What the confirmation prompt says about the browser that asked. Whoever creates a login intent writes its
 * User-Agent, so the prompt never repeats it: only a browser and system name the parser knows, with major versions,
 * and only letters, digits, spaces and dots (no links, no chat markup, no control or bidi characters), at most 60.
 */
export function describeDevice(userAgent: string | null | undefined): string {
  if (!userAgent) return 'unknown browser';
  const { browser, os } = Bowser.parse(userAgent);
  const browserName = browser.name && KNOWN_BROWSERS.has(browser.name) ? browser.name : undefined;
  const systemName = os.name && KNOWN_SYSTEMS.has(os.name) ? os.name : undefined;
  if (!browserName && !systemName) return 'unknown browser';
  const browserVersion = MAJOR_VERSION.exec(browser.version ?? '')?.[0];
  const systemVersion = MAJOR_VERSION.exec(os.versionName ?? '')?.[0] ?? (os.versionName && /^[A-Za-z ]{1,20}$/.test(os.versionName) ? os.versionName : undefined);
  const browserPart = browserName ? [browserName, browserVersion].filter(Boolean).join(' ') : 'unknown browser';
  const systemPart = systemName ? [systemName, systemVersion].filter(Boolean).join(' ') : undefined;
  const text = systemPart ? `${browserPart} on ${systemPart}` : browserPart;
  return text.replace(/[^A-Za-z0-9 .]/g, '').slice(0, 60);
}
