import { Types, type Model } from 'mongoose';
import type { AuditEvent } from '../../models/audit-event.js';
import type { Channel } from '../../models/channels.js';
import type { RefreshToken } from '../../models/refresh-token.js';
import type { Session } from '../../models/session.js';
import type { User } from '../../models/user.js';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { maskPhone, parsePhone } from '../phone.js';
import type { AuditTrail } from '../services/audit.js';
import { assertActiveUser, publicUser, type PublicUser } from '../services/identities.js';
import type { OtpService, RequestedChannel } from '../services/otp.js';
import { isDuplicateKey, type Reservations } from '../services/reservations.js';
import type { AccessClaims, TokenService } from '../services/tokens.js';

/** How recent the last proof of identity must be for a change of phone number or a deletion. */
export const RECENT_PROOF_SECONDS = 600;

/** Sends a plain notice (no code) to a phone, where a channel can reach it; failures are logged by the caller. */
export type PhoneNotifier = (phone: string, text: string) => Promise<void>;

export interface AccountDeps {
  users: Model<User>;
  sessions: Model<Session>;
  refreshTokens: Model<RefreshToken>;
  auditEvents: Model<AuditEvent>;
  tokens: TokenService;
  otp: OtpService;
  reservations: Reservations;
  audit: AuditTrail;
  clock: Clock;
  notifyPhone?: PhoneNotifier | undefined;
  serviceName: string;
  defaultCountry?: string | undefined;
  testNumbers?: ReadonlyMap<string, string> | undefined;
  log: { warn(object: object, message: string): void };
}

/** Who is asking: the verified access token, its live session and its user. */
export interface Caller {
  claims: AccessClaims;
  user: User;
  session: Session;
}

export type LinkedIdentity =
  | { type: 'phone'; phone: string }
  | { type: 'telegram'; id: number; username: string | null }
  | { type: 'whatsapp'; waId: string | null };

/** The ways a user can sign in, as GET /auth/me lists them. */
export function linkedIdentities(user: PublicUser): LinkedIdentity[] {
  const identities: LinkedIdentity[] = [];
  if (user.phone) identities.push({ type: 'phone', phone: user.phone });
  if (user.telegram) identities.push({ type: 'telegram', id: user.telegram.id, username: user.telegram.username });
  if (user.whatsapp) identities.push({ type: 'whatsapp', waId: user.whatsapp.waId });
  return identities;
}

export interface SessionView {
  id: string;
  createdAt: Date;
  lastUsedAt: Date;
  channel: Channel;
  device: string | null;
  ip: string | null;
  current: boolean;
}

export const describeSession = (session: Session, currentId?: string): SessionView => ({
  id: session._id.toString(),
  createdAt: session.createdAt,
  lastUsedAt: session.lastRefreshedAt ?? session.createdAt,
  channel: session.channel,
  device: session.device ?? null,
  ip: session.ip ?? null,
  current: session._id.toString() === currentId,
});

const asObjectId = (id: string): Types.ObjectId | undefined => (Types.ObjectId.isValid(id) && /^[0-9a-f]{24}$/i.test(id) ? new Types.ObjectId(id) : undefined);

const PENDING_CHANGE_SECONDS = 3600;
const pendingChangeKey = (userId: Types.ObjectId) => `phone-change:${userId.toString()}`;

