/** The channels a person can prove themselves on; the same names appear in challenges, tokens (`amr`) and the audit trail. */
export const channels = ['sms', 'whatsapp', 'telegram'] as const;
export type Channel = (typeof channels)[number];
