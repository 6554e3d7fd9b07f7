import { createHash } from 'node:crypto';
import type { Model } from 'mongoose';
import { errors } from 'oidc-provider';
import type { OidcEntry } from '../../models/oidc-entry.js';
import type { Clock } from '../clock.js';
import type { Reservations } from '../services/reservations.js';

/** The payload oidc-provider hands to its adapter; we only look at the fields we index. */
export interface OidcPayload {
  grantId?: string;
  uid?: string;
  userCode?: string;
  consumed?: number;
  [key: string]: unknown;
}

export interface OidcAdapter {
  upsert(id: string, payload: OidcPayload, expiresIn?: number): Promise<void>;
  find(id: string): Promise<OidcPayload | undefined>;
  findByUid(uid: string): Promise<OidcPayload | undefined>;
  findByUserCode(userCode: string): Promise<OidcPayload | undefined>;
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

// For these the id is the credential itself (a code or token handed to a client): it is stored only as a digest, and
// the payload's copy of it (jti) is left out and put back from the id presented. Sessions, interactions and grants
// are found by other fields too (findByUid), so they keep their jti; their ids are digested all the same.
const BEARER_KINDS = new Set([
  'AuthorizationCode',
  'AccessToken',
  'RefreshToken',
  'ClientCredentials',
  'PushedAuthorizationRequest',
  'BackchannelAuthenticationRequest',
  'RegistrationAccessToken',
  'InitialAccessToken',
]);

const digest = (id: string): string => createHash('sha256').update(id).digest('base64url');

// Entries the provider keeps without an expiry (none today, but its contract allows it) stay this long at most.
const DEFAULT_KEEP_SECONDS = 14 * 86_400;

/**
 * oidc-provider's storage on our database. Consuming an authorization code or rotating a refresh token must happen
 * once however many requests race: a guarded update is not atomic on FerretDB, so consumption is a reservation (an
 * insert under a unique key) and every loser gets invalid_grant. Expired entries are refused when read and swept in
 * code, since FerretDB has no TTL indexes.
 */
export function createOidcAdapterFactory(entries: Model<OidcEntry>, reservations: Reservations, clock: Clock) {
  const collection = entries.collection;

  const live = (entry: OidcEntry | null, id?: string): OidcPayload | undefined => {
    if (!entry) return undefined;
    if (entry.expiresAt && entry.expiresAt.getTime() <= clock.now().getTime()) return undefined;
    const payload = entry.payload as OidcPayload;
    return id !== undefined && BEARER_KINDS.has(entry.kind) ? { ...payload, jti: id } : payload;
  };

  const factory = (kind: string): OidcAdapter => {
    const key = (id: string) => `${kind}:${digest(id)}`;
    const bearer = BEARER_KINDS.has(kind);
    return {
      async upsert(id, input, expiresIn) {
        const expiresAt = new Date(clock.now().getTime() + (expiresIn ?? DEFAULT_KEEP_SECONDS) * 1000);
        const { jti: _jti, ...withoutId } = input;
        const payload = bearer ? withoutId : input;
        const document: Omit<OidcEntry, '_id'> = { kind, payload, expiresAt };
        if (input.grantId) document.grantId = input.grantId;
        if (input.uid) document.uid = input.uid;
        if (input.userCode) document.userCode = input.userCode;
        await collection.replaceOne({ _id: key(id) as never }, document, { upsert: true });
      },
      async find(id) {
        return live(await collection.findOne<OidcEntry>({ _id: key(id) as never }), id);
      },
      async findByUid(uid) {
        return live(await collection.findOne<OidcEntry>({ kind, uid }));
      },
      async findByUserCode(userCode) {
        return live(await collection.findOne<OidcEntry>({ kind, userCode }));
      },
      async consume(id) {
        const entry = await collection.findOne<OidcEntry>({ _id: key(id) as never }, { projection: { expiresAt: 1 } });
        const keepFor = entry?.expiresAt ? Math.max(60, Math.ceil((entry.expiresAt.getTime() - clock.now().getTime()) / 1000) + 3600) : DEFAULT_KEEP_SECONDS;
        if (!(await reservations.reserve(`oidc:consumed:${key(id)}`, keepFor))) {
          throw new errors.InvalidGrant(`${kind === 'AuthorizationCode' ? 'authorization code' : 'grant'} already consumed`);
        }
        // Marked on the entry too, so a later replay is seen as such by the provider (which then revokes the grant).
        await collection.updateOne({ _id: key(id) as never }, { $set: { 'payload.consumed': Math.floor(clock.now().getTime() / 1000) } });
      },
      async destroy(id) {
        await collection.deleteOne({ _id: key(id) as never });
      },
      async revokeByGrantId(grantId) {
        await collection.deleteMany({ grantId });
      },
    };
  };

  return {
    factory,
    /** Deletes what has expired; the provider refuses such entries anyway, this only frees the space. */
    async sweepExpired(): Promise<number> {
      const { deletedCount } = await collection.deleteMany({ expiresAt: { $lte: clock.now() } });
      return deletedCount;
    },
  };
}
