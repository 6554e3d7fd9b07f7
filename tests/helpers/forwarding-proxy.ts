import { createServer, request as forward } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ForwardingProxy {
  url: string;
  close(): Promise<void>;
}

/**
 * A reverse proxy as nginx with `$proxy_add_x_forwarded_for` or an AWS ALB behaves: it appends the address of whoever
 * connected to it to X-Forwarded-For, keeping what the client sent. `localAddress` is the address it connects onward
 * from (any 127.x address works on Linux), so each hop of a chain is told apart.
 */
export async function startForwardingProxy(target: string, options: { listenOn?: string; localAddress?: string } = {}): Promise<ForwardingProxy> {
  const upstream = new URL(target);
  const server = createServer((incoming, outgoing) => {
    const peer = incoming.socket.remoteAddress ?? '';
    const given = incoming.headers['x-forwarded-for'];
    const headers = { ...incoming.headers, 'x-forwarded-for': given ? `${String(given)}, ${peer}` : peer };
    const onward = forward(
      { host: upstream.hostname, port: upstream.port, method: incoming.method, path: incoming.url, headers, localAddress: options.localAddress },
      (answer) => {
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(outgoing);
      },
    );
    onward.on('error', () => {
      outgoing.writeHead(502);
      outgoing.end();
    });
    incoming.pipe(onward);
  });
  const host = options.listenOn ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
