import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { Model } from 'mongoose';
import type { Channel } from '../../models/channels.js';
import type { LoginIntent } from '../../models/login-intent.js';
import type { User } from '../../models/user.js';
import type { ChatLanguage } from '../chat-texts.js';
import { secondsBetween, type Clock } from '../clock.js';
import { AppError } from '../errors.js';
import type { AuditTrail } from './audit.js';
import { assertActiveUser, type IdentityService } from './identities.js';
import { isDuplicateKey, type Reservations } from './reservations.js';
import { sha256, type TokenService } from './tokens.js';

/** Who, in a chat, is completing an intent: the Telegram user id, or the WhatsApp sender. */
export interface Claimant {
  channel: Channel;
  subject: string;
}

/** What a chat shows the person before they confirm: which browser is asking. */
export interface IntentSummary {
  intentId: string;
  ip: string | null;
  userAgent: string | null;
  /** The page's language when the sign-in started there; null: English. */
  language: ChatLanguage | null;
  createdAt: Date;
  expiresAt: Date;
}

/** Builds the deep links of one chat channel (filled in by the channels that are configured). */
export type IntentLinkBuilder = (secrets: { code: string; startToken: string }) => Record<string, string>;

export interface LoginIntentDeps {
  intents: Model<LoginIntent>;
  reservations: Reservations;
  identities: IdentityService;
  tokens: TokenService;
  audit: AuditTrail;
  clock: Clock;
  settings: { ttlSeconds: number; maxWrongCodesPerHour: number };
  linkBuilders: IntentLinkBuilder[];
}

// No 0/O, 1/I/L: easy to read aloud and to type on a phone.
const CODE_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';
const CODE_LENGTH = 6;
// After approval the browser gets a little longer to collect its tokens, however late in the intent it came.
const HANDOVER_GRACE_MS = 60_000;

export const normalizeIntentCode = (input: string): string => input.toUpperCase().replace(/[\s-]/g, '');

/**
 * The intent a poll token opens, for the REST poll and the OpenID sign-in alike: unknown → 404, a missing or wrong
 * token → 401 (compared in constant time).
 */
export async function findIntentForPollToken(intents: Model<LoginIntent>, intentId: string, pollToken: string | undefined): Promise<LoginIntent> {
  if (!pollToken) throw new AppError('unauthorized', 'Send the poll token as "Authorization: Bearer <pollToken>".');
  const intent = await intents.findById(intentId).lean<LoginIntent>();
  if (!intent) throw new AppError('not_found', 'This sign-in request is unknown.');
  const expected = Buffer.from(intent.pollTokenHash);
  const given = Buffer.from(sha256(pollToken));
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    throw new AppError('unauthorized', 'The poll token does not match this sign-in request.');
  }
  return intent;
}

