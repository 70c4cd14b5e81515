import { hasZodFastifySchemaValidationErrors } from '@fastify/type-provider-zod';
import { type ErrorBody, ErrorBodySchema, type ErrorCode, isFleetError } from '@fleetpatch/shared';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

/** The one table from error code to HTTP status. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  validation_failed: 400,
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
  revert_failed: 500,
  blocked: 423,
  cancelled: 409,
  timed_out: 504,
  offline: 503,
  internal: 500,
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
  const status = error.statusCode ?? 500;
  if (status >= 500) request.log.error({ err: error }, 'request failed');
  reply.status(status).send({
    error: {
      code: status === 413 ? 'validation_failed' : status < 500 ? 'validation_failed' : 'internal',
      message: status >= 500 ? 'internal error' : error.message,
    },
  } satisfies ErrorBody);
}
