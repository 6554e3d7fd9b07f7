import { beforeAll, describe, expect, it } from 'vitest';
import { createCommandCounter, type CommandCounter, type CountedCommand } from '../src/db/command-counter.js';
import { buildTestApp, signInBySms, uniquePhone, type TestApp } from './helpers/app.js';

// Latency must not grow with stored data. The embedded default (mongo-java-server) finds documents through an index
// only when a filter names exactly the fields of `_id` or of a unique index, each by value (or `$in` on a one-field
// index); any other filter reads the whole collection, and FerretDB reads every collection whole anyway. So every
// command of the hot paths must select by such a key: these tests capture the filters the driver sends and check
// each against the unique indexes the models declare.

let testApp: TestApp;
let counter: CommandCounter;

interface UniqueKey {
  fields: string[];
  sparse: boolean;
}

let uniqueKeys: Map<string, UniqueKey[]>;

beforeAll(async () => {
  testApp = await buildTestApp();
  counter = createCommandCounter(testApp.database.connection);
  uniqueKeys = new Map();
  for (const model of Object.values(testApp.database.connection.models)) {
    const keys: UniqueKey[] = [{ fields: ['_id'], sparse: false }];
    for (const [fields, options] of model.schema.indexes()) {
      if (options.unique) keys.push({ fields: Object.keys(fields), sparse: !!options.sparse });
    }
    uniqueKeys.set(model.collection.collectionName, keys);
  }
  return () => counter.stop();
});

const isOperatorDocument = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype && Object.keys(value).some((key) => key.startsWith('$'));

/** Why a filter is not a point lookup on its collection, or undefined when it is. */
function notAPointLookup(collection: string, filter: Record<string, unknown>): string | undefined {
  const fields = Object.keys(filter).sort();
  const key = (uniqueKeys.get(collection) ?? []).find((candidate) => [...candidate.fields].sort().join() === fields.join());
  if (!key) return `filters by {${fields.join(', ')}}, which is not _id or a unique index`;
  for (const field of fields) {
    const value = filter[field];
    if (value === null || value === undefined) {
      if (key.sparse) return `looks for a missing ${field} in a sparse index`;
      continue;
    }
    if (!isOperatorDocument(value)) continue;
    const operators = Object.keys(value);
    if (key.fields.length > 1 || operators.some((operator) => operator !== '$in')) return `selects ${field} by ${operators.join(', ')}, not by value`;
  }
  return undefined;
}

const scans = (commands: CountedCommand[]) =>
  commands.flatMap((command) =>
    command.filters.flatMap((filter) => {
      const why = command.collection ? notAPointLookup(command.collection, filter) : 'names no collection';
      return why ? [`${command.name} ${command.collection}: ${why} (${JSON.stringify(filter)})`] : [];
    }),
  );

const post = (url: string, payload: object) => testApp.app.inject({ method: 'POST', url, payload });

async function capture(work: () => Promise<{ statusCode: number; body: string }>) {
  const { result, commands } = await counter.count(work, { ignore: ['audit_events'] });
  expect(result.statusCode, result.body).toBe(200);
  return commands;
}

describe('the hot paths select documents by _id or a unique key only', () => {
  it('an OTP request', async () => {
    const phone = uniquePhone();
    const commands = await capture(() => post('/auth/otp/request', { phone }));
    expect(commands.some((command) => command.filters.length > 0)).toBe(true);
    expect(scans(commands)).toEqual([]);
  });

  it('a second OTP request for the same phone, after the wait between codes', async () => {
    const phone = uniquePhone();
    expect((await post('/auth/otp/request', { phone })).statusCode).toBe(200);
    testApp.clock.advance(120);
    expect(scans(await capture(() => post('/auth/otp/request', { phone })))).toEqual([]);
  });

  it('a verify by challenge id, with token issue, for a new user', async () => {
    const phone = uniquePhone();
    const { challengeId } = (await post('/auth/otp/request', { phone })).json() as { challengeId: string };
    const code = testApp.sms.lastCodeFor(phone);
    expect(scans(await capture(() => post('/auth/otp/verify', { challengeId, code })))).toEqual([]);
  });

  it('a verify by phone, with token issue, for a returning user', async () => {
    const { user } = await signInBySms(testApp);
    testApp.clock.advance(120);
    expect((await post('/auth/otp/request', { phone: user.phone })).statusCode).toBe(200);
    const code = testApp.sms.lastCodeFor(user.phone!);
    expect(scans(await capture(() => post('/auth/otp/verify', { phone: user.phone, code })))).toEqual([]);
  });

  it('a refresh', async () => {
    const tokens = await signInBySms(testApp);
    expect(scans(await capture(() => post('/auth/token/refresh', { refreshToken: tokens.refreshToken })))).toEqual([]);
  });

  it('/auth/me', async () => {
    const tokens = await signInBySms(testApp);
    const commands = await capture(() =>
      testApp.app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${tokens.accessToken}` } }),
    );
    expect(scans(commands)).toEqual([]);
  });
});

describe('the check itself', () => {
  it('tells a point lookup from a scan', () => {
    expect(notAPointLookup('refresh_tokens', { tokenHash: 'x' })).toBeUndefined();
    expect(notAPointLookup('challenges', { phone: '+447700900001', sendSeq: 2 })).toBeUndefined();
    expect(notAPointLookup('reservations', { _id: { $in: ['a', 'b'] } })).toBeUndefined();
    // An extra condition next to the key: mongo-java-server then reads the whole collection.
    expect(notAPointLookup('sessions', { _id: 'x', revokedAt: { $exists: false } })).toMatch(/not _id or a unique index/);
    expect(notAPointLookup('sessions', { userId: 'x' })).toMatch(/not _id or a unique index/);
    expect(notAPointLookup('challenges', { cleanupAt: { $lt: new Date() } })).toMatch(/not _id or a unique index/);
    expect(notAPointLookup('users', { phone: { $gt: '+44' } })).toMatch(/not by value/);
    expect(notAPointLookup('users', { phone: null })).toMatch(/sparse/);
  });
});
