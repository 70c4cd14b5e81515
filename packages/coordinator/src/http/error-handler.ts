import { hasZodFastifySchemaValidationErrors } from '@fastify/type-provider-zod';
import { type ErrorBody, ErrorBodySchema, ErrorCode, isFleetError } from '@fleetpatch/shared';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { storageFullError } from './storage-full.js';

/** The one table from error code to HTTP status. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  validation_failed: 400,
  payload_too_large: 413,
  unsupported_media_type: 415,
  too_many_requests: 429,
  not_found: 404,
  conflict: 409,
  illegal_transition: 409,
  unauthorized: 401,
  forbidden: 403,
  precondition_failed: 412,
  policy_denied: 403,
  snapshot_failed: 500,
  apply_failed: 500,
  verify_failed: 500,
  health_failed: 500,
  analysis_failed: 500,
  rehearsal_failed: 500,
  revert_failed: 500,
  blocked: 423,
  cancelled: 409,
  timed_out: 504,
  offline: 503,
  interrupted: 500,
  storage_full: 507,
  internal: 500,
};

/**
 * Fastify's own errors (no route, body too large, a content type nobody reads, a malformed URL…)
 * carry only a status: each is given the code that says the same. Any other 4xx is the client's
 * fault in a way no route describes, which is what `validation_failed` means.
 */
const CODE_OF_STATUS: Readonly<Record<number, ErrorCode>> = {
  401: ErrorCode.unauthorized,
  403: ErrorCode.forbidden,
  404: ErrorCode.notFound,
  409: ErrorCode.conflict,
  413: ErrorCode.payloadTooLarge,
  415: ErrorCode.unsupportedMediaType,
  429: ErrorCode.tooManyRequests,
};

/** Spread into a route's `response` schemas: errors are documented, and checked, like answers. */
export const ERROR_RESPONSES = { '4xx': ErrorBodySchema, '5xx': ErrorBodySchema } as const;

/** Every error leaves as `{ error: { code, message, details } }`; stack traces never do. */
export function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (hasZodFastifySchemaValidationErrors(error)) {
    const issues = error.validation.map((issue) => ({
      path: [error.validationContext, ...issue.instancePath.split('/').filter(Boolean)].filter(Boolean).join('.'),
      message: issue.message,
    }));
    reply.status(400).send({
      error: {
        code: 'validation_failed',
        message: `invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        details: { issues },
      },
    } satisfies ErrorBody);
    return;
  }
  if (isFleetError(error)) {
    reply.status(HTTP_STATUS[error.code]).send({
      error: { code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) },
    } satisfies ErrorBody);
    return;
  }
  const full = storageFullError(error);
  if (full) {
    request.log.error({ err: error }, 'request refused: storage full');
    reply
      .status(HTTP_STATUS[full.code])
      .send({ error: { code: full.code, message: full.message } } satisfies ErrorBody);
    return;
  }
  const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
  if (status >= 500) {
    request.log.error({ err: error }, 'request failed');
    reply.status(500).send({ error: { code: 'internal', message: 'internal error' } } satisfies ErrorBody);
    return;
  }
  reply.status(status).send({
    error: {
      code: CODE_OF_STATUS[status] ?? ErrorCode.validationFailed,
      message: error.message,
      ...(error.code ? { details: { reason: error.code } } : {}),
    },
  } satisfies ErrorBody);
}

/** No route has this method and URL (or a path parameter is over the router's length limit). */
export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  reply.status(404).send({
    error: {
      code: 'not_found',
      message: `no route ${request.method} ${request.url.slice(0, 200)}`,
      details: { method: request.method },
    },
  } satisfies ErrorBody);
}
