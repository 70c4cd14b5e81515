import {
  cutText,
  type HealthCheckResult,
  type OrderReport,
  type RehearsalReport,
  WIRE_LIMITS,
} from '@fleetpatch/shared';

/**
 * Cuts what a result says to what the wire accepts: a result the coordinator's schema refuses is a
 * result never recorded, and the agent would re-report it for ever.
 */
export function fitResult<
  T extends {
    reason?: string | undefined;
    health?: HealthCheckResult[] | undefined;
    rehearsal?: RehearsalReport | undefined;
  },
>(result: T): T {
  return {
    ...result,
    ...(result.reason !== undefined ? { reason: cutText(result.reason, WIRE_LIMITS.reasonChars) } : {}),
    ...(result.health !== undefined ? { health: fitHealth(result.health, WIRE_LIMITS.resultHealthResults) } : {}),
    ...(result.rehearsal !== undefined ? { rehearsal: fitRehearsal(result.rehearsal) } : {}),
  };
}

/** A rehearsal report within the schema's limits (its reason, its differences, each state's values). */
function fitRehearsal(report: RehearsalReport): RehearsalReport {
  const fitState = (state: RehearsalReport['prior']) =>
    Object.fromEntries(
      Object.entries(state)
        .slice(0, 20)
        .map(([key, value]) => [cutText(key, 50), typeof value === 'string' ? cutText(value, 200) : value]),
    );
  return {
    ...report,
    prior: fitState(report.prior),
    ...(report.restored ? { restored: fitState(report.restored) } : {}),
    differences: report.differences.slice(0, 20).map((line) => cutText(line, 300)),
    ...(report.reason !== undefined ? { reason: cutText(report.reason, WIRE_LIMITS.reasonChars) } : {}),
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
    check: cutText(h.check, WIRE_LIMITS.healthLabelChars),
    observed: fitObserved(h.observed),
  }));
}

/** What a health check saw, cut to what one result may carry. */
export function fitObserved(observed: string): string {
  return cutText(observed, WIRE_LIMITS.observedChars);
}

/** What a hello's journal summary may take: the frame less ample room for facts, labels and the proof. */
export const HELLO_REPORTS_BUDGET_BYTES = WIRE_LIMITS.frameBytes - 512 * 1024;
/** The hello schema's own cap on reports. */
const HELLO_MAX_REPORTS = 10_000;

/**
 * Picks the reports one hello carries so that it always fits its frame (an agent whose hello is
 * too big is closed with 1009 on every reconnect and never comes back online): unfinished orders
 * first (small, and the coordinator needs them to know what runs), then results, newest first.
 * The rest is `held`: sent one by one as the coordinator acknowledges what it got, and reported
 * again by the next hello until acknowledged.
 */
export function fitHelloReports(
  reports: readonly OrderReport[],
  budgetBytes = HELLO_REPORTS_BUDGET_BYTES,
): { sent: OrderReport[]; held: OrderReport[] } {
  const unfinished = reports.filter((r) => r.result === undefined);
  const finished = reports.filter((r) => r.result !== undefined).reverse();
  const sent: OrderReport[] = [];
  const held: OrderReport[] = [];
  let used = 2;
  for (const report of [...unfinished, ...finished]) {
    const size = Buffer.byteLength(JSON.stringify(report)) + 1;
    if (sent.length < HELLO_MAX_REPORTS && used + size <= budgetBytes) {
      sent.push(report);
      used += size;
    } else held.push(report);
  }
  return { sent, held };
}
