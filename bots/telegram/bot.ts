import { Markup, Telegraf, TelegramError, type Context, type Telegram } from 'telegraf';
import { message } from 'telegraf/filters';
import type { UserFromGetMe } from 'telegraf/types';
import { chatTextsIn, createChatVoice, type ChatLanguage, type ChatTexts } from '../../src/chat-texts.js';
import type { CodeSender } from '../../src/delivery/types.js';
import { AppError, DeliveryError } from '../../src/errors.js';
import { scrubExternalText } from '../../src/logger.js';
import { parsePhone } from '../../src/phone.js';
import type { Services } from '../../src/services/index.js';
import type { Claimant, IntentSummary } from '../../src/services/login-intents.js';

export interface TelegramBotSettings {
  token: string;
  username: string;
  apiRoot: string;
  requireConfirm: boolean;
  serviceName: string;
  /** Webhook mode hands failures back (the inbox retries the update); polling mode only logs them. */
  rethrowErrors: boolean;
}

export interface TelegramBotDeps {
  services: Services;
  texts: ChatTexts;
  log: { warn(object: object, message: string): void; error(object: object, message: string): void };
  settings: TelegramBotSettings;
}

type TelegramFrom = NonNullable<Context['from']>;

const START_TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

/** The bot's own identity, known from the token and the configured username, so no getMe call is needed. */
export function botInfoFor(token: string, username: string): UserFromGetMe {
  return {
    id: Number(token.split(':')[0]),
    is_bot: true,
    first_name: username,
    username,
    can_join_groups: false,
    can_read_all_group_messages: false,
    supports_inline_queries: false,
  };
}

const profileOf = (from: TelegramFrom) => ({ id: from.id, username: from.username, firstName: from.first_name });
const claimantOf = (from: TelegramFrom): Claimant => ({ channel: 'telegram', subject: String(from.id) });

