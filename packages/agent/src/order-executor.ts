import { mkdir } from 'node:fs/promises';
import {
  type Change,
  ErrorCode,
  type ErrorCode as ErrorCodeType,
  FleetError,
  type HealthCheck,
  type HealthCheckResult,
  isFleetError,
  type OrderApply,
  type OrderPhase,
  type OrderPreflight,
  type OrderResultBody,
  type OrderRevert,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Driver, DriverContext, PreflightVerdict } from './drivers/driver.js';
import type { HealthRunner } from './health/health-runner.js';
import type { Journal, JournalEntry } from './journal.js';
import { fitResult } from './wire-fit.js';

/** What the executor tells the outside world; the connection forwards it when it can. */
export interface ExecutorEvents {
  progress(orderId: string, phase: OrderPhase, message?: string, health?: HealthCheckResult[]): void;
  result(result: OrderResultBody): void;
}

export type DriverSet = { [K in Change['kind']]?: Driver<Extract<Change, { kind: K }>, unknown> };

export interface OrderExecutorOptions {
  journal: Journal;
  drivers: DriverSet;
  health: HealthRunner;
  clock: Clock;
  log: Logger;
  events: ExecutorEvents;
  /**
   * Absolute paths of the executables `command` health checks may run (config
   * `health.allowedCommands`). A check runs as root with an argv the order names, so without this
   * list whoever controls the coordinator could run anything on every host. Default: none.
   */
  allowedCommands?: readonly string[];
  /**
   * Test-only crash points: called with a checkpoint name after each durable step. The daemon's
   * main wires it to SIGKILL itself when `FLEETPATCH_TEST_CRASH_AT` names the checkpoint.
   */
  checkpoint?: (name: string) => void;
}

/**
 * Runs orders through the journal: accepted → baseline → snapshotted → applying → applied →
 * verifying → done, or reverting → done. Each phase is durable before the step it guards; an order
 * id seen before is answered from the journal, never run twice. The executor does not need the
 * coordinator: a host whose health fails reverts itself even when it is cut off.
 */
export class OrderExecutor {
  private readonly running = new Map<string, { abort: AbortController; done: Promise<void> }>();
  /** Healthy apply orders still being watched through their bake. */
  private readonly baking = new Map<string, { abort: AbortController; done: Promise<void> }>();
  /** Revert orders executing right now (by revert order id), so a duplicate delivery is not run twice. */
  private readonly reverts = new Set<string>();
  /** Apply orders a revert is restoring right now (how many reverts): no bake may start or act on them meanwhile. */
  private readonly revertTargets = new Map<string, number>();
  /** Files and packages an apply or a restore is changing right now (see targetOf). */
  private readonly busyTargets = new Map<string, number>();
  private readonly options: OrderExecutorOptions;
  private stopped = false;

  constructor(options: OrderExecutorOptions) {
    this.options = options;
  }

  /** How many orders are executing right now. */
  get busy(): number {
    return this.running.size;
  }

  /**
   * Before anything else at start-up: every order the journal shows as unfinished is brought to a
   * known state — back to its snapshot if it may have changed the host, else marked not applied.
   */
  async recover(): Promise<void> {
    for (const entry of this.options.journal.all()) {
      if (entry.phase === 'done') continue;
      const log = this.options.log.child({ orderId: entry.orderId, phase: entry.phase });
      log.warn('recovering an order interrupted by a restart');
      if (entry.kind === 'revert') {
        await this.runRevert(entry.orderId, entry.revertsOrderId ?? '', true);
        continue;
      }
      const order = entry.order as OrderApply;
      const driver = this.driverFor(order.change);
      const ctx = this.context(new AbortController().signal, log);
      if (driver) await driver.cleanup(order.change, ctx).catch((err: unknown) => log.error({ err }, 'cleanup failed'));
      const mayHaveChanged =
        entry.phase === 'applying' ||
        entry.phase === 'applied' ||
        entry.phase === 'verifying' ||
        entry.phase === 'reverting';
      if (!mayHaveChanged || entry.snapshot === undefined) {
        await this.finish(entry, {
          outcome: 'failed',
          changed: false,
          errorCode: ErrorCode.internal,
          reason: `agent restarted during ${entry.phase}; nothing was changed`,
        });
        continue;
      }
      await this.restoreAndFinish(
        entry,
        driver,
        ctx,
        'failed',
        ErrorCode.internal,
        `agent restarted during ${entry.phase}; restored the snapshot`,
      );
    }
  }

