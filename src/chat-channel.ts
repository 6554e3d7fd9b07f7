import type { FastifyInstance } from 'fastify';
import type { Channel } from '../models/channels.js';
import type { ChatTexts } from './chat-texts.js';
import type { Clock } from './clock.js';
import type { CodeSender } from './delivery/types.js';
import type { Services } from './services/index.js';
import type { IntentLinkBuilder } from './services/login-intents.js';

/** What a configured chat channel (WhatsApp, Telegram) brings to the gateway. */
export interface ChatChannel {
  name: Channel;
  /** Sends codes asked for on the web with this channel, if the channel can. */
  codeSender?: CodeSender | undefined;
  /** Deep links for login intents. */
  links: IntentLinkBuilder[];
  /** Whether its messages go through the durable inbox (then the retry sweep must run). */
  usesInbox: boolean;
  /** Mounts its routes and handlers once the services exist. */
  register(app: FastifyInstance, context: ChatChannelContext): Promise<void>;
}

export interface ChatChannelContext {
  services: Services;
  texts: ChatTexts;
  clock: Clock;
  /** The stricter per-IP limit of the sign-in routes. */
  strictRateLimit: object;
}
