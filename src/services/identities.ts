import type { Model, Types } from 'mongoose';
import type { Channel } from '../../models/channels.js';
import type { User } from '../../models/user.js';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { isDuplicateKey } from './reservations.js';

export interface TelegramProfile {
  id: number;
  username?: string | undefined;
  firstName?: string | undefined;
}

export interface WhatsAppProfile {
  /** `wa_id`: the sender's phone digits, when WhatsApp shows them. */
  waId?: string | undefined;
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

export function createIdentityService(users: Model<User>, clock: Clock) {
  // Upsert on a unique identifier. Two concurrent first logins may both try to insert; the unique index lets
  // one win and the loser finds the winner's document.
  async function upsertBy(filter: Record<string, unknown>, onInsert: Record<string, unknown>, set: Record<string, unknown> = {}) {
    const now = clock.now();
    const update = { $setOnInsert: { status: 'active', createdAt: now, ...onInsert }, $set: { updatedAt: now, ...set } };
    for (let attempt = 0; ; attempt++) {
      try {
        const user = await users
          .findOneAndUpdate(filter, update, { upsert: true, new: true, timestamps: false })
          .lean<User>();
        return user!;
      } catch (error) {
        if (!isDuplicateKey(error) || attempt >= 2) throw error;
      }
    }
  }

  return {
    findById(id: Types.ObjectId | string) {
      return users.findById(id).lean<User>();
    },

    findByPhone(phone: string) {
      return users.findOne({ phone }).lean<User>();
    },

    resolveByPhone(phone: string) {
      return upsertBy({ phone }, { phone });
    },

    /** The Telegram user, its username and first name kept fresh. */
    resolveByTelegram(profile: TelegramProfile) {
      const fresh: Record<string, unknown> = {};
      if (profile.username !== undefined) fresh['telegram.username'] = profile.username;
      if (profile.firstName !== undefined) fresh['telegram.firstName'] = profile.firstName;
      return upsertBy({ 'telegram.id': profile.id }, {}, { ...fresh, 'telegram.id': profile.id });
    },

    /**
     * A WhatsApp sender with a phone resolves to the user of that phone (the SMS user, if any), linking the
     * wa_id; a sender without one resolves by the business-scoped user id alone.
     */
    async resolveByWhatsApp(profile: WhatsAppProfile) {
      if (profile.waId) {
        const phone = `+${profile.waId}`;
        const link: Record<string, unknown> = { 'whatsapp.waId': profile.waId };
        if (profile.userId) link['whatsapp.userId'] = profile.userId;
        return upsertBy({ phone }, { phone }, link);
      }
      if (profile.userId) return upsertBy({ 'whatsapp.userId': profile.userId }, {}, { 'whatsapp.userId': profile.userId });
      throw new AppError('invalid_request', 'A WhatsApp sender needs a wa_id or a user id.');
    },

    async recordLogin(userId: Types.ObjectId, channel: Channel) {
      const now = clock.now();
      await users.updateOne({ _id: userId }, { $set: { lastLoginAt: now, lastLoginChannel: channel, updatedAt: now } }, { timestamps: false });
    },

  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