  /** Handles an `order.apply`. Returns once the order is finished (or answered from the journal). */
  async apply(order: OrderApply): Promise<void> {
    // A copy delivered while the first is still being journaled is not in the journal yet: the
    // running map (filled before any await) is what catches it. The first copy's result answers both.
    const inFlight = this.running.get(order.orderId);
    if (inFlight) return inFlight.done;
    const known = this.options.journal.get(order.orderId);
    if (known) return this.answerKnown(known);
    if (this.stopped) return;
    const abort = new AbortController();
    const log = this.options.log.child({ orderId: order.orderId, rolloutId: order.rolloutId, kind: order.change.kind });
    const done = this.runApply(order, abort.signal, log).catch((err: unknown) => {
      log.error({ err }, 'order failed unexpectedly');
    });
    const mine = { abort, done };
    this.running.set(order.orderId, mine);
    try {
      await done;
    } finally {
      if (this.running.get(order.orderId) === mine) this.running.delete(order.orderId);
    }
  }

  /** Handles an `order.revert`: restores the snapshot an apply order took. */
  async revert(order: OrderRevert): Promise<void> {
    // Same as apply: a duplicate delivered before the first copy is journaled must not run again.
    if (this.reverts.has(order.orderId)) return;
    const known = this.options.journal.get(order.orderId);
    if (known) return this.answerKnown(known);
    if (this.stopped) return;
    this.reverts.add(order.orderId);
    try {
      await this.runRevert(order.orderId, order.revertsOrderId, false);
    } finally {
      this.reverts.delete(order.orderId);
    }
  }

  /** Dry run: policy and preconditions only. Nothing is journaled because nothing changes. */
  async preflight(order: OrderPreflight): Promise<void> {
    const driver = this.driverFor(order.change);
    const base = { orderId: order.orderId, changed: false, finishedAt: this.now() };
    if (!driver) {
      this.options.events.result({
        ...base,
        outcome: 'would_fail',
        errorCode: ErrorCode.policyDenied,
        reason: `${order.change.kind} changes are not enabled on this agent`,
      });
      return;
    }
    const verdict = await driver
      .preflight(order.change, this.context(AbortSignal.timeout(120_000), this.options.log))
      .catch((err: unknown) => ({ outcome: 'would_fail' as const, code: codeOf(err), detail: messageOf(err) }));
    this.options.events.result(
      fitResult({
        ...base,
        finishedAt: this.now(),
        outcome: verdict.outcome,
        reason: verdict.detail,
        ...(verdict.outcome === 'would_fail' ? { errorCode: verdict.code } : {}),
      }),
    );
  }

  /** Cancels an order in flight; one that already changed the host goes back to its snapshot. */
  cancel(orderId: string): void {
    this.running.get(orderId)?.abort.abort(new FleetError(ErrorCode.cancelled, 'cancelled by the coordinator'));
    this.baking.get(orderId)?.abort.abort(new FleetError(ErrorCode.cancelled, 'cancelled by the coordinator'));
  }

  /**
   * The coordinator stored the result that finished at `finishedAt`: stop reporting it. An ack
   * for an earlier result (a late one, after a bake failure wrote a second) leaves the newer one
   * pending; an ack without `finishedAt` (an older coordinator) acknowledges whatever is stored.
   */
  async acknowledge(orderId: string, finishedAt?: string): Promise<void> {
    await this.options.journal.acknowledge(orderId, finishedAt, this.now());
  }

