/**
 * Every failure that crosses a process boundary carries one of these codes. The coordinator maps
 * them to HTTP statuses in one table (see coordinator `http/error-handler.ts`); agents put them in results.
 */
export const ErrorCode = {
  validationFailed: 'validation_failed',
  /** The request body is over the coordinator's size limit. */
  payloadTooLarge: 'payload_too_large',
  /** The request body is in a content type the route does not read (JSON is what it reads). */
  unsupportedMediaType: 'unsupported_media_type',
  /** Too many failed attempts from one address: wait `Retry-After` seconds. */
  tooManyRequests: 'too_many_requests',
  notFound: 'not_found',
  conflict: 'conflict',
  illegalTransition: 'illegal_transition',
  unauthorized: 'unauthorized',
  forbidden: 'forbidden',
  preconditionFailed: 'precondition_failed',
  policyDenied: 'policy_denied',
  snapshotFailed: 'snapshot_failed',
  applyFailed: 'apply_failed',
  verifyFailed: 'verify_failed',
  healthFailed: 'health_failed',
  /** A metric analysis the coordinator ran failed the host's wave. */
  analysisFailed: 'analysis_failed',
  /** The canary's rehearsed revert did not bring it back to exactly its prior state, healthy. */
  rehearsalFailed: 'rehearsal_failed',
  revertFailed: 'revert_failed',
  blocked: 'blocked',
  cancelled: 'cancelled',
  timedOut: 'timed_out',
  offline: 'offline',
  /**
   * The agent stopped (crashed, was killed, lost power) in the middle of an order; on restart it
   * finished the order without resuming it (see the agent's recovery). Not a fault of the change.
   */
  interrupted: 'interrupted',
  /**
   * The coordinator's storage is full (its SQLite database answered SQLITE_FULL, a write answered
   * ENOSPC): the request changed nothing; it takes new work again once an operator frees space. In
   * an order's result: the agent's data dir filled while the order ran, which stopped it (its result
   * says whether it was reverted).
   */
  storageFull: 'storage_full',
  internal: 'internal',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class FleetError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  /** `options.cause` keeps the error this one wraps (ES2022), for logs; it never reaches a client. */
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FleetError';
    this.code = code;
    this.details = details;
  }
}

export function isFleetError(err: unknown): err is FleetError {
  return err instanceof FleetError;
}

/**
 * WebSocket close codes the coordinator uses towards agents (4000–4999 is the private range).
 * An agent reconnects after any of them except `unauthorized` and `protocolMismatch`, which need a
 * human (it still retries at its slowest pace, re-reading its credential first).
 */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  /** ws's own, RFC 6455: a frame that breaks the framing rules (reserved bits, bad opcode, unmasked). */
  protocolError: 1002,
  /** ws's own, RFC 6455: a text frame that is not UTF-8. */
  invalidPayload: 1007,
  /** ws's own: a frame over the size limit. */
  tooBig: 1009,
  badFrame: 4400,
  unauthorized: 4401,
  /** The connection did not authenticate (answer the challenge with hello) in time. */
  handshakeTimeout: 4408,
  /** Another connection with this agent's credential is alive: the newcomer is refused, never the live one. */
  alreadyConnected: 4409,
  protocolMismatch: 4426,
  /** The agent sent more messages than its rate allows. */
  rateLimited: 4429,
  /** The coordinator is at its limit of connections; try again later. */
  overloaded: 4503,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];
