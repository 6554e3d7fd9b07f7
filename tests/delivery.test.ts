import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Writable } from 'node:stream';
import twilio from 'twilio';
import { afterAll, describe, expect, it } from 'vitest';
import { createConsoleSmsSender } from '../src/delivery/console-sms.js';
import { createHttpSmsSender } from '../src/delivery/http-sms.js';
import { createTwilioSmsSender } from '../src/delivery/twilio-sms.js';
import type { CodeMessage } from '../src/delivery/types.js';
import { DeliveryError } from '../src/errors.js';
import { buildTestApp } from './helpers/app.js';
import { startStubServer } from './helpers/stub-server.js';

const message: CodeMessage = {
  channel: 'sms',
  phone: '+919812345678',
  code: '482913',
  text: 'Your code is 482913',
  ttlMinutes: 5,
};

const stub = await startStubServer();
afterAll(() => stub.close());

describe('the http SMS provider', () => {
  const secret = 'gateway-shared-secret-0123456789';
  const sender = createHttpSmsSender({ url: `${stub.url}/sms`, secret, timeoutMs: 300 });

  it('POSTs { to, code, text, channel } signed with an HMAC of the exact body', async () => {
    stub.respond(() => ({ status: 202, body: { queued: true } }));
    await sender.send(message);
    const request = stub.requests.at(-1)!;
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/sms');
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.json).toEqual({ to: '+919812345678', code: '482913', text: 'Your code is 482913', channel: 'sms' });
    const expected = createHmac('sha256', secret).update(request.body).digest('hex');
    expect(request.headers['x-signature-256']).toBe(`sha256=${expected}`);
  });

  it('treats a non-2xx answer as a delivery failure', async () => {
    stub.respond(() => ({ status: 503, body: 'busy' }));
    await expect(sender.send(message)).rejects.toMatchObject({ name: 'DeliveryError', provider: 'http', providerDetail: { status: 503 } });
  });

  it('treats no answer within SMS_HTTP_TIMEOUT_MS as a delivery failure', async () => {
    stub.respond(() => ({ status: 200, delayMs: 1500 }));
    await expect(sender.send(message)).rejects.toThrow(/no answer within 300 ms/);
  });

  it('treats an unreachable gateway as a delivery failure', async () => {
    const unreachable = createHttpSmsSender({ url: 'http://127.0.0.1:9/sms', secret, timeoutMs: 1000 });
    await expect(unreachable.send(message)).rejects.toBeInstanceOf(DeliveryError);
  });

  it('sends consecutive codes over one kept connection, and opens a new one when the gateway closed it', async () => {
    const connections: Socket[] = [];
    const gateway = createServer((request, response) => {
      request.resume();
      request.on('end', () => response.writeHead(202, { 'content-type': 'application/json' }).end('{"queued":true}'));
    });
    gateway.on('connection', (socket) => connections.push(socket));
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    try {
      const kept = createHttpSmsSender({ url: `http://127.0.0.1:${(gateway.address() as AddressInfo).port}/sms`, secret, timeoutMs: 1000 });
      for (let i = 0; i < 3; i++) await kept.send(message);
      expect(connections).toHaveLength(1);
      // The gateway ends the idle connection; the next code goes through on a new one.
      connections[0]!.destroy();
      await new Promise((resolve) => setTimeout(resolve, 50));
      await kept.send(message);
      expect(connections).toHaveLength(2);
    } finally {
      gateway.closeAllConnections();
      await new Promise((resolve) => gateway.close(resolve));
    }
  });
});

describe('the twilio SMS provider', () => {
  // Twilio's own HTTP client, pointed at the stand-in server instead of api.twilio.com: the package builds and
  // sends the real request, the test only moves where it goes.
  class LocalTwilioClient extends twilio.RequestClient {
    override request<TData>(options: Parameters<twilio.RequestClient['request']>[0] & { data?: TData }) {
      return super.request<TData>({ ...options, uri: options.uri.replace('https://api.twilio.com', stub.url) });
    }
  }
  const settings = { accountSid: 'AC00000000000000000000000000000001', authToken: 'twilio-auth-token', httpClient: new LocalTwilioClient() };

  it('creates a message with To, From and Body through the Messages API', async () => {
    stub.respond(() => ({ status: 201, body: { sid: 'SM123', status: 'queued' } }));
    await (await createTwilioSmsSender({ ...settings, from: '+15005550006' })).send(message);
    const request = stub.requests.at(-1)!;
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages.json');
    expect(Object.fromEntries(new URLSearchParams(request.body))).toEqual({ To: '+919812345678', From: '+15005550006', Body: 'Your code is 482913' });
    expect(request.headers.authorization).toBe(`Basic ${Buffer.from(`${settings.accountSid}:twilio-auth-token`).toString('base64')}`);
  });

  it('sends through a messaging service when TWILIO_MESSAGING_SERVICE_SID is set', async () => {
    stub.respond(() => ({ status: 201, body: { sid: 'SM124', status: 'accepted' } }));
    await (await createTwilioSmsSender({ ...settings, messagingServiceSid: 'MG0001' })).send(message);
    expect(Object.fromEntries(new URLSearchParams(stub.requests.at(-1)!.body))).toMatchObject({ MessagingServiceSid: 'MG0001' });
  });

  it('turns a Twilio error into a delivery failure with its code', async () => {
    stub.respond(() => ({ status: 400, body: { code: 21211, message: "The 'To' number is not a valid phone number.", status: 400 } }));
    const failure = (await createTwilioSmsSender({ ...settings, from: '+15005550006' })).send(message);
    await expect(failure).rejects.toMatchObject({ provider: 'twilio', providerDetail: { status: 400, errorCode: 21211 } });
  });
});

describe('the console SMS provider', () => {
  it('writes one JSON line with msg otp.console, to and code', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(chunk.toString()), done()) });
    await createConsoleSmsSender('info', sink).send(message);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'otp.console', to: '+919812345678', code: '482913' });
  });
});

describe('SMS_PROVIDER=http wired into the gateway', async () => {
  const { app } = await buildTestApp(
    { SMS_PROVIDER: 'http', SMS_HTTP_URL: `${stub.url}/gateway`, SMS_HTTP_SECRET: 'gateway-shared-secret-0123456789' },
    { smsSender: undefined },
  );

  it('delivers the code the person then verifies', async () => {
    stub.respond(() => ({ status: 200, body: {} }));
    const phone = '+919812345674';
    expect((await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone } })).statusCode).toBe(200);
    const sent = stub.requests.at(-1)!.json as { to: string; code: string };
    expect(sent.to).toBe(phone);
    const verified = await app.inject({ method: 'POST', url: '/auth/otp/verify', payload: { phone, code: sent.code } });
    expect(verified.statusCode).toBe(200);
  });

  it('answers 502 delivery_failed when the gateway refuses', async () => {
    stub.respond(() => ({ status: 500, body: 'down' }));
    const response = await app.inject({ method: 'POST', url: '/auth/otp/request', payload: { phone: '+919812345675' } });
    expect(response.statusCode).toBe(502);
    expect(response.json()).toMatchObject({ error: 'delivery_failed' });
  });
});
