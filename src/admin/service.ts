import { Types } from 'mongoose';
import type { AuditEvent } from '../../models/audit-event.js';
import type { Session } from '../../models/session.js';
import type { User } from '../../models/user.js';
import { describeSession } from '../accounts/service.js';
import type { Clock } from '../clock.js';
import type { Models } from '../db/connection.js';
import { AppError } from '../errors.js';
import { maskPhone, parsePhone } from '../phone.js';
import type { AuditTrail, AuditType } from '../services/audit.js';
import { createBlockedPhones } from '../services/blocked-phones.js';
import { publicUser } from '../services/identities.js';

/** Who made an admin call, for the audit trail: the API (with the caller's IP) or the CLI (with the OS user). */
export interface Actor {
  via: 'api' | 'cli';
  ip?: string | undefined;
  name?: string | undefined;
}

export type UserQuery = { id: string } | { phone: string } | { telegramId: number } | { waId: string };

export interface AuditQuery {
  userId?: string | undefined;
  phone?: string | undefined;
  type?: AuditType | undefined;
  since?: Date | undefined;
  cursor?: string | undefined;
  limit?: number | undefined;
}

const objectId = (id: string): Types.ObjectId => {
  if (!/^[0-9a-f]{24}$/i.test(id)) throw new AppError('not_found', 'There is no user with this id.');
  return new Types.ObjectId(id);
};

export const blockView = (user: User) =>
  user.status === 'blocked'
    ? { reason: user.block?.reason ?? null, at: user.block?.at ?? null, until: user.block?.until ?? null }
    : null;

