import { readFileSync } from 'node:fs';
import { z } from 'zod';

// The apps allowed to sign people in through Chatgate, from OIDC_CLIENTS (JSON) or OIDC_CLIENTS_FILE.

const redirectUri = z.url().pipe(z.string().refine((value) => !new URL(value).hash, 'must not contain a #fragment'));

export const oidcClientSchema = z.strictObject({
  client_id: z.string().regex(/^[A-Za-z0-9._~-]{3,100}$/, 'must be 3 to 100 characters of A-Z a-z 0-9 . _ ~ -'),
  // Absent: a public client (a single-page or mobile app), which must use PKCE.
  client_secret: z.string().min(32, 'must be at least 32 characters').optional(),
  redirect_uris: z.array(redirectUri).min(1, 'needs at least one redirect URI'),
  post_logout_redirect_uris: z.array(redirectUri).default([]),
  name: z.string().min(1).max(80),
  // A first-party app (ours) signs people in without a consent screen.
  first_party: z.boolean().default(false),
});

export type OidcClient = z.infer<typeof oidcClientSchema>;

export const oidcClientsSchema = z
  .array(oidcClientSchema)
  .refine((clients) => new Set(clients.map((client) => client.client_id)).size === clients.length, 'client_id values must be unique');

/** Parses a JSON list of clients; the message names the first problem and where it is. */
export function parseOidcClients(json: string, source: string): { clients: OidcClient[] } | { problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return { problem: `${source}: not valid JSON` };
  }
  const parsed = oidcClientsSchema.safeParse(value);
  if (parsed.success) return { clients: parsed.data };
  const issue = parsed.error.issues[0]!;
  return { problem: `${source}: ${issue.path.length ? `[${issue.path.join('].[')}] ` : ''}${issue.message}` };
}

export function readOidcClientsFile(file: string): { clients: OidcClient[] } | { problem: string } {
  let json: string;
  try {
    json = readFileSync(file, 'utf8');
  } catch (error) {
    return { problem: `OIDC_CLIENTS_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  return parseOidcClients(json, 'OIDC_CLIENTS_FILE');
}

/** Development only: the example app in examples/ works without any setting. */
export const developmentExampleClient: OidcClient = {
  client_id: 'chatgate-example',
  redirect_uris: ['http://localhost:3001/callback'],
  post_logout_redirect_uris: ['http://localhost:3001/'],
  name: 'Chatgate example app',
  first_party: true,
};
