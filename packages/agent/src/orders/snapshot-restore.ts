import type { Change } from '@fleetpatch/shared';
import {
  type AfterChangeReport,
  ErrorCode,
  type ErrorCode as ErrorCodeType,
  FleetError,
  type HealthCheckResult,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { Driver, DriverContext } from '../drivers/driver.js';
import type { ApplyEntry, RevertEntry } from '../journal.js';
import { failedRestarts, mergeReports } from '../services/after-change.js';
import { messageOf, type OrderContext } from './order-context.js';
import { supersedingOrder } from './superseded.js';
import { targetOf } from './target-lock.js';

/**
 * Restores an apply entry's snapshot and finishes it with `outcome`, or with revert_failed when the
 * restore itself fails. Used when an apply goes wrong, when its bake fails and after a crash.
 */
export async function restoreAndFinish(
  ctx: OrderContext,
  entry: ApplyEntry,
  driver: Driver<Change, unknown> | undefined,
  driverCtx: DriverContext,
  outcome: 'failed' | 'cancelled',
  code: ErrorCodeType,
  reason: string,
  extra: { health?: HealthCheckResult[]; applied?: AfterChangeReport } = {},
): Promise<void> {
  const { change } = entry.order;
  const { health } = extra;
  try {
    if (!driver) throw new FleetError(ErrorCode.revertFailed, `${change.kind} driver is not enabled`);
    const before = await ctx.rebootBefore(change, 'revert', driverCtx.log);
    await driver.restore(change, entry.snapshot, ctx.journal.snapshotDir(entry.orderId), driverCtx);
    // The old code is back on disk: the services restart onto it (afterRevert) before the report.
    const reverted = await ctx.afterChange(change, 'revert', before, driverCtx.signal, driverCtx.log);
    const afterChange = mergeReports(extra.applied, reverted);
    const restartTrouble = failedRestarts(reverted);
    await ctx.finish(entry, {
      outcome,
      changed: false,
      errorCode: code,
      reason: `${reason}; reverted to the snapshot${restartTrouble ? `, but ${restartTrouble}` : ''}`,
      ...(health ? { health } : {}),
      ...(afterChange ? { afterChange } : {}),
    });
  } catch (err) {
    driverCtx.log.error({ err }, 'REVERT FAILED: the host may be between states; a human must look');
    await ctx.finish(entry, {
      outcome: 'revert_failed',
      changed: true,
      errorCode: ErrorCode.revertFailed,
      reason: `${reason}; revert failed: ${messageOf(err)}`,
      ...(health ? { health } : {}),
      ...(extra.applied ? { afterChange: extra.applied } : {}),
    });
  }
}

/**
 * A revert order: restores the snapshot the apply order `revertsOrderId` took, and finishes the
 * revert entry. The caller has already let that apply and its bake watch end.
 */
export async function revertApplyOrder(
  ctx: OrderContext,
  entry: RevertEntry,
  revertsOrderId: string,
  log: Logger,
): Promise<void> {
  const { journal } = ctx;
  const target = journal.get(revertsOrderId);
  if (target?.kind !== 'apply') {
    await ctx.finish(entry, {
      outcome: 'revert_failed',
      changed: false,
      errorCode: ErrorCode.notFound,
      reason: `this agent has no record of order ${revertsOrderId}`,
    });
    return;
  }
  if (!target.changed || target.snapshot === undefined) {
    await ctx.finish(entry, { outcome: 'reverted', changed: false, reason: 'the order left nothing to revert' });
    return;
  }
  const { change } = target.order;
  const driver = ctx.driverFor(change);
  // An order holding the target (a later one at its preconditions or baseline) goes first; once it is
  // free, a later order that changed the host since makes this revert one that would undo it too.
  const releaseTarget = (await ctx.targets.holdWhenFree(targetOf(change), NEVER)) as () => void;
  const later = supersedingOrder(journal.all(), target);
  if (later !== undefined) {
    releaseTarget();
    await ctx.finish(entry, {
      outcome: 'revert_failed',
      changed: false,
      errorCode: ErrorCode.policyDenied,
      reason: supersededRevertReason(later.orderId, revertsOrderId),
    });
    return;
  }
  try {
    if (!driver) throw new FleetError(ErrorCode.revertFailed, `${change.kind} driver is not enabled`);
    const driverCtx = ctx.driverContext(new AbortController().signal, log, entry.orderId);
    await driver.cleanup(change, driverCtx);
    const before = await ctx.rebootBefore(change, 'revert', log);
    await driver.restore(change, target.snapshot, journal.snapshotDir(target.orderId), driverCtx);
    ctx.checkpoint('revert:restored');
    await journal.update(target, { changed: false }, ctx.now());
    const afterChange = await ctx.afterChange(change, 'revert', before, driverCtx.signal, log);
    const restartTrouble = failedRestarts(afterChange);
    await ctx.finish(entry, {
      outcome: 'reverted',
      changed: false,
      ...(restartTrouble ? { reason: `reverted, but ${restartTrouble}` } : {}),
      ...(afterChange ? { afterChange } : {}),
    });
  } catch (err) {
    log.error({ err }, 'REVERT FAILED: the host may be between states; a human must look');
    await ctx.finish(entry, {
      outcome: 'revert_failed',
      changed: true,
      errorCode: ErrorCode.revertFailed,
      reason: messageOf(err),
    });
  } finally {
    releaseTarget();
  }
}

/** A signal that never aborts: what waits on it waits until it is done. */
const NEVER = new AbortController().signal;

/** Why the revert of an order a later one superseded is refused (`policy_denied`). */
export function supersededRevertReason(laterOrderId: string, revertsOrderId: string): string {
  return `order ${laterOrderId}, begun later on the same target, superseded order ${revertsOrderId}: reverting it would put back what was there before both; revert ${laterOrderId} first`;
}
