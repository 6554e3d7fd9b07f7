import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { Types, type Model } from 'mongoose';
import type { Channel } from '../../models/channels.js';
import type { RefreshToken } from '../../models/refresh-token.js';
import type { Session } from '../../models/session.js';
import type { User } from '../../models/user.js';
import type { Clock } from '../clock.js';
import { describeDevice } from '../chat-texts.js';
import { AppError } from '../errors.js';
import type { AuditTrail } from './audit.js';
import { asObjectId, assertActiveUser, publicUser, type IdentityService } from './identities.js';
import { isDuplicateKey } from './reservations.js';
import type { SigningKeys } from './signing-keys.js';

export interface TokenSettings {
  issuer: string;
  audience: string;
  accessTtlSeconds: number;
  refreshTtlSeconds: number;
  /** A replay of a token rotated at most this long ago gets the same successor; 0 turns the grace off. */
  reuseGraceSeconds: number;
  /** The server secret successors are derived under, so the same successor can be given again without storing it. */
  successorKey: Buffer;
}

export interface TokenDeps {
  sessions: Model<Session>;
  refreshTokens: Model<RefreshToken>;
  identities: IdentityService;
  keys: SigningKeys;
  audit: AuditTrail;
  clock: Clock;
  settings: TokenSettings;
}

export interface AccessClaims extends JWTPayload {
  sub: string;
  sid: string;
  amr: Channel[];
  phone_number?: string;
  phone_number_verified?: boolean;
  /** When the person last proved themselves (the login that opened the session); kept across refreshes. */
  auth_time?: number;
}

export interface RequestContext {
  ip?: string | undefined;
  /** The login request's User-Agent; only a reduced description of it is stored (describeDevice). */
  userAgent?: string | undefined;
}

const REFRESH_PREFIX = 'cgrt_';

export const sha256 = (value: string): string => createHash('sha256').update(value).digest('base64url');

