import type { Model, Types } from 'mongoose';
import type { AuditEvent } from '../../models/audit-event.js';
import type { Channel } from '../../models/channels.js';
import type { Clock } from '../clock.js';
import { maskPhone } from '../phone.js';

export type AuditType = AuditEvent['type'];

export interface AuditEntry {
  type: AuditType;
  channel?: Channel | undefined;
  userId?: Types.ObjectId | string | undefined;
  phone?: string | undefined;
  ip?: string | undefined;
  detail?: Record<string, unknown> | undefined;
}

export type AuditListener = (entry: AuditEntry) => void;

export interface AuditTrail {
  record(entry: AuditEntry): Promise<void>;
  /** Sees every recorded event (metrics count them); a listener that throws is ignored. */
  subscribe(listener: AuditListener): void;
}

export function createAuditTrail(events: Model<AuditEvent>, clock: Clock, onError: (error: unknown) => void): AuditTrail {
  const listeners: AuditListener[] = [];
  return {
    // An audit write that fails is logged, never turned into a failed login.
    async record(entry) {
      for (const listener of listeners) {
        try {
          listener(entry);
        } catch (error) {
          onError(error);
        }
      }
      try {
        await events.collection.insertOne({ ...entry, phone: maskPhone(entry.phone), at: clock.now() });
      } catch (error) {
        onError(error);
      }
    },

    subscribe(listener) {
      listeners.push(listener);
    },
  };
}
