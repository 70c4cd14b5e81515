import { rm } from 'node:fs/promises';
import {
  abortAfter,
  ErrorCode,
  FleetError,
  type HealthCheckResult,
  type OrderApply,
  type OrderPreflight,
  type OrderRevert,
  type StatementRefusal,
  StatementRefusalCode,
  statementRefusalReason,
  UNHEALTHY_BEFORE_PATCH,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { HealthPoll } from '../health/health-runner.js';
import type { ApplyEntry, JournalEntry, RevertEntry } from '../journal.js';
import { AgentPolicy } from '../policy/agent-policy.js';
import { type JournalQuota, JournalUsage, journalQuotaRefusal } from '../policy/journal-quota.js';
import type { RefusalCounter } from '../policy/refusal-counter.js';
import type { SignedAcceptance, SignedOrderCheck } from '../policy/signed-order-check.js';
import { PreconditionChecker } from '../preconditions/precondition-check.js';
import { outputTail } from '../process/command-runner.js';
import { settleRun } from '../process/detached-run.js';
import { fitResult } from '../wire-fit.js';
import { notEnabledReason, runApply } from './apply-phases.js';
import { BakeWatch } from './bake-watch.js';
import { codeOf, messageOf, OrderContext, type OrderContextOptions } from './order-context.js';
import { PreflightQueue } from './preflight-queue.js';
import { restoreAndFinish, revertApplyOrder, supersededRevertReason } from './snapshot-restore.js';
import { supersedingOrder } from './superseded.js';
import { busyTargetReason, targetOf } from './target-lock.js';

/** How long recovery waits for a dpkg run the previous agent left running (the apt driver's default command timeout). */
const UNFINISHED_RUN_TIMEOUT_MS = 15 * 60_000;

export type { DriverSet, ExecutorEvents } from './order-context.js';

export interface OrderExecutorOptions extends OrderContextOptions {
  /**
   * The agent's local policy (see agent-policy.ts), checked before an order is journaled and before
   * any of its health checks runs. Default: the agent's default policy.
   */
  policy?: AgentPolicy;
  /** Where refused orders are counted (they are not journaled); none in unit tests that do not look. */
  refusals?: RefusalCounter;
  /** Journal quotas, checked before an order is journaled. Default: none. */
  quota?: JournalQuota;
  /** Signed orders required (config `signing`), checked first. Default: none (orders need no signature). */
  signing?: SignedOrderCheck;
}

/** Why an order is refused before it is journaled; `counted` is the key in refusals.json when it is not `code`. */
interface Refusal {
  code: ErrorCode;
  reason: string;
  counted?: string;
}

/**
 * A signed-order refusal travels as `policy_denied` (the coordinator checks result codes against
 * ErrorCode), its own code first in the reason; refusals.json counts it under its own code.
 */
function signedRefusal(refusal: StatementRefusal): Refusal {
  return {
    code: ErrorCode.policyDenied,
    reason: statementRefusalReason(refusal.code, refusal.reason),
    counted: refusal.code,
  };
}

/**
 * Runs orders through the journal (the phases are in apply-phases.ts). An order id seen before is
 * answered from the journal, never run twice. The executor does not need the coordinator: a host
 * whose health fails reverts itself even when it is cut off.
 */
export class OrderExecutor {
  /** Apply orders executing right now, filled before any await so a duplicate delivery joins the first. */
  private readonly running = new Map<string, { order: OrderApply; abort: AbortController; done: Promise<void> }>();
  /** Revert orders executing right now (by revert order id), so a duplicate delivery is not run twice. */
  private readonly reverts = new Set<string>();
  private readonly ctx: OrderContext;
  private readonly bakes: BakeWatch;
  private readonly preflights = new PreflightQueue();
  private readonly policy: AgentPolicy;
  private readonly refusals: RefusalCounter | undefined;
  private readonly quota: JournalQuota | undefined;
  private readonly usage: JournalUsage;
  private readonly signing: SignedOrderCheck | undefined;
  private stopping: Promise<void> | null = null;

  constructor(options: OrderExecutorOptions) {
    this.policy = options.policy ?? new AgentPolicy();
    const preconditions =
      options.preconditions ?? new PreconditionChecker({ health: options.health, policy: this.policy });
    this.ctx = new OrderContext({ ...options, preconditions });
    this.bakes = new BakeWatch(this.ctx);
    this.refusals = options.refusals;
    this.quota = options.quota;
    // What a driver keeps for an order it snapshotted, counted from the record when the driver can.
    this.usage = new JournalUsage(options.journal, (entry) =>
      entry.kind === 'apply' && entry.snapshot !== undefined
        ? this.ctx.driverFor(entry.order.change)?.keptBytes?.(entry.snapshot)
        : undefined,
    );
    this.signing = options.signing;
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
    for (const entry of this.ctx.journal.all()) {
      if (entry.phase === 'done') continue;
      const log = this.ctx.log.child({ orderId: entry.orderId, phase: entry.phase });
      log.warn('recovering an order interrupted by a restart');
      await this.settleDpkgRun(entry.orderId, log);
      if (entry.kind === 'revert') await this.runRevert(entry.orderId, entry.revertsOrderId, entry);
      else await this.recoverApply(entry, log);
    }
  }

  /** Handles an `order.apply`. Returns once the order is finished (or answered from the journal). */
  async apply(order: OrderApply): Promise<void> {
    // A copy delivered while the first is still being journaled is not in the journal yet: the
    // running map (filled before any await) is what catches it. The first copy's result answers both.
    const inFlight = this.running.get(order.orderId);
    if (inFlight) return inFlight.done;
    const known = this.ctx.journal.get(order.orderId);
    if (known) return this.answerKnown(known);
    if (this.stopping) return;
    const abort = new AbortController();
    const log = this.ctx.log.child({ orderId: order.orderId, rolloutId: order.rolloutId, kind: order.change.kind });
    const done = this.admit(order, abort.signal, log)
      .then((admitted) =>
        admitted
          ? runApply(this.ctx, order, abort.signal, log, {
              bakes: this.bakes,
              policy: this.policy,
              ...(admitted.heldTarget ? { heldTarget: admitted.heldTarget } : {}),
            })
          : undefined,
      )
      .catch((err: unknown) => {
        log.error({ err }, 'order failed unexpectedly');
      });
    const mine = { order, abort, done };
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
    const known = this.ctx.journal.get(order.orderId);
    if (known) return this.answerKnown(known);
    if (this.stopping) return;
    const recorded = this.ctx.journal.get(order.revertsOrderId);
    const applied = recorded?.kind === 'apply' ? recorded.order : this.running.get(order.revertsOrderId)?.order;
    if (applied === undefined) {
      // Nothing to restore: answered and counted, not journaled (a flood of made-up ids costs no disk).
      const reason = `this agent has no record of order ${order.revertsOrderId}`;
      await this.refuseRevert(order.orderId, { code: ErrorCode.notFound, reason });
      return;
    }
    this.reverts.add(order.orderId);
    try {
      const refusal = await this.admitRevert(order, applied);
      if (refusal) await this.refuseRevert(order.orderId, refusal);
      else await this.runRevert(order.orderId, order.revertsOrderId);
    } finally {
      this.reverts.delete(order.orderId);
    }
  }

  /**
   * Dry run, in its turn (`PreflightQueue`): one that finds the queue full is answered blocked at once,
   * having checked nothing. The time it waited comes off the coordinator's wait it passes on.
   */
  async preflight(order: OrderPreflight): Promise<void> {
    const ran = await this.preflights.run(async (waitedMs) => {
      const within = order.answerWithinMs;
      await this.runPreflight(
        within === undefined ? order : { ...order, answerWithinMs: Math.max(0, within - Math.floor(waitedMs)) },
      );
    });
    if (ran) return;
    const { running, waiting } = this.preflights.limits;
    this.ctx.events.result(
      fitResult({
        orderId: order.orderId,
        outcome: 'blocked',
        changed: false,
        errorCode: ErrorCode.blocked,
        reason: `this agent is running ${running} dry runs and has ${waiting} waiting: ask again later; nothing was checked`,
        finishedAt: this.ctx.now(),
      }),
    );
  }

  /** Dry run: policy and preconditions only. Nothing is journaled because nothing changes. */
  private async runPreflight(order: OrderPreflight): Promise<void> {
    const { events } = this.ctx;
    const driver = this.ctx.driverFor(order.change);
    const base = { orderId: order.orderId, changed: false, finishedAt: this.ctx.now() };
    const admitted = driver
      ? await this.policy
          .checkOrder(order)
          .catch((err: unknown) => ({ ok: false as const, code: codeOf(err), reason: messageOf(err) }))
      : { ok: false as const, code: ErrorCode.policyDenied, reason: notEnabledReason(order.change) };
    if (!admitted.ok) {
      events.result(fitResult({ ...base, outcome: 'would_fail', errorCode: admitted.code, reason: admitted.reason }));
      return;
    }
    if (!driver) return;
    // The apply would be refused unsigned (signed-order-check.ts): a dry run says so now, not at the wave.
    if (this.signing !== undefined && order.signed === false) {
      const reason = statementRefusalReason(
        StatementRefusalCode.unsigned,
        "this agent requires signed orders (signing is configured) and this rollout's orders carry no signed statement",
      );
      events.result(fitResult({ ...base, outcome: 'would_fail', errorCode: ErrorCode.policyDenied, reason }));
      return;
    }
    const signal = AbortSignal.timeout(120_000);
    // A dry run is not signed: where orders must be, it runs no program (see CheckOptions).
    const commands = this.signing === undefined ? 'run' : 'skip';
    const preconditions = await this.ctx
      .checkPreconditions(order.change, signal, { commands })
      .catch((err: unknown) => ({
        ok: false,
        outcomes: [],
        reason: `host preconditions could not be checked: ${messageOf(err)}`,
        unchecked: '',
      }));
    const judged = preconditions.outcomes.length > 0 ? { preconditions: preconditions.outcomes } : {};
    if (!preconditions.ok) {
      events.result(
        fitResult({
          ...base,
          finishedAt: this.ctx.now(),
          outcome: 'would_fail',
          errorCode: ErrorCode.preconditionFailed,
          reason: preconditions.reason,
          ...judged,
        }),
      );
      return;
    }
    const baseline = await this.preflightBaseline(order, signal);
    if (baseline.unhealthy) {
      events.result(
        fitResult({
          ...base,
          finishedAt: this.ctx.now(),
          outcome: 'would_fail',
          errorCode: ErrorCode.healthFailed,
          reason: baseline.reason,
          health: baseline.results,
          ...judged,
        }),
      );
      return;
    }
    const driverCtx = this.ctx.driverContext(signal, this.ctx.log);
    // What the health checks took of the coordinator's wait: the lock wait gets only the rest.
    if (order.answerWithinMs !== undefined)
      driverCtx.lockWaitMs = Math.max(0, Math.floor(lockWaitWithin(order.answerWithinMs) - baseline.tookMs));
    const verdict = await driver
      .preflight(order.change, driverCtx)
      .catch((err: unknown) => ({ outcome: 'would_fail' as const, code: codeOf(err), detail: messageOf(err) }));
    events.result(
      fitResult({
        ...base,
        finishedAt: this.ctx.now(),
        outcome: verdict.outcome,
        reason: [verdict.detail, preconditions.unchecked, baseline.unchecked].filter(Boolean).join('; ') || undefined,
        ...(verdict.outcome === 'would_fail' ? { errorCode: verdict.code } : {}),
        ...('packages' in verdict && verdict.packages ? { packages: verdict.packages } : {}),
        ...judged,
      }),
    );
  }

  /**
   * A dry run's baseline: the patch's health checks once, as the apply runs them before it changes
   * anything. Unhealthy is what the apply would skip the host for (or fail it, `failIfUnhealthyBefore`).
   * Where orders must be signed none is run, and the answer says so.
   */
  private async preflightBaseline(
    order: OrderPreflight,
    signal: AbortSignal,
  ): Promise<
    | { unhealthy: false; tookMs: number; unchecked?: string }
    | { unhealthy: true; reason: string; results: HealthCheckResult[] }
  > {
    const checks = order.health?.checks ?? [];
    // Where orders must be signed, the checks of an unsigned dry run are the coordinator's word alone:
    // run, they would let a stolen coordinator probe what the agent can reach and read the answers back.
    const runnable = this.signing === undefined ? checks : [];
    const unchecked =
      runnable.length < checks.length
        ? `${checks.length} health check(s) not run: a dry run is not signed, and this agent requires signed orders`
        : undefined;
    const left = unchecked === undefined ? {} : { unchecked };
    if (runnable.length === 0) return { unhealthy: false, tookMs: 0, ...left };
    const started = performance.now();
    // Within the coordinator's wait, as the lock wait is: a slow check must not turn the answer into no_answer.
    const within =
      order.answerWithinMs === undefined
        ? { signal, clear: () => {} }
        : abortAfter(signal, lockWaitWithin(order.answerWithinMs));
    let poll: HealthPoll;
    try {
      poll = await this.ctx.health.runOnce(runnable, within.signal);
    } catch (err) {
      if (!within.signal.aborted) throw err;
      const late = "the health checks did not finish within the dry run's time: not judged";
      return {
        unhealthy: false,
        tookMs: performance.now() - started,
        unchecked: [unchecked, late].filter(Boolean).join('; '),
      };
    } finally {
      within.clear();
    }
    if (poll.healthy) return { unhealthy: false, tookMs: performance.now() - started, ...left };
    const failing = poll.results
      .filter((result) => !result.ok)
      .map((result) => `${result.check}: ${result.observed}`)
      .join('; ');
    const then = order.failIfUnhealthyBefore === true ? 'fail' : 'skip';
    return {
      unhealthy: true,
      reason: `${UNHEALTHY_BEFORE_PATCH} (${failing}): the apply would ${then} this host`,
      results: poll.results,
    };
  }

  /** Cancels an order in flight; one that already changed the host goes back to its snapshot. */
  cancel(orderId: string): void {
    this.running.get(orderId)?.abort.abort(new FleetError(ErrorCode.cancelled, 'cancelled by the coordinator'));
    this.bakes.cancel(orderId, new FleetError(ErrorCode.cancelled, 'cancelled by the coordinator'));
  }

  /**
   * The coordinator stored the result that finished at `finishedAt`: stop reporting it. An ack
   * for an earlier result (a late one, after a bake failure wrote a second) leaves the newer one
   * pending; an ack without `finishedAt` (an older coordinator) acknowledges whatever is stored.
   */
  async acknowledge(orderId: string, finishedAt?: string): Promise<void> {
    await this.ctx.journal.acknowledge(orderId, finishedAt, this.ctx.now());
  }

  /** The coordinator says this order's wave passed and bakes for `seconds` (see BakeWatch.extend). */
  async extendBake(orderId: string, seconds: number): Promise<void> {
    await this.bakes.extend(orderId, seconds);
  }

  /**
   * Stops taking orders and lets those running finish (a drain); bake watches end at once. Whoever
   * cannot wait (a second signal, a timeout) just exits: the journal recovers the rest at the next
   * start. Every call returns the same drain, so a second caller also waits until it has ended.
   */
  stop(): Promise<void> {
    this.stopping ??= Promise.all([this.bakes.stop(), ...[...this.running.values()].map(({ done }) => done)]).then(
      () => undefined,
    );
    return this.stopping;
  }

  /**
   * Policy and quotas, before the order is journaled and before any health check runs. A refused
   * order is reported and counted, nothing more: a flood of them costs a counter, not the disk. A
   * re-delivery of the same id is judged again and refused again.
   */
  /**
   * Whether the order may run: false once it is refused (reported and counted here). A signed order
   * admitted holds its target already (`heldTarget`, for the apply to release).
   */
  private async admit(
    order: OrderApply,
    signal: AbortSignal,
    log: Logger,
  ): Promise<{ heldTarget: (() => void) | undefined } | false> {
    const driver = this.ctx.driverFor(order.change);
    let refusal: Refusal | undefined;
    let heldTarget: (() => void) | undefined;
    try {
      // Signatures first (cheap, and they say whether anyone asked for this at all), then the policy.
      const signed = this.signing?.checkApply(order, new Date(this.ctx.now()));
      if (signed !== undefined && !signed.ok) refusal = signedRefusal(signed);
      else if (!driver) refusal = { code: ErrorCode.policyDenied, reason: notEnabledReason(order.change) };
      else {
        const verdict = await this.policy.checkOrder(order, signal);
        if (!verdict.ok) refusal = verdict;
        else {
          const over = this.quota ? journalQuotaRefusal(this.usage, this.quota) : undefined;
          if (over !== undefined) refusal = { code: ErrorCode.blocked, reason: over };
          // An order that would find its file or package busy is turned away before its sequence is
          // recorded: else it could never be sent again (`replayed`), though it never ran. Free, the
          // target is taken now, in the same turn as the check, so no order sent alongside can take it
          // while the sequence is written; the apply then runs holding it.
          else if (signed !== undefined && this.ctx.targets.isHeld(targetOf(order.change)))
            refusal = { code: ErrorCode.blocked, reason: busyTargetReason(targetOf(order.change)) };
          // Last: an order refused for any other reason must not use up its statement's sequence.
          else if (signed !== undefined) {
            heldTarget = this.ctx.targets.hold(targetOf(order.change));
            refusal = await this.acceptSigned(signed);
          }
        }
      }
    } catch (err) {
      // A rule that cannot be checked (dpkg-query failing, say) refuses: the policy fails closed.
      refusal = { code: codeOf(err), reason: `the agent policy could not be checked: ${messageOf(err)}` };
    }
    if (refusal === undefined) return { heldTarget };
    heldTarget?.();
    log.warn({ errorCode: refusal.code, reason: refusal.reason }, 'order refused before it was journaled');
    const finishedAt = this.ctx.now();
    await this.refusals
      ?.record(refusal.counted ?? refusal.code, refusal.reason, finishedAt)
      .catch((err: unknown) => log.error({ err }, 'could not write the refusal counter'));
    this.ctx.events.result(
      fitResult({
        orderId: order.orderId,
        finishedAt,
        outcome: 'failed',
        changed: false,
        errorCode: refusal.code,
        reason: refusal.reason,
      }),
    );
    return false;
  }

  /** Records a signed order's sequence; refused if another order for the same file or package got there first. */
  private async acceptSigned(signed: SignedAcceptance): Promise<Refusal | undefined> {
    const stale = await this.signing?.accept(signed);
    return stale ? signedRefusal(stale) : undefined;
  }

  /** A revert sent by the coordinator, with signing on: signed, naming the apply statement it takes back. */
  private async admitRevert(order: OrderRevert, applied: OrderApply): Promise<Refusal | undefined> {
    // A later order on the same file or package stands over this one: restoring its snapshot would put
    // back what was there before both (a downgrade past a newer fix, say). That one goes back first.
    const recorded = this.ctx.journal.get(order.revertsOrderId);
    const later = recorded?.kind === 'apply' ? supersedingOrder(this.ctx.journal.all(), recorded) : undefined;
    if (later !== undefined)
      return {
        code: ErrorCode.policyDenied,
        reason: supersededRevertReason(later.orderId, order.revertsOrderId),
      };
    if (this.signing === undefined) return undefined;
    try {
      const signed = this.signing.checkRevert(order, applied, new Date(this.ctx.now()));
      return signed.ok ? await this.acceptSigned(signed) : signedRefusal(signed);
    } catch (err) {
      return { code: codeOf(err), reason: `the signed revert could not be checked: ${messageOf(err)}` };
    }
  }

  /** A revert refused before it was journaled: reported and counted. */
  private async refuseRevert(orderId: string, refusal: Refusal): Promise<void> {
    this.ctx.log.warn({ orderId, errorCode: refusal.code, reason: refusal.reason }, 'revert refused');
    const finishedAt = this.ctx.now();
    await this.refusals?.record(refusal.counted ?? refusal.code, refusal.reason, finishedAt).catch(() => undefined);
    this.ctx.events.result(
      fitResult({
        orderId,
        finishedAt,
        outcome: 'revert_failed',
        changed: false,
        errorCode: refusal.code,
        reason: refusal.reason,
      }),
    );
  }

  private async runRevert(orderId: string, revertsOrderId: string, recovered?: RevertEntry): Promise<void> {
    const { journal } = this.ctx;
    const log = this.ctx.log.child({ orderId, revertsOrderId });
    const release = this.ctx.reverting.hold(revertsOrderId);
    try {
      const entry = recovered ?? (await journal.createRevert(orderId, revertsOrderId, this.ctx.now()));
      if (!recovered) this.ctx.events.progress(orderId, 'reverting');
      this.ctx.checkpoint('revert:reverting');
      // First the apply of the same order still running (it starts its bake watch when it ends
      // healthy), then that watch: a revert wins over it, and none may outlive the restore.
      await this.running.get(revertsOrderId)?.done;
      await this.bakes.end(revertsOrderId, new FleetError(ErrorCode.cancelled, 'reverted'));
      await revertApplyOrder(this.ctx, entry, revertsOrderId, log);
    } finally {
      release();
    }
  }

  /**
   * A dpkg run the order started survives the agent (detached-run.ts): before deciding anything,
   * recovery lets it finish (or, past the apt command timeout, stops it), so what it looks at is
   * the host as dpkg left it, never a dpkg still running.
   */
  private async settleDpkgRun(orderId: string, log: Logger): Promise<void> {
    const run = await settleRun(this.ctx.journal.runDir(orderId), UNFINISHED_RUN_TIMEOUT_MS);
    if (run === undefined) return;
    log.warn(
      { exitCode: run.exitCode, timedOut: run.timedOut, output: outputTail(run, 5) },
      'the dpkg run the previous agent started has ended (it ran on without the agent)',
    );
  }

  /** An apply interrupted by a restart: back to its snapshot if it may have changed the host. */
  private async recoverApply(entry: ApplyEntry, log: Logger): Promise<void> {
    const { change } = entry.order;
    const driver = this.ctx.driverFor(change);
    const driverCtx = this.ctx.driverContext(new AbortController().signal, log, entry.orderId);
    if (driver) await driver.cleanup(change, driverCtx).catch((err: unknown) => log.error({ err }, 'cleanup failed'));
    if (entry.snapshot === undefined) {
      // Whatever a snapshot interrupted by the restart left (a temp file, a copy the journal never
      // recorded) is no escape hatch: nothing will ever read it.
      await rm(this.ctx.journal.snapshotDir(entry.orderId), { recursive: true, force: true });
    }
    // `applied` and `verifying`: phases older agents journaled (this one goes from applying to done).
    const mayHaveChanged =
      entry.phase === 'applying' ||
      entry.phase === 'applied' ||
      entry.phase === 'verifying' ||
      entry.phase === 'reverting';
    // One sentence the operator can act on: when it stopped, and where that left the host.
    const stopped = `interrupted: the agent stopped (crash, kill or power loss) at ${entry.phase}`;
    if (!mayHaveChanged || entry.snapshot === undefined) {
      await this.ctx.finish(entry, {
        outcome: 'failed',
        changed: false,
        errorCode: ErrorCode.interrupted,
        reason: `${stopped}, before it changed anything; nothing was changed`,
      });
      return;
    }
    // restoreAndFinish ends the sentence: "…; reverted to the snapshot" (or why the restore failed).
    await restoreAndFinish(this.ctx, entry, driver, driverCtx, 'failed', ErrorCode.interrupted, stopped);
  }

  private answerKnown(entry: JournalEntry): void {
    // Re-delivered id: answer with the recorded result; an order still running answers when it ends.
    if (entry.phase === 'done' && entry.result) this.ctx.events.result(entry.result);
  }
}

/**
 * How long a dry run may wait for a lock when its answer is awaited for `answerWithinMs`: all but
 * 5 s of it, or half of it when that is longer — the rest is for the other checks (dpkg --audit,
 * apt's simulation) and the trip back, so a held lock is answered `blocked` with its holder, never
 * left unanswered.
 */
export function lockWaitWithin(answerWithinMs: number): number {
  return Math.max(answerWithinMs / 2, answerWithinMs - 5_000);
}