export function createTokenService(deps: TokenDeps) {
  const { sessions, refreshTokens, identities, keys, audit, clock, settings } = deps;
  const publicKeys = createLocalJWKSet(keys.publicJwks);
  const algorithms = [...new Set(keys.publicJwks.keys.map((key) => key.alg!))];

  async function signAccessToken(user: User, sessionId: Types.ObjectId, channel: Channel, authTime: Date): Promise<string> {
    const nowSeconds = Math.floor(clock.now().getTime() / 1000);
    const claims: Record<string, unknown> = { sid: sessionId.toString(), amr: [channel], auth_time: Math.floor(authTime.getTime() / 1000) };
    if (user.phone) {
      claims.phone_number = user.phone;
      // Every way a phone reaches a user proves it: an SMS or WhatsApp code, a WhatsApp message from it, or
      // Telegram's own contact card of the sender.
      claims.phone_number_verified = true;
    }
    return new SignJWT(claims)
      .setProtectedHeader({ alg: keys.alg, kid: keys.kid, typ: 'JWT' })
      .setIssuer(settings.issuer)
      .setAudience(settings.audience)
      .setSubject(user._id.toString())
      .setJti(randomUUID())
      .setIssuedAt(nowSeconds)
      .setExpirationTime(nowSeconds + settings.accessTtlSeconds)
      .sign(keys.privateKey);
  }

  // A token's successor is a keyed hash of the token: whoever presents the parent again can be given the same
  // successor, and only digests are ever stored.
  const successorOf = (token: string): string => REFRESH_PREFIX + createHmac('sha256', settings.successorKey).update(token).digest('base64url');

  async function mintRefreshToken(
    session: { _id: Types.ObjectId; userId: Types.ObjectId },
    parent?: { id: Types.ObjectId; token: string },
  ) {
    const token = parent ? successorOf(parent.token) : REFRESH_PREFIX + randomBytes(32).toString('base64url');
    const parentId = parent?.id;
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + settings.refreshTtlSeconds * 1000);
    await refreshTokens.collection.insertOne({
      sessionId: session._id,
      userId: session.userId,
      tokenHash: sha256(token),
      ...(parentId ? { parentId } : {}),
      expiresAt,
      createdAt: now,
      cleanupAt: new Date(expiresAt.getTime() + 86_400_000),
    });
    return token;
  }

  async function tokenResponse(user: User, session: { _id: Types.ObjectId; userId: Types.ObjectId; channel: Channel; createdAt: Date }, refreshToken: string) {
    return {
      // The session began with the login, so its start is the time of the last proof.
      accessToken: await signAccessToken(user, session._id, session.channel, session.createdAt),
      refreshToken,
      tokenType: 'Bearer' as const,
      expiresIn: settings.accessTtlSeconds,
      user: publicUser(user),
    };
  }

  // A session stays stored as long as its newest refresh token may be used; TTL cleanup (where the engine has it) must
  // not end it sooner.
  const sessionCleanupAt = (now: Date): Date => new Date(now.getTime() + (settings.refreshTtlSeconds + 86_400) * 1000);

  // Hot paths (refresh, /auth/me) read through the driver: a point lookup needs no mongoose query machinery.
  const findSession = async (id: Types.ObjectId | string): Promise<Session | null> => {
    const _id = asObjectId(id);
    return _id ? ((await sessions.collection.findOne({ _id })) as Session | null) : null;
  };

  const signedOut = () => new AppError('token_revoked', 'This session has been signed out.');

  async function revokeSession(sessionId: Types.ObjectId, reason: 'logout' | 'token_reused') {
    await sessions.updateOne({ _id: sessionId, revokedAt: { $exists: false } }, { $set: { revokedAt: clock.now(), revokedReason: reason } });
  }

  async function verifyAccessToken(token: string): Promise<AccessClaims> {
    try {
      const { payload } = await jwtVerify<AccessClaims>(token, publicKeys, {
        issuer: settings.issuer,
        audience: settings.audience,
        algorithms,
        currentDate: clock.now(),
      });
      return payload;
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new AppError('token_expired', 'The access token has expired.');
      throw new AppError('invalid_token', 'The access token is not valid.');
    }
  }

  return {
    verifyAccessToken,

    /**
     * A completed login on `channel`: opens a session and hands out the first token pair. `loginRecorded`: the user
     * was already stamped with this login (verifyCode does it in the write that finds the user).
     */
    async issueForLogin(user: User, channel: Channel, context: RequestContext, options: { loginRecorded?: boolean } = {}) {
      assertActiveUser(user);
      const now = clock.now();
      const session = { _id: new Types.ObjectId(), userId: user._id, channel, createdAt: now };
      // One round trip: the ids are made here, so the session, its first token and the login stamp go side by side.
      const [, refreshToken] = await Promise.all([
        sessions.collection.insertOne({
          ...session,
          ...(context.ip ? { ip: context.ip } : {}),
          ...(context.userAgent ? { device: describeDevice(context.userAgent) } : {}),
          cleanupAt: sessionCleanupAt(now),
        }),
        mintRefreshToken(session),
        options.loginRecorded ? undefined : identities.recordLogin(user._id, channel),
      ]);
      await audit.record({ type: 'tokens.issued', channel, userId: user._id, ip: context.ip, detail: { sessionId: session._id.toString() } });
      return tokenResponse(options.loginRecorded ? user : { ...user, lastLoginAt: now, lastLoginChannel: channel }, session, refreshToken);
    },

    /**
     * Rotates a refresh token; of concurrent rotations exactly one inserts the successor. A token that already has a
     * successor is a replay: within the grace it is given that successor again, after it the whole session dies.
     */
    async refresh(presented: string, context: RequestContext) {
      // Round trip 1: the token by its unique digest; 2: its session and user side by side; 3: the successor.
      const current = (await refreshTokens.collection.findOne({ tokenHash: sha256(presented) })) as RefreshToken | null;
      if (!current) throw new AppError('invalid_token', 'The refresh token is not valid.');
      const [session, user] = await Promise.all([findSession(current.sessionId), identities.findById(current.userId)]);
      if (!session || session.revokedAt) throw signedOut();
      if (current.expiresAt.getTime() <= clock.now().getTime()) throw new AppError('token_expired', 'The refresh token has expired.');
      // A user retired by a merge takes its sessions with it.
      if (!user) throw signedOut();
      assertActiveUser(user);

      let next: string;
      const now = clock.now();
      // The session's stamp goes with the successor; if the rotation loses (a replay), the stamp is harmless.
      const [minted, stamped] = await Promise.allSettled([
        mintRefreshToken(session, { id: current._id, token: presented }),
        sessions.collection.updateOne({ _id: session._id }, { $set: { lastRefreshedAt: now, cleanupAt: sessionCleanupAt(now) } }),
      ]);
      try {
        if (stamped.status === 'rejected') throw stamped.reason;
        if (minted.status === 'rejected') throw minted.reason;
        next = minted.value;
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
        // Rotated already. Just now (a double-fired refresh): the same successor again. Longer ago: a replay.
        const successor = (await refreshTokens.collection.findOne({ parentId: current._id })) as RefreshToken | null;
        const rotatedMsAgo = successor ? clock.now().getTime() - successor.createdAt.getTime() : Infinity;
        if (successor && settings.reuseGraceSeconds > 0 && rotatedMsAgo <= settings.reuseGraceSeconds * 1000) {
          await audit.record({ type: 'tokens.refreshed', channel: session.channel, userId: user._id, ip: context.ip, detail: { graceReplay: true } });
          return tokenResponse(user, session, successorOf(presented));
        }
        await revokeSession(session._id, 'token_reused');
        await audit.record({ type: 'tokens.reuse_detected', channel: session.channel, userId: session.userId, ip: context.ip, detail: { sessionId: session._id.toString() } });
        throw new AppError('token_reused', 'This refresh token was already used; the session has been signed out.');
      }
      await audit.record({ type: 'tokens.refreshed', channel: session.channel, userId: user._id, ip: context.ip });
      return tokenResponse(user, session, next);
    },

    async logout(by: { refreshToken: string } | { accessToken: string }, context: RequestContext) {
      let sessionId: Types.ObjectId | string;
      if ('refreshToken' in by) {
        const current = await refreshTokens.findOne({ tokenHash: sha256(by.refreshToken) }).lean<RefreshToken>();
        if (!current) throw new AppError('invalid_token', 'The refresh token is not valid.');
        sessionId = current.sessionId;
      } else {
        sessionId = (await verifyAccessToken(by.accessToken)).sid;
      }
      const session = await sessions.findById(sessionId).lean<Session>();
      if (!session) throw new AppError('invalid_token', 'The token names no session.');
      await revokeSession(session._id, 'logout');
      await audit.record({ type: 'session.logout', channel: session.channel, userId: session.userId, ip: context.ip });
    },

    /** The signed-in user behind an access token, refused once its session has been signed out. */
    async currentUser(accessToken: string) {
      const claims = await verifyAccessToken(accessToken);
      const [session, user] = await Promise.all([findSession(claims.sid), identities.findById(claims.sub)]);
      if (!session || session.revokedAt || !user) throw signedOut();
      assertActiveUser(user);
      return publicUser(user);
    },
  };
}

export type TokenService = ReturnType<typeof createTokenService>;