export function createLoginIntentService(deps: LoginIntentDeps) {
  const { intents, reservations, identities, tokens, audit, clock, settings, linkBuilders } = deps;
  const keepReservations = settings.ttlSeconds + 3600;

  const newCode = (): string => Array.from({ length: CODE_LENGTH }, () => CODE_ALPHABET[randomInt(CODE_ALPHABET.length)]).join('');

  const isExpired = (intent: LoginIntent): boolean => intent.expiresAt.getTime() <= clock.now().getTime();

  const summary = (intent: LoginIntent): IntentSummary => ({
    intentId: intent._id,
    ip: intent.ip ?? null,
    userAgent: intent.userAgent ?? null,
    language: (intent.language as ChatLanguage | null | undefined) ?? null,
    createdAt: intent.createdAt,
    expiresAt: intent.expiresAt,
  });

  function assertPending(intent: LoginIntent | null): asserts intent is LoginIntent {
    if (!intent || intent.status !== 'pending') throw new AppError('not_found', 'This sign-in request is unknown or already finished.');
    if (isExpired(intent)) throw new AppError('expired', 'This sign-in request has expired.');
  }

  /**
   * Each code a chat sender presents takes one of `maxWrongCodesPerHour` slots of the current hour before it is looked
   * up, and a code that matches gives its slot back: so only wrong codes count, and however many messages race (one
   * webhook can carry dozens) no more than that many wrong codes are ever looked up. Slots are unique-key reservations.
   */
  const guessSlot = (claimant: Claimant, hour: number, slot: number) => `intent-guess:${claimant.channel}:${claimant.subject}:${hour}:${slot}`;
  const currentHour = () => Math.floor(clock.now().getTime() / 3_600_000);

  async function takeGuessSlot(claimant: Claimant): Promise<string> {
    const hour = currentHour();
    const refused = () => {
      const retryAfter = Math.max(1, Math.ceil(((hour + 1) * 3_600_000 - clock.now().getTime()) / 1000));
      return new AppError('rate_limited', 'Too many wrong sign-in codes from this account. Try again later.', { retryAfter });
    };
    // The usual case for a sender who used them all up: one point lookup instead of ten refused inserts.
    if (await reservations.find(guessSlot(claimant, hour, settings.maxWrongCodesPerHour))) throw refused();
    for (let slot = 1; slot <= settings.maxWrongCodesPerHour; slot++) {
      const key = guessSlot(claimant, hour, slot);
      if (await reservations.reserve(key, 7200)) return key;
    }
    throw refused();
  }

  async function assertClaimedBy(intentId: string, claimant: Claimant): Promise<void> {
    const claim = await reservations.find(`intent:${intentId}:claim`);
    if (!claim || claim.channel !== claimant.channel || claim.subject !== claimant.subject) {
      throw new AppError('forbidden', 'Only the account that opened this sign-in request can answer it.');
    }
  }

  async function decide(intentId: string, claimant: Claimant, decision: 'approved' | 'rejected', user?: User) {
    assertPending(await intents.findById(intentId).lean<LoginIntent>());
    await assertClaimedBy(intentId, claimant);
    if (!(await reservations.reserve(`intent:${intentId}:decision`, keepReservations, { decision }))) {
      throw new AppError('not_found', 'This sign-in request was already answered.');
    }
    const now = clock.now();
    const set: Record<string, unknown> = { status: decision, decidedAt: now, channel: claimant.channel };
    if (user) {
      set.userId = user._id;
      set.expiresAt = new Date(now.getTime() + HANDOVER_GRACE_MS);
    }
    await intents.updateOne({ _id: intentId }, { $set: set });
    await audit.record({ type: decision === 'approved' ? 'intent.approved' : 'intent.rejected', channel: claimant.channel, userId: user?._id, detail: { intentId } });
  }

  return {
    async create(context: { ip?: string | undefined; userAgent?: string | undefined; language?: ChatLanguage | undefined }) {
      const now = clock.now();
      const expiresAt = new Date(now.getTime() + settings.ttlSeconds * 1000);
      const pollToken = `cgpt_${randomBytes(32).toString('base64url')}`;
      // 43 characters of A-Z a-z 0-9 _ -: fits Telegram's deep-link rule (at most 64 of those).
      const startToken = randomBytes(32).toString('base64url');
      for (let attempt = 0; ; attempt++) {
        const intentId = randomBytes(16).toString('base64url');
        const code = newCode();
        try {
          await intents.collection.insertOne({
            _id: intentId as never,
            codeHash: sha256(code),
            startTokenHash: sha256(startToken),
            pollTokenHash: sha256(pollToken),
            status: 'pending',
            ip: context.ip,
            userAgent: context.userAgent?.slice(0, 300),
            ...(context.language ? { language: context.language } : {}),
            createdAt: now,
            expiresAt,
            cleanupAt: new Date(expiresAt.getTime() + 86_400_000),
          });
          await audit.record({ type: 'intent.created', ip: context.ip, detail: { intentId } });
          const links = Object.assign({}, ...linkBuilders.map((build) => build({ code, startToken }))) as Record<string, string>;
          return { intentId, pollToken, code, startToken, expiresIn: settings.ttlSeconds, links };
        } catch (error) {
          // A code still held by another (possibly expired) intent: draw again.
          if (!isDuplicateKey(error) || attempt >= 4) throw error;
        }
      }
    },

    /** The browser's view. Tokens are handed over exactly once, to the first poll after approval. */
    async poll(intentId: string, pollToken: string | undefined, context: { ip?: string | undefined }) {
      const intent = await findIntentForPollToken(intents, intentId, pollToken);
      switch (intent.status) {
        case 'pending':
          return isExpired(intent) ? { status: 'expired' as const } : { status: 'pending' as const, expiresIn: secondsBetween(clock.now(), intent.expiresAt) };
        case 'rejected':
          return { status: 'rejected' as const };
        case 'consumed':
          return { status: 'consumed' as const };
        case 'approved': {
          if (isExpired(intent)) return { status: 'expired' as const };
          const handover = `intent:${intentId}:handover`;
          if (!(await reservations.reserve(handover, keepReservations))) return { status: 'consumed' as const };
          let issued: Awaited<ReturnType<TokenService['issueForLogin']>>;
          try {
            const user = await identities.findById(intent.userId!);
            assertActiveUser(user);
            issued = await tokens.issueForLogin(user, intent.channel as Channel, { ...context, userAgent: intent.userAgent ?? undefined });
          } catch (error) {
            // Nothing was handed over: the next poll may try again.
            await reservations.release(handover);
            throw error;
          }
          await intents.updateOne({ _id: intentId }, { $set: { status: 'consumed', consumedAt: clock.now() } });
          return { status: 'approved' as const, ...issued };
        }
      }
    },

    /**
     * A chat user presents an intent's code or start token. The first account to do so holds the intent; only it
     * can approve or reject it. Returns what the chat should show before asking for confirmation.
     */
    async claim(by: { code: string } | { startToken: string }, claimant: Claimant): Promise<IntentSummary> {
      const slot = await takeGuessSlot(claimant);
      const filter = 'code' in by ? { codeHash: sha256(normalizeIntentCode(by.code)) } : { startTokenHash: sha256(by.startToken) };
      const intent = await intents.findOne(filter).lean<LoginIntent>();
      if (!intent) throw new AppError('not_found', 'That sign-in code is unknown or already used.');
      await reservations.release(slot);
      assertPending(intent);
      const mine = { channel: claimant.channel, subject: claimant.subject };
      if (!(await reservations.reserve(`intent:${intent._id}:claim`, keepReservations, mine))) {
        await assertClaimedBy(intent._id, claimant).catch(() => {
          throw new AppError('not_found', 'That sign-in code is unknown or already used.');
        });
      }
      return summary(intent);
    },

    /** The language a chat answers this sign-in in (null: English, also when the intent is unknown). */
    async languageOf(intentId: string): Promise<ChatLanguage | null> {
      const intent = await intents.findById(intentId, { language: 1 }).lean<Pick<LoginIntent, 'language'>>();
      return (intent?.language as ChatLanguage | null | undefined) ?? null;
    },

    async approve(intentId: string, claimant: Claimant, user: User) {
      assertActiveUser(user);
      await decide(intentId, claimant, 'approved', user);
    },

    async reject(intentId: string, claimant: Claimant) {
      await decide(intentId, claimant, 'rejected');
    },
  };
}

export type LoginIntentService = ReturnType<typeof createLoginIntentService>;
