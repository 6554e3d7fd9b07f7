import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cacheDirectory } from '../../src/db/embedded.js';
import { generateSigningJwks } from '../../src/services/signing-keys.js';
import { startStubServer, type StubServer } from '../helpers/stub-server.js';
import { botApiAnswersOk, botCalls, TELEGRAM_ENV, textUpdate } from '../helpers/telegram.js';
import { graphAnswersOk, graphSends, metaEscape, notification, sign, textMessage, buttonReply, WHATSAPP_ENV } from '../helpers/whatsapp.js';
import { call, startBalancer, startGateway, startOwnFerretDB, startRedis, type Balancer, type Gateway, type RedisProcess } from './processes.js';

// Three gateway processes on one database, sharing per-IP limits through a real Redis, behind a round-robin balancer
// this file owns. Every process listens on 127.0.0.1 and is stopped by its pid in afterAll.

const SIGN_IN_LIMIT = 5;
const TEST_PHONE = '+447911000001';
const TEST_CODE = '246810';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let redis: RedisProcess;
let graph: StubServer;
let botApi: StubServer;
let gateways: Gateway[] = [];
let balancer: Balancer;
let mongo: MongoClient;
let dbName: string;
let baseEnv: Record<string, string>;

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

const whatsappPost = (base: string, payload: object) => {
  const body = metaEscape(JSON.stringify(payload));
  return call(base, 'POST', '/webhooks/whatsapp', { rawBody: body, headers: { 'x-hub-signature-256': sign(body) } });
};

const telegramPost = (base: string, update: object) =>
  call(base, 'POST', '/webhooks/telegram', { body: update, headers: { 'x-telegram-bot-api-secret-token': TELEGRAM_ENV.TELEGRAM_WEBHOOK_SECRET } });

let senderCounter = 0;
const newSender = () => ({ waId: `4479120${String((senderCounter += 1)).padStart(5, '0')}` });
const sendsTo = (waId: string) => graphSends(graph).filter((send) => send.to === `+${waId}`);
const inbox = () => mongo.db(dbName).collection<{ _id: string; status: string }>('inbound_messages');

beforeAll(async () => {
  // The processes run the built server.
  execFileSync(process.execPath, [path.resolve(import.meta.dirname, '../../scripts/build-if-changed.mjs')], { stdio: 'ignore' });
  [redis, graph, botApi] = await Promise.all([startRedis(), startStubServer(), startStubServer()]);
  graphAnswersOk(graph);
  botApiAnswersOk(botApi);
  dbName = `chatgate_scale_${randomBytes(5).toString('hex')}`;
  mongo = new MongoClient(inject('mongoUri'));
  baseEnv = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    MONGODB_URI: `${inject('mongoUri')}${dbName}`,
    REDIS_URL: redis.url,
    // One balancer in front, appending the client's address.
    TRUST_PROXY: '1',
    JWT_PRIVATE_JWKS: await generateSigningJwks('ES256'),
    JWT_ISSUER: 'http://127.0.0.1',
    OTP_PEPPER: randomBytes(24).toString('hex'),
    OTP_TEST_NUMBERS: `${TEST_PHONE}:${TEST_CODE}`,
    RATE_LIMIT_MAX: '100000',
    OTP_RATE_LIMIT_MAX: String(SIGN_IN_LIMIT),
    REFRESH_REUSE_GRACE_SECONDS: '30',
    // Short inbox timings, so a killed instance's messages are taken over within the test.
    INBOX_LEASE_SECONDS: '2',
    INBOX_STUCK_AFTER_SECONDS: '1',
    INBOX_SWEEP_SECONDS: '1',
    ...WHATSAPP_ENV,
    WHATSAPP_GRAPH_URL: graph.url,
    ...TELEGRAM_ENV,
    TELEGRAM_API_ROOT: botApi.url,
  };
  // The first one creates the indexes; the others start together.
  gateways.push(await startGateway('a', baseEnv));
  gateways.push(...(await Promise.all([startGateway('b', baseEnv), startGateway('c', baseEnv)])));
  balancer = await startBalancer(() => gateways.map((gateway) => gateway.url));
}, 240_000);

afterAll(async () => {
  await balancer?.close();
  await Promise.all(gateways.map((gateway) => gateway.stop()));
  await mongo?.db(dbName).dropDatabase().catch(() => undefined);
  await mongo?.close();
  await Promise.all([redis?.cleanup(), graph?.close(), botApi?.close()]);
});

