import { type HealthCheckResult, WIRE_LIMITS } from '@fleetpatch/shared';

/** Not capped by the schema, but a check's label can be a 256 kB argv: keep frames small. */
const MAX_CHECK_LABEL_CHARS = 1024;

/**
 * Cuts what a result says to what the wire accepts: a result the coordinator's schema refuses is a
 * result never recorded, and the agent would re-report it for ever.
 */
export function fitResult<T extends { reason?: string | undefined; health?: HealthCheckResult[] | undefined }>(
  result: T,
): T {
  return {
    ...result,
    ...(result.reason !== undefined ? { reason: cut(result.reason, WIRE_LIMITS.reasonChars) } : {}),
    ...(result.health !== undefined ? { health: fitHealth(result.health, WIRE_LIMITS.resultHealthResults) } : {}),
  };
}

/** The same for a progress report, sent on every health poll. */
export function fitProgress(
  message: string | undefined,
  health: readonly HealthCheckResult[] | undefined,
): { message?: string; health?: HealthCheckResult[] } {
  return {
    ...(message ? { message: message.slice(0, WIRE_LIMITS.progressMessageChars) } : {}),
    ...(health ? { health: fitHealth(health, WIRE_LIMITS.progressHealthResults) } : {}),
  };
}

function fitHealth(health: readonly HealthCheckResult[], max: number): HealthCheckResult[] {
  return health.slice(0, max).map((h) => ({
    ...h,
    check: cut(h.check, MAX_CHECK_LABEL_CHARS),
    observed: fitObserved(h.observed),
  }));
}

/** What a health check saw, cut to what one result may carry. */
export function fitObserved(observed: string): string {
  return cut(observed, WIRE_LIMITS.observedChars);
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
