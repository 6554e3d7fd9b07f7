import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { AppError } from './errors.js';

export interface ParsedPhone {
  /** E.164, e.g. +919812345678 */
  e164: string;
  /** ISO 3166-1 alpha-2, undefined for non-geographic numbers */
  country: string | undefined;
}

/**
 * Accepts E.164 or a national number of the default country. Numbers listed in `exceptions` (test numbers)
 * are accepted when merely possible, since reserved ranges such as +1 555 01xx are never "valid".
 */
export function parsePhone(input: string, defaultCountry?: string, exceptions?: ReadonlyMap<string, unknown>): ParsedPhone {
  const parsed = parsePhoneNumberFromString(input.trim(), defaultCountry as CountryCode | undefined);
  if (!parsed) throw new AppError('invalid_phone', 'That is not a phone number we can read. Use the +<country code> form.');
  const acceptable = parsed.isValid() || (exceptions?.has(parsed.number) === true && parsed.isPossible());
  if (!acceptable) throw new AppError('invalid_phone', 'That phone number is not valid.');
  return { e164: parsed.number, country: parsed.country };
}

/**
 * The E.164 number of a WhatsApp sender, from the wa_id Meta reports, or undefined when it is not a valid number.
 * Meta's wa_id is not always E.164, in two documented ways: Mexican mobiles keep the old mobile prefix 1 after the
 * country code (521 + 10 digits; E.164 is +52 + 10 digits), and Brazilian mobiles registered before the ninth digit
 * was added come without it (55 + area code + 8 digits). Replies still go to the wa_id as Meta gave it.
 */
export function whatsappIdToE164(waId: string): string | undefined {
  let digits = waId;
  const mexicanMobile = /^521(\d{10})$/.exec(digits);
  if (mexicanMobile) digits = `52${mexicanMobile[1]}`;
  // Brazilian mobile subscriber numbers start with 6 to 9; landlines (2 to 5) legitimately have eight digits.
  const brazilianWithoutNinth = /^55(\d{2})([6-9]\d{7})$/.exec(digits);
  if (brazilianWithoutNinth) digits = `55${brazilianWithoutNinth[1]}9${brazilianWithoutNinth[2]}`;
  const parsed = parsePhoneNumberFromString(`+${digits}`);
  return parsed?.isValid() ? parsed.number : undefined;
}

/** Phone numbers in logs keep the country code and the last two digits only. */
export function maskPhone(phone: string | null | undefined): string | undefined {
  if (!phone) return undefined;
  if (phone.length <= 6) return '***';
  return `${phone.slice(0, 3)}${'*'.repeat(phone.length - 5)}${phone.slice(-2)}`;
}
