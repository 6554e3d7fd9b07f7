import { z } from 'zod';
import { channels } from '../../models/channels.js';
import { errorCatalogue, type ErrorCode } from '../errors.js';

// The shapes the HTTP API answers with, shared by the routes (which validate and serialise through them) and the
// OpenAPI document (generated from them). A response schema is also a filter: a field it does not name never leaves.

export const userSchema = z
  .object({
    id: z.string(),
    phone: z.string().nullable().describe('E.164, or null for a chat-only account'),
    telegram: z.object({ id: z.number().int(), username: z.string().nullable(), firstName: z.string().nullable() }).nullable(),
    whatsapp: z.object({ waId: z.string().nullable() }).nullable(),
    status: z.enum(['active', 'blocked']),
    createdAt: z.date(),
    lastLoginAt: z.date().nullable(),
    lastLoginChannel: z.enum(channels).nullable(),
  })
  .meta({
    id: 'User',
    examples: [
      {
        id: '665f1c2e9b1e8a0012345678',
        phone: '+447911123456',
        telegram: null,
        whatsapp: null,
        status: 'active',
        createdAt: '2026-05-01T09:30:00.000Z',
        lastLoginAt: '2026-05-02T08:00:00.000Z',
        lastLoginChannel: 'sms',
      },
    ],
  });

const tokenFields = {
  accessToken: z.string().describe('A JWT signed with the keys at /.well-known/jwks.json'),
  refreshToken: z.string().describe('Single use: each refresh returns a new one'),
  tokenType: z.literal('Bearer'),
  expiresIn: z.number().int().describe('Seconds until the access token expires'),
  user: userSchema,
};

export const tokenPairSchema = z.object(tokenFields).meta({
  id: 'TokenPair',
  examples: [
    {
      accessToken: 'eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl',
      refreshToken: 'cgrt_Yw3xq6mQ0a1b2c3d4e5f6g7h8i9j0kLmNoPqRsTuVw',
      tokenType: 'Bearer',
      expiresIn: 900,
      user: { id: '665f1c2e9b1e8a0012345678', phone: '+447911123456', telegram: null, whatsapp: null, status: 'active', createdAt: '2026-05-01T09:30:00.000Z', lastLoginAt: '2026-05-02T08:00:00.000Z', lastLoginChannel: 'sms' },
    },
  ],
});

/** The poll answers of a login intent; tokens come exactly once, with `approved`. */
export const intentPollSchema = z
  .discriminatedUnion('status', [
    z.object({ status: z.literal('pending'), expiresIn: z.number().int() }),
    z.object({ status: z.literal('approved'), ...tokenFields }),
    z.object({ status: z.enum(['rejected', 'consumed', 'expired']) }),
  ])
  .meta({ id: 'LoginIntentStatus', examples: [{ status: 'pending', expiresIn: 240 }, { status: 'consumed' }] });

const issue = z.object({ path: z.string(), message: z.string() });

const errorExamples: Partial<Record<ErrorCode, string>> = {
  invalid_request: 'phone: Too small: expected string to have >=3 characters',
  invalid_json: 'The body is not valid JSON, or carries a forbidden "__proto__" key.',
  invalid_phone: 'This is not a valid phone number.',
  invalid_code: 'The code is wrong.',
  unauthorized: 'Send "Authorization: Bearer <accessToken>".',
  invalid_token: 'The token is not valid.',
  rate_limited: 'Too many requests. Try again in 30 seconds.',
  channel_unavailable: 'No chat channel is configured on this gateway.',
  internal_error: 'Something went wrong on our side. Try again later.',
};

/** `{ error, message, ... }` with the codes one status of one route can answer; details beyond these may follow. */
function errorSchema(codes: ErrorCode[]) {
  const code = codes[0]!;
  return z
    .looseObject({
      error: z.enum(codes as [ErrorCode, ...ErrorCode[]]),
      message: z.string().describe('A sentence for people; do not parse it'),
      ...(codes.includes('invalid_request') ? { issues: z.array(issue).optional() } : {}),
      ...(codes.includes('rate_limited') || codes.includes('too_many_attempts') ? { retryAfter: z.number().int().optional() } : {}),
    })
    .meta({ examples: [{ error: code, message: errorExamples[code] ?? 'See the error code.' }] });
}

// Every route can be refused by the per-IP limit or fail on our side.
const alwaysPossible: ErrorCode[] = ['rate_limited', 'internal_error'];
// A route that reads a JSON body can also meet these before its handler runs.
export const bodyErrors: ErrorCode[] = ['invalid_request', 'invalid_json', 'payload_too_large', 'unsupported_media_type'];

/** The error responses of a route, one schema per HTTP status, from the codes it can answer. */
export function errorResponses(...codes: ErrorCode[]): Record<number, ReturnType<typeof errorSchema>> {
  return errorResponsesOf([...codes, ...alwaysPossible]);
}

/** The error responses of a probe (`/health`, `/ready`), which the per-IP limiter never refuses. */
export function probeErrorResponses(...codes: ErrorCode[]): Record<number, ReturnType<typeof errorSchema>> {
  return errorResponsesOf([...codes, 'internal_error']);
}

function errorResponsesOf(codes: ErrorCode[]): Record<number, ReturnType<typeof errorSchema>> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = errorCatalogue[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries([...byStatus].map(([status, group]) => [status, errorSchema(group)]));
}

/** Routes that take `Authorization: Bearer <token>`. */
export const bearerSecurity = [{ bearerAuth: [] }];
