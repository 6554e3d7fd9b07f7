import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  json: unknown;
}

export interface StubResponse {
  status?: number;
  body?: unknown;
  /** Hold the answer this long (to test timeouts). */
  delayMs?: number;
}

export interface StubServer {
  url: string;
  requests: RecordedRequest[];
  /** Decide the answer per request; the default is 200 `{}`. */
  respond(handler: (request: RecordedRequest) => StubResponse | Promise<StubResponse>): void;
  close(): Promise<void>;
}

/** A local HTTP server standing in for an API this machine cannot reach; it records what our client sent. */
export async function startStubServer(): Promise<StubServer> {
  const requests: RecordedRequest[] = [];
  let handler: (request: RecordedRequest) => StubResponse | Promise<StubResponse> = () => ({ status: 200, body: {} });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    // An 'end' listener's returned promise is ignored by the emitter: a failing handler answers 500 instead of
    // becoming an unhandled rejection.
    req.on('end', () => void answerRequest().catch((error: unknown) => res.writeHead(500).end(String(error))));
    const answerRequest = async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = body ? JSON.parse(body) : undefined;
      } catch {
        json = undefined;
      }
      const recorded: RecordedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json };
      requests.push(recorded);
      const answer = await handler(recorded);
      if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs));
      if (res.destroyed) return;
      const payload = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body ?? {});
      res.writeHead(answer.status ?? 200, { 'content-type': typeof answer.body === 'string' ? 'text/plain' : 'application/json' });
      res.end(payload);
    };
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    respond: (next) => {
      handler = next;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
