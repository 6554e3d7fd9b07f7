// Every error code the gateway answers with, declared once with its HTTP status.
// Services throw AppError with one of these codes; src/http/error-handler.ts is the only place that turns
// them into `{ error, message, ...details }`.
export const errorCatalogue = {
  invalid_request: 400,
  invalid_json: 400,
  invalid_phone: 400,
  invalid_code: 400,
  invalid_state: 400,
  invalid_token: 401,
  token_expired: 401,
  token_reused: 401,
  token_revoked: 401,
  invalid_signature: 401,
  unauthorized: 401,
  reauthentication_required: 401,
  user_blocked: 403,
  country_not_allowed: 403,
  forbidden: 403,
  access_denied: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  expired: 410,
  payload_too_large: 413,
  unsupported_media_type: 415,
  channel_unavailable: 422,
  too_many_attempts: 429,
  rate_limited: 429,
  internal_error: 500,
  delivery_failed: 502,
  service_unavailable: 503,
} as const;

export type ErrorCode = keyof typeof errorCatalogue;

export type ErrorDetails = Record<string, string | number | boolean | null | undefined | readonly unknown[]>;

export class AppError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ErrorDetails = {},
  ) {
    super(message);
    this.name = 'AppError';
    this.status = errorCatalogue[code];
  }
}

/** A provider (SMS gateway, Graph API, Bot API) failed; kept apart from request errors so logs say whose fault it was. */
export class DeliveryError extends Error {
  constructor(
    readonly provider: string,
    message: string,
    readonly providerDetail?: unknown,
  ) {
    super(message);
    this.name = 'DeliveryError';
  }
}