  /**
   * Stops taking orders and lets those running finish (a drain); bake watches end at once. Whoever
   * cannot wait (a second signal, a timeout) just exits: the journal recovers the rest at the next start.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const { abort } of this.baking.values()) abort.abort(new FleetError(ErrorCode.cancelled, 'agent stopping'));
    await Promise.all([...this.running.values(), ...this.baking.values()].map(({ done }) => done));
  }

  // ---- apply ---------------------------------------------------------------------------------

  private async runApply(order: OrderApply, signal: AbortSignal, log: Logger): Promise<void> {
    // Decided before the first await: two orders must never change the same file or package at once
    // (the second would snapshot the first's half-done state and "restore" the wrong thing).
    const target = targetOf(order.change);
    const busy = this.busyTargets.has(target);
    const release = busy ? () => {} : this.holdTarget(target);
    try {
      await this.runApplyHolding(order, signal, log, busy ? target : undefined);
    } finally {
      release();
    }
  }

  private async runApplyHolding(order: OrderApply, signal: AbortSignal, log: Logger, busyWith?: string): Promise<void> {
    const { journal, events, health } = this.options;
    let entry = await journal.createApply(order, this.now());
    events.progress(order.orderId, 'accepted');
    this.checkpoint('apply:accepted');
    if (busyWith !== undefined) {
      await this.finish(entry, {
        outcome: 'failed',
        changed: false,
        errorCode: ErrorCode.blocked,
        reason: `another order for ${busyWith} is still running on this host; nothing was changed`,
      });
      return;
    }

    const driver = this.driverFor(order.change);
    if (!driver) {
      await this.finish(entry, {
        outcome: 'failed',
        changed: false,
        errorCode: ErrorCode.policyDenied,
        reason: `${order.change.kind} changes are not enabled on this agent`,
      });
      return;
    }
    // Before the baseline: a denied command check must not run even once.
    const denied = this.deniedCommand(order.health.checks);
    if (denied !== undefined) {
      await this.finish(entry, {
        outcome: 'failed',
        changed: false,
        errorCode: ErrorCode.policyDenied,
        reason:
          `command health check ${JSON.stringify(denied)} is not allowed on this agent: ` +
          'add its absolute path to health.allowedCommands in the agent configuration',
      });
      return;
    }
    const ctx = this.context(signal, log);
    try {
      // Baseline: a host sick before the patch is not the patch's fault.
      if (order.health.checks.length > 0) {
        entry = await journal.update(order.orderId, { phase: 'baseline' }, this.now());
        events.progress(order.orderId, 'baseline');
        const baseline = await health.runOnce(order.health.checks, signal);
        if (!baseline.healthy) {
          await this.finish(entry, {
            outcome: order.failIfUnhealthyBefore ? 'failed' : 'skipped',
            changed: false,
            errorCode: ErrorCode.healthFailed,
            reason: 'unhealthy before patch',
            health: baseline.results,
          });
          return;
        }
      }

      const refusal = preflightRefusal(await driver.preflight(order.change, ctx));
      if (refusal) {
        await this.finish(entry, refusal);
        return;
      }

      // No apply without an escape hatch: the snapshot is durable and verified before anything changes.
      const dir = journal.snapshotDir(order.orderId);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const snapshot = await driver.snapshot(order.change, dir, ctx);
      entry = await journal.update(order.orderId, { phase: 'snapshotted', snapshot }, this.now());
      events.progress(order.orderId, 'snapshotted');
      this.checkpoint('apply:snapshotted');
      throwIfAborted(signal);

      entry = await journal.update(order.orderId, { phase: 'applying' }, this.now());
      events.progress(order.orderId, 'applying');
      this.checkpoint('apply:applying');
      await driver.apply(order.change, ctx);
      this.checkpoint('apply:applied-before-journal');
      entry = await journal.update(order.orderId, { phase: 'applied', changed: true }, this.now());
      events.progress(order.orderId, 'applied');
      this.checkpoint('apply:applied');
      await driver.verify(order.change, ctx);

      entry = await journal.update(order.orderId, { phase: 'verifying' }, this.now());
      events.progress(order.orderId, 'verifying');
      this.checkpoint('apply:verifying');
      const verdictAfter = await health.waitUntilHealthy(order.health, {
        signal,
        onResults: (results) => events.progress(order.orderId, 'verifying', undefined, results),
      });
      if (!verdictAfter.healthy && !order.revertOnHealthFailure) {
        log.warn({ reason: verdictAfter.reason }, 'health failed after apply; left changed (autoRevert: none)');
        await this.finish(entry, {
          outcome: 'failed',
          changed: true,
          errorCode: ErrorCode.healthFailed,
          reason: `${verdictAfter.reason}; left changed for inspection (autoRevert: none)`,
          health: verdictAfter.results,
        });
        return;
      }
      if (!verdictAfter.healthy) {
        log.warn({ reason: verdictAfter.reason }, 'health failed after apply; reverting to the snapshot');
        entry = await journal.update(order.orderId, { phase: 'reverting' }, this.now());
        events.progress(order.orderId, 'reverting', verdictAfter.reason);
        this.checkpoint('apply:reverting');
        await this.restoreAndFinish(
          entry,
          driver,
          ctx,
          'failed',
          ErrorCode.healthFailed,
          verdictAfter.reason,
          verdictAfter.results,
        );
        return;
      }
      await this.finish(entry, { outcome: 'healthy', changed: true, health: verdictAfter.results });
      if (order.bakeSeconds > 0 && order.health.checks.length > 0 && this.bakeable(order.orderId))
        this.startBake(order, driver, log);
    } catch (err) {
      const cancelled = signal.aborted;
      const code = cancelled ? ErrorCode.cancelled : codeOf(err);
      const reason = cancelled ? 'cancelled' : messageOf(err);
      if (entry.snapshot === undefined || entry.phase === 'snapshotted') {
        // Nothing was changed yet.
        await this.finish(entry, {
          outcome: cancelled ? 'cancelled' : 'failed',
          changed: false,
          errorCode: code,
          reason,
        });
        return;
      }
      log.warn({ err }, 'apply did not complete; reverting to the snapshot');
      entry = await journal.update(order.orderId, { phase: 'reverting' }, this.now());
      events.progress(order.orderId, 'reverting', reason);
      await this.restoreAndFinish(
        entry,
        driver,
        this.context(new AbortController().signal, log),
        cancelled ? 'cancelled' : 'failed',
        code,
        reason,
      );
    }
  }

  /** Restores an apply entry's snapshot and finishes it with `outcome`, or revert_failed. */
  private async restoreAndFinish(
    entry: JournalEntry,
    driver: Driver<Change, unknown> | undefined,
    ctx: DriverContext,
    outcome: 'failed' | 'cancelled',
    code: ErrorCodeType,
    reason: string,
    health?: HealthCheckResult[],
  ): Promise<void> {
    const order = entry.order as OrderApply;
    try {
      if (!driver) throw new FleetError(ErrorCode.revertFailed, `${order.change.kind} driver is not enabled`);
      await driver.restore(order.change, entry.snapshot, this.options.journal.snapshotDir(entry.orderId), ctx);
      await this.finish(entry, {
        outcome,
        changed: false,
        errorCode: code,
        reason: `${reason}; reverted to the snapshot`,
        ...(health ? { health } : {}),
      });
    } catch (err) {
      ctx.log.error({ err }, 'REVERT FAILED: the host may be between states; a human must look');
      await this.finish(entry, {
        outcome: 'revert_failed',
        changed: true,
        errorCode: ErrorCode.revertFailed,
        reason: `${reason}; revert failed: ${messageOf(err)}`,
        ...(health ? { health } : {}),
      });
    }
  }

