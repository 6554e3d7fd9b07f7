import { getCountries, getCountryCallingCode, type CountryCode } from 'libphonenumber-js';

export interface CountryOption {
  code: CountryCode;
  name: string;
  dial: string;
}

const cache = new Map<string, CountryOption[]>();

/** The country selector's entries: libphonenumber's countries, named in the page's language, sorted by name. */
export function countryOptions(language: string, allowed?: readonly string[]): CountryOption[] {
  const key = `${language}|${allowed?.join(',') ?? ''}`;
  const cached = cache.get(key);
  if (cached) return cached;
  const names = new Intl.DisplayNames([language, 'en'], { type: 'region' });
  const collator = new Intl.Collator(language);
  const options = getCountries()
    .filter((code) => !allowed || allowed.includes(code))
    .map((code) => ({ code, name: names.of(code) ?? code, dial: `+${getCountryCallingCode(code)}` }))
    .sort((a, b) => collator.compare(a.name, b.name));
  cache.set(key, options);
  return options;
}
