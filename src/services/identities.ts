import { Types, type Model } from 'mongoose';
import type { Channel } from '../../models/channels.js';
import type { Session } from '../../models/session.js';
import type { User } from '../../models/user.js';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { whatsappIdToE164 } from '../phone.js';
import { isDuplicateKey, type Reservations } from './reservations.js';

export interface TelegramProfile {
  id: number;
  username?: string | undefined;
  firstName?: string | undefined;
}

export interface WhatsAppProfile {
  /** `wa_id`: the sender's phone digits as WhatsApp reports them, when it shows them (kept for addressing replies). */
  waId?: string | undefined;
  /** The E.164 number behind `waId` (see whatsappIdToE164); the user is keyed by it, so SMS and WhatsApp agree. */
  phone?: string | undefined;
  /** Business-scoped user id of a sender who uses a username instead of showing a phone number. */
  userId?: string | undefined;
}

export type PublicUser = ReturnType<typeof publicUser>;

/** What the API and token responses show of a user. */
export function publicUser(user: User) {
  return {
    id: user._id.toString(),
    phone: user.phone ?? null,
    telegram: user.telegram?.id
      ? { id: user.telegram.id, username: user.telegram.username ?? null, firstName: user.telegram.firstName ?? null }
      : null,
    whatsapp: user.whatsapp?.waId || user.whatsapp?.userId ? { waId: user.whatsapp.waId ?? null } : null,
    status: user.status,
    createdAt: user.createdAt,
    lastLoginAt: user.lastLoginAt ?? null,
    lastLoginChannel: user.lastLoginChannel ?? null,
  };
}

/** Blocked users get no tokens; a user deleted meanwhile is gone. */
export function assertActiveUser(user: User | null | undefined): asserts user is User {
  if (!user) throw new AppError('not_found', 'That user no longer exists.');
  if (user.status === 'blocked') throw new AppError('user_blocked', 'This account is blocked.');
}

/** An id from a token or a request, when it is one; anything else names nobody. */
export const asObjectId = (id: Types.ObjectId | string): Types.ObjectId | undefined =>
  typeof id !== 'string' ? id : /^[0-9a-f]{24}$/i.test(id) ? new Types.ObjectId(id) : undefined;

export type PhoneLinkOutcome = 'linked' | 'already_linked' | 'merged' | 'phone_taken' | 'telegram_has_other_phone' | 'busy';

// A merge takes a few database round trips; a lock older than this belongs to a process that died mid-merge.
const MERGE_LEASE_SECONDS = 60;