  /**
   * Bake: the host stays under watch after it reported healthy. A failure now is still the patch's
   * failure — the host reverts itself (unless autoRevert is none) and reports a second result.
   */
  /**
   * The coordinator says this order's wave passed and bakes for `seconds`: watch that long from now,
   * replacing the watch started when the host reported healthy (so the host is watched for the
   * whole of its wave's bake, not only for bakeSeconds after its own result).
   */
  async extendBake(orderId: string, seconds: number): Promise<void> {
    const order = this.bakeable(orderId);
    if (!order || order.health.checks.length === 0 || seconds <= 0) return;
    const driver = this.driverFor(order.change);
    if (!driver) return;
    // Until no watch is left: two extensions at once must end with one watch, not an orphan.
    for (let current = this.baking.get(orderId); current; current = this.baking.get(orderId)) {
      current.abort.abort(new FleetError(ErrorCode.cancelled, 'bake extended'));
      await current.done;
    }
    // While we waited, the old watch may have failed and reverted the host, or a revert may have begun.
    if (!this.bakeable(orderId)) return;
    this.startBake(order, driver, this.options.log.child({ orderId, rolloutId: order.rolloutId }), seconds);
  }

  /** The apply order, when it is still one a bake may watch: done, healthy, carrying its change. */
  private bakeable(orderId: string): OrderApply | undefined {
    if (this.stopped || this.revertTargets.has(orderId)) return undefined;
    const entry = this.options.journal.get(orderId);
    if (entry?.phase !== 'done' || entry.result?.outcome !== 'healthy' || !entry.changed) return undefined;
    return entry.order;
  }

