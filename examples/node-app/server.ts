import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';

// A minimal web app that signs people in with Chatgate through OpenID Connect, using openid-client and nothing
// else: authorization code with PKCE, the ID token's claims, userinfo, and sign-out at the gateway.
// Run it with `npm run example` next to a gateway started with `npm run dev`.

export interface ExampleSettings {
  issuer: string;
  clientId: string;
  clientSecret?: string | undefined;
  /** Where this app is reached, e.g. http://localhost:3001 */
  baseUrl: string;
  port: number;
  host?: string;
}

interface Pending {
  verifier: string;
  state: string;
  nonce: string;
}

interface SignedIn {
  claims: Record<string, unknown>;
  userinfo: Record<string, unknown>;
  idToken: string;
}

const escape = (value: string) => value.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);

function page(title: string, body: string): string {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title></head><body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem">
<h1>${escape(title)}</h1>${body}</body></html>`;
}

function cookieOf(request: IncomingMessage, name: string): string | undefined {
  const match = new RegExp(`(?:^|;\\s*)${name}=([^;]+)`).exec(request.headers.cookie ?? '');
  return match?.[1];
}

export async function startExampleApp(settings: ExampleSettings): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const issuerUrl = new URL(settings.issuer);
  // Plain http is for a gateway on this machine only.
  const insecure = issuerUrl.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {};
  const config = await oidc.discovery(
    issuerUrl,
    settings.clientId,
    undefined,
    settings.clientSecret ? oidc.ClientSecretBasic(settings.clientSecret) : oidc.None(),
    insecure,
  );
  const redirectUri = `${settings.baseUrl}/callback`;
  const pending = new Map<string, Pending>();
  const sessions = new Map<string, SignedIn>();

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', settings.baseUrl);
    const sessionId = cookieOf(request, 'example_session');
    const session = sessionId ? sessions.get(sessionId) : undefined;
    const send = (status: number, html: string, headers: Record<string, string> = {}) => {
      response.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers });
      response.end(html);
    };
    const redirect = (location: string, headers: Record<string, string> = {}) => {
      response.writeHead(303, { location, ...headers });
      response.end();
    };

    if (url.pathname === '/') {
      if (!session) {
        return send(200, page('Example app', `<p>You are not signed in.</p><p><a href="/login"><button type="button">Sign in with Chatgate</button></a></p>`));
      }
      return send(
        200,
        page('Example app', `<p id="who">Signed in as ${escape(String(session.userinfo.phone_number ?? session.claims.sub))}</p>
<h2>ID token claims</h2><pre id="claims">${escape(JSON.stringify(session.claims, null, 2))}</pre>
<h2>Userinfo</h2><pre id="userinfo">${escape(JSON.stringify(session.userinfo, null, 2))}</pre>
<p><a href="/logout"><button type="button">Sign out</button></a></p>`),
      );
    }

    if (url.pathname === '/login') {
      const request: Pending = { verifier: oidc.randomPKCECodeVerifier(), state: oidc.randomState(), nonce: oidc.randomNonce() };
      pending.set(request.state, request);
      const authorization = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        scope: 'openid phone profile',
        code_challenge: await oidc.calculatePKCECodeChallenge(request.verifier),
        code_challenge_method: 'S256',
        state: request.state,
        nonce: request.nonce,
      });
      return redirect(authorization.href, { 'set-cookie': `example_state=${request.state}; HttpOnly; SameSite=Lax; Path=/` });
    }

    if (url.pathname === '/callback') {
      const state = cookieOf(request, 'example_state');
      const started = state ? pending.get(state) : undefined;
      if (!started) return send(400, page('Sign-in failed', '<p>This sign-in was not started here. <a href="/">Start again</a>.</p>'));
      pending.delete(started.state);
      try {
        const tokens = await oidc.authorizationCodeGrant(config, url, { pkceCodeVerifier: started.verifier, expectedState: started.state, expectedNonce: started.nonce });
        const claims = tokens.claims()!;
        const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
        const id = randomBytes(24).toString('base64url');
        sessions.set(id, { claims, userinfo, idToken: tokens.id_token! });
        return redirect('/', { 'set-cookie': `example_session=${id}; HttpOnly; SameSite=Lax; Path=/` });
      } catch (error) {
        return send(400, page('Sign-in failed', `<p>${escape(error instanceof Error ? error.message : String(error))}</p><p><a href="/">Start again</a>.</p>`));
      }
    }

    if (url.pathname === '/logout') {
      if (sessionId) sessions.delete(sessionId);
      if (!session) return redirect('/');
      const endSession = oidc.buildEndSessionUrl(config, { id_token_hint: session.idToken, post_logout_redirect_uri: `${settings.baseUrl}/` });
      return redirect(endSession.href, { 'set-cookie': 'example_session=; Max-Age=0; Path=/' });
    }

    return send(404, page('Not found', '<p><a href="/">Home</a></p>'));
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'text/plain' });
      response.end(`error: ${error instanceof Error ? error.message : String(error)}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(settings.port, settings.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${settings.host ?? '127.0.0.1'}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// Started directly (npm run example): settings from the environment, defaults matching a development gateway.
if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env.EXAMPLE_PORT ?? 3001);
  const settings: ExampleSettings = {
    issuer: process.env.CHATGATE_ISSUER ?? 'http://localhost:3000',
    clientId: process.env.EXAMPLE_CLIENT_ID ?? 'chatgate-example',
    clientSecret: process.env.EXAMPLE_CLIENT_SECRET,
    baseUrl: process.env.EXAMPLE_BASE_URL ?? `http://localhost:${port}`,
    port,
    host: 'localhost',
  };
  startExampleApp(settings).then(
    () => console.log(`Example app on ${settings.baseUrl}, signing in with ${settings.issuer} as ${settings.clientId}`),
    (error: unknown) => {
      console.error(`The example app could not start: ${error instanceof Error ? error.message : String(error)}. Is the gateway running (npm run dev)?`);
      process.exit(1);
    },
  );
}
