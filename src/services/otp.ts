import { createHmac, createSecretKey, randomInt, timingSafeEqual, type KeyObject } from 'node:crypto';
import { Types, type Model } from 'mongoose';
import type { Challenge } from '../../models/challenge.js';
import type { Channel } from '../../models/channels.js';
import type { User } from '../../models/user.js';
import { secondsBetween, type Clock } from '../clock.js';
import type { CodeSender } from '../delivery/types.js';
import { renderCodeText } from '../delivery/types.js';
import { AppError, DeliveryError } from '../errors.js';
import { scrubExternalText } from '../logger.js';
import { maskPhone, parsePhone } from '../phone.js';
import type { AuditTrail } from './audit.js';
import type { IdentityService } from './identities.js';
import { isDuplicateKey, type Reservations } from './reservations.js';

export interface OtpSettings {
  length: number;
  ttlSeconds: number;
  maxAttempts: number;
  resendSeconds: number;
  maxSendsPerHour: number;
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
  identities: IdentityService;
  /** One sender per configured channel; the chat channels add theirs when configured. */
  senders: Partial<Record<Channel, CodeSender>>;
  audit: AuditTrail;
  clock: Clock;
  settings: OtpSettings;
  log: { warn(object: object, message: string): void };
}

// Cheapest first: a chat message costs nothing, an SMS costs money.
const AUTO_ORDER: readonly Channel[] = ['telegram', 'whatsapp', 'sms'];
const HOUR_MS = 3_600_000;
// Challenges whose code reached the phone.
const DELIVERED: Challenge['status'][] = ['active', 'consumed'];

