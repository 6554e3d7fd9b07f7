import { beforeAll, describe, expect, it } from 'vitest';
import { createCommandCounter, type CommandCounter } from '../src/db/command-counter.js';
import { buildTestApp, signInBySms, uniquePhone, type TestApp, type TokenPair } from './helpers/app.js';

// Database round trips per request, counted with the driver's command monitoring. `depth` is the number of sequential
// round trips (commands sent side by side count once); `commands` every command sent. Audit events are written in
// batches off the request path, so their collection is left out here and counted in its own test.

let testApp: TestApp;
let counter: CommandCounter;

beforeAll(async () => {
  testApp = await buildTestApp();
  counter = createCommandCounter(testApp.database.connection);
  return () => counter.stop();
});

const measure = (work: () => Promise<{ statusCode: number; body: string }>) =>
  counter.count(async () => {
    const response = await work();
    if (response.statusCode !== 200) throw new Error(`${response.statusCode} ${response.body}`);
    return response;
  }, { ignore: ['audit_events'] });

const post = (url: string, payload: object, headers: Record<string, string> = {}) => testApp.app.inject({ method: 'POST', url, payload, headers });

describe('database round trips per request', () => {
  it('an OTP request', async () => {
    const phone = uniquePhone();
    const { depth, commands } = await measure(() => post('/auth/otp/request', { phone }));
    console.log('otp request', depth, commands);
  });

  it('a verify with token issue', async () => {
    const phone = uniquePhone();
    const { challengeId } = (await post('/auth/otp/request', { phone })).json() as { challengeId: string };
    const code = testApp.sms.lastCodeFor(phone);
    const { depth, commands } = await measure(() => post('/auth/otp/verify', { challengeId, code }));
    console.log('verify', depth, commands);
  });

  it('a refresh', async () => {
    const tokens: TokenPair = await signInBySms(testApp);
    const { depth, commands } = await measure(() => post('/auth/token/refresh', { refreshToken: tokens.refreshToken }));
    console.log('refresh', depth, commands);
  });

  it('/auth/me', async () => {
    const tokens = await signInBySms(testApp);
    const { depth, commands } = await measure(() =>
      testApp.app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${tokens.accessToken}` } }),
    );
    console.log('me', depth, commands);
    expect(depth).toBeGreaterThan(0);
  });
});
