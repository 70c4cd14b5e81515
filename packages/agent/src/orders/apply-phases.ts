import {
  type AfterChangeReport,
  type Change,
  ErrorCode,
  FleetError,
  type OrderApply,
  type RehearsalReport,
  UNHEALTHY_BEFORE_PATCH,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { PreflightVerdict } from '../drivers/driver.js';
import { type ApplyEntry, isDiskFull } from '../journal.js';
import type { AgentPolicy } from '../policy/agent-policy.js';
import { failedRestarts } from '../services/after-change.js';
import { fitResult } from '../wire-fit.js';
import type { BakeWatch } from './bake-watch.js';
import { codeOf, messageOf, type OrderContext, type ResultDraft } from './order-context.js';
import { rehearseRevert } from './rehearsal.js';
import { restoreAndFinish } from './snapshot-restore.js';
import { busyTargetReason, targetOf } from './target-lock.js';

export interface ApplyPhasesOptions {
  /** Where a healthy apply goes on being watched. */
  bakes: BakeWatch;
  /** The agent's policy, which judges a package change again once its preflight may have refreshed apt's indexes. */
  policy: AgentPolicy;
  /** The release of the order's target, when admitting it took it already (a signed order: see OrderExecutor.admit). */
  heldTarget?: () => void;
}

/**
 * One apply order through its phases: accepted → baseline → snapshotted → applying → applied →
 * verifying → done, or reverting → done. Journaled: accepted, baseline, applying (with the snapshot),
 * reverting and done, each durable before the step it guards.
 */
export async function runApply(
  ctx: OrderContext,
  order: OrderApply,
  signal: AbortSignal,
  log: Logger,
  options: ApplyPhasesOptions,
): Promise<void> {
  // Decided before the first await: two orders must never change the same file or package at once
  // (the second would snapshot the first's half-done state and "restore" the wrong thing).
  const target = targetOf(order.change);
  const busy = options.heldTarget === undefined && ctx.targets.isHeld(target);
  const release = options.heldTarget ?? (busy ? () => {} : ctx.targets.hold(target));
  try {
    await runPhases(ctx, order, signal, log, options, busy ? target : undefined);
  } finally {
    release();
  }
}

async function runPhases(
  ctx: OrderContext,
  order: OrderApply,
  signal: AbortSignal,
  log: Logger,
  options: ApplyPhasesOptions,
  busyWith: string | undefined,
): Promise<void> {
  const { journal, events, health } = ctx;
  let entry: ApplyEntry;
  try {
    entry = await journal.createApply(order, ctx.now());
  } catch (err) {
    refuseUnjournaled(ctx, order, err, log);
    return;
  }
  events.progress(order.orderId, 'accepted');
  ctx.checkpoint('apply:accepted');
  if (busyWith !== undefined) {
    await ctx.finish(entry, {
      outcome: 'failed',
      changed: false,
      errorCode: ErrorCode.blocked,
      reason: busyTargetReason(busyWith),
    });
    return;
  }

  // The executor admitted the order (policy and quotas) before it was journaled, driver included.
  const driver = ctx.driverFor(order.change);
  if (!driver) {
    await ctx.finish(entry, {
      outcome: 'failed',
      changed: false,
      errorCode: ErrorCode.policyDenied,
      reason: notEnabledReason(order.change),
    });
    return;
  }
  // An apply order may refresh apt's indexes in its preflight; a preflight order never does.
  const driverCtx = { ...ctx.driverContext(signal, log, order.orderId), mayRefreshIndexes: true };
  /** What the restarts after apply did, once they ran: reported with whatever the order ends in. */
  let applied: AfterChangeReport | undefined;
  try {
    // What the host must be before it changes: checked again here (the preflight may be minutes old), before the snapshot.
    const preconditions = await ctx.checkPreconditions(order.change, signal);
    if (!preconditions.ok) {
      log.warn({ reason: preconditions.reason }, 'host preconditions not met; nothing changed');
      await ctx.finish(entry, {
        outcome: 'failed',
        changed: false,
        errorCode: ErrorCode.preconditionFailed,
        reason: `${preconditions.reason}; nothing was changed`,
      });
      return;
    }
    // Baseline: a host sick before the patch is not the patch's fault.
    if (order.health.checks.length > 0) {
      entry = await journal.update(entry, { phase: 'baseline' }, ctx.now());
      events.progress(order.orderId, 'baseline');
      const baseline = await health.runOnce(order.health.checks, signal);
      if (!baseline.healthy) {
        await ctx.finish(entry, {
          outcome: order.failIfUnhealthyBefore ? 'failed' : 'skipped',
          changed: false,
          errorCode: ErrorCode.healthFailed,
          reason: UNHEALTHY_BEFORE_PATCH,
          health: baseline.results,
        });
        return;
      }
    }

    const refusal = preflightRefusal(await driver.preflight(order.change, driverCtx));
    if (refusal) {
      await ctx.finish(entry, refusal);
      return;
    }
    // The preflight may have run apt-get update: a source change that apt could not resolve when the
    // order was admitted (a version published since) resolves now, to binaries nobody judged yet. The
    // policy judges them before anything is installed: each allowed by name or source, none going down.
    if (order.change.kind === 'package') {
      const again = await options.policy.checkPackageChange(order.change, signal);
      if (!again.ok) {
        log.warn({ reason: again.reason }, 'refused once resolved on the refreshed indexes; nothing changed');
        await ctx.finish(entry, {
          outcome: 'failed',
          changed: false,
          errorCode: again.code,
          reason: `${again.reason} (as resolved once apt's indexes were refreshed); nothing was changed`,
        });
        return;
      }
    }

    // From here the order changes the host: the bakes of the orders it supersedes end (their checks
    // describe what it replaces). Not earlier — an order refused above changed nothing, and the
    // earlier order's bake must go on watching the host it left.
    options.bakes.endSupersededBy(entry);

    // What a rehearsed revert must bring the host back to, read before anything changes.
    const prior = order.rehearseRevert === true ? await driver.describe(order.change, driverCtx) : undefined;

    // No apply without an escape hatch: the snapshot is durable and verified before anything changes.
    // The driver makes the order's snapshot dir, durably, when it has something to keep in it (see
    // Driver.snapshot): made here as well, it was made twice in every order (a second mkdir and a
    // stat), and made for nothing when the change creates a file.
    const snapshot = await driver
      .snapshot(order.change, journal.snapshotDir(order.orderId), driverCtx)
      .catch((err: unknown) => {
        throw snapshotRoomError(err);
      });
    // The snapshot is journaled with `applying`, not in a write of its own: recovery treats an order
    // that has its snapshot but has not begun to apply like one that has none (nothing changed,
    // nothing to restore), so a `snapshotted` entry would be a durable write that changes no outcome
    // — as `applied` and `verifying` were. The crash matrix holds the outcome at this point.
    ctx.checkpoint('apply:snapshotted');
    throwIfAborted(signal);

    const rebootBefore = await ctx.rebootBefore(order.change, 'apply', log);
    const applyAndVerify = async (message?: string) => {
      // Durable before the change begins: from here recovery restores the snapshot this names.
      entry = await journal.update(entry, { phase: 'applying', snapshot }, ctx.now());
      events.progress(order.orderId, 'applying', message);
      ctx.checkpoint('apply:applying');
      await driver.apply(order.change, driverCtx, snapshot);
      ctx.checkpoint('apply:applied-before-journal');
      // From `applying` to `done` the journal is not written: recovery treats every phase in between
      // alike (the host may have changed: back to the snapshot), so `applied` and `verifying` would
      // be two durable writes that change no outcome. The crash matrix proves it at both points.
      events.progress(order.orderId, 'applied', message);
      ctx.checkpoint('apply:applied');
      await driver.verify(order.change, driverCtx, snapshot);
      // The patch's units restart onto the new code before health is judged; a restart that fails
      // fails the apply (the snapshot is restored and the afterRevert units restarted).
      applied = await ctx.afterChange(order.change, 'apply', rebootBefore, signal, log);
      const restartTrouble = failedRestarts(applied);
      if (restartTrouble) throw new FleetError(ErrorCode.applyFailed, restartTrouble);

      events.progress(order.orderId, 'verifying', message);
      ctx.checkpoint('apply:verifying');
      return health.waitUntilHealthy(order.health, {
        signal,
        onResults: (results, failingPolls) =>
          events.progress(order.orderId, 'verifying', message, results, failingPolls),
      });
    };
    let verdictAfter = await applyAndVerify();
    // The rehearsal, healthy hosts only: revert, check the prior state is back, then the same apply again.
    let rehearsal: RehearsalReport | undefined;
    if (verdictAfter.healthy && prior !== undefined) {
      const rehearsed = await rehearseRevert(ctx, entry, driver, driverCtx, prior, order.health, signal);
      if (!rehearsed.ok) {
        await ctx.finish(entry, rehearsed.result);
        return;
      }
      entry = rehearsed.entry;
      rehearsal = rehearsed.report;
      verdictAfter = await applyAndVerify('rehearsal passed: applied again');
    }
    const rehearsed = rehearsal ? { rehearsal } : {};
    if (!verdictAfter.healthy && !order.revertOnHealthFailure) {
      log.warn({ reason: verdictAfter.reason }, 'health failed after apply; left changed (autoRevert: none)');
      await ctx.finish(entry, {
        outcome: 'failed',
        changed: true,
        errorCode: ErrorCode.healthFailed,
        reason: `${verdictAfter.reason}; left changed for inspection (autoRevert: none)`,
        health: verdictAfter.results,
        ...(applied ? { afterChange: applied } : {}),
        ...rehearsed,
      });
      return;
    }
    if (!verdictAfter.healthy) {
      log.warn({ reason: verdictAfter.reason }, 'health failed after apply; reverting to the snapshot');
      entry = await journal.update(entry, { phase: 'reverting' }, ctx.now());
      events.progress(order.orderId, 'reverting', verdictAfter.reason);
      ctx.checkpoint('apply:reverting');
      await restoreAndFinish(ctx, entry, driver, driverCtx, 'failed', ErrorCode.healthFailed, verdictAfter.reason, {
        health: verdictAfter.results,
        ...(applied ? { applied } : {}),
      });
      return;
    }
    await ctx.finish(entry, {
      outcome: 'healthy',
      changed: true,
      health: verdictAfter.results,
      ...(applied ? { afterChange: applied } : {}),
      ...rehearsed,
    });
    options.bakes.startAfterHealthy(entry, driver, log);
  } catch (err) {
    const cancelled = signal.aborted;
    const full = !cancelled && isDiskFull(err);
    const code = cancelled ? ErrorCode.cancelled : full ? ErrorCode.storageFull : codeOf(err);
    const reason = cancelled ? 'cancelled' : full ? journalFullReason(entry, err) : messageOf(err);
    if (entry.snapshot === undefined) {
      // Nothing was changed yet: the snapshot is journaled with `applying`, before the change begins.
      await ctx.finish(entry, { outcome: cancelled ? 'cancelled' : 'failed', changed: false, errorCode: code, reason });
      return;
    }
    log.warn({ err }, 'apply did not complete; reverting to the snapshot');
    entry = await journal.update(entry, { phase: 'reverting' }, ctx.now());
    events.progress(order.orderId, 'reverting', reason);
    await restoreAndFinish(
      ctx,
      entry,
      driver,
      ctx.driverContext(new AbortController().signal, log, order.orderId),
      cancelled ? 'cancelled' : 'failed',
      code,
      reason,
      applied ? { applied } : {},
    );
  }
}

/**
 * The journal could not record the order's next phase: the data dir filled while the order ran.
 * The order stops there (nothing more is done to the host without its journal entry); what the
 * reason says next — nothing changed, or reverted — is added by whoever finishes it.
 */
function journalFullReason(entry: ApplyEntry, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return `the agent's data dir filled during the order (${code}, after phase ${entry.phase}): nothing more could be journaled, so the order stopped there`;
}

/**
 * A snapshot its data dir had no room for (ENOSPC or EDQUOT, as the driver met it or as the cause
 * of its error): the agent's storage is full, as for a journal write, not the snapshot broken. The
 * snapshot goes into the order's directory, in the data dir; nothing was changed yet.
 */
function snapshotRoomError(err: unknown): unknown {
  const cause = err instanceof Error ? err.cause : undefined;
  const full = isDiskFull(err) ? err : isDiskFull(cause) ? cause : undefined;
  if (full === undefined) return err;
  const code = (full as NodeJS.ErrnoException).code;
  return new FleetError(
    ErrorCode.storageFull,
    `the agent's data dir is full (${code}): the snapshot could not be stored, so nothing was changed`,
    { errno: code },
    { cause: err },
  );
}

/** Why an order (an apply or a preflight) for a change this agent has no driver for is refused. */
export function notEnabledReason(change: Change): string {
  return `${change.kind} changes are not enabled on this agent`;
}

/** What an order reports when its preflight stops it; null when it may go on. */
function preflightRefusal(verdict: PreflightVerdict): ResultDraft | null {
  const draft = preflightRefusalOf(verdict);
  return draft && verdict.packages ? { ...draft, packages: verdict.packages } : draft;
}

function preflightRefusalOf(verdict: PreflightVerdict): ResultDraft | null {
  switch (verdict.outcome) {
    case 'would_apply':
      return null;
    case 'already_applied':
      return { outcome: 'skipped', changed: false, reason: `already at target: ${verdict.detail}` };
    case 'would_fail':
      return { outcome: 'failed', changed: false, errorCode: verdict.code, reason: verdict.detail };
    case 'blocked':
      return { outcome: 'failed', changed: false, errorCode: ErrorCode.blocked, reason: verdict.detail };
    case 'not_applicable':
      return { outcome: 'not_applicable', changed: false, reason: verdict.detail };
  }
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted)
    throw signal.reason instanceof Error ? signal.reason : new FleetError(ErrorCode.cancelled, 'cancelled');
}

/**
 * The order's first journal entry could not be written (its data dir is full, say): nothing ran and
 * nothing may run, since an order the journal does not hold could not be recovered after a crash.
 * Answered at once as failed, nothing changed — not left for the coordinator to time out. Like a
 * policy refusal it is not journaled: a re-delivery, once there is room, is judged afresh.
 */
function refuseUnjournaled(ctx: OrderContext, order: OrderApply, err: unknown, log: Logger): void {
  const code = (err as NodeJS.ErrnoException).code;
  const full = code === 'ENOSPC' || code === 'EDQUOT';
  const reason = full
    ? `the agent's data dir is full (${code}): the order could not be journaled; nothing was changed`
    : `the order could not be journaled (${messageOf(err)}); nothing was changed`;
  log.error({ err }, 'order refused: it could not be journaled');
  ctx.events.result(
    fitResult({
      orderId: order.orderId,
      finishedAt: ctx.now(),
      outcome: 'failed',
      changed: false,
      errorCode: ErrorCode.blocked,
      reason,
    }),
  );
}
