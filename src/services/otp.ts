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
import type { BlockedPhones } from './blocked-phones.js';
import type { FailureBudget, FailureCount } from './failure-budget.js';
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
  /** Each phone's wrong checks in a rolling 24 hours (`maxFailuresPerDay`). */
  failures: FailureBudget;
  /** The paid-send budgets, handed out from blocks of slots each process reserves. */
  sendBudgets: BudgetCounter;
  /** Marks for the phones of blocked users, so an SMS request need not read the user. */
  blockedPhones: BlockedPhones;
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
  const { challenges, otpPhones, reservations, slots, failures, sendBudgets, blockedPhones, identities, senders, audit, clock, settings, log } = deps;
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
    beforeAsking?: () => Promise<((ready: CodeSender | null) => void) | null>,
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
        // Asking may cost money (the Gateway charges for a checkSendAbility that succeeds): the paid-send budgets are
        // taken before, and the hook is told what came of it. Spent budgets pass the turn under `auto`.
        const settle = beforeAsking ? await beforeAsking() : undefined;
        if (settle === null) continue;
        try {
          const ready = await sender.prepare({ phone, user });
          settle?.(ready);
          if (ready) return { sender: ready, reachable: true };
        } catch (error) {
          settle?.(null);
          log.warn({ phone: maskPhone(phone), channel, reason: scrubExternalText(String(error instanceof Error ? error.message : error)) }, 'otp sender could not check the phone');
          if (requested !== 'auto') throw new AppError('delivery_failed', 'We could not deliver the code. Try again in a moment.', { channel });
        }
      }
      if (sender && requested !== 'auto') return { sender, reachable: false };
    }
    throw new AppError('channel_unavailable', `We cannot send a code to this phone over ${requested}.`, { channel: requested });
  }

  const failureBudgetSpent = (now: Date, until: Date) =>
    new AppError('rate_limited', 'Too many wrong codes for this phone. Sign in through WhatsApp or Telegram, or try again later.', {
      retryAfter: Math.max(1, secondsBetween(now, until)),
    });

  /** A send refused because a paid-send budget is spent: logged as an error, audited, answered 429. */
  async function budgetExhausted(
    full: readonly (BudgetRequest & { name: string; endsAt: number })[],
    sent: { channel: Channel; phone: string; country: string | undefined; ip: string | undefined; now: Date },
  ): Promise<AppError> {
    const names = full.map((budget) => budget.name);
    const retryAt = Math.max(...full.map((budget) => budget.endsAt));
    log.error({ phone: maskPhone(sent.phone), channel: sent.channel, country: sent.country, budgets: names }, 'otp send budget exhausted');
    await audit.record({ type: 'otp.budget_exhausted', channel: sent.channel, phone: sent.phone, ip: sent.ip, detail: { budget: names[0], budgets: names } });
    return new AppError('rate_limited', 'We are sending too many codes right now. Try again later.', {
      retryAfter: Math.max(1, secondsBetween(sent.now, new Date(retryAt))),
    });
  }

  /** Senders that cost money per code besides SMS and WhatsApp templates: the Telegram Gateway (about $0.01 a code). */
  const isPaidSender = (sender: CodeSender) => PAID.includes(sender.channel) || sender.provider === 'telegram-gateway';

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

  type PhoneState = OtpPhone & { sends: OtpPhoneSend[] };
  /** The phone's own document among documents read from `otp_phones` with it (its failures, its marker). */
  const phoneStateIn = (found: readonly { _id: unknown }[], phone: string): PhoneState | null =>
    (found.find((doc) => doc._id === phone) as unknown as PhoneState | undefined) ?? null;

  /** The phone's document and its failures in one command: they share the collection (see failure-budget.ts). */
  async function readPhoneAndFailures(phone: string): Promise<{ state: PhoneState | null; failureCount: FailureCount }> {
    const found = await otpPhones.collection.find({ _id: { $in: [phone, ...failures.keysOf(phone)] as never[] } }).toArray();
    const state = phoneStateIn(found, phone);
    return { state, failureCount: failures.countOf(phone, found) };
  }

  /**
   * What an OTP request needs of the phone: its document, whether its failure budget is spent, and whether it may
   * belong to a blocked user. One `$in` of three keys: the document, the marker a wrong check leaves when it fills the
   * window, and the mark of a blocked user's phone. The exact failure count (all the failures' keys: once ten times
   * the database's work, see failure-budget.ts) is read only where a marker stands.
   */
  async function readPhoneForRequest(phone: string): Promise<{ state: PhoneState | null; refusedUntil: Date | undefined; markedBlocked: boolean }> {
    const keys = [phone, failures.spentKeyOf(phone), blockedPhones.keyOf(phone)];
    const found = await otpPhones.collection.find({ _id: { $in: keys as never[] } }).toArray();
    const state = phoneStateIn(found, phone);
    const refusedUntil = failures.maybeSpent(phone, found) ? (await failures.read(phone)).refusedUntil : undefined;
    return { state, refusedUntil, markedBlocked: blockedPhones.markedIn(found, phone) };
  }

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

  /** Whether a newer code than this one was sent (and not failed) to its phone: then this one no longer works. */
  async function isSuperseded(challenge: Challenge, state: PhoneState | null): Promise<boolean> {
    if (state) return state.sends.some((send) => send.seq > challenge.sendSeq && !send.failed);
    // A phone without its document (sent before it existed).
    return !!(await challenges.exists({ phone: challenge.phone, sendSeq: { $gt: challenge.sendSeq }, status: { $in: ['active', 'consumed'] } }));
  }

  const noActiveCode = () => new AppError('not_found', 'There is no active code for this request. Ask for a new one.');

  function liveChallenge(challenge: Challenge | null, now: Date): Challenge {
    if (!challenge || challenge.status !== 'active') throw noActiveCode();
    if (challenge.expiresAt.getTime() <= now.getTime()) throw new AppError('expired', 'This code has expired. Ask for a new one.');
    return challenge;
  }

  /**
   * Takes an attempt slot of a code. The challenge id's holder and guesses by phone have a budget each, so a stranger
   * who knows the phone cannot spend the owner's. Undefined when the budget is spent.
   */
  async function takeAttempt(scope: string): Promise<{ slot: number; key: string } | undefined> {
    const { full, taken } = await slots.take([{ scope, limit: settings.maxAttempts, keepForSeconds: settings.ttlSeconds + 3600 }]);
    const slot = taken.get(scope);
    return full.length > 0 || slot === undefined ? undefined : { slot, key: `${scope}:${slot}` };
  }

  interface OpenedCheck {
    challenge: Challenge;
    attempt: { slot: number; key: string } | undefined;
    failureCount: FailureCount;
  }

  /**
   * Round trips 1 and 2 of a check by challenge id: the challenge; then, side by side, an attempt slot, whether a newer
   * code was sent (then this one no longer works), and the phone's failures.
   */
  async function openCheckById(challengeId: string, now: Date): Promise<OpenedCheck> {
    const challenge = liveChallenge((await challenges.collection.findOne({ _id: challengeId as never })) as Challenge | null, now);
    const [attempt, phoneRead] = await Promise.allSettled([
      takeAttempt(`otp:${challenge._id}:attempt`),
      readPhoneAndFailures(challenge.phone).then(async ({ state, failureCount }) => ({ superseded: await isSuperseded(challenge, state), failureCount })),
    ]);
    if (attempt.status === 'rejected' || phoneRead.status === 'rejected' || phoneRead.value.superseded) {
      // A dead code spends nothing: the slot goes back.
      if (attempt.status === 'fulfilled' && attempt.value) await reservations.release(attempt.value.key);
      for (const outcome of [attempt, phoneRead]) if (outcome.status === 'rejected') throw outcome.reason;
      throw noActiveCode();
    }
    return { challenge, attempt: attempt.value, failureCount: phoneRead.value.failureCount };
  }

  /**
   * Round trips 1 and 2 of a check by phone: the phone's document and its failures; then, side by side, its newest
   * code and an attempt slot of it. Only the newest delivered code of a phone works: decided from the send numbers,
   * rather than by marking older codes, so a slow delivery that finishes last cannot revive an older code. The slot is
   * named by the send (number and time), which names one code; one taken for a dead code is spent on nothing.
   */
  async function openCheckByPhone(phoneInput: string, now: Date): Promise<OpenedCheck> {
    const { e164: phone } = parsePhone(phoneInput, settings.defaultCountry, testNumbers);
    const { state, failureCount } = await readPhoneAndFailures(phone);
    const newest = state?.sends.find((send) => !send.failed);
    if (!newest) throw noActiveCode();
    const [found, attempt] = await Promise.all([
      challenges.collection.findOne({ phone, sendSeq: newest.seq }) as Promise<Challenge | null>,
      takeAttempt(`otp:${phone}:${newest.seq}:${newest.at.getTime()}:phone-attempt`),
    ]);
    return { challenge: liveChallenge(found, now), attempt, failureCount };
  }

  /** A check refused because the phone's failures in the last 24 hours reached the budget. */
  function failureBudgetExhausted(phone: string): AppError {
    log.warn({ phone: maskPhone(phone), limit: settings.maxFailuresPerDay }, 'otp failure budget exhausted');
    return new AppError('too_many_attempts', 'Too many wrong codes for this phone. Sign in through WhatsApp or Telegram.');
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
      // Only what a later read needs: the raw IP is in the audit trail (with its retention), not on every code.
      ...(fixedCode ? { testNumber: true } : {}),
      ...(skipped ? { skipped } : {}),
      expiresAt,
      ipKey,
      createdAt: now,
      cleanupAt: new Date(expiresAt.getTime() + HOUR_MS),
    });
    const budgetsOf = (sender: CodeSender, sends: boolean) => (sends && !input.via && isPaidSender(sender) ? budgetsFor(country, input.ip, now) : []);
    const takeBudgets = (budgets: BudgetRequest[]) =>
      budgets.length > 0 ? sendBudgets.take(budgets) : Promise.resolve({ full: [] as BudgetRequest[], taken: [] as BudgetSlot[] });

    // An SMS asked for by name, whose sender asks its provider nothing, needs no user to pick its sender, and needs the
    // user's status only for a block, which leaves a mark beside the phone's document (blocked-phones.ts): the user is
    // then read only where the mark stands.
    const smsByName = !input.via && input.channel === 'sms' && senders.sms && !senders.sms.prepare ? senders.sms : undefined;
    // A phone this instance has not sent to lately most likely has no document (it leaves 2 hours after the last
    // send): for an SMS by name the writes of a first send then go out with the lookups, guessing send number 1, and
    // the request takes one round trip. The guess is checked against the lookups; a wrong one is undone (the code was
    // never sent) and the request goes on as below.
    const guess = smsByName && !handledLately(phone, now) && smsByName.canReach({ phone, user: null }) ? smsByName : undefined;
    const guessedSends = !!guess && !fixedCode;
    const guessedBudgets = guess ? budgetsOf(guess, guessedSends) : [];
    const firstSend: OtpPhoneSend = { seq: 1, at: now, ipKey };
    const skippedGuess = Promise.resolve(undefined);
    const readsUser = !smsByName;
    // Round trip 1: the user (where read), and the phone's document with its failure marker and block mark (one
    // `$in`), side by side (and, guessing a first send, its writes).
    const [firstUserRead, phoneRead, guessedBudget, guessedChallenge, guessedRecord] = await Promise.allSettled([
      readsUser ? identities.findByPhone(phone) : Promise.resolve(null),
      readPhoneForRequest(phone),
      guess ? takeBudgets(guessedBudgets) : skippedGuess,
      guess ? challenges.collection.insertOne(challengeFor(1, guess.channel, undefined)) : skippedGuess,
      // An insert: it writes only where the phone has no document, so one that exists is never overwritten on a guess.
      guess ? otpPhones.collection.insertOne({ _id: phone as never, lastSeq: 1, sends: [firstSend], cleanupAt: phoneCleanupAt(now) }) : skippedGuess,
    ]);
    const read = <T>(outcome: PromiseSettledResult<T>): T | undefined => (outcome.status === 'fulfilled' ? outcome.value : undefined);
    const userRead = !readsUser && read(phoneRead)?.markedBlocked ? (await Promise.allSettled([identities.findByPhone(phone)]))[0] : firstUserRead;
    const readFailure = [userRead, phoneRead].find((outcome) => outcome.status === 'rejected');
    const user = read(userRead) ?? null;
    const failuresSpentUntil = read(phoneRead)?.refusedUntil;
    const failuresSpent = !!failuresSpentUntil;
    // The guess's own insert may reach the phone's document before the lookup does: a document the guess made means
    // there was none before.
    const madeRecord = guess !== undefined && guessedRecord.status === 'fulfilled';
    const seen = madeRecord ? null : (read(phoneRead)?.state ?? null);
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
    if (failuresSpentUntil) {
      log.warn({ phone: maskPhone(phone), limit: settings.maxFailuresPerDay }, 'otp failure budget exhausted');
      await audit.record({ type: 'otp.failure_budget_exhausted', phone, ip: input.ip, detail: { limit: settings.maxFailuresPerDay } });
      throw failureBudgetSpent(now, failuresSpentUntil);
    }
    const sendSeq = guessHolds ? 1 : nextSendSeq(state, ipKey, now);
    // Budget slots taken before asking a provider that charges for the asking (kept once it answered: the money is
    // spent whatever happens next).
    let askedFor: BudgetSlot[] | undefined;
    const takeBudgetsBeforeAsking = async () => {
      const wanted = budgetsFor(country, input.ip, now);
      const { full, taken } = await sendBudgets.take(wanted);
      if (full.length > 0) {
        // Under auto the next channel is tried (a paid one meets the same budgets in round trip 2).
        if (input.channel === 'auto') return null;
        throw await budgetExhausted(wanted.filter((budget) => full.includes(budget)), { channel: input.channel, phone, country, ip: input.ip, now });
      }
      return (ready: CodeSender | null) => {
        if (ready && isPaidSender(ready)) askedFor = taken;
        else sendBudgets.giveBack(taken);
      };
    };
    const chosen =
      guessedChosen ??
      (input.via
        ? { sender: input.via, reachable: true }
        : await chooseSender(input.channel, phone, user, !!fixedCode || user?.status === 'blocked', takeBudgetsBeforeAsking));
    const { sender } = chosen;
    // A blocked user's phone costs nothing and is told nothing: the answer is the one any number gets.
    const skipped = user?.status === 'blocked' ? 'blocked_user' : chosen.reachable ? undefined : 'unreachable';
    const sends = !fixedCode && !skipped;
    const budgets = guessHolds ? guessedBudgets : askedFor ? [] : budgetsOf(sender, sends);

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
      throw await budgetExhausted(
        budgets.filter((budget) => budgetFull.includes(budget)),
        { channel: sender.channel, phone, country, ip: input.ip, now },
      );
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
  async function spendCode<T>(input: CodeCheck, alongside: (challenge: Challenge) => Promise<T>): Promise<{ challenge: Challenge; result: T }> {
    const now = clock.now();
    // Round trips 1 and 2: the challenge, an attempt slot and the phone's failures (see openCheckById, openCheckByPhone).
    const { challenge, attempt, failureCount } =
      'challengeId' in input ? await openCheckById(input.challengeId, now) : await openCheckByPhone(input.phone, now);
    if (failureCount.refusedUntil || !attempt) {
      // A refusal also leaves the marker the OTP requests read, should the check that filled the window have died first.
      await Promise.all([
        attempt ? reservations.release(attempt.key) : undefined,
        failureCount.refusedUntil ? failures.markSpent(challenge.phone, failureCount.refusedUntil) : undefined,
      ]);
      if (failureCount.refusedUntil) throw failureBudgetExhausted(challenge.phone);
      throw new AppError('too_many_attempts', 'Too many wrong codes. Ask for a new one.');
    }
    // Round trip 3: the failure this check counts as, recorded before the code is compared (a right code then starts
    // the count again), so concurrent guesses cannot outrun the budget. Only checks that hold an attempt slot take
    // one, so the losers of a race for the attempts do not fight for failure numbers.
    const recorded = await failures.record(failureCount);
    if ('refusedUntil' in recorded) {
      await Promise.all([reservations.release(attempt.key), failures.markSpent(challenge.phone, recorded.refusedUntil)]);
      throw failureBudgetExhausted(challenge.phone);
    }
    const { slot } = attempt;

    const expected = asBuffer(challenge.codeHash);
    const given = digest(challenge._id, input.code);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      await Promise.all([
        audit.record({ type: 'otp.verify_failed', channel: challenge.channel, phone: challenge.phone, ip: input.ip, detail: { attempt: slot } }),
        failures.settleWrongCheck(recorded),
      ]);
      throw new AppError('invalid_code', 'That code is not right.', { attemptsRemaining: settings.maxAttempts - slot });
    }
    // Round trip 4: the single use, a unique-key insert.
    if (!(await reservations.reserve(`otp:${challenge._id.toString()}:used`, settings.ttlSeconds + 3600))) {
      throw new AppError('not_found', 'This code has already been used. Ask for a new one.');
    }
    // Round trip 5: the code is spent, a right code starts the phone's failure count again, and the user is
    // found or made (for a login), side by side.
    const [result] = await Promise.all([
      alongside(challenge),
      challenges.collection.updateOne({ _id: challenge._id as never }, { $set: { status: 'consumed' } }),
      failures.reset(recorded),
    ]);
    return { challenge, result };
  }

  return {
    requestCode: (input: RequestCodeInput) => requestCode(input),

    /**
     * Checks a code; of any number of concurrent right answers exactly one gets the user, already stamped with this
     * login (hand `loginRecorded` to issueForLogin).
     */
    async verifyCode(input: CodeCheck) {
      const { challenge, result: user } = await spendCode(input, ({ phone, channel }) => identities.resolvePhoneLogin(phone, channel as Channel));
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