/** The Telegram bot: translates commands, buttons and shared contacts into service calls, and answers. */
export function createTelegramBot(deps: TelegramBotDeps): Telegraf {
  const { services, texts, log, settings } = deps;
  // The handler timeout stays under the inbox's lease (120 s), so a hung Bot API call fails this attempt before
  // another process may start the next one.
  const bot = new Telegraf(settings.token, { telegram: { apiRoot: settings.apiRoot, webhookReply: false }, handlerTimeout: 60_000 });
  bot.botInfo = botInfoFor(settings.token, settings.username);

  const { say, refusal, otpRefusal } = createChatVoice(texts, settings.serviceName);
  // A sign-in started on the hosted page is prompted and answered in the page's language.
  const voiceIn = (language: ChatLanguage | null) => ({ ...createChatVoice(chatTextsIn(texts, language), settings.serviceName), texts: chatTextsIn(texts, language) });
  const shareContactKeyboard = () => Markup.keyboard([Markup.button.contactRequest(texts.sharePhoneButton)]).oneTime().resize();

  // A reply that only reports what already happened on our side: if Telegram refuses it, log it and move on.
  async function notify(action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (error) {
      if (!(error instanceof TelegramError)) throw error;
      log.warn({ errorCode: error.code, description: scrubExternalText(error.description), method: (error.on as { method?: string } | undefined)?.method }, 'telegram reply failed');
    }
  }

  // Codes and sign-in prompts belong in a private chat, never in a group (nor in inline messages, which have no chat).
  bot.use(async (ctx, next) => {
    const chat = ctx.chat ?? ctx.callbackQuery?.message?.chat;
    if (chat?.type !== 'private') return;
    if (!ctx.from || ctx.from.is_bot) return;
    await next();
  });

  bot.start(async (ctx) => {
    const token = ctx.payload.trim();
    if (!token) {
      await notify(() => ctx.reply(say('telegramWelcome'), shareContactKeyboard()));
      return;
    }
    if (!START_TOKEN.test(token)) {
      await notify(() => ctx.reply(say('unknownCode')));
      return;
    }
    let summary: IntentSummary;
    try {
      summary = await services.loginIntents.claim({ startToken: token }, claimantOf(ctx.from));
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      await notify(() => ctx.reply(refusal(error.code, error.details.retryAfter)));
      return;
    }
    const voice = voiceIn(summary.language);
    if (!settings.requireConfirm) {
      const user = await services.identities.resolveByTelegram(profileOf(ctx.from));
      try {
        await services.loginIntents.approve(summary.intentId, claimantOf(ctx.from), user);
        await notify(() => ctx.reply(voice.say('approved')));
      } catch (error) {
        if (!(error instanceof AppError)) throw error;
        await notify(() => ctx.reply(voice.refusal(error.code)));
      }
      return;
    }
    // The prompt is the effect of this update: if Telegram refuses it, the update is retried.
    await ctx.reply(
      voice.confirmPrompt(summary),
      Markup.inlineKeyboard([
        Markup.button.callback(voice.texts.confirmButton, `confirm:${summary.intentId}`),
        Markup.button.callback(voice.texts.cancelButton, `cancel:${summary.intentId}`),
      ]),
    );
  });

  bot.action(/^(confirm|cancel):([A-Za-z0-9_-]{1,64})$/, async (ctx) => {
    const [, decision, intentId] = ctx.match as unknown as [string, 'confirm' | 'cancel', string];
    const { say, refusal } = voiceIn(await services.loginIntents.languageOf(intentId));
    let answer: string;
    try {
      if (decision === 'confirm') {
        const user = await services.identities.resolveByTelegram(profileOf(ctx.from));
        await services.loginIntents.approve(intentId, claimantOf(ctx.from), user);
        answer = say('approved');
      } else {
        await services.loginIntents.reject(intentId, claimantOf(ctx.from));
        answer = say('rejected');
      }
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      answer = error.code === 'not_found' ? say('alreadyAnswered') : refusal(error.code);
      // Someone else's prompt: say so privately, leave the message as it is.
      if (error.code === 'forbidden') {
        await notify(() => ctx.answerCbQuery(answer, { show_alert: true }));
        return;
      }
    }
    await notify(() => ctx.answerCbQuery());
    await notify(() => ctx.editMessageText(answer));
  });

  bot.on(message('contact'), async (ctx) => {
    const { contact } = ctx.message;
    // People can share anyone's contact card; only their own proves the number is theirs.
    if (contact.user_id !== ctx.from.id) {
      await notify(() => ctx.reply(say('phoneNotYours'), shareContactKeyboard()));
      return;
    }
    let phone: string;
    try {
      phone = parsePhone(contact.phone_number.startsWith('+') ? contact.phone_number : `+${contact.phone_number}`).e164;
    } catch {
      await notify(() => ctx.reply(say('somethingWentWrong'), Markup.removeKeyboard()));
      return;
    }
    const { outcome, user, retiredUserId } = await services.identities.linkPhoneToTelegram(profileOf(ctx.from), phone);
    if (outcome === 'linked' || outcome === 'merged') {
      // A merge retires a user id that other services may hold data under: the trail names it.
      const detail = retiredUserId ? { outcome, retiredUserId: retiredUserId.toString() } : { outcome };
      await services.audit.record({ type: 'identity.linked', channel: 'telegram', userId: user._id, phone, detail });
    }
    const reply =
      outcome === 'busy'
        ? say('somethingWentWrong')
        : outcome === 'phone_taken' || outcome === 'telegram_has_other_phone'
          ? say('phoneTaken')
          : say('phoneLinked', { phone });
    await notify(() => ctx.reply(reply, Markup.removeKeyboard()));
  });

  bot.command('otp', async (ctx) => {
    const user = await services.identities.resolveByTelegram(profileOf(ctx.from));
    if (!user.phone) {
      await notify(() => ctx.reply(say('otpNeedsPhone'), shareContactKeyboard()));
      return;
    }
    const phone = user.phone;
    // Asked for in the chat, so the code is the answer in the chat.
    const inChat: CodeSender = {
      channel: 'telegram',
      provider: 'telegram-bot-api',
      canReach: () => true,
      send: async ({ code, ttlMinutes }) => {
        try {
          await ctx.reply(say('otpCode', { code, phone, minutes: ttlMinutes }));
        } catch (error) {
          throw telegramDeliveryError(error);
        }
      },
    };
    try {
      await services.otp.requestCode({ phone, channel: 'telegram', via: inChat });
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      const text = otpRefusal(error.code, error.details.retryAfter) ?? say('somethingWentWrong');
      await notify(() => ctx.reply(text));
    }
  });

  bot.help(async (ctx) => notify(() => ctx.reply(say('telegramHelp'))));
  bot.on(message('text'), async (ctx) => notify(() => ctx.reply(say('telegramHelp'))));

  bot.catch((error, ctx) => {
    if (settings.rethrowErrors) throw error;
    log.error({ err: error, updateId: ctx.update.update_id }, 'telegram update failed');
  });
  return bot;
}

/** Codes asked for on the web with channel "telegram": sent by the bot to the Telegram account linked to the phone. */
export function createTelegramCodeSender(telegram: Telegram): CodeSender {
  return {
    channel: 'telegram',
    provider: 'telegram-bot-api',
    canReach: ({ user }) => !!user?.telegram?.id,
    async send({ user, text }) {
      try {
        await telegram.sendMessage(user!.telegram!.id!, text);
      } catch (error) {
        throw telegramDeliveryError(error);
      }
    },
  };
}

function telegramDeliveryError(error: unknown): DeliveryError {
  if (error instanceof TelegramError) {
    return new DeliveryError('telegram', `Bot API answered ${error.code}: ${error.description}`, { errorCode: error.code });
  }
  // node-fetch errors can carry the request URL, and with it the bot token: keep only their kind.
  const kind = (error as { code?: string; type?: string } | null)?.code ?? (error as { type?: string } | null)?.type ?? 'network error';
  return new DeliveryError('telegram', `Bot API unreachable (${kind})`);
}
