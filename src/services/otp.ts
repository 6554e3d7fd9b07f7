import { createHmac, createSecretKey, randomBytes, randomInt, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { Model } from 'mongoose';
import type { Challenge } from '../../models/challenge.js';
import type { OtpPhone, OtpPhoneSend } from '../../models/otp-phone.js';
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
import { isDuplicateKey, type BudgetCounter, type BudgetRequest, type BudgetSlot, type Reservations, type SlotCounter } from './reservations.js';

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

type CodeCheck = ({ challengeId: string } | { phone: string }) & { code: string; ip?: string | undefined };

export interface RequestCodeInput {
  phone: string;
  channel: RequestedChannel;
  ip?: string | undefined;
  via?: CodeSender;
}

export interface OtpDeps {
  challenges: Model<Challenge>;
  /** Each phone's recent sends, by point lookup. */
  otpPhones: Model<OtpPhone>;
  reservations: Reservations;
  slots: SlotCounter;
  /** The paid-send budgets, handed out from blocks of slots each process reserves. */
  sendBudgets: BudgetCounter;
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

export function createOtpService(deps: OtpDeps) {
  const { challenges, otpPhones, reservations, slots, sendBudgets, identities, senders, audit, clock, settings, log } = deps;
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
  function budgetsFor(country: string | undefined, ip: string | undefined, now: Date): (BudgetRequest & { name: string; endsAt: number })[] {
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

  // The sends a phone's document keeps: enough for both hourly caps.
  const sendsKept = Math.max(settings.maxSendsPerHour, settings.maxSendsPerPhonePerHour);

  const readPhone = (phone: string) => otpPhones.collection.findOne({ _id: phone as never }) as Promise<(OtpPhone & { sends: OtpPhoneSend[] }) | null>;

  /**
   * Refuses a send that comes too soon after the last delivered one, or one too many within the hour from this IP or
   * from all IPs (failed sends count there: a failing provider is no way around the cap), and numbers the next send.
   * Decided from the phone's document, so a concurrent sender sees the same number and loses at the unique
   * (phone, sendSeq) index.
   */
  function nextSendSeq(state: { lastSeq: number; sends: OtpPhoneSend[] } | null, ipKey: string, now: Date): number {
    const latest = state?.sends ?? [];
    const lastAttempted = latest.find((send) => !send.failed);
    if (lastAttempted) {
      const resendAt = new Date(lastAttempted.at.getTime() + settings.resendSeconds * 1000);
      if (resendAt > now) throw rateLimited(secondsBetween(now, resendAt));
    }
    const withinHour = latest.filter((send) => send.at.getTime() > now.getTime() - HOUR_MS);
    const fromThisIp = withinHour.filter((send) => send.ipKey === ipKey);
    for (const [sends, cap] of [[fromThisIp, settings.maxSendsPerHour], [withinHour, settings.maxSendsPerPhonePerHour]] as const) {
      if (sends.length >= cap) {
        const oldest = sends[cap - 1]!;
        throw rateLimited(secondsBetween(now, new Date(oldest.at.getTime() + HOUR_MS)));
      }
    }
    return (state?.lastSeq ?? 0) + 1;
  }

  // Kept past its phone's last challenge (cleaned up an hour after it expires), so the numbering restarts cleanly.
  const phoneCleanupAt = (now: Date) => new Date(now.getTime() + settings.ttlSeconds * 1000 + 2 * HOUR_MS);

  /** Writes a phone's document; of two first writes racing to create it, the loser writes again over the winner's. */
  async function recordSend(phone: string, fields: { lastSeq: number; sends: OtpPhoneSend[]; cleanupAt: Date }) {
    const update = { $set: fields };
    try {
      await otpPhones.collection.updateOne({ _id: phone as never }, update, { upsert: true });
    } catch (error) {
      if (!isDuplicateKey(error)) throw error;
      await otpPhones.collection.updateOne({ _id: phone as never }, update);
    }
  }

  /**
   * Rebuilds a phone's document from its challenges: after a lost race (the winner's send must be in it) or when the
   * document is missing or behind (written by an older version, or its write failed). Off the usual path.
   */
  async function rebuildPhone(phone: string, now: Date) {
    const latest = await challenges
      .find({ phone }, { sendSeq: 1, createdAt: 1, status: 1, ipKey: 1 })
      .sort({ sendSeq: -1 })
      .limit(sendsKept)
      .lean<Pick<Challenge, 'sendSeq' | 'createdAt' | 'status' | 'ipKey'>[]>();
    const state = {
      lastSeq: latest[0]?.sendSeq ?? 0,
      sends: latest.map((send) => ({ seq: send.sendSeq, at: send.createdAt, ipKey: send.ipKey ?? undefined, ...(send.status === 'failed' ? { failed: true } : {}) })),
    };
    await recordSend(phone, { ...state, cleanupAt: phoneCleanupAt(now) });
    return state;
  }

  /**
   * The challenge a check is about. Only the newest delivered code of a phone works: decided from the send
   * numbers, rather than by marking older codes, so a slow delivery that finishes last cannot revive an older code.
   */
  async function findChallenge(by: { challengeId: string } | { phone: string }): Promise<Challenge> {
    let challenge: Challenge | null;
    if ('challengeId' in by) {
      challenge = (await challenges.collection.findOne({ _id: by.challengeId as never })) as Challenge | null;
    } else {
      const { e164 } = parsePhone(by.phone, settings.defaultCountry, testNumbers);
      const newest = (await readPhone(e164))?.sends.find((send) => !send.failed);
      challenge = newest ? ((await challenges.collection.findOne({ phone: e164, sendSeq: newest.seq })) as Challenge | null) : null;
    }
    if (!challenge || challenge.status !== 'active') {
      throw new AppError('not_found', 'There is no active code for this request. Ask for a new one.');
    }
    return challenge;
  }

  /** Whether a newer code than this one was sent (and not failed) to its phone: then this one no longer works. */
  async function isSuperseded(challenge: Challenge): Promise<boolean> {
    const state = await readPhone(challenge.phone);
    if (state) return state.sends.some((send) => send.seq > challenge.sendSeq && !send.failed);
    // A phone without its document (sent before it existed).
    return !!(await challenges.exists({ phone: challenge.phone, sendSeq: { $gt: challenge.sendSeq }, status: { $in: ['active', 'consumed'] } }));
  }

  /**
   * Takes an attempt slot of the challenge (the challenge id's holder and guesses by phone have a budget each, so a
   * stranger who knows the phone cannot spend the owner's) and one of the phone's daily failure slots, in one write.
   */
  async function reserveAttempt(challenge: Challenge, byHolder: boolean, now: Date): Promise<{ slot: number; taken: string[] }> {
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
    return { slot: taken.get(attempts.scope)!, taken: [...taken].map(([scope, slot]) => `${scope}:${slot}`) };
  }

  // Phones this instance handled a request for lately (until their document would have left): their document most
  // likely exists, so their requests read it before writing. Only saves round trips; forgetting is always safe.
  const recentPhones = new Map<string, number>();
  const handledLately = (phone: string, now: Date) => (recentPhones.get(phone) ?? 0) > now.getTime();
  function rememberPhone(phone: string, now: Date) {
    if (recentPhones.size >= 100_000) recentPhones.clear();
    recentPhones.set(phone, phoneCleanupAt(now).getTime());
  }

  /**
   * The outcomes of a first send's writes made on a guess, as round trip 2 would have given them. When another request
   * made the phone's document first, this send is written into it now (the guess only writes where there is none).
   */
  async function guessedWrites(
    budget: PromiseSettledResult<{ full: BudgetRequest[]; taken: BudgetSlot[] }>,
    inserted: PromiseSettledResult<unknown>,
    record: PromiseSettledResult<unknown>,
    writeRecord: () => Promise<void>,
  ): Promise<[typeof budget, typeof inserted, PromiseSettledResult<unknown>]> {
    if (inserted.status !== 'fulfilled' || record.status === 'fulfilled' || !isDuplicateKey(record.reason)) return [budget, inserted, record];
    const [rewritten] = await Promise.allSettled([writeRecord()]);
    return [budget, inserted, rewritten];
  }

  /**
   * Sends a code to a phone. `via` replaces the channel's usual sender: a chat that is asked for a code answers
   * in the conversation itself (within its reply window) instead of, say, a WhatsApp template.
   */
  async function requestCode(input: RequestCodeInput, repairs = 1): Promise<{
    challengeId: string;
    channel: Channel;
    expiresIn: number;
    resendIn: number;
  }> {
    const { e164: phone, country } = parsePhone(input.phone, settings.defaultCountry, testNumbers);
    const fixedCode = testNumbers.get(phone);
    // Checked before anything is sent or stored: the defence against SMS pumping to premium ranges.
    if (allowedCountries && !fixedCode && (!country || !allowedCountries.has(country))) {
      throw new AppError('country_not_allowed', 'We do not send codes to numbers in this country.', { country: country ?? null });
    }
    const now = clock.now();
    const ipKey = ipLimitKey(input.ip);
    const challengeId = randomBytes(16).toString('base64url');
    const code = fixedCode ?? newCode();
    const expiresAt = new Date(now.getTime() + settings.ttlSeconds * 1000);
    const challengeFor = (sendSeq: number, channel: Channel, skipped: string | undefined) => ({
      _id: challengeId as never,
      phone,
      channel,
      codeHash: digest(challengeId, code),
      sendSeq,
      status: 'active',
      testNumber: !!fixedCode,
      ...(skipped ? { skipped } : {}),
      expiresAt,
      ip: input.ip,
      ipKey,
      createdAt: now,
      cleanupAt: new Date(expiresAt.getTime() + HOUR_MS),
    });
    const budgetsOf = (sender: CodeSender, sends: boolean) => (sends && !input.via && PAID.includes(sender.channel) ? budgetsFor(country, input.ip, now) : []);
    const takeBudgets = (budgets: BudgetRequest[]) =>
      budgets.length > 0 ? sendBudgets.take(budgets) : Promise.resolve({ full: [] as BudgetRequest[], taken: [] as BudgetSlot[] });

    // A phone this instance has not sent to lately most likely has no document (it leaves 2 hours after the last
    // send), and an SMS asked for by name needs no user to pick its sender: then the writes of a first send go out
    // with the lookups, guessing send number 1, and the request takes one round trip. The guess is checked against
    // the lookups; a wrong one is undone (the code was never sent) and the request goes on as below.
    const guessedSender = !input.via && input.channel === 'sms' && !handledLately(phone, now) ? senders.sms : undefined;
    const guess = guessedSender && !guessedSender.prepare && guessedSender.canReach({ phone, user: null }) ? guessedSender : undefined;
    const guessedSends = !!guess && !fixedCode;
    const guessedBudgets = guess ? budgetsOf(guess, guessedSends) : [];
    const firstSend: OtpPhoneSend = { seq: 1, at: now, ipKey };
    const skippedGuess = Promise.resolve(undefined);
    // Round trip 1: three point lookups side by side (and, guessing a first send, its writes).
    const [userRead, failuresRead, stateRead, guessedBudget, guessedChallenge, guessedRecord] = await Promise.allSettled([
      identities.findByPhone(phone),
      slots.isFull(failureCounter(phone, now)),
      readPhone(phone),
      guess ? takeBudgets(guessedBudgets) : skippedGuess,
      guess ? challenges.collection.insertOne(challengeFor(1, guess.channel, undefined)) : skippedGuess,
      // An insert: it writes only where the phone has no document, so one that exists is never overwritten on a guess.
      guess ? otpPhones.collection.insertOne({ _id: phone as never, lastSeq: 1, sends: [firstSend], cleanupAt: phoneCleanupAt(now) }) : skippedGuess,
    ]);
    const read = <T>(outcome: PromiseSettledResult<T>): T | undefined => (outcome.status === 'fulfilled' ? outcome.value : undefined);
    const readFailure = [userRead, failuresRead, stateRead].find((outcome) => outcome.status === 'rejected');
    const user = read(userRead) ?? null;
    const failuresSpent = read(failuresRead);
    // The guess's own insert may reach the phone's document before the lookup does: a document the guess made means
    // there was none before.
    const madeRecord = guess !== undefined && guessedRecord.status === 'fulfilled';
    const seen = madeRecord ? null : (read(stateRead) ?? null);
    // A document whose last send is number 1 while this guess holds send 1 was made by a concurrent first request
    // (which lost send 1 and rebuilds it), or is older than send 1's challenge (over an hour, outside every limit):
    // either way this request holds the phone's first send, and undoing it could leave the phone sent nothing.
    const noHistory = seen === null || (guessedChallenge.status === 'fulfilled' && guess !== undefined && seen.lastSeq <= 1);
    const guessedChosen = guess && !readFailure && user?.status !== 'blocked' ? await chooseSender(input.channel, phone, user, !!fixedCode) : undefined;
    const guessHolds = !!guess && !readFailure && !failuresSpent && noHistory && guessedChosen?.sender === guess && guessedChosen.reachable;
    const state = guessHolds ? null : seen;
    rememberPhone(phone, now);
    if (guess) {
      if (!guessHolds) {
        const budgetTaken = read(guessedBudget as PromiseSettledResult<{ taken: BudgetSlot[] } | undefined>);
        sendBudgets.giveBack(budgetTaken?.taken ?? []);
        const inserted = guessedChallenge.status === 'fulfilled';
        if (inserted) await challenges.collection.deleteOne({ _id: challengeId as never });
        // The phone's document this guess made is written again from the challenges, which are the truth.
        if (madeRecord) await rebuildPhone(phone, now);
      }
    }
    if (readFailure) throw (readFailure as PromiseRejectedResult).reason;
    if (failuresSpent) {
      log.warn({ phone: maskPhone(phone), limit: settings.maxFailuresPerDay }, 'otp failure budget exhausted');
      await audit.record({ type: 'otp.failure_budget_exhausted', phone, ip: input.ip, detail: { limit: settings.maxFailuresPerDay } });
      throw failureBudgetSpent();
    }
    const sendSeq = guessHolds ? 1 : nextSendSeq(state, ipKey, now);
    const chosen = guessedChosen ?? (input.via ? { sender: input.via, reachable: true } : await chooseSender(input.channel, phone, user, !!fixedCode));
    const { sender } = chosen;
    // A blocked user's phone costs nothing and is told nothing: the answer is the one any number gets.
    const skipped = user?.status === 'blocked' ? 'blocked_user' : chosen.reachable ? undefined : 'unreachable';
    const sends = !fixedCode && !skipped;
    const budgets = guessHolds ? guessedBudgets : budgetsOf(sender, sends);

    const send: OtpPhoneSend = { seq: sendSeq, at: now, ipKey };
    const previousSends = state?.sends ?? [];
    // Round trip 2, side by side: a slot of every paid-send budget (all or none); the challenge, under the unique
    // (phone, sendSeq) index that lets one of concurrent requests send; the phone's document with this send. The
    // challenge is usable at once: whoever holds the code holds it from the moment it is sent, and a newer send
    // makes it the phone's newest (see isSuperseded). It is stored before it is sent, so a code that reached a
    // phone always has its record. A first send whose guess held made these writes in round trip 1.
    const [budgetOutcome, inserted, recorded] = guessHolds
      ? await guessedWrites(
          guessedBudget as PromiseSettledResult<{ full: BudgetRequest[]; taken: BudgetSlot[] }>,
          guessedChallenge,
          guessedRecord,
          () => recordSend(phone, { lastSeq: 1, sends: [firstSend], cleanupAt: phoneCleanupAt(now) }),
        )
      : await Promise.allSettled([
          takeBudgets(budgets),
          challenges.collection.insertOne(challengeFor(sendSeq, sender.channel, skipped)),
          recordSend(phone, { lastSeq: sendSeq, sends: [send, ...previousSends].slice(0, sendsKept), cleanupAt: phoneCleanupAt(now) }),
        ]);
    const budgetSlots = budgetOutcome.status === 'fulfilled' ? budgetOutcome.value.taken : [];
    const budgetFull = budgetOutcome.status === 'fulfilled' ? budgetOutcome.value.full : [];
    const failure = [inserted, budgetOutcome, recorded].find((outcome) => outcome.status === 'rejected');
    if (failure || budgetFull.length > 0) {
      // Nothing will be sent: the budget slots go back, and a stored challenge and its send are undone.
      sendBudgets.giveBack(budgetSlots);
      await Promise.all([
        ...(inserted.status === 'fulfilled'
          ? [
              challenges.collection.deleteOne({ _id: challengeId as never }),
              otpPhones.collection.updateOne({ _id: phone as never }, { $set: { sends: previousSends } }),
            ]
          : []),
      ]);
    }
    if (inserted.status === 'rejected') {
      if (!isDuplicateKey(inserted.reason)) throw inserted.reason;
      // A concurrent request took this send, or the phone's document was behind: rebuilt from the challenges, it
      // gives the true wait; if it allows a send now, the request is tried once more.
      const rebuilt = await rebuildPhone(phone, now);
      nextSendSeq(rebuilt, ipKey, now);
      if (repairs > 0) return requestCode(input, repairs - 1);
      throw rateLimited(settings.resendSeconds || 1);
    }
    if (failure) throw (failure as PromiseRejectedResult).reason;
    if (budgetFull.length > 0) {
      const names = budgets.filter((budget) => budgetFull.includes(budget)).map((budget) => budget.name);
      const retryAt = Math.max(...budgets.filter((budget) => budgetFull.includes(budget)).map((budget) => budget.endsAt));
      log.error({ phone: maskPhone(phone), channel: sender.channel, country, budgets: names }, 'otp send budget exhausted');
      await audit.record({ type: 'otp.budget_exhausted', channel: sender.channel, phone, ip: input.ip, detail: { budget: names[0], budgets: names } });
      throw new AppError('rate_limited', 'We are sending too many codes right now. Try again later.', {
        retryAfter: Math.max(1, secondsBetween(now, new Date(retryAt))),
      });
    }

    if (sends) {
      try {
        await sender.send({ channel: sender.channel, phone, user, code, text: renderCodeText(settings.messageTemplate, code, ttlMinutes), ttlMinutes });
      } catch (error) {
        await Promise.all([
          challenges.updateOne({ _id: challengeId }, { $set: { status: 'failed' } }),
          otpPhones.collection.updateOne(
            { _id: phone as never },
            { $set: { sends: [{ ...send, failed: true }, ...previousSends].slice(0, sendsKept) } },
          ),
        ]);
        const detail =
          error instanceof DeliveryError
            ? { provider: error.provider, reason: scrubExternalText(error.message), providerDetail: error.providerDetail }
            : { reason: scrubExternalText(String(error)) };
        log.warn({ phone: maskPhone(phone), channel: sender.channel, ...detail }, 'otp delivery failed');
        await audit.record({ type: 'otp.delivery_failed', channel: sender.channel, phone, ip: input.ip, detail: { provider: sender.provider } });
        throw new AppError('delivery_failed', 'We could not deliver the code. Try again in a moment.', { channel: sender.channel });
      }
    }

    await (skipped === 'blocked_user'
      ? audit.record({ type: 'otp.blocked_user_skipped', channel: sender.channel, userId: user!._id, phone, ip: input.ip })
      : audit.record({
          type: 'otp.sent',
          channel: sender.channel,
          phone,
          ip: input.ip,
          detail: { provider: fixedCode ? 'test_number' : skipped ? 'none' : sender.provider },
        }));
    return {
      challengeId,
      channel: sender.channel,
      expiresIn: settings.ttlSeconds,
      resendIn: settings.resendSeconds,
    };
  }

  /**
   * Checks a code and spends it; `alongside` runs beside the spending writes (a login finds or makes its user there,
   * so the check stays within its round trips). Of any number of concurrent right answers exactly one passes.
   */
  async function spendCode<T>(input: CodeCheck, alongside: (phone: string) => Promise<T>): Promise<{ challenge: Challenge; result: T }> {
    // Round trip 1 (by phone: 2): the challenge.
    const challenge = await findChallenge(input);
    const now = clock.now();
    if (challenge.expiresAt.getTime() <= now.getTime()) throw new AppError('expired', 'This code has expired. Ask for a new one.');
    // Round trip 2: an attempt slot, and whether a newer code was sent, side by side.
    const [attempt, superseded] = await Promise.allSettled([
      reserveAttempt(challenge, 'challengeId' in input, now),
      'challengeId' in input ? isSuperseded(challenge) : Promise.resolve(false),
    ]);
    if (superseded.status === 'rejected') throw superseded.reason;
    if (superseded.value) {
      // A dead code spends nothing: the slots go back.
      if (attempt.status === 'fulfilled') await Promise.all(attempt.value.taken.map((key) => reservations.release(key)));
      throw new AppError('not_found', 'There is no active code for this request. Ask for a new one.');
    }
    if (attempt.status === 'rejected') throw attempt.reason;
    const { slot } = attempt.value;

    const expected = asBuffer(challenge.codeHash);
    const given = digest(challenge._id, input.code);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      await audit.record({ type: 'otp.verify_failed', channel: challenge.channel, phone: challenge.phone, ip: input.ip, detail: { attempt: slot } });
      throw new AppError('invalid_code', 'That code is not right.', { attemptsRemaining: settings.maxAttempts - slot });
    }
    // Round trip 3: the single use, a unique-key insert.
    if (!(await reservations.reserve(`otp:${challenge._id.toString()}:used`, settings.ttlSeconds + 3600))) {
      throw new AppError('not_found', 'This code has already been used. Ask for a new one.');
    }
    // Round trip 4: the code is spent, a right code starts the phone's failure count again, and the user is
    // found or made (for a login), side by side.
    const [result] = await Promise.all([
      alongside(challenge.phone),
      challenges.updateOne({ _id: challenge._id }, { $set: { status: 'consumed' } }),
      slots.reset(failureCounter(challenge.phone, now)),
    ]);
    return { challenge, result };
  }

  return {
    requestCode: (input: RequestCodeInput) => requestCode(input),

    /** Checks a code; of any number of concurrent right answers exactly one gets the user. */
    async verifyCode(input: CodeCheck) {
      const { challenge, result: user } = await spendCode(input, (phone) => identities.resolveByPhone(phone));
      await audit.record({ type: 'otp.verify_ok', channel: challenge.channel, userId: user._id, phone: challenge.phone, ip: input.ip });
      return { user, channel: challenge.channel as Channel };
    },

    /**
     * Checks a code and spends it, without signing anyone in: the proof that whoever asks holds the phone (a change of
     * phone number uses it). Of any number of concurrent right answers exactly one passes.
     */
    async checkCode(input: CodeCheck): Promise<{ phone: string; channel: Channel }> {
      const { challenge } = await spendCode(input, async () => undefined);
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
