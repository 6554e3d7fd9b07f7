import { beforeAll, describe, expect, it } from 'vitest';
import { createCommandCounter } from '../src/db/command-counter.js';
import type { Database } from '../src/db/connection.js';
import { budgetBlockSize, createBudgetCounter, type BudgetRequest } from '../src/services/reservations.js';
import { buildTestApp } from './helpers/app.js';
import { createTestClock } from './helpers/clock.js';

// The paid-send budgets are handed out from blocks of slots that each instance reserves with a unique-key insert.
// Here two counters on one database stand for two instances of the gateway.

let database: Database;

beforeAll(async () => {
  ({ database } = await buildTestApp());
});

const budget = (scope: string, limit: number): BudgetRequest => ({ scope: `budget:test:${scope}`, limit, keepForSeconds: 3600 });

describe('paid-send budgets handed out from blocks', () => {
  it('block sizes follow the limit: 1/50 of it, at least 1, at most OTP_BUDGET_BLOCK_MAX', () => {
    expect([3, 20, 300, 1000, 10_000, 1_000_000].map((limit) => budgetBlockSize(limit, 100))).toEqual([1, 1, 6, 20, 100, 100]);
    expect(budgetBlockSize(1000, 1)).toBe(1);
  });

  it('two instances racing for one budget hand out exactly its limit, never a slot twice', async () => {
    const clock = createTestClock();
    const first = createBudgetCounter(database.models.Reservation, clock, { maxBlock: 100 });
    const second = createBudgetCounter(database.models.Reservation, clock, { maxBlock: 100 });
    const shared = budget('race', 100);
    const outcomes = await Promise.all(Array.from({ length: 160 }, (_, index) => (index % 2 ? first : second).take([shared])));
    const handedOut = outcomes.filter((outcome) => outcome.full.length === 0);
    expect(handedOut).toHaveLength(100);
    expect(new Set(handedOut.map((outcome) => outcome.taken[0]!.slot)).size).toBe(100);
    expect(outcomes.filter((outcome) => outcome.full.length > 0).every((outcome) => outcome.taken.length === 0)).toBe(true);
  });

  it('a budget that is full gives back what the same call took from the others', async () => {
    const counter = createBudgetCounter(database.models.Reservation, createTestClock(), { maxBlock: 100 });
    const roomy = budget('roomy', 1000);
    const tight = budget('tight', 1);
    expect((await counter.take([roomy, tight])).full).toEqual([]);
    const refused = await counter.take([roomy, tight]);
    expect(refused).toEqual({ full: [tight], taken: [] });
    // The roomy budget's block (20 slots) lost none: 19 more fit before a second block is needed.
    const taken = await Promise.all(Array.from({ length: 19 }, () => counter.take([roomy])));
    expect(taken.map((outcome) => outcome.taken[0]!.slot).sort((a, b) => a - b)).toEqual(Array.from({ length: 19 }, (_, index) => index + 2));
  });

  it('most sends take no command: one block insert serves a block of sends, and slots given back are handed out again', async () => {
    const counter = createBudgetCounter(database.models.Reservation, createTestClock(), { maxBlock: 100 });
    const hourly = budget('quiet', 1000);
    const commands = createCommandCounter(database.connection);
    try {
      const { commands: sent } = await commands.count(async () => {
        const first = await counter.take([hourly]);
        counter.giveBack(first.taken);
        for (let send = 0; send < 20; send++) expect((await counter.take([hourly])).full).toEqual([]);
      });
      expect(sent.map((command) => command.name)).toEqual(['insert']);
    } finally {
      commands.stop();
    }
  });
});
