import type { Model } from 'mongoose';
import { z } from 'zod';
import type { User } from '../../models/user.js';
import { AppError } from '../errors.js';
import { parsePhone } from '../phone.js';
import type { AuditTrail } from './audit.js';
import { assertActiveUser, type IdentityService, type TelegramProfile } from './identities.js';
import type { IntentSummary, LoginIntentService } from './login-intents.js';
import type { RequestContext, TokenService } from './tokens.js';

export interface TelegramLoginDeps {
  users: Model<User>;
  identities: IdentityService;
  loginIntents: LoginIntentService;
  tokens: TokenService;
  audit: AuditTrail;
  log: { info(object: object, message: string): void; warn(object: object, message: string): void };
  /** INTENT_REQUIRE_CONFIRM: a login intent is approved only after the person confirms the browser, as in the chats. */
  requireConfirm: boolean;
}

// The claims of Telegram's ID token the gateway uses (already verified: signature, iss, aud, exp, nonce).
const telegramClaims = z.looseObject({
  sub: z.string().min(1).max(255),
  // The Telegram user id: the same number the bot sees as from.id.
  id: z.union([z.number().int().positive().max(Number.MAX_SAFE_INTEGER), z.string().regex(/^\d{1,15}$/).transform(Number)]),
  name: z.string().max(256).optional(),
  given_name: z.string().max(256).optional(),
  preferred_username: z.string().max(64).optional(),
  // Digits without '+', present when the person shared their phone (scope "phone").
  phone_number: z.string().max(32).optional(),
});

export type TelegramLoginResult =
  | { kind: 'tokens'; tokens: Awaited<ReturnType<TokenService['issueForLogin']>> }
  | { kind: 'intent_approved'; intentId: string }
  /** The intent is held for this Telegram account; the person must still confirm which browser they sign in. */
  | { kind: 'intent_confirm'; summary: IntentSummary; userId: string; telegramId: number };

/** The rules of "Log in with Telegram": who the person is, which phone Telegram verified, what they get. */
export function createTelegramLoginService(deps: TelegramLoginDeps) {
  const { users, identities, loginIntents, tokens, audit, log, requireConfirm } = deps;
  const claimantFor = (telegramId: number) => ({ channel: 'telegram' as const, subject: String(telegramId) });

  /** Telegram's '+'-less phone in E.164, or undefined when it is not a valid number. */
  function verifiedPhone(raw: string | undefined): string | undefined {
    if (!raw) return undefined;
    const digits = raw.replace(/[^\d]/g, '');
    try {
      return parsePhone(`+${digits}`).e164;
    } catch {
      log.warn({ digits: digits.length }, 'telegram login: the phone number in the ID token is not valid; ignored');
      return undefined;
    }
  }

  /**
   * Finds or creates the user by Telegram id. A phone Telegram verified links or merges exactly as a shared own
   * contact card does in the bot (identities.linkPhoneToTelegram, audit `identity.linked`); when the rule refuses
   * (the phone belongs to a user with another Telegram account, or this Telegram user has another phone), the person
   * still logs in as their Telegram user, without that phone.
   */
  async function resolveUser(rawClaims: Record<string, unknown>): Promise<{ user: User; telegramId: number }> {
    const parsed = telegramClaims.safeParse(rawClaims);
    if (!parsed.success) throw new AppError('invalid_token', 'The Telegram ID token lacks the Telegram user id.');
    const claims = parsed.data;
    const profile: TelegramProfile = { id: claims.id, username: claims.preferred_username, firstName: claims.given_name ?? claims.name };
    const phone = verifiedPhone(claims.phone_number);

    let user: User;
    if (phone) {
      const { outcome, user: linked, retiredUserId } = await identities.linkPhoneToTelegram(profile, phone);
      if (outcome === 'busy') throw new AppError('service_unavailable', 'This Telegram account is being updated; try again in a moment.');
      if (outcome === 'linked' || outcome === 'merged') {
        const detail = retiredUserId ? { outcome, retiredUserId: retiredUserId.toString(), via: 'telegram_login' } : { outcome, via: 'telegram_login' };
        await audit.record({ type: 'identity.linked', channel: 'telegram', userId: linked._id, phone, detail });
      } else if (outcome !== 'already_linked') {
        log.info({ outcome, userId: linked._id.toString() }, 'telegram login: the verified phone was not linked');
      }
      user = linked;
    } else {
      user = await identities.resolveByTelegram(profile);
    }
    if (user.telegram?.sub !== claims.sub) {
      await users.updateOne({ _id: user._id, 'telegram.id': claims.id }, { $set: { 'telegram.sub': claims.sub } }, { timestamps: false });
    }
    return { user, telegramId: claims.id };
  }

  return {
    resolveUser,

    /**
     * A verified Telegram login: with a login intent's start token it approves that intent (the browser polling it
     * gets the tokens), otherwise it issues tokens here. Tokens carry amr ["telegram"].
     */
    async complete(input: { claims: Record<string, unknown>; intentStartToken?: string | undefined; context: RequestContext }): Promise<TelegramLoginResult> {
      const { user, telegramId } = await resolveUser(input.claims);
      if (input.intentStartToken) {
        // The same claimant as the bot's (the Telegram user id): from here only this account can answer the intent.
        const claimant = claimantFor(telegramId);
        const summary = await loginIntents.claim({ startToken: input.intentStartToken }, claimant);
        if (requireConfirm) {
          assertActiveUser(user);
          return { kind: 'intent_confirm', summary, userId: user._id.toString(), telegramId };
        }
        await loginIntents.approve(summary.intentId, claimant, user);
        return { kind: 'intent_approved', intentId: summary.intentId };
      }
      return { kind: 'tokens', tokens: await tokens.issueForLogin(user, 'telegram', input.context) };
    },

    /**
     * The person's answer to "sign in this browser?" after a Telegram login with an intent. A link to someone
     * else's intent is the phishing case this question exists for, as the chats' Confirm / Cancel prompt.
     */
    async answerIntent(input: { intentId: string; telegramId: number; userId: string; decision: 'confirm' | 'cancel' }) {
      const claimant = claimantFor(input.telegramId);
      if (input.decision === 'cancel') {
        await loginIntents.reject(input.intentId, claimant);
        return;
      }
      const user = await identities.findById(input.userId);
      assertActiveUser(user);
      await loginIntents.approve(input.intentId, claimant, user);
    },
  };
}

export type TelegramLoginService = ReturnType<typeof createTelegramLoginService>;
