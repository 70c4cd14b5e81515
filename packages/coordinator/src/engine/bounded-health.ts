import { cutText, type HealthCheckResult, WIRE_LIMITS } from '@fleetpatch/shared';

/**
 * Health results as the coordinator records them: the label, kind and time cut to their wire limits
 * (an agent's `observed` is capped by the schema already). The schema does not refuse longer ones —
 * an older agent labels a command check with its whole command line, and a result refused is one
 * re-reported for ever — but a host must not make the audit trail hold megabytes per row.
 */
export function boundedHealth(results: readonly HealthCheckResult[]): HealthCheckResult[] {
  return results.map(({ check, kind, ok, observed, at }) => ({
    check: cutText(check, WIRE_LIMITS.healthLabelChars),
    kind: cutText(kind, WIRE_LIMITS.healthKindChars),
    ok,
    observed,
    at: cutText(at, WIRE_LIMITS.healthAtChars),
  }));
}