  private startBake(
    order: OrderApply,
    driver: Driver<Change, unknown>,
    log: Logger,
    seconds = order.bakeSeconds,
  ): void {
    const abort = new AbortController();
    const watch = async () => {
      const verdict = await this.options.health.watch(order.health, seconds, {
        signal: abort.signal,
        onResults: (results) => this.options.events.progress(order.orderId, 'verifying', 'baking', results),
      });
      if (verdict.healthy || abort.signal.aborted) return;
      // The verdict is only ours to act on while the order is still healthy and changed: a revert or
      // another watch may have restored the host (and failed the checks) while this one polled.
      if (!this.bakeable(order.orderId)) return;
      const release = this.holdForRevert(order.orderId); // before any await: one actor at a time
      const releaseTarget = this.holdTarget(targetOf(order.change));
      try {
        log.warn({ reason: verdict.reason }, 'health failed during bake');
        let entry = this.options.journal.get(order.orderId) as JournalEntry;
        if (!order.revertOnHealthFailure) {
          await this.finish(entry, {
            outcome: 'failed',
            changed: true,
            errorCode: ErrorCode.healthFailed,
            reason: `during bake: ${verdict.reason}; left changed for inspection (autoRevert: none)`,
            health: verdict.results,
          });
          return;
        }
        entry = await this.options.journal.update(order.orderId, { phase: 'reverting' }, this.now());
        this.options.events.progress(order.orderId, 'reverting', verdict.reason);
        const ctx = this.context(new AbortController().signal, log);
        await this.restoreAndFinish(
          entry,
          driver,
          ctx,
          'failed',
          ErrorCode.healthFailed,
          `during bake: ${verdict.reason}`,
          verdict.results,
        );
      } finally {
        releaseTarget();
        release();
      }
    };
    const bake = {
      abort,
      done: watch()
        .catch((err: unknown) => {
          if (!abort.signal.aborted) log.error({ err }, 'bake watch failed');
        })
        .finally(() => {
          if (this.baking.get(order.orderId) === bake) this.baking.delete(order.orderId);
        }),
    };
    this.baking.set(order.orderId, bake);
  }

  // ---- revert --------------------------------------------------------------------------------

  private async runRevert(orderId: string, revertsOrderId: string, recovering: boolean): Promise<void> {
    const { journal } = this.options;
    const log = this.options.log.child({ orderId, revertsOrderId });
    const release = this.holdForRevert(revertsOrderId);
    try {
      const entry = recovering
        ? (journal.get(orderId) as JournalEntry)
        : await journal.createRevert(orderId, revertsOrderId, this.now());
      if (!recovering) this.options.events.progress(orderId, 'reverting');
      this.checkpoint('revert:reverting');
      await this.revertTarget(entry, revertsOrderId, log);
    } finally {
      release();
    }
  }

  /** Marks a file or package as being changed by an order; returns the release. */
  private holdTarget(target: string): () => void {
    this.busyTargets.set(target, (this.busyTargets.get(target) ?? 0) + 1);
    return () => {
      const left = (this.busyTargets.get(target) ?? 1) - 1;
      if (left > 0) this.busyTargets.set(target, left);
      else this.busyTargets.delete(target);
    };
  }

  /**
   * Marks an apply order as being reverted (by a revert order or by its own bake failure), taken
   * synchronously so that no bake starts or acts on it meanwhile. Returns the release.
   */
  private holdForRevert(orderId: string): () => void {
    this.revertTargets.set(orderId, (this.revertTargets.get(orderId) ?? 0) + 1);
    return () => {
      const left = (this.revertTargets.get(orderId) ?? 1) - 1;
      if (left > 0) this.revertTargets.set(orderId, left);
      else this.revertTargets.delete(orderId);
    };
  }

