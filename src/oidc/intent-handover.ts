import type { Model } from 'mongoose';
import type { Channel } from '../../models/channels.js';
import type { LoginIntent } from '../../models/login-intent.js';
import type { User } from '../../models/user.js';
import type { Clock } from '../clock.js';
import { assertActiveUser, type IdentityService } from '../services/identities.js';
import type { Reservations } from '../services/reservations.js';
import { findIntentForPollToken } from '../services/login-intents.js';

export type HandoverAnswer = { status: 'pending' | 'rejected' | 'expired' | 'consumed' } | { status: 'approved'; user: User; channel: Channel };

/**
 * The OpenID sign-in's view of a login intent. Like the REST poll it hands an approval over once (the same
 * reservation key, so the two can never both take one intent), but gives the person rather than gateway tokens:
 * the provider issues its own.
 */
export function createIntentHandover(deps: { intents: Model<LoginIntent>; reservations: Reservations; identities: IdentityService; clock: Clock; keepSeconds: number }) {
  const { intents, reservations, identities, clock } = deps;
  return async function takeApprovedIntent(intentId: string, pollToken: string | undefined): Promise<HandoverAnswer> {
    const intent = await findIntentForPollToken(intents, intentId, pollToken);
    const expired = intent.expiresAt.getTime() <= clock.now().getTime();
    if (intent.status === 'pending') return { status: expired ? 'expired' : 'pending' };
    if (intent.status === 'rejected' || intent.status === 'consumed') return { status: intent.status };
    if (expired) return { status: 'expired' };
    const handover = `intent:${intentId}:handover`;
    if (!(await reservations.reserve(handover, deps.keepSeconds))) return { status: 'consumed' };
    try {
      const user = await identities.findById(intent.userId!);
      assertActiveUser(user);
      await intents.updateOne({ _id: intentId }, { $set: { status: 'consumed', consumedAt: clock.now() } });
      return { status: 'approved', user, channel: intent.channel as Channel };
    } catch (error) {
      await reservations.release(handover);
      throw error;
    }
  };
}
