import type { Model } from 'mongoose';
import type { Reservation } from '../../models/reservation.js';
import type { Clock } from '../clock.js';

export const isDuplicateKey = (error: unknown): boolean => (error as { code?: number } | null)?.code === 11000;

export interface Reservations {
  /** True for exactly one caller per key, however many race; `data` is kept for whoever comes second. */
  reserve(key: string, keepForSeconds: number, data?: Record<string, unknown>): Promise<boolean>;
  find(key: string): Promise<Record<string, unknown> | undefined>;
  /** Gives a key back, for reservations that guard a step rather than mark something used up. */
  release(key: string): Promise<void>;
}

export function createReservations(reservations: Model<Reservation>, clock: Clock): Reservations {
  return {
    async reserve(key, keepForSeconds, data) {
      const now = clock.now();
      try {
        await reservations.collection.insertOne({
          _id: key as never,
          data,
          createdAt: now,
          cleanupAt: new Date(now.getTime() + keepForSeconds * 1000),
        });
        return true;
      } catch (error) {
        if (isDuplicateKey(error)) return false;
        throw error;
      }
    },
    async release(key) {
      await reservations.collection.deleteOne({ _id: key as never });
    },
    async find(key) {
      const found = await reservations.collection.findOne({ _id: key as never });
      return (found?.data as Record<string, unknown> | undefined) ?? (found ? {} : undefined);
    },
  };
}
