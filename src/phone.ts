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

/** Phone numbers in logs keep the country code and the last two digits only. */
export function maskPhone(phone: string | null | undefined): string | undefined {
  if (!phone) return undefined;
  if (phone.length <= 6) return '***';
  return `${phone.slice(0, 3)}${'*'.repeat(phone.length - 5)}${phone.slice(-2)}`;
}