export function createIdentityService(users: Model<User>, sessions: Model<Session>, reservations: Reservations, clock: Clock) {
  /**
   * The merge lock is a lease, like the inbox's attempts: FerretDB has no TTL, so a lock whose holder died would
   * otherwise keep that Telegram account busy forever. Taking over a stale lease is itself a reservation (one per stale
   * lease), so of many who find it stale exactly one replaces it.
   */
  async function takeMergeLease(lock: string): Promise<boolean> {
    const lease = () => ({ startedAt: clock.now().toISOString() });
    if (await reservations.reserve(lock, 86_400, lease())) return true;
    const held = await reservations.find(lock);
    if (!held) return reservations.reserve(lock, 86_400, lease());
    const startedAt = typeof held.startedAt === 'string' ? held.startedAt : '';
    const heldSince = startedAt ? Date.parse(startedAt) : 0;
    if (clock.now().getTime() - heldSince < MERGE_LEASE_SECONDS * 1000) return false;
    if (!(await reservations.reserve(`${lock}:takeover:${startedAt || 'legacy'}`, 86_400))) return false;
    await reservations.release(lock);
    return reservations.reserve(lock, 86_400, lease());
  }

  /**
   * Moves the Telegram identity of a Telegram-only user onto the user who owns the phone, then retires the old user.
   * One merge per Telegram id at a time (a reservation); sessions are revoked first, so nothing issued to the old
   * user outlives it; and if the move loses a race, the Telegram id goes back where it was.
   */
  async function mergeTelegramInto(telegramUser: User, owner: User): Promise<{ outcome: PhoneLinkOutcome; user: User; retiredUserId?: Types.ObjectId }> {
    const lock = `telegram-merge:${telegramUser.telegram!.id}`;
    if (!(await takeMergeLease(lock))) return { outcome: 'busy', user: telegramUser };
    try {
      const now = clock.now();
      await sessions.updateMany({ userId: telegramUser._id, revokedAt: { $exists: false } }, { $set: { revokedAt: now, revokedReason: 'user_merged' } });
      const telegram = { ...telegramUser.telegram };
      await users.updateOne({ _id: telegramUser._id }, { $unset: { telegram: '' } });
      let moved = false;
      try {
        moved = (await users.updateOne({ _id: owner._id, 'telegram.id': { $exists: false } }, { $set: { telegram, updatedAt: now } })).modifiedCount === 1;
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
      }
      if (!moved) {
        await users.updateOne({ _id: telegramUser._id }, { $set: { telegram } }).catch(() => undefined);
        return { outcome: 'busy', user: telegramUser };
      }
      await users.deleteOne({ _id: telegramUser._id });
      return { outcome: 'merged', user: (await users.findById(owner._id).lean<User>())!, retiredUserId: telegramUser._id };
    } finally {
      await reservations.release(lock);
    }
  }

  // Upsert on a unique identifier. Two concurrent first logins may both try to insert; the unique index lets
  // one win and the loser finds the winner's document. Through the driver, not a mongoose query: these are hot paths,
  // and the update needs no casting (the values are ours).
  async function upsertBy(filter: Record<string, unknown>, onInsert: Record<string, unknown>, set: Record<string, unknown> = {}) {
    const now = clock.now();
    const update = { $setOnInsert: { status: 'active', createdAt: now, ...onInsert }, $set: { updatedAt: now, ...set } };
    for (let attempt = 0; ; attempt++) {
      try {
        const user = await users.collection.findOneAndUpdate(filter, update, { upsert: true, returnDocument: 'after' });
        return user as unknown as User;
      } catch (error) {
        if (!isDuplicateKey(error) || attempt >= 2) throw error;
      }
    }
  }

  return {
    async findById(id: Types.ObjectId | string): Promise<User | null> {
      const _id = asObjectId(id);
      return _id ? ((await users.collection.findOne({ _id })) as User | null) : null;
    },

    async findByPhone(phone: string): Promise<User | null> {
      return (await users.collection.findOne({ phone })) as User | null;
    },

    resolveByPhone(phone: string) {
      return upsertBy({ phone }, { phone });
    },

    /**
     * A sign-in with a code sent to this phone: its user, found or made, stamped with the login in the same write.
     * The write returns the user as it was, so the stamp of a blocked user (who gets no tokens) is undone.
     */
    async resolvePhoneLogin(phone: string, channel: Channel): Promise<User> {
      const now = clock.now();
      const stamp = { lastLoginAt: now, lastLoginChannel: channel, updatedAt: now };
      const _id = new Types.ObjectId();
      for (let attempt = 0; ; attempt++) {
        let before: User | null;
        try {
          before = (await users.collection.findOneAndUpdate(
            { phone },
            { $setOnInsert: { _id, phone, status: 'active', createdAt: now }, $set: stamp },
            { upsert: true, returnDocument: 'before' },
          )) as User | null;
        } catch (error) {
          // A concurrent first sign-in of this phone made the user: it is found now.
          if (!isDuplicateKey(error) || attempt >= 2) throw error;
          continue;
        }
        if (!before) return { _id, phone, status: 'active', createdAt: now, ...stamp } as User;
        if (before.status === 'blocked') {
          const kept = { lastLoginAt: before.lastLoginAt, lastLoginChannel: before.lastLoginChannel, updatedAt: before.updatedAt };
          const set = Object.fromEntries(Object.entries(kept).filter(([, value]) => value != null));
          const unset = Object.fromEntries(Object.entries(kept).filter(([, value]) => value == null).map(([key]) => [key, '']));
          await users.collection.updateOne({ _id: before._id }, { ...(Object.keys(set).length ? { $set: set } : {}), ...(Object.keys(unset).length ? { $unset: unset } : {}) });
          return before;
        }
        return { ...before, ...stamp };
      }
    },

    /** The Telegram user, its username and first name kept fresh. */
    resolveByTelegram(profile: TelegramProfile) {
      const fresh: Record<string, unknown> = {};
      if (profile.username !== undefined) fresh['telegram.username'] = profile.username;
      if (profile.firstName !== undefined) fresh['telegram.firstName'] = profile.firstName;
      return upsertBy({ 'telegram.id': profile.id }, {}, { ...fresh, 'telegram.id': profile.id });
    },

    /**
     * A WhatsApp sender. Meta always sends the business-scoped user id and the phone (wa_id) only when the person lets
     * it show, so the user id is looked up first: a person first seen by username keeps their user when the phone
     * appears, and the phone is attached to it (unless another user already has that phone; then they stay apart).
     * A sender seen by phone resolves to the user of that phone (the SMS user, if any), linking the WhatsApp ids.
     */
    async resolveByWhatsApp(given: WhatsAppProfile): Promise<User> {
      const profile = { ...given, phone: given.phone ?? (given.waId ? whatsappIdToE164(given.waId) : undefined) };
      if (profile.userId) {
        const known = await users.findOne({ 'whatsapp.userId': profile.userId }).lean<User>();
        if (known) {
          if (!profile.waId || !profile.phone || known.phone) return known;
          try {
            const withPhone = await users
              .findOneAndUpdate(
                { _id: known._id, phone: { $exists: false } },
                { $set: { phone: profile.phone, 'whatsapp.waId': profile.waId, updatedAt: clock.now() } },
                { returnDocument: 'after', timestamps: false },
              )
              .lean<User>();
            return withPhone ?? known;
          } catch (error) {
            if (!isDuplicateKey(error)) throw error;
            return known;
          }
        }
      }
      if (profile.waId && profile.phone) {
        const phone = profile.phone;
        const link: Record<string, unknown> = { 'whatsapp.waId': profile.waId };
        if (profile.userId) link['whatsapp.userId'] = profile.userId;
        try {
          return await upsertBy({ phone }, { phone }, link);
        } catch (error) {
          // The user id was claimed meanwhile by a concurrent first message: that user is this person.
          if (!isDuplicateKey(error) || !profile.userId) throw error;
          return this.resolveByWhatsApp(profile);
        }
      }
      if (profile.userId) return upsertBy({ 'whatsapp.userId': profile.userId }, {}, { 'whatsapp.userId': profile.userId });
      throw new AppError('invalid_request', 'A WhatsApp sender needs a wa_id or a user id.');
    },

    /**
     * Links a phone that Telegram vouches for (the sender's own contact card) to their Telegram user.
     * When the phone already has a user, the Telegram identity moves onto it, but only if the Telegram user has
     * nothing else of its own (no phone, no WhatsApp) and neither user is blocked: that user is retired and its
     * sessions revoked. Otherwise refused.
     */
    async linkPhoneToTelegram(profile: TelegramProfile, phone: string): Promise<{ outcome: PhoneLinkOutcome; user: User; retiredUserId?: Types.ObjectId }> {
      const telegramUser = await this.resolveByTelegram(profile);
      if (telegramUser.phone === phone) return { outcome: 'already_linked', user: telegramUser };
      if (telegramUser.phone) return { outcome: 'telegram_has_other_phone', user: telegramUser };

      const owner = await users.findOne({ phone }).lean<User>();
      if (!owner) {
        try {
          const linked = await users
            .findOneAndUpdate({ _id: telegramUser._id, phone: { $exists: false } }, { $set: { phone, updatedAt: clock.now() } }, { returnDocument: 'after', timestamps: false })
            .lean<User>();
          if (linked?.phone === phone) return { outcome: 'linked', user: linked };
        } catch (error) {
          // Someone else took the phone in the meantime: the rules for an existing owner apply.
          if (!isDuplicateKey(error)) throw error;
          return this.linkPhoneToTelegram(profile, phone);
        }
        const now = await users.findById(telegramUser._id).lean<User>();
        return { outcome: now?.phone === phone ? 'already_linked' : 'telegram_has_other_phone', user: now ?? telegramUser };
      }

      // A concurrent attempt merged this very Telegram id onto the phone's user after we read ours: done already.
      if (owner.telegram?.id === profile.id) return { outcome: 'already_linked', user: owner };
      const hasOwnIdentities = !!(telegramUser.whatsapp?.waId || telegramUser.whatsapp?.userId);
      const anyBlocked = telegramUser.status === 'blocked' || owner.status === 'blocked';
      if (hasOwnIdentities || anyBlocked || owner.telegram?.id) return { outcome: 'phone_taken', user: telegramUser };
      return mergeTelegramInto(telegramUser, owner);
    },

    async recordLogin(userId: Types.ObjectId, channel: Channel) {
      const now = clock.now();
      await users.collection.updateOne({ _id: userId }, { $set: { lastLoginAt: now, lastLoginChannel: channel, updatedAt: now } });
    },

  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
