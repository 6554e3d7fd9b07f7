import en from './texts/en.json' with { type: 'json' };
import es from './texts/es.json' with { type: 'json' };
import hi from './texts/hi.json' with { type: 'json' };
import pt from './texts/pt.json' with { type: 'json' };

// The page's words, one file per language (texts/*.json), keyed by message. English sets the keys; the typecheck
// below refuses a language that lacks one.

export type TextKey = keyof typeof en;
export type PageTexts = Record<TextKey, string>;
export const pageLanguages = ['en', 'es', 'pt', 'hi'] as const;
export type PageLanguage = (typeof pageLanguages)[number];

// Typed as complete: a missing key in one language fails the typecheck here.
const all: Record<PageLanguage, PageTexts> = { en, es, pt, hi };

export const textsFor = (language: PageLanguage): PageTexts => all[language];

/** Fills {placeholders}; the values are plain text (the templates escape what they print). */
export function fill(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => (name in values ? String(values[name]) : whole));
}

/**
 * The language to show: an explicit choice on the page (?lang=), then the OIDC request's ui_locales, then the
 * browser's Accept-Language, then English. Only the languages the deployment offers count.
 */
export function chooseLanguage(
  offered: readonly PageLanguage[],
  sources: { explicit?: string | undefined; uiLocales?: string | undefined; acceptLanguage?: string | undefined },
): PageLanguage {
  const pick = (tag: string): PageLanguage | undefined => {
    const base = tag.trim().toLowerCase().split(/[-_;]/)[0] ?? '';
    return offered.find((language) => language === base);
  };
  if (sources.explicit) {
    const chosen = pick(sources.explicit);
    if (chosen) return chosen;
  }
  for (const tag of (sources.uiLocales ?? '').split(/\s+/).filter(Boolean)) {
    const chosen = pick(tag);
    if (chosen) return chosen;
  }
  const weighted = (sources.acceptLanguage ?? '')
    .split(',')
    .map((part) => {
      const [tag = '', ...params] = part.trim().split(';');
      const q = params.find((param) => param.trim().startsWith('q='));
      return { tag, q: q ? Number(q.trim().slice(2)) || 0 : 1 };
    })
    .filter((entry) => entry.tag && entry.q > 0)
    .sort((a, b) => b.q - a.q);
  for (const { tag } of weighted) {
    const chosen = pick(tag);
    if (chosen) return chosen;
  }
  return offered.includes('en') ? 'en' : offered[0]!;
}
