import {
  type Change,
  type DescribedState,
  ErrorCode,
  type HealthPolicy,
  type RehearsalReport,
} from '@fleetpatch/shared';
import type { Driver, DriverContext } from '../drivers/driver.js';
import type { ApplyEntry } from '../journal.js';
import { messageOf, type OrderContext, type ResultDraft } from './order-context.js';

/** The rehearsal passed: the host is back at its prior state, healthy, and may apply again. */
export type RehearsalOutcome =
  | { ok: true; entry: ApplyEntry; report: RehearsalReport }
  | { ok: false; result: ResultDraft };

/** One line per field that differs: `mode: 0640 → 0666`. */
export function stateDifferences(prior: DescribedState, now: DescribedState): string[] {
  const keys = [...new Set([...Object.keys(prior), ...Object.keys(now)])].sort();
  return keys
    .filter((key) => prior[key] !== now[key])
    .map((key) => `${key}: ${String(prior[key] ?? '(none)')} → ${String(now[key] ?? '(none)')}`);
}

/**
 * The revert rehearsed, on a host that applied the change and is healthy: restore the snapshot,
 * let health settle on the prior state (a service restarted on its old config may rewrite it), then
 * compare what the host holds with what it held before the apply (`prior`). Any difference, an
 * unhealthy host, or a restore that fails ends the order here: the host is left as the revert left
 * it (a failed restore: between states, `revert_failed`), for a person to look at, and the rollout
 * halts. Otherwise the caller applies again. The journal says `changed: false` while reverted, and
 * the phase stays `applying`: an agent restarted mid-rehearsal restores the snapshot and reports
 * the order failed, so the host always ends at its prior state or the signed change.
 */
export async function rehearseRevert(
  ctx: OrderContext,
  entry: ApplyEntry,
  driver: Driver<Change, unknown>,
  driverCtx: DriverContext,
  prior: DescribedState,
  health: HealthPolicy,
  signal: AbortSignal,
): Promise<RehearsalOutcome> {
  const { orderId, order } = entry;
  ctx.events.progress(orderId, 'verifying', 'rehearsal: reverting to the snapshot');
  try {
    await driver.restore(order.change, entry.snapshot, ctx.journal.snapshotDir(orderId), driverCtx);
  } catch (err) {
    const reason = `the rehearsed revert failed: ${messageOf(err)}`;
    driverCtx.log.error({ err }, 'REHEARSED REVERT FAILED: the host may be between states; a human must look');
    return {
      ok: false,
      result: {
        outcome: 'revert_failed',
        changed: true,
        errorCode: ErrorCode.rehearsalFailed,
        reason,
        rehearsal: { ok: false, prior, differences: [], reason },
      },
    };
  }
  entry = await ctx.journal.update(entry, { changed: false }, ctx.now());
  ctx.checkpoint('apply:rehearsal-reverted');
  ctx.events.progress(orderId, 'verifying', 'rehearsal: reverted; checking health and the prior state');
  const verdict = await ctx.health.waitUntilHealthy(health, {
    signal,
    onResults: (results, failingPolls) =>
      ctx.events.progress(orderId, 'verifying', 'rehearsal: health after the revert', results, failingPolls),
  });
  const restored = await driver.describe(order.change, driverCtx);
  const differences = stateDifferences(prior, restored);
  const report: RehearsalReport = { ok: false, prior, restored, differences, healthyAfterRevert: verdict.healthy };
  if (differences.length > 0 || !verdict.healthy) {
    const reason =
      differences.length > 0
        ? `the rehearsed revert did not restore the prior state: ${differences.join('; ')}`
        : `unhealthy after the rehearsed revert: ${verdict.reason}`;
    driverCtx.log.error({ differences, healthy: verdict.healthy }, 'rehearsed revert failed; left as reverted');
    return {
      ok: false,
      result: {
        outcome: 'failed',
        changed: false,
        errorCode: ErrorCode.rehearsalFailed,
        reason,
        health: verdict.results,
        rehearsal: { ...report, reason },
      },
    };
  }
  return { ok: true, entry, report: { ...report, ok: true } };
}