/** What a signed-in person may do to their own account: sessions, phone number, linked channels, deletion. */
export function createAccountService(deps: AccountDeps) {
  const { users, sessions, refreshTokens, auditEvents, tokens, otp, reservations, audit, clock, log } = deps;

  const signedOut = () => new AppError('token_revoked', 'This session has been signed out.');

  async function revokeWhere(filter: Record<string, unknown>, reason: NonNullable<Session['revokedReason']>): Promise<number> {
    const result = await sessions.updateMany({ ...filter, revokedAt: { $exists: false } }, { $set: { revokedAt: clock.now(), revokedReason: reason } });
    return result.modifiedCount;
  }

  function requireRecentProof(caller: Caller): void {
    const authTime = caller.claims.auth_time;
    const age = authTime === undefined ? Infinity : clock.now().getTime() / 1000 - authTime;
    if (age > RECENT_PROOF_SECONDS) {
      throw new AppError('reauthentication_required', `Sign in again first: this needs a sign-in from the last ${RECENT_PROOF_SECONDS / 60} minutes.`, {
        maxAgeSeconds: RECENT_PROOF_SECONDS,
      });
    }
  }

  return {
    requireRecentProof,

    /** The caller behind an access token, refused once its session is signed out or its user is gone or blocked. */
    async authenticate(accessToken: string): Promise<Caller> {
      const claims = await tokens.verifyAccessToken(accessToken);
      const sessionId = asObjectId(claims.sid);
      const [session, user] = await Promise.all([
        sessionId ? sessions.findById(sessionId).lean<Session>() : null,
        asObjectId(claims.sub) ? users.findById(claims.sub).lean<User>() : null,
      ]);
      if (!session || session.revokedAt || !user || !session.userId.equals(user._id)) throw signedOut();
      assertActiveUser(user);
      return { claims, user, session };
    },

    /**
     * RFC 7662 token introspection for services that consume access tokens: `active` is false once the session is
     * signed out, the user deleted or blocked, or the token expired or forged; never an error for a bad token.
     */
    async introspect(accessToken: string) {
      try {
        const { claims, user } = await this.authenticate(accessToken);
        return {
          active: true as const,
          sub: claims.sub,
          sid: claims.sid,
          exp: claims.exp,
          iat: claims.iat,
          auth_time: claims.auth_time,
          iss: claims.iss,
          aud: claims.aud,
          amr: claims.amr,
          token_type: 'Bearer' as const,
          phone_number: user.phone ?? undefined,
        };
      } catch (error) {
        if (error instanceof AppError && error.status < 500) return { active: false as const };
        throw error;
      }
    },

    async listSessions(caller: Caller): Promise<SessionView[]> {
      const list = await sessions.find({ userId: caller.user._id, revokedAt: { $exists: false } }).sort({ createdAt: -1 }).lean<Session[]>();
      return list.map((session) => describeSession(session, caller.session._id.toString()));
    },

    /** Someone else's session id gets the same 404 as an unknown one: ids of others are not confirmed. */
    async revokeSession(caller: Caller, sessionId: string, ip: string | undefined): Promise<void> {
      const id = asObjectId(sessionId);
      const session = id ? await sessions.findById(id).lean<Session>() : null;
      if (!session || !session.userId.equals(caller.user._id) || session.revokedAt) {
        throw new AppError('not_found', 'You have no session with this id.');
      }
      await revokeWhere({ _id: session._id }, 'logout');
      await audit.record({ type: 'session.revoked', channel: session.channel, userId: caller.user._id, ip, detail: { sessionId } });
    },

    async logoutAll(caller: Caller, keepCurrent: boolean, ip: string | undefined): Promise<number> {
      const filter: Record<string, unknown> = { userId: caller.user._id };
      if (keepCurrent) filter._id = { $ne: caller.session._id };
      const revoked = await revokeWhere(filter, 'logout_all');
      await audit.record({ type: 'session.logout_all', userId: caller.user._id, ip, detail: { revoked, keptCurrent: keepCurrent } });
      return revoked;
    },

    /** Sends a code to the new number through the OTP service (all its limits apply) and remembers what it is for. */
    async requestPhoneChange(caller: Caller, input: { newPhone: string; channel: RequestedChannel; ip: string | undefined }) {
      requireRecentProof(caller);
      const { e164 } = parsePhone(input.newPhone, deps.defaultCountry, deps.testNumbers);
      if (e164 === caller.user.phone) throw new AppError('invalid_request', 'That is already your phone number.');
      const sent = await otp.requestCode({ phone: e164, channel: input.channel, ip: input.ip });
      const key = pendingChangeKey(caller.user._id);
      // The newest request wins: a pending change is replaced, never merged.
      await reservations.release(key);
      await reservations.reserve(key, PENDING_CHANGE_SECONDS, { phone: e164, challengeId: sent.challengeId, sessionId: caller.session._id.toString() });
      await audit.record({ type: 'account.phone_change_requested', userId: caller.user._id, phone: e164, ip: input.ip });
      return { channel: sent.channel, expiresIn: sent.expiresIn, resendIn: sent.resendIn };
    },

    /**
     * Moves the phone to the caller once the code sent to it is right. The users' unique phone index decides: if
     * another user holds the number, or takes it at the same moment, the move fails and nothing is merged.
     */
    async verifyPhoneChange(caller: Caller, input: { code: string; ip: string | undefined }) {
      requireRecentProof(caller);
      const key = pendingChangeKey(caller.user._id);
      const pending = await reservations.find(key);
      if (!pending || typeof pending.phone !== 'string' || typeof pending.challengeId !== 'string') {
        throw new AppError('not_found', 'There is no pending change of phone number. Ask for a code first.');
      }
      const phone = pending.phone;
      await otp.checkCode({ challengeId: pending.challengeId, code: input.code, ip: input.ip });
      await reservations.release(key);
      const taken = () => new AppError('conflict', 'This phone number belongs to another account. Sign in with it, or delete that account first.', { reason: 'phone_taken' });
      const holder = await users.findOne({ phone }, { _id: 1 }).lean<Pick<User, '_id'>>();
      const refuse = async () => {
        await audit.record({ type: 'account.phone_change_refused', userId: caller.user._id, phone, ip: input.ip, detail: { reason: 'phone_taken' } });
        return taken();
      };
      if (holder && !holder._id.equals(caller.user._id)) throw await refuse();
      const previous = caller.user.phone ?? undefined;
      try {
        await users.updateOne({ _id: caller.user._id }, { $set: { phone, updatedAt: clock.now() } }, { timestamps: false });
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
        throw await refuse();
      }
      const revoked = await revokeWhere({ userId: caller.user._id, _id: { $ne: caller.session._id } }, 'phone_changed');
      await audit.record({
        type: 'account.phone_changed',
        userId: caller.user._id,
        phone,
        ip: input.ip,
        detail: { previous: maskPhone(previous) ?? null, sessionsRevoked: revoked },
      });
      if (previous && deps.notifyPhone) {
        const notice = `Your ${deps.serviceName} account now uses the phone number ${maskPhone(phone)}. If this was not you, contact support.`;
        await deps.notifyPhone(previous, notice).catch((error: unknown) => log.warn({ err: error, phone: maskPhone(previous) }, 'old phone not notified'));
      }
      const user = await users.findById(caller.user._id).lean<User>();
      return publicUser(user!);
    },

    /** Unlinks a chat identity, unless it is the last way left to sign in. */
    async unlinkIdentity(caller: Caller, kind: 'telegram' | 'whatsapp', ip: string | undefined) {
      const { user } = caller;
      const has = { phone: !!user.phone, telegram: !!user.telegram?.id, whatsapp: !!(user.whatsapp?.waId || user.whatsapp?.userId) };
      if (!has[kind]) throw new AppError('not_found', `No ${kind === 'telegram' ? 'Telegram' : 'WhatsApp'} account is linked.`);
      const remaining = Object.entries(has).filter(([name, linked]) => linked && name !== kind);
      if (remaining.length === 0) {
        throw new AppError('conflict', 'This is your only way to sign in; link a phone number or another channel first.', { reason: 'last_identity' });
      }
      await users.updateOne({ _id: user._id }, { $unset: { [kind]: '' }, $set: { updatedAt: clock.now() } }, { timestamps: false });
      await audit.record({ type: 'account.identity_unlinked', channel: kind, userId: user._id, ip });
      return publicUser((await users.findById(user._id).lean<User>())!);
    },

    /**
     * Deletes the caller's account: user, sessions and refresh tokens. Their audit trail stays, under a fresh random
     * id and without phone or IP, so it still reads as one person's history but names nobody (hence no IP here).
     */
    async deleteAccount(caller: Caller): Promise<void> {
      requireRecentProof(caller);
      const userId = caller.user._id;
      // Sessions first: from here no refresh succeeds, whatever happens next.
      await revokeWhere({ userId }, 'logout_all');
      await users.deleteOne({ _id: userId });
      await Promise.all([
        refreshTokens.deleteMany({ userId }),
        sessions.deleteMany({ userId }),
        reservations.release(pendingChangeKey(userId)),
      ]);
      const pseudonym = new Types.ObjectId();
      await auditEvents.updateMany({ userId }, { $set: { userId: pseudonym }, $unset: { phone: '', ip: '' } });
      await audit.record({ type: 'account.deleted', userId: pseudonym, detail: { by: 'self' } });
    },
  };
}

export type AccountService = ReturnType<typeof createAccountService>;