  private async revertTarget(entry: JournalEntry, revertsOrderId: string, log: Logger): Promise<void> {
    const { journal } = this.options;
    // First the apply of the same order still running (it starts its bake watch when it ends
    // healthy), then that watch: a revert wins over it, and none may outlive the restore.
    await this.running.get(revertsOrderId)?.done;
    const bake = this.baking.get(revertsOrderId);
    bake?.abort.abort(new FleetError(ErrorCode.cancelled, 'reverted'));
    await bake?.done;
    const target = journal.get(revertsOrderId);
    if (target?.kind !== 'apply') {
      await this.finish(entry, {
        outcome: 'revert_failed',
        changed: false,
        errorCode: ErrorCode.notFound,
        reason: `this agent has no record of order ${revertsOrderId}`,
      });
      return;
    }
    if (!target.changed || target.snapshot === undefined) {
      await this.finish(entry, { outcome: 'reverted', changed: false, reason: 'the order left nothing to revert' });
      return;
    }
    const order = target.order as OrderApply;
    const driver = this.driverFor(order.change);
    const releaseTarget = this.holdTarget(targetOf(order.change));
    try {
      if (!driver) throw new FleetError(ErrorCode.revertFailed, `${order.change.kind} driver is not enabled`);
      const ctx = this.context(new AbortController().signal, log);
      await driver.cleanup(order.change, ctx);
      await driver.restore(order.change, target.snapshot, journal.snapshotDir(target.orderId), ctx);
      this.checkpoint('revert:restored');
      await journal.update(target.orderId, { changed: false }, this.now());
      await this.finish(entry, { outcome: 'reverted', changed: false });
    } catch (err) {
      log.error({ err }, 'REVERT FAILED: the host may be between states; a human must look');
      await this.finish(entry, {
        outcome: 'revert_failed',
        changed: true,
        errorCode: ErrorCode.revertFailed,
        reason: messageOf(err),
      });
    } finally {
      releaseTarget();
    }
  }

  // ---- helpers -------------------------------------------------------------------------------

  private async finish(entry: JournalEntry, result: Omit<OrderResultBody, 'orderId' | 'finishedAt'>): Promise<void> {
    const body: OrderResultBody = {
      orderId: entry.orderId,
      finishedAt: this.finishedAt(entry.orderId),
      ...fitResult(result),
    };
    await this.options.journal.finish(entry.orderId, body, result.changed);
    this.checkpoint(`${entry.kind}:done`);
    this.options.events.result(body);
  }

  /**
   * A second result of an order (a failure during bake) must not share the first one's finishedAt:
   * the coordinator acks by it, and an ack of the first must not acknowledge the second.
   */
  private finishedAt(orderId: string): string {
    const now = this.options.clock.now();
    const previous = this.options.journal.get(orderId)?.result?.finishedAt;
    const after = previous === undefined ? Number.NaN : Date.parse(previous);
    return new Date(Number.isNaN(after) || now > after ? now : after + 1).toISOString();
  }

  /** The first `command` check whose executable is not in the allow-list, as its argv; undefined when all may run. */
  private deniedCommand(checks: readonly HealthCheck[]): readonly string[] | undefined {
    const allowed = this.options.allowedCommands ?? [];
    for (const check of checks) {
      if (check.kind === 'command' && !allowed.includes(check.argv[0] ?? '')) return check.argv;
    }
    return undefined;
  }

  private answerKnown(entry: JournalEntry): void {
    // Re-delivered id: answer with the recorded result; an order still running answers when it ends.
    if (entry.phase === 'done' && entry.result) this.options.events.result(entry.result);
  }

  private driverFor(change: Change): Driver<Change, unknown> | undefined {
    return this.options.drivers[change.kind] as Driver<Change, unknown> | undefined;
  }

  private context(signal: AbortSignal, log: Logger): DriverContext {
    return { signal, log };
  }

  private checkpoint(name: string): void {
    this.options.checkpoint?.(name);
  }

  private now(): string {
    return new Date(this.options.clock.now()).toISOString();
  }
}

/** What an order changes on the host: one file or one package. */
function targetOf(change: Change): string {
  return change.kind === 'file' ? `file ${change.path}` : `package ${change.name}`;
}

/** What an order reports when its preflight stops it; null when it may go on. */
function preflightRefusal(verdict: PreflightVerdict): Omit<OrderResultBody, 'orderId' | 'finishedAt'> | null {
  switch (verdict.outcome) {
    case 'would_apply':
      return null;
    case 'already_applied':
      return { outcome: 'skipped', changed: false, reason: `already at target: ${verdict.detail}` };
    case 'would_fail':
      return { outcome: 'failed', changed: false, errorCode: verdict.code, reason: verdict.detail };
    case 'blocked':
      return { outcome: 'failed', changed: false, errorCode: ErrorCode.blocked, reason: verdict.detail };
  }
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted)
    throw signal.reason instanceof Error ? signal.reason : new FleetError(ErrorCode.cancelled, 'cancelled');
}

function codeOf(err: unknown): ErrorCodeType {
  return isFleetError(err) ? err.code : ErrorCode.internal;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
