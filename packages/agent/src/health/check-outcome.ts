import type { HealthCheck, HealthCheckKind } from '@fleetpatch/shared';

/** One member of the check union, e.g. `CheckOfKind<'http'>`. */
export type CheckOfKind<K extends HealthCheckKind> = Extract<HealthCheck, { kind: K }>;

/** What a single kind-specific check reports; the probe stamps name, kind and time on it. */
export interface CheckOutcome {
  ok: boolean;
  observed: string;
}

export function pass(observed: string): CheckOutcome {
  return { ok: true, observed };
}

export function fail(observed: string): CheckOutcome {
  return { ok: false, observed };
}

/** A short, operator-facing description of a thrown value; never a stack trace. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
