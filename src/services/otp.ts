import { createHmac, createSecretKey, randomBytes, randomInt, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { Model } from 'mongoose';
import type { Challenge } from '../../models/challenge.js';
import type { Channel } from '../../models/channels.js';
import type { User } from '../../models/user.js';
import { ipLimitKey } from '../client-ip.js';
import { secondsBetween, type Clock } from '../clock.js';
import type { CodeSender } from '../delivery/types.js';
import { renderCodeText } from '../delivery/types.js';
import { AppError, DeliveryError } from '../errors.js';
import { scrubExternalText } from '../logger.js';
import { maskPhone, parsePhone } from '../phone.js';
import type { AuditTrail } from './audit.js';
import type { IdentityService } from './identities.js';
import { isDuplicateKey, type Reservations, type SlotCounter, type SlotRequest } from './reservations.js';

export interface OtpSettings {
  length: number;
  ttlSeconds: number;
  maxAttempts: number;
  resendSeconds: number;
  /** Per phone and requesting IP. */
  maxSendsPerHour: number;
  /** Per phone, from all IPs together. */
  maxSendsPerPhonePerHour: number;
  maxFailuresPerDay: number;
  budgets: { globalPerHour: number; globalPerDay: number; countryPerHour: number; ipPerDay: number };
  pepper: string;
  defaultCountry?: string | undefined;
  allowedCountries?: readonly string[] | undefined;
  testNumbers?: ReadonlyMap<string, string> | undefined;
  messageTemplate: string;
}

export type RequestedChannel = Channel | 'auto';

export interface OtpDeps {
  challenges: Model<Challenge>;
  reservations: Reservations;
  slots: SlotCounter;
  identities: IdentityService;
  /** One sender per configured channel; the chat channels add theirs when configured. */
  senders: Partial<Record<Channel, CodeSender>>;
  audit: AuditTrail;
  clock: Clock;
  settings: OtpSettings;
  log: { warn(object: object, message: string): void; error(object: object, message: string): void };
}

// Cheapest first: a chat message costs nothing, an SMS costs money.
const AUTO_ORDER: readonly Channel[] = ['telegram', 'whatsapp', 'sms'];
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
// Sends that cost money; a code in a chat the person opened, or by Telegram, is free.
const PAID: readonly Channel[] = ['sms', 'whatsapp'];
// Challenges whose code reached the phone.
const DELIVERED: Challenge['status'][] = ['active', 'consumed'];

export function createOtpService(deps: OtpDeps) {
  const { challenges, reservations, slots, identities, senders, audit, clock, settings, log } = deps;
  const pepper: KeyObject = createSecretKey(Buffer.from(settings.pepper, 'utf8'));
  const allowedCountries = settings.allowedCountries ? new Set(settings.allowedCountries) : undefined;
  const testNumbers = settings.testNumbers ?? new Map<string, string>();
  const ttlMinutes = Math.ceil(settings.ttlSeconds / 60);

  // The code is bound to its challenge, so equal codes never have equal digests.
  const digest = (challengeId: string, code: string): Buffer => createHmac('sha256', pepper).update(`${challengeId}.${code}`).digest();

  const newCode = (): string => randomInt(0, 10 ** settings.length).toString().padStart(settings.length, '0');

  /**
   * Which sender takes this code. `auto` tries, cheapest first: the Telegram bot when the phone's Telegram account is
   * linked, the Telegram Gateway when it can reach the phone, WhatsApp when linked, then SMS. A sender that must ask
   * its provider (`prepare`, the Gateway) is asked here, after the per-phone limits, because asking may cost money;
   * under `auto` a provider that cannot reach the phone, or fails to answer, passes the turn to the next channel.
   * A channel asked for by name that exists but cannot reach this phone gives `reachable: false`: the request is
   * answered as if sent, so whether a phone has, say, Telegram is not revealed.
   */
  async function chooseSender(
    requested: RequestedChannel,
    phone: string,
    user: User | null,
    sendsNothing = false,
  ): Promise<{ sender: CodeSender; reachable: boolean }> {
    const order = requested === 'auto' ? AUTO_ORDER : [requested];
    for (const channel of order) {
      const sender = senders[channel];
      // "auto" only uses a chat channel the person is already known on, unless its sender can find out itself.
      const known =
        requested !== 'auto' || channel === 'sms' || !!sender?.prepare || (channel === 'telegram' ? !!user?.telegram?.id : !!user?.whatsapp?.waId);
      if (sender && known && sender.canReach({ phone, user })) {
        // A test number's code is never sent: nothing to ask a provider.
        if (!sender.prepare || sendsNothing) return { sender, reachable: true };
        try {
          const ready = await sender.prepare({ phone, user });
          if (ready) return { sender: ready, reachable: true };
        } catch (error) {
          log.warn({ phone: maskPhone(phone), channel, reason: scrubExternalText(String(error instanceof Error ? error.message : error)) }, 'otp sender could not check the phone');
          if (requested !== 'auto') throw new AppError('delivery_failed', 'We could not deliver the code. Try again in a moment.', { channel });
        }
      }
      if (sender && requested !== 'auto') return { sender, reachable: false };
    }
    throw new AppError('channel_unavailable', `We cannot send a code to this phone over ${requested}.`, { channel: requested });
  }

  const failureCounter = (phone: string, now: Date) => ({
    scope: `otp-fail:${phone}:${Math.floor(now.getTime() / DAY_MS)}`,
    limit: settings.maxFailuresPerDay,
    keepForSeconds: 2 * 86_400,
    reclaimable: true,
  });

  const failureBudgetSpent = () =>
    new AppError('rate_limited', 'Too many wrong codes for this phone today. Sign in through WhatsApp or Telegram, or try again tomorrow.', {
      retryAfter: 0,
    });

  /** The paid-send budgets a send to this phone takes a slot of, each named for logs and the audit trail. */
  function budgetsFor(country: string | undefined, ip: string | undefined, now: Date): (SlotRequest & { name: string; endsAt: number })[] {
    const hour = Math.floor(now.getTime() / HOUR_MS);
    const day = Math.floor(now.getTime() / DAY_MS);
    const hourly = { keepForSeconds: 2 * 3600, endsAt: (hour + 1) * HOUR_MS };
    const daily = { keepForSeconds: 2 * 86_400, endsAt: (day + 1) * DAY_MS };
    const { budgets } = settings;
    return [
      { name: 'global_hour', scope: `budget:global:h:${hour}`, limit: budgets.globalPerHour, ...hourly },
      { name: 'global_day', scope: `budget:global:d:${day}`, limit: budgets.globalPerDay, ...daily },
      { name: 'country_hour', scope: `budget:country:${country ?? 'none'}:h:${hour}`, limit: budgets.countryPerHour, ...hourly },
      ...(ip ? [{ name: 'ip_day', scope: `budget:ip:${ipLimitKey(ip)}:d:${day}`, limit: budgets.ipPerDay, ...daily }] : []),
    ];
  }

  /**
   * Refuses a send that comes too soon after the last delivered one, or one too many within the hour from this IP or
   * from all IPs (failed sends count there: a failing provider is no way around the cap), and numbers the next send.
   * One read gives all three, so a concurrent sender sees the same number and loses at the unique (phone, sendSeq) index.
   */
  async function nextSendSeq(phone: string, ipKey: string, now: Date): Promise<number> {
    const latest = await challenges
      .find({ phone }, { sendSeq: 1, createdAt: 1, status: 1, ipKey: 1 })
      .sort({ sendSeq: -1 })
      .limit(Math.max(settings.maxSendsPerHour, settings.maxSendsPerPhonePerHour))
      .lean<Pick<Challenge, 'sendSeq' | 'createdAt' | 'status' | 'ipKey'>[]>();
    const lastAttempted = latest.find((send) => send.status !== 'failed');
    if (lastAttempted) {
      const resendAt = new Date(lastAttempted.createdAt.getTime() + settings.resendSeconds * 1000);
      if (resendAt > now) throw rateLimited(secondsBetween(now, resendAt));
    }
    const withinHour = latest.filter((send) => send.createdAt.getTime() > now.getTime() - HOUR_MS);
    const fromThisIp = withinHour.filter((send) => send.ipKey === ipKey);
    for (const [sends, cap] of [[fromThisIp, settings.maxSendsPerHour], [withinHour, settings.maxSendsPerPhonePerHour]] as const) {
      if (sends.length >= cap) {
        const oldest = sends[cap - 1]!;
        throw rateLimited(secondsBetween(now, new Date(oldest.createdAt.getTime() + HOUR_MS)));
      }
    }
    return (latest[0]?.sendSeq ?? 0) + 1;
  }

  /**
   * The challenge a check is about. Only the newest delivered code of a phone works: decided here, from the send
   * numbers, rather than by marking older codes, so a slow delivery that finishes last cannot revive an older code.
   */
  async function findChallenge(by: { challengeId: string } | { phone: string }): Promise<Challenge> {
    let challenge: Challenge | null;
    if ('challengeId' in by) {
      challenge = await challenges.findById(by.challengeId).lean<Challenge>();
      if (challenge?.status === 'active') {
        const newer = await challenges.exists({ phone: challenge.phone, sendSeq: { $gt: challenge.sendSeq }, status: { $in: DELIVERED } });
        if (newer) challenge = null;
      }
    } else {
      const { e164 } = parsePhone(by.phone, settings.defaultCountry, testNumbers);
      challenge = await challenges.findOne({ phone: e164, status: { $in: DELIVERED } }).sort({ sendSeq: -1 }).lean<Challenge>();
    }
    if (!challenge || challenge.status !== 'active') {
      throw new AppError('not_found', 'There is no active code for this request. Ask for a new one.');
    }
    return challenge;
  }

  /**
   * Takes an attempt slot of the challenge (the challenge id's holder and guesses by phone have a budget each, so a
   * stranger who knows the phone cannot spend the owner's) and one of the phone's daily failure slots, in one write.
   */
  async function reserveAttempt(challenge: Challenge, byHolder: boolean, now: Date): Promise<number> {
    const attempts = {
      scope: `otp:${challenge._id}:${byHolder ? 'attempt' : 'phone-attempt'}`,
      limit: settings.maxAttempts,
      keepForSeconds: settings.ttlSeconds + 3600,
    };
    const failures = failureCounter(challenge.phone, now);
    const { full, taken } = await slots.take([attempts, failures]);
    if (full.includes(failures)) {
      log.warn({ phone: maskPhone(challenge.phone), limit: settings.maxFailuresPerDay }, 'otp failure budget exhausted');
      throw new AppError('too_many_attempts', 'Too many wrong codes for this phone today. Sign in through WhatsApp or Telegram.');
    }
    if (full.length > 0) throw new AppError('too_many_attempts', 'Too many wrong codes. Ask for a new one.');
    return taken.get(attempts.scope)!;
  }

  return {
    /**
     * Sends a code to a phone. `via` replaces the channel's usual sender: a chat that is asked for a code answers
     * in the conversation itself (within its reply window) instead of, say, a WhatsApp template.
     */
    async requestCode(input: { phone: string; channel: RequestedChannel; ip?: string | undefined; via?: CodeSender }) {
      const { e164: phone, country } = parsePhone(input.phone, settings.defaultCountry, testNumbers);
      const fixedCode = testNumbers.get(phone);
      // Checked before anything is sent or stored: the defence against SMS pumping to premium ranges.
      if (allowedCountries && !fixedCode && (!country || !allowedCountries.has(country))) {
        throw new AppError('country_not_allowed', 'We do not send codes to numbers in this country.', { country: country ?? null });
      }
      const now = clock.now();
      const ipKey = ipLimitKey(input.ip);
      // Round trip 1: the three reads run side by side.
      const [user, failuresSpent, sendSeq] = await Promise.all([
        identities.findByPhone(phone),
        slots.isFull(failureCounter(phone, now)),
        nextSendSeq(phone, ipKey, now),
      ]);
      if (failuresSpent) {
        log.warn({ phone: maskPhone(phone), limit: settings.maxFailuresPerDay }, 'otp failure budget exhausted');
        await audit.record({ type: 'otp.failure_budget_exhausted', phone, ip: input.ip, detail: { limit: settings.maxFailuresPerDay } });
        throw failureBudgetSpent();
      }
      const chosen = input.via ? { sender: input.via, reachable: true } : await chooseSender(input.channel, phone, user, !!fixedCode);
      const { sender } = chosen;
      // A blocked user's phone costs nothing and is told nothing: the answer is the one any number gets.
      const skipped = user?.status === 'blocked' ? 'blocked_user' : chosen.reachable ? undefined : 'unreachable';
      const sends = !fixedCode && !skipped;

      // Round trip 2: one slot of every paid-send budget, all or none.
      let budgetSlots: string[] = [];
      if (sends && !input.via && PAID.includes(sender.channel)) {
        const budgets = budgetsFor(country, input.ip, now);
        const { full, taken } = await slots.take(budgets);
        if (full.length > 0) {
          const names = budgets.filter((budget) => full.includes(budget)).map((budget) => budget.name);
          const retryAt = Math.max(...budgets.filter((budget) => full.includes(budget)).map((budget) => budget.endsAt));
          log.error({ phone: maskPhone(phone), channel: sender.channel, country, budgets: names }, 'otp send budget exhausted');
          await audit.record({ type: 'otp.budget_exhausted', channel: sender.channel, phone, ip: input.ip, detail: { budget: names[0], budgets: names } });
          throw new AppError('rate_limited', 'We are sending too many codes right now. Try again later.', {
            retryAfter: Math.max(1, secondsBetween(now, new Date(retryAt))),
          });
        }
        budgetSlots = [...taken].map(([scope, slot]) => `${scope}:${slot}`);
      }

      const challengeId = randomBytes(16).toString('base64url');
      const code = fixedCode ?? newCode();
      const expiresAt = new Date(now.getTime() + settings.ttlSeconds * 1000);
      try {
        // Stored before it is sent, as "pending": a code that reached a phone always has its record.
        await challenges.collection.insertOne({
          _id: challengeId as never,
          phone,
          channel: sender.channel,
          codeHash: digest(challengeId, code),
          sendSeq,
          status: 'pending',
          testNumber: !!fixedCode,
          ...(skipped ? { skipped } : {}),
          expiresAt,
          ip: input.ip,
          ipKey,
          createdAt: now,
          cleanupAt: new Date(now.getTime() + 86_400_000),
        });
      } catch (error) {
        // Nothing will be sent: the budget slots go back.
        await Promise.all(budgetSlots.map((key) => reservations.release(key)));
        // A concurrent request for the same phone took this send.
        if (isDuplicateKey(error)) throw rateLimited(settings.resendSeconds || 1);
        throw error;
      }

      if (sends) {
        try {
          await sender.send({ channel: sender.channel, phone, user, code, text: renderCodeText(settings.messageTemplate, code, ttlMinutes), ttlMinutes });
        } catch (error) {
          await challenges.updateOne({ _id: challengeId }, { $set: { status: 'failed' } });
          const detail =
            error instanceof DeliveryError
              ? { provider: error.provider, reason: scrubExternalText(error.message), providerDetail: error.providerDetail }
              : { reason: scrubExternalText(String(error)) };
          log.warn({ phone: maskPhone(phone), channel: sender.channel, ...detail }, 'otp delivery failed');
          await audit.record({ type: 'otp.delivery_failed', channel: sender.channel, phone, ip: input.ip, detail: { provider: sender.provider } });
          throw new AppError('delivery_failed', 'We could not deliver the code. Try again in a moment.', { channel: sender.channel });
        }
      }

      // From here it is the phone's newest code, and older ones stop working (see findChallenge).
      await Promise.all([
        challenges.updateOne({ _id: challengeId }, { $set: { status: 'active' } }),
        skipped === 'blocked_user'
          ? audit.record({ type: 'otp.blocked_user_skipped', channel: sender.channel, userId: user!._id, phone, ip: input.ip })
          : audit.record({
              type: 'otp.sent',
              channel: sender.channel,
              phone,
              ip: input.ip,
              detail: { provider: fixedCode ? 'test_number' : skipped ? 'none' : sender.provider },
            }),
      ]);
      return {
        challengeId,
        channel: sender.channel,
        expiresIn: settings.ttlSeconds,
        resendIn: settings.resendSeconds,
      };
    },

    /** Checks a code; of any number of concurrent right answers exactly one gets the user. */
    async verifyCode(input: ({ challengeId: string } | { phone: string }) & { code: string; ip?: string | undefined }) {
      const challenge = await this.checkCode(input);
      const user = await identities.resolveByPhone(challenge.phone);
      await audit.record({ type: 'otp.verify_ok', channel: challenge.channel, userId: user._id, phone: challenge.phone, ip: input.ip });
      return { user, channel: challenge.channel as Channel };
    },

    /**
     * Checks a code and spends it, without signing anyone in: the proof that whoever asks holds the phone (a change of
     * phone number uses it). Of any number of concurrent right answers exactly one passes.
     */
    async checkCode(input: ({ challengeId: string } | { phone: string }) & { code: string; ip?: string | undefined }): Promise<{ phone: string; channel: Channel }> {
      const challenge = await findChallenge(input);
      const now = clock.now();
      if (challenge.expiresAt.getTime() <= now.getTime()) throw new AppError('expired', 'This code has expired. Ask for a new one.');
      const slot = await reserveAttempt(challenge, 'challengeId' in input, now);

      const expected = asBuffer(challenge.codeHash);
      const given = digest(challenge._id, input.code);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
        await audit.record({ type: 'otp.verify_failed', channel: challenge.channel, phone: challenge.phone, ip: input.ip, detail: { attempt: slot } });
        throw new AppError('invalid_code', 'That code is not right.', { attemptsRemaining: settings.maxAttempts - slot });
      }
      if (!(await reservations.reserve(`otp:${challenge._id.toString()}:used`, settings.ttlSeconds + 3600))) {
        throw new AppError('not_found', 'This code has already been used. Ask for a new one.');
      }
      // A right code starts the phone's failure count again.
      await Promise.all([
        challenges.updateOne({ _id: challenge._id }, { $set: { status: 'consumed' } }),
        slots.reset(failureCounter(challenge.phone, now)),
      ]);
      return { phone: challenge.phone, channel: challenge.channel as Channel };
    },
  };
}

// Lean reads give BSON Binary for Buffer paths.
function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  const bytes = (value as { buffer?: Uint8Array } | null)?.buffer;
  return bytes ? Buffer.from(bytes) : Buffer.alloc(0);
}

function rateLimited(retryAfter: number): AppError {
  const seconds = Math.max(1, retryAfter);
  return new AppError('rate_limited', `Too many codes for this phone. Try again in ${seconds} seconds.`, { retryAfter: seconds });
}

export type OtpService = ReturnType<typeof createOtpService>;
