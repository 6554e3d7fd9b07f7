import { Types } from 'mongoose';
import type { Account } from 'oidc-provider';
import type { User } from '../../models/user.js';
import type { IdentityService } from '../services/identities.js';

/** The claims a user can be described by; which ones a client sees depends on the scopes it was granted. */
export function userClaims(user: User): Record<string, unknown> & { sub: string } {
  const claims: Record<string, unknown> & { sub: string } = { sub: user._id.toString() };
  if (user.phone) {
    claims.phone_number = user.phone;
    // Every way a phone reaches a user proves it (an SMS or WhatsApp code, a WhatsApp message, Telegram's contact card).
    claims.phone_number_verified = true;
  }
  if (user.telegram?.firstName) claims.name = user.telegram.firstName;
  if (user.telegram?.username) claims.preferred_username = user.telegram.username;
  return claims;
}

/** oidc-provider's findAccount: our users, by id; blocked or deleted users are no account at all. */
export function createAccountFinder(identities: IdentityService) {
  return async (_ctx: unknown, id: string): Promise<Account | undefined> => {
    if (!Types.ObjectId.isValid(id)) return undefined;
    const user = await identities.findById(id);
    if (!user || user.status === 'blocked') return undefined;
    return { accountId: id, claims: () => userClaims(user) };
  };
}
