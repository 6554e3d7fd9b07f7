import { describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';

const { app, database } = await buildTestApp();
const identities = app.services.identities;
const users = () => database.connection.collection('users');

describe('resolving a person', () => {
  it('makes one user of many concurrent first resolutions by Telegram id, keeping the profile fresh', async () => {
    const resolved = await Promise.all(Array.from({ length: 30 }, () => identities.resolveByTelegram({ id: 5_550_001, username: 'ann', firstName: 'Ann' })));
    expect(new Set(resolved.map((user) => user._id.toString())).size).toBe(1);
    expect(await users().countDocuments({ 'telegram.id': 5_550_001 })).toBe(1);
    const renamed = await identities.resolveByTelegram({ id: 5_550_001, username: 'ann_b', firstName: 'Annie' });
    expect(renamed).toMatchObject({ _id: resolved[0]!._id, telegram: { id: 5_550_001, username: 'ann_b', firstName: 'Annie' } });
  });

  it('makes one user of many concurrent first resolutions by WhatsApp sender, the same as by phone', async () => {
    const resolved = await Promise.all(Array.from({ length: 30 }, () => identities.resolveByWhatsApp({ waId: '447911222333' })));
    expect(new Set(resolved.map((user) => user._id.toString())).size).toBe(1);
    expect((await identities.resolveByPhone('+447911222333'))._id.toString()).toBe(resolved[0]!._id.toString());
    expect(await users().countDocuments({ phone: '+447911222333' })).toBe(1);
  });

  it('makes one user of many concurrent first resolutions by business-scoped id alone', async () => {
    const resolved = await Promise.all(Array.from({ length: 30 }, () => identities.resolveByWhatsApp({ userId: 'GB.1234567890' })));
    expect(new Set(resolved.map((user) => user._id.toString())).size).toBe(1);
    expect(resolved[0]!.phone).toBeUndefined();
  });

  it('lets many users exist without a phone, a Telegram id or a WhatsApp id (unique only when present)', async () => {
    await identities.resolveByTelegram({ id: 5_550_002 });
    await identities.resolveByTelegram({ id: 5_550_003 });
    expect(await users().countDocuments({ phone: { $exists: false } })).toBeGreaterThanOrEqual(2);
  });
});

describe('linking a phone shared in Telegram', () => {
  it('survives concurrent attempts for one person: the phone’s user ends up with the Telegram id, once', async () => {
    const phone = '+447911333444';
    const owner = await identities.resolveByPhone(phone);
    const telegramOnly = await identities.resolveByTelegram({ id: 5_550_100, firstName: 'Bo' });
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => identities.linkPhoneToTelegram({ id: 5_550_100, firstName: 'Bo' }, phone)));
    expect(outcomes.map((result) => result.outcome)).toContain('merged');
    expect(outcomes.every((result) => ['merged', 'busy', 'already_linked'].includes(result.outcome))).toBe(true);
    const holders = await users().find({ 'telegram.id': 5_550_100 }).toArray();
    expect(holders.map((user) => user._id.toString())).toEqual([owner._id.toString()]);
    expect(await users().findOne({ _id: telegramOnly._id })).toBeNull();
  });

  it('links a phone nobody has to the Telegram user', async () => {
    const result = await identities.linkPhoneToTelegram({ id: 5_550_101 }, '+447911333445');
    expect(result).toMatchObject({ outcome: 'linked', user: { phone: '+447911333445', telegram: { id: 5_550_101 } } });
  });
});
