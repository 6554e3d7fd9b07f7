import { describe, expect, it } from 'vitest';
import { whatsappIdToE164 } from '../src/phone.js';

describe('WhatsApp ids to E.164', () => {
  it.each([
    ['447911123456', '+447911123456'],
    ['5215512345678', '+525512345678'],
    ['525512345678', '+525512345678'],
    ['551187654321', '+5511987654321'],
    ['5511987654321', '+5511987654321'],
    // A São Paulo landline keeps its eight digits.
    ['551132654321', '+551132654321'],
  ])('reads %s as %s', (waId, e164) => {
    expect(whatsappIdToE164(waId)).toBe(e164);
  });

  it.each(['999123456789', '4412', '1555'])('answers undefined for %s, which is no valid number', (waId) => {
    expect(whatsappIdToE164(waId)).toBeUndefined();
  });
});
