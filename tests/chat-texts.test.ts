import { describe, expect, it } from 'vitest';
import { chatTextsIn, chatTexts, chatTranslations, defaultChatTexts, type ChatTextKey } from '../src/chat-texts.js';

const placeholders = (text: string) => [...text.matchAll(/\{(\w+)\}/g)].map((match) => match[1]).sort();

describe('chat translations', () => {
  it('use only known keys, each with the same placeholders as the English text', () => {
    for (const [language, texts] of Object.entries(chatTranslations)) {
      for (const [key, text] of Object.entries(texts)) {
        expect(Object.keys(defaultChatTexts), `${language}.${key}`).toContain(key);
        expect(placeholders(text), `${language}.${key}`).toEqual(placeholders(defaultChatTexts[key as ChatTextKey]));
      }
    }
  });

  it('keep button titles within WhatsApp’s 20 characters', () => {
    for (const texts of Object.values(chatTranslations)) {
      expect(texts.confirmButton!.length).toBeLessThanOrEqual(20);
      expect(texts.cancelButton!.length).toBeLessThanOrEqual(20);
    }
  });

  it('fall back to the English text for keys a language lacks, and leave an English override to English', () => {
    const texts = chatTexts({ CHAT_TEXTS: { approved: 'All set.', help: 'Ask us.' } });
    expect(chatTextsIn(texts, 'es').approved).toBe(chatTranslations.es.approved);
    expect(chatTextsIn(texts, 'es').help).toBe('Ask us.');
    expect(chatTextsIn(texts, 'en').approved).toBe('All set.');
    expect(chatTextsIn(texts, null).approved).toBe('All set.');
  });
});
