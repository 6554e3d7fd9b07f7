import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { isDatabaseUnavailable } from '../db/unavailable.js';
import { AppError, type ErrorCode } from '../errors.js';

// The one place where errors become HTTP answers: `{ error, message, ...details }`. A 4xx says what was wrong;
// a 5xx says nothing about our insides and is logged instead.

const fastifyCodes: Record<string, [ErrorCode, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: ['payload_too_large', 'The request body is too large.'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: ['unsupported_media_type', 'Send JSON with "Content-Type: application/json".'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: ['invalid_request', 'The Content-Length header does not match the body.'],
  FST_ERR_CTP_EMPTY_JSON_BODY: ['invalid_json', 'The body is empty; send a JSON object.'],
  // Fastify reports JSON carrying __proto__ / constructor.prototype keys with this code too.
  FST_ERR_CTP_INVALID_JSON_BODY: ['invalid_json', 'The body is not valid JSON, or carries a forbidden "__proto__" key.'],
  FST_ERR_BAD_URL: ['invalid_request', 'The URL is not valid.'],
  FST_ERR_MAX_PARAM_LENGTH: ['invalid_request', 'A part of the URL is too long.'],
};

const byStatus: Partial<Record<number, ErrorCode>> = {
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
};

export function sendError(reply: FastifyReply, error: AppError): FastifyReply {
  if ((error.code === 'rate_limited' || error.code === 'service_unavailable') && typeof error.details.retryAfter === 'number') {
    reply.header('retry-after', String(error.details.retryAfter));
  }
  // Error bodies are built here and nowhere else, so they skip the route's response schemas (which document them):
  // a code a schema forgot must not turn a clear 4xx into a 500.
  // (A reply with its own serializer gets no content type by itself.)
  return reply
    .code(error.status)
    .type('application/json; charset=utf-8')
    .serializer(JSON.stringify)
    .send({ error: error.code, message: error.message, ...error.details });
}

/** The route schemas' validation errors, in the shape `parseInput` has always answered with. */
function invalidRequest(issues: { instancePath: string; message?: string | undefined }[]): AppError {
  const listed = issues.map((issue) => ({ path: issue.instancePath.replace(/^\//, '').replaceAll('/', '.'), message: issue.message ?? 'is not valid' }));
  const first = listed[0]!;
  return new AppError('invalid_request', first.path ? `${first.path}: ${first.message}` : first.message, { issues: listed });
}

export function errorHandler(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof AppError) return sendError(reply, error);
  if (hasZodFastifySchemaValidationErrors(error)) return sendError(reply, invalidRequest(error.validation));

  const known = 'code' in error && typeof error.code === 'string' ? fastifyCodes[error.code] : undefined;
  if (known) return sendError(reply, new AppError(known[0], known[1]));

  const status = 'statusCode' in error && typeof error.statusCode === 'number' ? error.statusCode : 500;
  if (error instanceof SyntaxError && status === 400) return sendError(reply, new AppError('invalid_json', 'The body is not valid JSON.'));
  if (isDatabaseUnavailable(error)) {
    // Logged without the stack: an outage makes one line per request, and the driver's message says enough.
    request.log.warn({ err: { name: error.name, message: error.message } }, 'database unavailable');
    return sendError(reply, new AppError('service_unavailable', 'The service is briefly unavailable. Try again in a few seconds.', { retryAfter: 5 }));
  }
  if (status >= 400 && status < 500) {
    const code = byStatus[status] ?? 'invalid_request';
    return reply.code(status).send({ error: code, message: error.message || 'The request was not accepted.' });
  }
  request.log.error({ err: error }, 'request failed');
  // The request id lets support find the logged error.
  return reply.code(500).send({ error: 'internal_error', message: 'Something went wrong on our side. Try again later.', requestId: request.id });
}
