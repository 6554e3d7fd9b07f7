import { request } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';
import { startStubServer } from './helpers/stub-server.js';
import { deliver, graphAnswersOk, notification, sign, textMessage, WHATSAPP_ENV } from './helpers/whatsapp.js';

const graph = await startStubServer();
afterAll(() => graph.close());
graphAnswersOk(graph);
const testApp = await buildTestApp({ ...WHATSAPP_ENV, WHATSAPP_GRAPH_URL: graph.url, WHATSAPP_MAX_BAD_SIGNATURES_PER_MINUTE: '3' });
const { app, clock } = testApp;
const url = new URL(await app.listen({ port: 0, host: '127.0.0.1' }));

/** Announces a 4 MB body, sends 1 KB of it and never the rest; answers the status if the gateway replies anyway. */
function postHalfABody(headers: Record<string, string>, localAddress: string): Promise<{ status: number; body: string } | 'no answer'> {
  return new Promise((resolve, reject) => {
    const outgoing = request(
      {
        host: url.hostname,
        port: url.port,
        path: '/webhooks/whatsapp',
        method: 'POST',
        localAddress,
        headers: { 'content-type': 'application/json', 'content-length': String(4_000_000), ...headers },
      },
      (answer) => {
        let body = '';
        answer.on('data', (chunk: Buffer) => (body += chunk.toString()));
        answer.on('end', () => {
          clearTimeout(timer);
          resolve({ status: answer.statusCode ?? 0, body });
        });
      },
    );
    // A generous bound: an early refusal comes in milliseconds; waiting for a body that never comes takes forever.
    const timer = setTimeout(() => {
      outgoing.destroy();
      resolve('no answer');
    }, 5000);
    outgoing.on('error', (error) => {
      clearTimeout(timer);
      if ((error as NodeJS.ErrnoException).code === 'ECONNRESET') return;
      reject(error);
    });
    outgoing.write(Buffer.alloc(1024, 0x20));
  });
}

describe('the WhatsApp webhook before the body', () => {
  it.each([
    ['no X-Hub-Signature-256', {}],
    ['a malformed X-Hub-Signature-256', { 'x-hub-signature-256': 'sha256=not-hex' }],
  ])('refuses %s with 401 without waiting for the body', async (_case, headers) => {
    const answer = await postHalfABody(headers, '127.0.0.4');
    expect(answer).not.toBe('no answer');
    expect(answer).toMatchObject({ status: 401 });
    expect(JSON.parse((answer as { body: string }).body)).toMatchObject({ error: 'invalid_signature' });
  });
});

describe('failed signature checks per IP', () => {
  it('past the limit an IP is refused with 429 for the rest of the minute, then accepted again', async () => {
    const sender = { waId: '447911300001' };
    const body = JSON.stringify(notification([textMessage(sender, 'hello', clock.now())], sender));
    const forged = { 'content-type': 'application/json', 'x-hub-signature-256': sign(body, 'wrong-secret') };
    const from = { remoteAddress: '198.51.100.9' };
    for (let attempt = 0; attempt < 3; attempt++) {
      const refused = await app.inject({ method: 'POST', url: '/webhooks/whatsapp', headers: forged, payload: body, ...from });
      expect(refused.statusCode).toBe(401);
    }
    const limited = await app.inject({ method: 'POST', url: '/webhooks/whatsapp', headers: forged, payload: body, ...from });
    expect(limited.statusCode).toBe(429);
    expect(limited.json()).toMatchObject({ error: 'rate_limited' });

    // Another IP (Meta's) is not affected.
    expect((await deliver(app, notification([textMessage(sender, 'hello', clock.now())], sender))).statusCode).toBe(200);

    clock.advance(61);
    const fresh = JSON.stringify(notification([textMessage(sender, 'hello again', clock.now())], sender));
    const later = await app.inject({
      method: 'POST',
      url: '/webhooks/whatsapp',
      headers: { 'content-type': 'application/json', 'x-hub-signature-256': sign(fresh) },
      payload: fresh,
      ...from,
    });
    expect(later.statusCode).toBe(200);
  });
});
