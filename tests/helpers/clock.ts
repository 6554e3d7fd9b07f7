import type { Clock } from '../../src/clock.js';

export interface TestClock extends Clock {
  advance(seconds: number): void;
  set(date: Date): void;
}

/** A clock the test moves by hand, so expiry is tested without sleeping. */
export function createTestClock(start = new Date('2026-11-21T10:00:00Z')): TestClock {
  let current = start.getTime();
  return {
    now: () => new Date(current),
    advance: (seconds) => {
      current += seconds * 1000;
    },
    set: (date) => {
      current = date.getTime();
    },
  };
}