describe('several instances on one database and one Redis', () => {
  it('holds the per-IP sign-in limit across instances: the request past the limit is refused wherever it lands', async () => {
    const answers = [];
    for (let index = 0; index <= SIGN_IN_LIMIT; index++) {
      answers.push(await call(balancer.url, 'POST', '/auth/otp/request', { body: { phone: 'not a phone' }, from: '127.0.0.2' }));
    }
    expect(answers.slice(0, SIGN_IN_LIMIT).map((answer) => answer.status)).toEqual(Array(SIGN_IN_LIMIT).fill(400));
    expect(answers[SIGN_IN_LIMIT]).toMatchObject({ status: 429, json: { error: 'rate_limited' } });
    // Spread over all three: no single instance saw more than two of the six.
    expect(balancer.counts.size).toBe(3);
    // Another client address is not affected.
    expect((await call(balancer.url, 'POST', '/auth/otp/request', { body: { phone: 'not a phone' }, from: '127.0.0.3' })).status).toBe(400);
  });

  it('handles a WhatsApp message delivered to two instances at once exactly once', async () => {
    const sender = newSender();
    const payload = notification([textMessage(sender, 'LOGIN ZZZZZZ', new Date())], sender);
    const [first, second] = await Promise.all([whatsappPost(gateways[0]!.url, payload), whatsappPost(gateways[1]!.url, payload)]);
    expect([first.status, second.status]).toEqual([200, 200]);
    await until('the reply', () => sendsTo(sender.waId).length > 0);
    await sleep(1500);
    expect(sendsTo(sender.waId)).toHaveLength(1);
  });

  it('handles a Telegram update delivered to two instances at once exactly once', async () => {
    const person = { id: 880_000_001, first_name: 'Ada' };
    const update = textUpdate(person, '/start', new Date());
    const [first, second] = await Promise.all([telegramPost(gateways[1]!.url, update), telegramPost(gateways[2]!.url, update)]);
    expect([first.status, second.status]).toEqual([200, 200]);
    const repliesToAda = () => botCalls(botApi).filter((botCall) => botCall.method === 'sendMessage' && botCall.body.chat_id === person.id);
    await until('the reply', () => repliesToAda().length > 0);
    await sleep(1500);
    expect(repliesToAda()).toHaveLength(1);
  });

  it('rotates a refresh token once when 50 refreshes of it arrive at once over the instances: all get the same successor', async () => {
    expect((await call(balancer.url, 'POST', '/auth/otp/request', { body: { phone: TEST_PHONE }, from: '127.0.0.4' })).status).toBe(200);
    const verified = await call(balancer.url, 'POST', '/auth/otp/verify', { body: { phone: TEST_PHONE, code: TEST_CODE }, from: '127.0.0.4' });
    expect(verified.status).toBe(200);
    const refreshToken = verified.json.refreshToken as string;

    const answers = await Promise.all(
      Array.from({ length: 50 }, () => call(balancer.url, 'POST', '/auth/token/refresh', { body: { refreshToken }, from: '127.0.0.4' })),
    );
    expect(answers.map((answer) => answer.status)).toEqual(Array(50).fill(200));
    const successors = new Set(answers.map((answer) => answer.json.refreshToken));
    expect(successors.size).toBe(1);
    expect(successors.has(refreshToken)).toBe(false);
    // The successor works, once.
    const next = await call(balancer.url, 'POST', '/auth/token/refresh', { body: { refreshToken: [...successors][0] } });
    expect(next.status).toBe(200);
  });

  it('signs in through a login intent created on one instance, approved by WhatsApp on another and polled on a third', async () => {
    const sender = newSender();
    const created = await call(gateways[0]!.url, 'POST', '/auth/login-intents', { headers: { 'user-agent': 'Mozilla/5.0 (Macintosh) Safari/605.1.15' } });
    expect(created.status).toBe(201);
    const intent = created.json as { intentId: string; pollToken: string; code: string };
    expect((await whatsappPost(gateways[1]!.url, notification([textMessage(sender, `LOGIN ${intent.code}`, new Date())], sender))).status).toBe(200);
    await until('the confirmation prompt', () => sendsTo(sender.waId).some((send) => send.type === 'interactive'));
    expect(
      (await whatsappPost(gateways[2]!.url, notification([buttonReply(sender, `confirm:${intent.intentId}`, 'Confirm', new Date())], sender))).status,
    ).toBe(200);
    let polled: Record<string, unknown> = {};
    await until('approval', async () => {
      polled = (await call(gateways[2]!.url, 'GET', `/auth/login-intents/${intent.intentId}`, { headers: { authorization: `Bearer ${intent.pollToken}` } })).json;
      return polled.status !== 'pending';
    });
    expect(polled).toMatchObject({ status: 'approved', tokenType: 'Bearer', user: { phone: `+${sender.waId}` } });
  });
});

