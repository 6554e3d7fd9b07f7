import { createHash, createHmac } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { StubServer } from './stub-server.js';

export const TELEGRAM_ENV = {
  TELEGRAM_BOT_TOKEN: '7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw',
  TELEGRAM_BOT_USERNAME: 'chatgate_test_bot',
  TELEGRAM_WEBHOOK_SECRET: 'telegram-webhook-secret-0123',
};

export interface TelegramPerson {
  id: number;
  first_name: string;
  username?: string;
}

let updateId = 100_000;
let messageId = 1;
const now = (at: Date) => Math.floor(at.getTime() / 1000);
const privateChat = (person: TelegramPerson) => ({ id: person.id, type: 'private', first_name: person.first_name, ...(person.username ? { username: person.username } : {}) });
const from = (person: TelegramPerson) => ({ ...person, is_bot: false, language_code: 'en' });

/** A text message; a leading /command carries the bot_command entity Telegram adds (Telegraf needs it). */
export function textUpdate(person: TelegramPerson, text: string, at: Date, chat: object = privateChat(person)) {
  const command = /^\/\w+(@\w+)?/.exec(text);
  return {
    update_id: (updateId += 1),
    message: {
      message_id: (messageId += 1),
      from: from(person),
      chat,
      date: now(at),
      text,
      ...(command ? { entities: [{ type: 'bot_command', offset: 0, length: command[0].length }] } : {}),
    },
  };
}

export function callbackUpdate(person: TelegramPerson, data: string, promptMessageId: number, at: Date) {
  return {
    update_id: (updateId += 1),
    callback_query: {
      id: String(4_000_000 + updateId),
      from: from(person),
      chat_instance: '-8347283748',
      data,
      message: {
        message_id: promptMessageId,
        from: { id: 7012345678, is_bot: true, first_name: 'chatgate_test_bot', username: 'chatgate_test_bot' },
        chat: privateChat(person),
        date: now(at),
        text: 'Sign in?',
      },
    },
  };
}

export function contactUpdate(person: TelegramPerson, contact: { phone_number: string; first_name: string; user_id?: number }, at: Date) {
  return {
    update_id: (updateId += 1),
    message: { message_id: (messageId += 1), from: from(person), chat: privateChat(person), date: now(at), contact },
  };
}

/** POSTs an update the way Telegram does, then waits until it has been handled. */
export async function deliverUpdate(app: FastifyInstance, update: object, secret: string | null = TELEGRAM_ENV.TELEGRAM_WEBHOOK_SECRET) {
  const response = await app.inject({
    method: 'POST',
    url: '/webhooks/telegram',
    headers: secret === null ? {} : { 'x-telegram-bot-api-secret-token': secret },
    payload: update,
  });
  await app.services.inbox.idle();
  return response;
}

export interface BotCall {
  method: string;
  body: Record<string, unknown> & {
    chat_id?: number;
    text?: string;
    reply_markup?: {
      inline_keyboard?: { text: string; callback_data: string }[][];
      keyboard?: { text: string; request_contact?: boolean }[][];
      remove_keyboard?: boolean;
    };
  };
}

/** What the bot asked the stand-in Bot API to do, in order. */
export function botCalls(api: StubServer): BotCall[] {
  return api.requests.map((request) => ({ method: request.path.split('/').pop()!, body: (request.json ?? {}) as BotCall['body'] }));
}

/** The stand-in Bot API answers like Telegram: messages get ids, everything else `true`. */
export function botApiAnswersOk(api: StubServer) {
  let sent = 500;
  api.respond((request) => {
    const method = request.path.split('/').pop();
    const body = (request.json ?? {}) as { chat_id?: number; text?: string };
    if (method === 'sendMessage' || method === 'editMessageText') {
      return { body: { ok: true, result: { message_id: (sent += 1), date: 1, chat: { id: body.chat_id, type: 'private' }, text: body.text } } };
    }
    return { body: { ok: true, result: true } };
  });
}

/** Signs Login Widget fields the way Telegram does. */
export function signWidget(fields: Record<string, string | number>, botToken = TELEGRAM_ENV.TELEGRAM_BOT_TOKEN): Record<string, string | number> {
  const dataCheckString = Object.keys(fields)
    .sort()
    .map((key) => `${key}=${fields[key]}`)
    .join('\n');
  const hash = createHmac('sha256', createHash('sha256').update(botToken).digest()).update(dataCheckString).digest('hex');
  return { ...fields, hash };
}
