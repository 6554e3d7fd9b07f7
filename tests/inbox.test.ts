import { describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';

const { app, clock, database } = await buildTestApp();
const inbox = app.services.inbox;
const handled: string[] = [];
let failuresLeft = 0;
inbox.registerHandler('telegram', async (payload) => {
  if (failuresLeft > 0) {
    failuresLeft -= 1;
    throw new Error('the database blinked');
  }
  handled.push(String(payload.text));
  return { status: 'handled', outcome: 'ok' };
});
const record = (id: string) => database.connection.collection('inbound_messages').findOne({ _id: `telegram:${id}` as never });

describe('the inbox', () => {
  it('stores once per id and handles in arrival order', async () => {
    const fresh = await inbox.accept('telegram', [
      { id: '1', payload: { text: 'one' } },
      { id: '2', payload: { text: 'two' } },
    ]);
    expect(await inbox.accept('telegram', [{ id: '1', payload: { text: 'one again' } }])).toEqual([]);
    await inbox.process(fresh);
    expect(handled).toEqual(['one', 'two']);
    expect(await record('1')).toMatchObject({ status: 'handled', attempts: 1 });
  });

  it('retries a failed message after its delay, and gives up after the last one', async () => {
    failuresLeft = 10;
    await inbox.process(await inbox.accept('telegram', [{ id: '3', payload: { text: 'three' } }]));
    expect(await record('3')).toMatchObject({ status: 'failed', attempts: 1, lastError: 'the database blinked' });
    await inbox.sweep();
    expect(await record('3')).toMatchObject({ attempts: 1 });
    for (const delay of [10, 60, 300, 1800]) {
      clock.advance(delay);
      await inbox.sweep();
    }
    expect(await record('3')).toMatchObject({ status: 'failed', attempts: 5, lastError: expect.stringContaining('gave up') });
    failuresLeft = 0;
    clock.advance(86_400);
    await inbox.sweep();
    expect(handled).not.toContain('three');
  });

  it('takes over a message whose process died mid-attempt, once the attempt’s lease has run out', async () => {
    const [id] = await inbox.accept('telegram', [{ id: '4', payload: { text: 'four' } }]);
    // A process reserved attempt 1 and died before finishing it.
    await app.services.reservations.reserve(`inbox:${id}:attempt:1`, 86_400, { startedAt: clock.now().toISOString() });
    clock.advance(61);
    await inbox.sweep();
    expect(await record('4')).toMatchObject({ status: 'received', attempts: 0 });
    clock.advance(60);
    await inbox.sweep();
    expect(await record('4')).toMatchObject({ status: 'handled', attempts: 2 });
    expect(handled.filter((text) => text === 'four')).toHaveLength(1);
  });

  it('lets the prompt handler and the sweep run an attempt once between them', async () => {
    const fresh = await inbox.accept('telegram', [{ id: '5', payload: { text: 'five' } }]);
    clock.advance(61);
    await Promise.all([inbox.process(fresh), inbox.sweep(), inbox.sweep()]);
    expect(handled.filter((text) => text === 'five')).toHaveLength(1);
  });
});