export function createAdminService(deps: { models: Models; audit: AuditTrail; clock: Clock; defaultCountry?: string | undefined }) {
  const { models, audit, clock } = deps;
  const { User: users, Session: sessions, AuditEvent: events } = models;
  const blockedPhones = createBlockedPhones(models.OtpPhone);

  const record = (type: AuditType, actor: Actor, entry: { userId?: Types.ObjectId | undefined; phone?: string | undefined; detail: Record<string, unknown> }) =>
    audit.record({ type, userId: entry.userId, phone: entry.phone, ip: actor.ip, detail: { via: actor.via, ...(actor.name ? { operator: actor.name } : {}), ...entry.detail } });

  async function userOrThrow(id: string): Promise<User> {
    const user = await users.findById(objectId(id)).lean<User>();
    if (!user) throw new AppError('not_found', 'There is no user with this id.');
    return user;
  }

  async function revokeAll(userId: Types.ObjectId, reason: NonNullable<Session['revokedReason']>): Promise<number> {
    const result = await sessions.updateMany({ userId, revokedAt: { $exists: false } }, { $set: { revokedAt: clock.now(), revokedReason: reason } });
    return result.modifiedCount;
  }

  const summary = (user: User) => ({ ...publicUser(user), block: blockView(user) });

  return {
    async findUsers(query: UserQuery, actor: Actor) {
      let filter: Record<string, unknown>;
      let phone: string | undefined;
      if ('id' in query) filter = { _id: objectId(query.id) };
      else if ('phone' in query) {
        phone = parsePhone(query.phone, deps.defaultCountry).e164;
        filter = { phone };
      } else if ('telegramId' in query) filter = { 'telegram.id': query.telegramId };
      else filter = { 'whatsapp.waId': query.waId };
      const found = await users.find(filter).limit(20).lean<User[]>();
      await record('admin.lookup', actor, { phone, detail: { query: Object.keys(query)[0], found: found.length } });
      return found.map(summary);
    },

    /** A user with their identities, status, live sessions and last logins. */
    async getUser(id: string, actor: Actor) {
      const user = await userOrThrow(id);
      const [live, logins] = await Promise.all([
        sessions.find({ userId: user._id, revokedAt: { $exists: false } }).sort({ createdAt: -1 }).lean<Session[]>(),
        events.find({ userId: user._id, type: 'tokens.issued' }).sort({ at: -1 }).limit(10).lean<AuditEvent[]>(),
      ]);
      await record('admin.lookup', actor, { userId: user._id, detail: { query: 'user' } });
      return {
        user: summary(user),
        sessions: live.map((session) => describeSession(session)),
        lastLogins: logins.map((event) => ({ at: event.at, channel: event.channel ?? null, ip: event.ip ?? null })),
      };
    },

    /** Blocks a user and signs every session out at once; the OTP service then sends their phone nothing. */
    async blockUser(id: string, input: { reason: string; until?: Date | undefined }, actor: Actor) {
      const user = await userOrThrow(id);
      if (input.until && input.until.getTime() <= clock.now().getTime()) throw new AppError('invalid_request', 'until: must be in the future.');
      const block = { reason: input.reason, at: clock.now(), ...(input.until ? { until: input.until } : {}) };
      // The phone's mark first: a phone without one is sent codes without its user being read (blocked-phones.ts).
      if (user.phone) await blockedPhones.mark(user.phone);
      await users.updateOne({ _id: user._id }, { $set: { status: 'blocked', block, updatedAt: clock.now() } }, { timestamps: false });
      const revoked = await revokeAll(user._id, 'user_blocked');
      await record('admin.user_blocked', actor, {
        userId: user._id,
        detail: { reason: input.reason, until: input.until?.toISOString() ?? null, previousStatus: user.status, sessionsRevoked: revoked },
      });
      return { user: summary((await users.findById(user._id).lean<User>())!), sessionsRevoked: revoked };
    },

    async unblockUser(id: string, actor: Actor) {
      const user = await userOrThrow(id);
      await users.updateOne({ _id: user._id }, { $set: { status: 'active', updatedAt: clock.now() }, $unset: { block: '' } }, { timestamps: false });
      // After the status: until then the mark must stand.
      if (user.phone) await blockedPhones.unmark(user.phone);
      await record('admin.user_unblocked', actor, { userId: user._id, detail: { previousStatus: user.status, previousReason: user.block?.reason ?? null } });
      return { user: summary((await users.findById(user._id).lean<User>())!) };
    },

    /**
     * Lifts the blocks whose `until` has passed, and writes the phone marks the other blocked users lack (blocked
     * before marks existed, or by an older version). Runs at start and on a timer in the gateway; FerretDB reads the
     * users by a full scan, so not per request.
     */
    async sweepBlocks(): Promise<{ lifted: number; marked: number }> {
      const now = clock.now();
      const blocked = await users.find({ status: 'blocked' }, { _id: 1, block: 1, phone: 1 }).lean<User[]>();
      const hasExpired = (user: User) => !!user.block?.until && user.block.until.getTime() <= now.getTime();
      const expired = blocked.filter(hasExpired);
      for (const user of expired) {
        await users.updateOne({ _id: user._id }, { $set: { status: 'active', updatedAt: now }, $unset: { block: '' } }, { timestamps: false });
        if (user.phone) await blockedPhones.unmark(user.phone);
        await audit.record({ type: 'admin.block_expired', userId: user._id, detail: { reason: user.block?.reason ?? null } });
      }
      const stillBlocked = blocked.filter((user) => !hasExpired(user) && user.phone).map((user) => user.phone!);
      return { lifted: expired.length, marked: await blockedPhones.markAll(stillBlocked) };
    },

    /** Signs a user out everywhere. */
    async revokeUserSessions(id: string, actor: Actor) {
      const user = await userOrThrow(id);
      const revoked = await revokeAll(user._id, 'admin');
      await record('admin.sessions_revoked', actor, { userId: user._id, detail: { sessionsRevoked: revoked } });
      return { sessionsRevoked: revoked };
    },

    async revokeSession(sessionId: string, actor: Actor) {
      if (!/^[0-9a-f]{24}$/i.test(sessionId)) throw new AppError('not_found', 'There is no session with this id.');
      const session = await sessions.findById(sessionId).lean<Session>();
      if (!session) throw new AppError('not_found', 'There is no session with this id.');
      const revoked = session.revokedAt
        ? 0
        : (await sessions.updateOne({ _id: session._id, revokedAt: { $exists: false } }, { $set: { revokedAt: clock.now(), revokedReason: 'admin' } })).modifiedCount;
      await record('admin.session_revoked', actor, { userId: session.userId, detail: { sessionId, sessionsRevoked: revoked } });
      return { sessionsRevoked: revoked };
    },

    /**
     * The audit trail, newest first, `limit` at a time; `nextCursor` continues after the last one. The trail keeps
     * phones masked, so `phone` finds the events of the user who holds the number now, and phone-only events (codes
     * sent before any user existed) by the masked form, which other numbers with the same mask share.
     */
    async listAudit(query: AuditQuery, actor: Actor) {
      const limit = Math.min(Math.max(query.limit ?? 50, 1), 500);
      const filter: Record<string, unknown> = {};
      if (query.userId) filter.userId = objectId(query.userId);
      if (query.phone) {
        const phone = parsePhone(query.phone, deps.defaultCountry).e164;
        const holder = await users.findOne({ phone }, { _id: 1 }).lean<Pick<User, '_id'>>();
        const masked = { phone: maskPhone(phone), userId: { $exists: false } };
        filter.$or = holder ? [{ userId: holder._id }, masked] : [masked];
      }
      if (query.type) filter.type = query.type;
      if (query.since) filter.at = { $gte: query.since };
      if (query.cursor) {
        if (!/^[0-9a-f]{24}$/i.test(query.cursor)) throw new AppError('invalid_request', 'cursor: not a cursor this API gave.');
        filter._id = { $lt: new Types.ObjectId(query.cursor) };
      }
      const found = await events.find(filter).sort({ _id: -1 }).limit(limit + 1).lean<(AuditEvent & { _id: Types.ObjectId })[]>();
      const page = found.slice(0, limit);
      await record('admin.lookup', actor, { detail: { query: 'audit', filters: Object.keys(query).filter((key) => key !== 'cursor' && key !== 'limit' && query[key as keyof AuditQuery] !== undefined) } });
      return {
        events: page.map((event) => ({
          id: event._id.toString(),
          type: event.type,
          at: event.at,
          channel: event.channel ?? null,
          userId: event.userId?.toString() ?? null,
          phone: event.phone ?? null,
          ip: event.ip ?? null,
          detail: (event.detail as Record<string, unknown> | undefined) ?? null,
        })),
        nextCursor: found.length > limit ? page.at(-1)!._id.toString() : null,
      };
    },
  };
}

export type AdminService = ReturnType<typeof createAdminService>;