describe('an instance killed while chat messages are being handled', () => {
  it('hands every accepted message to the survivors, handled once each, and the balancer’s clients see only successes', async () => {
    // Replies take a while, so messages are mid-handling when the instance dies.
    graph.respond(async (request) => {
      await sleep(800);
      return { status: 200, body: { messaging_product: 'whatsapp', contacts: [{ input: (request.json as { to: string }).to, wa_id: '1' }], messages: [{ id: 'wamid.sent' }] } };
    });
    const senders = Array.from({ length: 9 }, newSender);
    const messages = senders.map((sender) => textMessage(sender, 'LOGIN ZZZZZZ', new Date()));
    const ids = messages.map((message) => `whatsapp:${message.id}`);
    const deliveries = senders.map((sender, index) =>
      sleep(index * 150).then(() => whatsappPost(balancer.url, notification([messages[index]!], sender))),
    );
    await sleep(500);
    const victim = gateways[0]!;
    await victim.kill();
    const answers = await Promise.all(deliveries);
    expect(answers.map((answer) => answer.status)).toEqual(Array(senders.length).fill(200));

    await until(
      'every message handled',
      async () => {
        const records = await inbox().find({ _id: { $in: ids } }).toArray();
        return records.length === senders.length && records.every((record) => record.status === 'handled');
      },
      30_000,
    );
    // Each sender got its reply; one whose handling the dead instance had already sent may see it twice, never none.
    for (const sender of senders) expect(sendsTo(sender.waId).length).toBeGreaterThanOrEqual(1);
    const records = await inbox().find({ _id: { $in: ids } }).toArray();
    expect(records).toHaveLength(senders.length);
    gateways = gateways.slice(1);
    graphAnswersOk(graph);
  }, 60_000);
});

describe('Redis stopped', () => {
  it('refuses sign-in routes with 503 while Redis is down, keeps health and JWKS open, and recovers by itself', async () => {
    await redis.stop();
    const refused = await call(balancer.url, 'POST', '/auth/otp/request', { body: { phone: 'not a phone' }, from: '127.0.0.5' });
    expect(refused).toMatchObject({ status: 503, json: { error: 'service_unavailable', message: expect.stringContaining('rate limiter') } });
    expect((await call(balancer.url, 'GET', '/health')).status).toBe(200);
    expect((await call(balancer.url, 'GET', '/.well-known/jwks.json')).status).toBe(200);
    expect((await call(balancer.url, 'GET', '/ready')).status).toBe(200);

    await redis.start();
    // Each instance's Redis client reconnects on its own backoff: wait for all of them (a fresh client address per
    // poll, so the polling itself never meets the per-IP limit).
    let poll = 0;
    await until('every instance answers sign-in again', async () => {
      poll += 1;
      const from = `127.0.1.${(poll % 250) + 1}`;
      const answers = await Promise.all(gateways.map((gateway) => call(gateway.url, 'POST', '/auth/otp/request', { body: { phone: 'not a phone' }, from })));
      return answers.every((answer) => answer.status === 400);
    });
    // Every instance is back on the shared counter.
    for (const gateway of gateways) {
      expect((await call(gateway.url, 'POST', '/auth/otp/request', { body: { phone: 'not a phone' }, from: '127.0.0.7' })).status).toBe(400);
    }
  }, 30_000);
});

describe('the database stopped for a few seconds', () => {
  it('answers 503 service_unavailable and /ready 503 while it is down, never crashes, and recovers without a restart', async () => {
    const ferret = await startOwnFerretDB(process.env.FERRETDB_BIN ?? path.join(cacheDirectory(), 'ferretdb-v1.24.2', 'ferretdb'));
    let gateway: Gateway | undefined;
    try {
      gateway = await startGateway('db', { ...baseEnv, MONGODB_URI: `${ferret.uri}chatgate`, REDIS_URL: '', MONGODB_SERVER_SELECTION_TIMEOUT_MS: '1000' });
      const signIn = () => call(gateway!.url, 'POST', '/auth/otp/request', { body: { phone: TEST_PHONE } });
      expect((await signIn()).status).toBe(200);

      await ferret.stop();
      const during = await signIn();
      expect(during).toMatchObject({ status: 503, json: { error: 'service_unavailable' } });
      expect(during.headers['retry-after']).toBe('5');
      expect((await call(gateway.url, 'GET', '/ready')).status).toBe(503);
      expect((await call(gateway.url, 'GET', '/health')).status).toBe(200);
      const refresh = await call(gateway.url, 'POST', '/auth/token/refresh', { body: { refreshToken: 'cg_rt_unknown' } });
      expect(refresh.status === 503 || refresh.status === 401).toBe(true);

      await ferret.start();
      await until('ready again', async () => (await call(gateway!.url, 'GET', '/ready')).status === 200, 20_000);
      await until('sign-in again', async () => (await signIn()).status !== 503, 20_000);
      expect(gateway.child.exitCode).toBeNull();
      // No 500s: every failure during the outage was answered as 503.
      expect(gateway.output()).not.toContain('request failed');
    } finally {
      await gateway?.stop();
      await ferret.cleanup();
    }
  }, 60_000);
});
