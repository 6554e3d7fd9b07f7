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

export interface AuditTrail {
  record(entry: AuditEntry): Promise<void>;
}

export function createAuditTrail(events: Model<AuditEvent>, clock: Clock, onError: (error: unknown) => void): AuditTrail {
  return {
    // An audit write that fails is logged, never turned into a failed login.
    async record(entry) {
      try {
        await events.collection.insertOne({ ...entry, phone: maskPhone(entry.phone), at: clock.now() });
      } catch (error) {
        onError(error);
      }
    },
  };
}