export function createOtpService(deps: OtpDeps) {
  const { challenges, reservations, identities, senders, audit, clock, settings, log } = deps;
  const pepper: KeyObject = createSecretKey(Buffer.from(settings.pepper, 'utf8'));
  const allowedCountries = settings.allowedCountries ? new Set(settings.allowedCountries) : undefined;
  const testNumbers = settings.testNumbers ?? new Map<string, string>();
  const ttlMinutes = Math.ceil(settings.ttlSeconds / 60);

  // The code is bound to its challenge, so equal codes never have equal digests.
  const digest = (challengeId: Types.ObjectId, code: string): Buffer =>
    createHmac('sha256', pepper).update(`${challengeId.toString()}.${code}`).digest();

  const newCode = (): string => randomInt(0, 10 ** settings.length).toString().padStart(settings.length, '0');

  /**
   * Which sender takes this code. `auto` tries, cheapest first: the Telegram bot when the phone's Telegram account is
   * linked, the Telegram Gateway when it can reach the phone, WhatsApp when linked, then SMS. A sender that must ask
   * its provider (`prepare`, the Gateway) is asked here, after the per-phone limits, because asking may cost money;
   * under `auto` a provider that cannot reach the phone, or fails to answer, passes the turn to the next channel.
   */
  async function chooseSender(requested: RequestedChannel, phone: string, user: User | null, sendsNothing = false): Promise<CodeSender> {
    const order = requested === 'auto' ? AUTO_ORDER : [requested];
    for (const channel of order) {
      const sender = senders[channel];
      // "auto" only uses a chat channel the person is already known on, unless its sender can find out itself.
      const known =
        requested !== 'auto' || channel === 'sms' || !!sender?.prepare || (channel === 'telegram' ? !!user?.telegram?.id : !!user?.whatsapp?.waId);
      if (!sender || !known || !sender.canReach({ phone, user })) continue;
      // A test number's code is never sent: nothing to ask a provider.
      if (!sender.prepare || sendsNothing) return sender;
      try {
        const ready = await sender.prepare({ phone, user });
        if (ready) return ready;
      } catch (error) {
        log.warn({ phone: maskPhone(phone), channel, reason: scrubExternalText(String(error instanceof Error ? error.message : error)) }, 'otp sender could not check the phone');
        if (requested !== 'auto') throw new AppError('delivery_failed', 'We could not deliver the code. Try again in a moment.', { channel });
      }
    }
    throw new AppError('channel_unavailable', `We cannot send a code to this phone over ${requested}.`, { channel: requested });
  }

  /**
   * Refuses a send that comes too soon after the last delivered one, or one too many within the hour (failed sends
   * count there: a failing provider is no way around the cap), and numbers the next send. One read gives both, so a
   * concurrent sender sees the same number and loses at the unique (phone, sendSeq) index.
   */
  async function nextSendSeq(phone: string, now: Date): Promise<number> {
    const latest = await challenges
      .find({ phone }, { sendSeq: 1, createdAt: 1, status: 1 })
      .sort({ sendSeq: -1 })
      .limit(settings.maxSendsPerHour)
      .lean<Pick<Challenge, 'sendSeq' | 'createdAt' | 'status'>[]>();
    const lastAttempted = latest.find((send) => send.status !== 'failed');
    if (lastAttempted) {
      const resendAt = new Date(lastAttempted.createdAt.getTime() + settings.resendSeconds * 1000);
      if (resendAt > now) throw rateLimited(secondsBetween(now, resendAt));
    }
    const withinHour = latest.filter((send) => send.createdAt.getTime() > now.getTime() - HOUR_MS);
    if (withinHour.length >= settings.maxSendsPerHour) {
      const oldest = withinHour[withinHour.length - 1]!;
      throw rateLimited(secondsBetween(now, new Date(oldest.createdAt.getTime() + HOUR_MS)));
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
      challenge = Types.ObjectId.isValid(by.challengeId) ? await challenges.findById(by.challengeId).lean<Challenge>() : null;
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

  /** Takes the next of the challenge's attempt slots; none left means too many attempts. */
  async function reserveAttempt(challenge: Challenge): Promise<number> {
    const keepFor = settings.ttlSeconds + 3600;
    for (let slot = (challenge.attempts ?? 0) + 1; slot <= settings.maxAttempts; slot++) {
      if (await reservations.reserve(`otp:${challenge._id.toString()}:attempt:${slot}`, keepFor)) {
        await challenges.updateOne({ _id: challenge._id }, { $max: { attempts: slot } });
        return slot;
      }
    }
    throw new AppError('too_many_attempts', 'Too many wrong codes. Ask for a new one.');
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
      const user = input.channel === 'sms' || input.via ? null : await identities.findByPhone(phone);
      const now = clock.now();
      const sendSeq = await nextSendSeq(phone, now);
      const sender = input.via ?? (await chooseSender(input.channel, phone, user, !!fixedCode));
      const challengeId = new Types.ObjectId();
      const code = fixedCode ?? newCode();
      const expiresAt = new Date(now.getTime() + settings.ttlSeconds * 1000);
      try {
        // Stored before it is sent, as "pending": a code that reached a phone always has its record.
        await challenges.collection.insertOne({
          _id: challengeId,
          phone,
          channel: sender.channel,
          codeHash: digest(challengeId, code),
          sendSeq,
          status: 'pending',
          attempts: 0,
          testNumber: !!fixedCode,
          expiresAt,
          ip: input.ip,
          createdAt: now,
          cleanupAt: new Date(now.getTime() + 86_400_000),
        });
      } catch (error) {
        // A concurrent request for the same phone took this send.
        if (isDuplicateKey(error)) throw rateLimited(settings.resendSeconds || 1);
        throw error;
      }

      if (!fixedCode) {
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
      await challenges.updateOne({ _id: challengeId }, { $set: { status: 'active' } });
      await audit.record({ type: 'otp.sent', channel: sender.channel, phone, ip: input.ip, detail: { provider: fixedCode ? 'test_number' : sender.provider } });
      return {
        challengeId: challengeId.toString(),
        channel: sender.channel,
        expiresIn: settings.ttlSeconds,
        resendIn: settings.resendSeconds,
      };
    },

    /** Checks a code; of any number of concurrent right answers exactly one gets the user. */
    async verifyCode(input: ({ challengeId: string } | { phone: string }) & { code: string; ip?: string | undefined }) {
      const challenge = await findChallenge(input);
      const now = clock.now();
      if (challenge.expiresAt.getTime() <= now.getTime()) throw new AppError('expired', 'This code has expired. Ask for a new one.');
      const slot = await reserveAttempt(challenge);

      const expected = asBuffer(challenge.codeHash);
      const given = digest(challenge._id, input.code);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
        await audit.record({ type: 'otp.verify_failed', channel: challenge.channel, phone: challenge.phone, ip: input.ip, detail: { attempt: slot } });
        throw new AppError('invalid_code', 'That code is not right.', { attemptsRemaining: settings.maxAttempts - slot });
      }
      if (!(await reservations.reserve(`otp:${challenge._id.toString()}:used`, settings.ttlSeconds + 3600))) {
        throw new AppError('not_found', 'This code has already been used. Ask for a new one.');
      }
      await challenges.updateOne({ _id: challenge._id }, { $set: { status: 'consumed' } });
      const user = await identities.resolveByPhone(challenge.phone);
      await audit.record({ type: 'otp.verify_ok', channel: challenge.channel, userId: user._id, phone: challenge.phone, ip: input.ip });
      return { user, channel: challenge.channel as Channel };
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
