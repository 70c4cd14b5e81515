import {
  ErrorCode,
  type Hello,
  type OrderProgress,
  type OrderResultBody,
  orderRefusalCodeOf,
  type Patch,
  protocolGapOf,
} from '@fleetpatch/shared';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import { failTooOld } from './agent-too-old.js';
import { boundedHealth } from './bounded-health.js';
import type { ConnectedAudit } from './connected-audit.js';
import type { EngineDeps } from './engine-interfaces.js';
import {
  canTransitionHostRun,
  HOST_PHASE_ORDER,
  IN_FLIGHT_HOST_STATES,
  TERMINAL_HOST_STATES,
} from './host-run-states.js';
import { transitionHostRun } from './host-run-transition.js';
import type { LiveHealthBoard } from './live-health.js';
import { auditOrderRefusal } from './order-refusal-audit.js';
import { rehearsesRevert, sendApplies, sendRevert } from './order-sender.js';
import type { RevertRunner } from './revert-runner.js';
import { isSignedRollout, signedApplyOf, signedRevertOf } from './rollout-signing.js';
import { isoNow } from './rollout-transition.js';
import { type UndoLog, undoAll } from './undo-log.js';

/** What an agent told us, queued until the next batch is recorded. */
export type AgentReport =
  /** `resultsApart`: the results its orders carry are recorded as reports of their own (a hello retried apart from them). */
  | { agentId: string; kind: 'hello'; body: Hello; resultsApart?: boolean }
  | { agentId: string; kind: 'result'; body: OrderResultBody }
  | { agentId: string; kind: 'progress'; body: OrderProgress };

type InFlightPhase = 'delivered' | 'snapshotted' | 'applying' | 'verifying';
/** What an apply result makes of a host that had the order in flight. */
type ApplyEnd = 'healthy' | 'failed' | 'skipped' | 'not_applicable' | 'cancelled' | 'revert_failed';

const PROGRESS_TO_STATE: Partial<Record<OrderProgress['phase'], InFlightPhase>> = {
  accepted: 'delivered',
  baseline: 'delivered',
  snapshotted: 'snapshotted',
  applying: 'applying',
  applied: 'applying',
  verifying: 'verifying',
};

type RecorderDeps = Pick<
  EngineDeps,
  'store' | 'channel' | 'clock' | 'log' | 'windows' | 'waveGate' | 'markDirty' | 'checkpoint' | 'grace' | 'owedCancels'
>;

/**
 * Results for orders the coordinator has no record of, gathered over one batch and logged once per
 * agent with their count and the first few ids: a hello may carry 10,000 of them.
 */
const UNKNOWN_ORDER_IDS_LOGGED = 10;
interface UnknownResults {
  changed: string[];
  unchanged: string[];
}

/**
 * Turns agent reports (hellos, progress, results) into host-run updates and events, one transaction
 * per batch, then answers the agents: acks for recorded results, resends for orders a hello did not mention.
 */
export class ReportRecorder {
  /** The batch being recorded's results for unknown orders, by agent (see `logUnknownResults`). */
  private unknownResults = new Map<string, UnknownResults>();
  /** What the batch being recorded changed on the boards, undone if its transaction rolls back. */
  private undo: UndoLog = [];

  constructor(
    private readonly deps: RecorderDeps,
    private readonly reverts: RevertRunner,
    private readonly connectedAudit: ConnectedAudit,
    private readonly liveHealth: LiveHealthBoard,
  ) {}

  async record(batch: readonly AgentReport[]): Promise<void> {
    const { channel } = this.deps;
    const acks: { agentId: string; orderId: string; finishedAt: string }[] = [];
    const hellos: { agentId: string; hello: Hello }[] = [];
    const result = async (agentId: string, body: OrderResultBody) => {
      if (await this.applyResult(agentId, body))
        acks.push({ agentId, orderId: body.orderId, finishedAt: body.finishedAt });
    };
    const superseded = supersededProgress(batch);
    this.unknownResults = new Map();
    this.undo = [];
    try {
      await this.recordInTransaction(batch, superseded, result, hellos);
    } catch (err) {
      // Rolled back: the boards forget what they noted for rows that were never written.
      undoAll(this.undo);
      throw err;
    }
    if (acks.length > 0) this.deps.checkpoint?.('result:committed');
    this.logUnknownResults();
    // finishedAt names the result acknowledged: a late ack must not silence a newer result of the order.
    for (const ack of acks)
      channel.send(ack.agentId, { type: 'order.ack', orderId: ack.orderId, finishedAt: ack.finishedAt });
    for (const { agentId, hello } of hellos) {
      this.deps.grace.heard(agentId, this.deps.clock.now());
      await this.resendAfterHello(agentId, hello);
    }
  }

  /** The batch's one transaction (see `record`). */
  private async recordInTransaction(
    batch: readonly AgentReport[],
    superseded: Set<AgentReport>,
    result: (agentId: string, body: OrderResultBody) => Promise<void>,
    hellos: { agentId: string; hello: Hello }[],
  ): Promise<void> {
    const { store, clock } = this.deps;
    await store.transaction(async () => {
      for (const report of batch) {
        switch (report.kind) {
          case 'hello':
            // The agent's journal is the truth: the results it reports are recorded like live ones.
            await store.agents.recordHello(report.agentId, report.body, isoNow(clock));
            await this.recordConnected(report.agentId, report.body.agentVersion);
            if (!report.resultsApart)
              for (const order of report.body.orders) if (order.result) await result(report.agentId, order.result);
            await this.settleUnknownTimedOut(report.agentId, report.body);
            hellos.push({ agentId: report.agentId, hello: report.body });
            break;
          case 'progress':
            if (!superseded.has(report)) await this.applyProgress(report.agentId, report.body);
            break;
          case 'result':
            // A host that failed (or was reverted, or cancelled) is judged by its result from now on.
            if (report.body.outcome !== 'healthy') this.liveHealth.forget(report.body.orderId, this.undo);
            await result(report.agentId, report.body);
            break;
        }
      }
    });
  }

  /**
   * Once the batch is committed: per agent, one line for the results of unknown orders that say the
   * host changed (an error: a change no host run accounts for is one no revert will find, a person
   * has to look) and one for the rest, each with the count and the first order ids.
   */
  private logUnknownResults(): void {
    const { log } = this.deps;
    for (const [agentId, { changed, unchanged }] of this.unknownResults) {
      const sample = (ids: string[]) => ({ results: ids.length, orderIds: ids.slice(0, UNKNOWN_ORDER_IDS_LOGGED) });
      if (changed.length > 0)
        log.error(
          { agentId, ...sample(changed) },
          'host reports a change the coordinator has no record of; acknowledged',
        );
      if (unchanged.length > 0)
        log.warn({ agentId, ...sample(unchanged) }, 'result for an unknown order; acknowledged and ignored');
    }
    this.unknownResults = new Map();
  }

  /** An `agent.connected` row when `ConnectedAudit` says the hello is news; else it is only counted. */
  private async recordConnected(agentId: string, agentVersion: string): Promise<void> {
    const { store, clock } = this.deps;
    const row = this.connectedAudit.note(agentId, agentVersion, clock.now(), this.undo);
    if (!row) return;
    await store.appendEvent(
      { hostId: agentId, actor: agentId, type: 'agent.connected', data: { ...row } },
      isoNow(clock),
    );
  }

  /**
   * After a hello is committed: orders we think are in flight that the agent did not mention go again
   * (it answers known ids from its journal, so a resend never applies twice), and apply orders it is
   * still working on that we have given up on are cancelled again.
   */
  private async resendAfterHello(agentId: string, hello: Hello): Promise<void> {
    const { store, channel } = this.deps;
    await this.cancelAbandoned(agentId, hello);
    // Bake watches its rollout's success ended while the agent was away (see OwedCancels).
    for (const orderId of this.deps.owedCancels.take(agentId, this.deps.clock.now()))
      channel.send(agentId, { type: 'order.cancel', orderId });
    const reported = new Set(hello.orders.map((order) => order.orderId));
    // One read for both uses below (a round trip, on PostgreSQL, per hello): nothing in between makes a
    // run queued (a resend fails a run or marks it delivered).
    const runs = await store.hostRuns.forHostInStates(agentId, [...IN_FLIGHT_HOST_STATES, 'reverting', 'queued']);
    for (const run of runs) {
      if (run.state === 'queued') continue;
      if (run.state === 'reverting') {
        if (run.revertOrderId && !reported.has(run.revertOrderId)) await this.resendRevert(run);
        continue;
      }
      if (run.orderId && !reported.has(run.orderId)) {
        const rollout = await store.rollouts.get(run.rolloutId);
        if (rollout && (rollout.state === 'running' || rollout.state === 'paused')) {
          const patch = (await store.patches.get(rollout.patchId)) as Patch;
          // Dispatched while the agent was away, and it came back speaking a protocol too old for the change.
          const gap = protocolGapOf(patch, channel.protocolVersionOf(agentId));
          if (gap !== undefined) {
            await store.transaction(async () => await failTooOld(this.deps, run, gap));
            this.deps.markDirty(run.rolloutId);
            continue;
          }
          if (run.state === 'dispatched' && run.deliveredAt === null && !(await this.deliverNow(rollout, run)))
            continue;
          sendApplies(channel, rollout, [run], patch, await signedApplyOf(store, rollout.id));
        }
      }
    }
    // A hello makes no queued run dispatchable (slots, wave, window and pause are as they were): this
    // asks early for an advance that the results it carried, or the next tick, ask for anyway.
    // Stryker disable next-line ConditionalExpression,EqualityOperator,StringLiteral: see above
    for (const run of runs) if (run.state === 'queued') this.deps.markDirty(run.rolloutId);
  }

  /**
   * An order that waited for its host, whose hello has come: handed to it now (its host timeout runs
   * from here), unless its rollout's maintenance window has closed (or reached its cutoff) meanwhile —
   * then it waits in the store, and the window's close puts it back in the queue for the next one.
   */
  private async deliverNow(rollout: RolloutRecord, run: HostRunRecord): Promise<boolean> {
    const { store, clock, waveGate } = this.deps;
    const now = clock.now();
    if (rollout.request.window && !waveGate(rollout.request.window, now)) return false;
    await store.transaction(async () => await store.hostRuns.markDelivered(run.rolloutId, run.hostId, now));
    return true;
  }

  /** Sent after the commit: a revert that cannot be sent (a signed rollout without its statement) is logged, not thrown. */
  private async resendRevert(run: HostRunRecord): Promise<void> {
    try {
      sendRevert(this.deps.channel, run, await signedRevertOf(this.deps.store, run.rolloutId, run.hostId));
    } catch (err) {
      this.deps.log.error({ err, rolloutId: run.rolloutId, hostId: run.hostId }, 'revert order not resent');
    }
  }

  /**
   * Abort is sticky across a disconnect or a coordinator crash: the cancel sent at the abort (or at a
   * timeout) never reached an agent that was away, so every apply order its hello reports unfinished
   * whose host run is over, or whose rollout no longer lets hosts finish, is cancelled now.
   * A halted rollout lets its in-flight hosts finish (the design's failure budget), so it is spared.
   */
  private async cancelAbandoned(agentId: string, hello: Hello): Promise<void> {
    const { store, channel } = this.deps;
    for (const order of hello.orders) {
      if (order.phase === 'done' || order.result) continue;
      const run = await store.hostRuns.byOrderId(order.orderId);
      if (!run || run.hostId !== agentId) continue;
      if (TERMINAL_HOST_STATES.has(run.state) || !(await this.letsFinish(run.rolloutId))) {
        channel.send(agentId, { type: 'order.cancel', orderId: order.orderId });
      }
    }
  }

  /** Whether the rollout lets an apply in flight finish: a halted one does (the failure budget), an aborted or reverting one not. */
  private async letsFinish(rolloutId: string): Promise<boolean> {
    const rollout = await this.deps.store.rollouts.get(rolloutId);
    // Stryker disable next-line OptionalChaining: a host run's rollout always exists (it owns the run)
    return rollout?.state === 'running' || rollout?.state === 'paused' || rollout?.state === 'halted';
  }

  /**
   * A timed-out order that the agent's hello does not list never reached it (an order it journaled
   * is listed until its result is acked, and an acked result has answered): there is nothing to
   * wait for, so the host may be retried. Must run inside the hello's transaction.
   */
  private async settleUnknownTimedOut(agentId: string, hello: Hello): Promise<void> {
    const listed = new Set(hello.orders.map((order) => order.orderId));
    for (const run of await this.deps.store.hostRuns.forHostInStates(agentId, ['timed_out'])) {
      // One settled before is left alone: a host's timed-out runs stay for good, and each hello
      // wrote every one of them again.
      if (run.orderId && !run.answered && !listed.has(run.orderId))
        await this.deps.store.hostRuns.markAnswered(run.rolloutId, run.hostId);
    }
  }

  private async applyProgress(agentId: string, progress: OrderProgress): Promise<void> {
    const { store } = this.deps;
    const run = await store.hostRuns.byOrderId(progress.orderId);
    if (!run || run.hostId !== agentId) return;
    // Every state PROGRESS_TO_STATE names has a place in HOST_PHASE_ORDER, so `to` is undefined exactly
    // when `next` is: either check alone would do, both are there for the types.
    const next = PROGRESS_TO_STATE[progress.phase];
    // Stryker disable next-line ConditionalExpression: see above
    if (next === undefined) return;
    const to = HOST_PHASE_ORDER[next];
    // Stryker disable next-line ConditionalExpression: see above
    if (to === undefined) return;
    const from = HOST_PHASE_ORDER[run.state];
    let state = run.state;
    if (from !== undefined && to > from) {
      // Progress is not an audit row: the phase is written on the host run (status and recovery read
      // it, in this burst's one transaction) and live readers are told once it commits, coalesced.
      await transitionHostRun(this.deps, run, { to: next }, null);
      store.noteProgress({
        type: 'host.progress',
        rolloutId: run.rolloutId,
        hostId: run.hostId,
        state: next,
        at: isoNow(this.deps.clock),
        ...(progress.message ? { message: progress.message } : {}),
      });
      state = next;
      // The cancel sent when its rollout was aborted (or began reverting) may have reached the agent
      // before the order did (in a group, the order went through another member's outbox, the cancel
      // straight down this member's socket): the agent, knowing no such order then, went on to run it.
      // It says so now: cancelled again, as a hello would have it (cancelAbandoned).
      if (!(await this.letsFinish(run.rolloutId))) {
        const { channel } = this.deps;
        store.afterCommit(() => channel.send(agentId, { type: 'order.cancel', orderId: progress.orderId }));
      }
    }
    const health = progress.health ? boundedHealth(progress.health) : undefined;
    if (health && health.length > 0 && (state === 'verifying' || (state === 'healthy' && (await this.bakes(run))))) {
      await this.noteHealth(agentId, run, state === 'healthy' ? 'baking' : 'verifying', { ...progress, health });
    }
  }

  /**
   * Whether a healthy host's polls are a bake's: only while its rollout runs (or is paused). Once it
   * is over, a host that goes on reporting health for the order is not watched by anyone, and its
   * reports are not recorded (they would be rows without end, from the host alone).
   */
  private async bakes(run: HostRunRecord): Promise<boolean> {
    const rollout = await this.deps.store.rollouts.get(run.rolloutId);
    return rollout?.state === 'running' || rollout?.state === 'paused';
  }

  /**
   * One poll's health results while the host verifies or bakes: on the board for the status at once,
   * and on the record (`host.health`, which the event stream carries) when the board says it changed.
   */
  private async noteHealth(
    agentId: string,
    run: HostRunRecord,
    phase: 'verifying' | 'baking',
    progress: OrderProgress & { health: NonNullable<OrderProgress['health']> },
  ): Promise<void> {
    const { store, clock } = this.deps;
    const { health, recordable } = this.liveHealth.note(
      progress.orderId,
      phase,
      progress.health,
      progress.failingPolls,
      clock.now(),
      this.undo,
    );
    if (!recordable) return;
    await store.appendEvent(
      {
        rolloutId: run.rolloutId,
        hostId: run.hostId,
        actor: agentId,
        type: 'host.health',
        data: {
          orderId: progress.orderId,
          phase: health.phase,
          failingPolls: health.failingPolls,
          checks: health.checks.map(({ check, kind, ok, observed, since }) => ({ check, kind, ok, observed, since })),
        },
      },
      isoNow(clock),
    );
  }

  /** Returns whether the result may be acknowledged (it is recorded, or it can never be). */
  private async applyResult(agentId: string, result: OrderResultBody): Promise<boolean> {
    const { store, clock, log } = this.deps;
    const run =
      (await store.hostRuns.byOrderId(result.orderId)) ?? (await store.hostRuns.byRevertOrderId(result.orderId));
    if (!run) {
      // Acked all the same (re-reporting it forever helps nobody), but a change on a host that no
      // host run accounts for is one no revert will find: a person has to look at it.
      let unknown = this.unknownResults.get(agentId);
      if (unknown === undefined) {
        unknown = { changed: [], unchanged: [] };
        this.unknownResults.set(agentId, unknown);
      }
      (result.changed ? unknown.changed : unknown.unchanged).push(result.orderId);
      return true;
    }
    if (run.hostId !== agentId) {
      log.warn(
        { agentId, orderId: result.orderId, hostId: run.hostId },
        'agent reported an order of another host; ignored',
      );
      return false;
    }
    const isRevert = run.revertOrderId === result.orderId;
    const health = result.health ? boundedHealth(result.health) : null;
    const afterChange = result.afterChange ?? null;
    // What a package change resolved to on the host; kept with the run and put in the audit trail.
    const packages = result.packages ?? null;
    const resolved = packages ? { packages } : {};
    const error = { errorCode: result.errorCode ?? null, reason: result.reason ?? null };
    if (isRevert) {
      // A revert given up on (no answer in time) that reports success after all is recorded; any other
      // report for a host no longer reverting is a duplicate of one already recorded.
      const lateSuccess = run.state === 'revert_failed' && result.outcome === 'reverted';
      if (run.state !== 'reverting' && !lateSuccess) return true;
      const to = result.outcome === 'reverted' ? 'reverted' : 'revert_failed';
      // A refused revert ran nothing, so the host still carries what it did (agents answer every
      // refusal `changed: false`): kept, so that a revert asked for again still reaches it.
      const refused = orderRefusalCodeOf(result.errorCode, result.reason) !== undefined;
      await transitionHostRun(
        this.deps,
        run,
        {
          to,
          changed: refused ? run.changed : result.changed,
          finishedAt: clock.now(),
          afterChange,
          ...(to === 'revert_failed' ? error : { errorCode: null, reason: null }),
        },
        { actor: agentId, data: { ...error, ...(afterChange ? { afterChange } : {}) } },
      );
      // A late success says `reverted`, which no refusal does (an agent answers one revert_failed): the
      // audit would find nothing to record in it anyway.
      // Stryker disable next-line ConditionalExpression: see above
      if (!lateSuccess) await auditOrderRefusal(this.deps, agentId, run, result, 'revert');
      if (lateSuccess) await this.reverts.reopenFailedRevert(run.rolloutId);
      this.deps.markDirty(run.rolloutId);
      return true;
    }
    // Whatever it says, the current order has answered: a timed-out host may now be retried. Marked
    // here for a host already at rest or reverting (a late or repeated result, a bake-time failure);
    // for one still in flight, the transition below writes it with the result.
    const firstAnswer = !run.answered;
    // Its first answer (a late one after a timeout included; not a repeat, nor a bake-time report).
    if (firstAnswer) await auditOrderRefusal(this.deps, agentId, run, result, 'apply');
    if (TERMINAL_HOST_STATES.has(run.state) || run.state === 'reverting') {
      if (firstAnswer) await store.hostRuns.markAnswered(run.rolloutId, run.hostId);
      // A late answer (after a timeout, or a bake-time failure after healthy): record what the host carries now.
      const lateFailure =
        run.state === 'healthy' && (result.outcome === 'failed' || result.outcome === 'revert_failed');
      if (lateFailure) {
        // After its rollout succeeded (a watch that saw health fail before the cancel ending it arrived):
        // the host's truth all the same, but not a failure against a budget that no longer applies.
        const afterSuccess = (await store.rollouts.get(run.rolloutId))?.state === 'succeeded';
        await transitionHostRun(
          this.deps,
          run,
          {
            to: result.outcome === 'failed' ? 'failed' : 'revert_failed',
            changed: result.changed,
            countedFailure: !afterSuccess,
            finishedAt: clock.now(),
            health,
            packages,
            ...error,
          },
          {
            actor: agentId,
            data: { ...error, during: 'bake', ...(afterSuccess ? { after: 'succeeded', counted: false } : {}) },
          },
        );
        if (afterSuccess) await recordLateFailure(this.deps, agentId, run, result);
      } else {
        // Not a transition: the host stays where it is, and only what it carries is corrected. The
        // first answer of a timed-out order is recorded even when it changes nothing here: it is
        // the agent's account of what became of the host (restored its snapshot after a restart…).
        // After its first answer, the order's record changes only to say the host carries the change
        // (what a revert must find): the other way is the host's word against the record, and a host
        // flipping `changed` on every repeat would otherwise add an audit row per frame.
        const corrects = run.changed !== result.changed && run.state !== 'reverting' && (firstAnswer || result.changed);
        if (corrects) await store.hostRuns.setChanged(run.rolloutId, run.hostId, result.changed);
        if (corrects || firstAnswer) {
          await store.appendEvent(
            {
              rolloutId: run.rolloutId,
              hostId: run.hostId,
              actor: agentId,
              type: 'host.late_result',
              fromState: run.state,
              toState: run.state,
              data: { outcome: result.outcome, changed: result.changed, ...error },
            },
            isoNow(clock),
          );
        }
        if (corrects && result.changed) {
          await this.reverts.reopenRevert(run.rolloutId);
          // A host timed out at (or after) a halt with autoRevert `wave` that turns out changed goes back
          // like its wave, as one that answers in time does (below).
          const rollout = await store.rollouts.get(run.rolloutId);
          const revertable = run.state !== 'reverted' && canTransitionHostRun(run.state, 'reverting');
          if (revertable && rollout && (await this.revertsWithHaltedWave(rollout, run)))
            await this.reverts.dispatch({ ...run, changed: true });
        }
      }
      this.deps.markDirty(run.rolloutId);
      return true;
    }
    const rollout = await store.rollouts.get(run.rolloutId);
    let state = applyOutcomeToState(result.outcome);
    const rehearsal = result.rehearsal ?? null;
    let rehearsalError: { errorCode: string; reason: string } | undefined;
    // A canary asked to rehearse its revert that says healthy without a rehearsal that passed (an
    // agent too old to know the flag drops it) has not shown that its revert works: it fails.
    if (state === 'healthy' && rollout && rehearsesRevert(rollout, run) && rehearsal?.ok !== true) {
      state = 'failed';
      rehearsalError = {
        errorCode: ErrorCode.rehearsalFailed,
        reason:
          rehearsal === null
            ? 'asked to rehearse its revert, the agent reported no rehearsal (an agent older than rehearsed reverts?)'
            : `the rehearsal did not pass: ${rehearsal.reason ?? 'no reason given'}`,
      };
    }
    // Healthy, but a service still runs the old library: with staleServices `fail`, the fix has not
    // taken effect there, and the host counts as failed (it keeps the change; autoRevert decides).
    const staleUnits = result.afterChange?.staleUnits ?? [];
    const stale =
      state === 'healthy' && rollout?.request.staleServices === 'fail' && staleUnits.length > 0
        ? { errorCode: ErrorCode.verifyFailed, reason: `services still on the old library: ${staleUnits.join(', ')}` }
        : undefined;
    if (stale) state = 'failed';
    const outcomeError = rehearsalError ?? stale ?? error;
    const countedFailure = state === 'failed' || state === 'revert_failed';
    await transitionHostRun(
      this.deps,
      run,
      {
        to: state,
        changed: result.changed,
        countedFailure,
        answered: true,
        finishedAt: clock.now(),
        health,
        afterChange,
        packages,
        rehearsal,
        ...outcomeError,
      },
      // The health results (which check, what it saw), what followed the change and the resolved
      // packages go into the audit trail with the outcome.
      {
        actor: agentId,
        data: {
          ...outcomeError,
          changed: result.changed,
          ...(health ? { health } : {}),
          ...(afterChange ? { afterChange } : {}),
          ...resolved,
          ...(rehearsal ? { rehearsal } : {}),
        },
      },
    );
    // A host of a wave halted with autoRevert `wave` that was in flight at the halt goes back like its wave.
    // Not for a signed rollout: its halt waits for a signed revert statement (WaveAdvancer.halt).
    // Stryker disable next-line OptionalChaining: as in cancelAbandoned, the rollout exists
    if (result.changed && rollout && (await this.revertsWithHaltedWave(rollout, run))) {
      // Stryker disable next-line BooleanLiteral: dispatch reads the run's ids and state, not what it carries
      await this.reverts.dispatch({ ...run, state, changed: true });
    }
    this.deps.markDirty(run.rolloutId);
    return true;
  }

  /**
   * Whether a host found changed goes back with the wave its rollout halted in (autoRevert `wave`):
   * not for a signed rollout, whose halt waits for a signed revert statement (WaveAdvancer.halt).
   */
  private async revertsWithHaltedWave(
    rollout: Pick<RolloutRecord, 'id' | 'state' | 'request' | 'currentWave'>,
    run: Pick<HostRunRecord, 'wave'>,
  ): Promise<boolean> {
    return (
      rollout.state === 'halted' &&
      rollout.request.autoRevert === 'wave' &&
      run.wave === rollout.currentWave &&
      !(await isSignedRollout(this.deps.store, rollout.id))
    );
  }
}

/**
 * A bake failure reported after the host's rollout succeeded, on the rollout's own record (and so its
 * webhooks): `succeeded` stays (the rollout's gates all passed), but nobody should read it as "every
 * host carries the patch and is healthy". The status lists these hosts among its warnings.
 */
async function recordLateFailure(
  deps: Pick<RecorderDeps, 'store' | 'clock'>,
  agentId: string,
  run: HostRunRecord,
  result: OrderResultBody,
): Promise<void> {
  const what = result.changed ? 'it still carries the change' : 'it reverted itself';
  await deps.store.appendEvent(
    {
      rolloutId: run.rolloutId,
      actor: agentId,
      type: 'rollout.late_failure',
      data: {
        hostId: run.hostId,
        orderId: result.orderId,
        outcome: result.outcome,
        changed: result.changed,
        errorCode: result.errorCode ?? null,
        reason: result.reason ?? null,
        warning: `${run.hostId} failed its bake watch after the rollout succeeded (${what}); not counted against the failure budget`,
      },
    },
    isoNow(deps.clock),
  );
}

function applyOutcomeToState(outcome: OrderResultBody['outcome']): ApplyEnd {
  switch (outcome) {
    case 'healthy':
    case 'already_applied':
      return 'healthy';
    case 'skipped':
      return 'skipped';
    case 'not_applicable':
      return 'not_applicable';
    case 'cancelled':
      return 'cancelled';
    case 'revert_failed':
      return 'revert_failed';
    case 'failed':
    case 'reverted':
    case 'would_apply':
    case 'would_fail':
    case 'blocked':
      return 'failed';
  }
}

/**
 * Progress reports that a later report of the same agent's order in the same batch makes moot: its
 * result, or a phase at least as far along. Writing them would only be overwritten in the same
 * transaction; a report carrying health results is never skipped (the live health board needs it).
 */
function supersededProgress(batch: readonly AgentReport[]): Set<AgentReport> {
  const superseded = new Set<AgentReport>();
  /** Per agent and order, the furthest phase rank reported later in the batch (a result: past them all). */
  const furthestLater = new Map<string, number>();
  for (let i = batch.length - 1; i >= 0; i--) {
    const report = batch[i] as AgentReport;
    if (report.kind === 'hello') continue;
    const key = `${report.agentId}\u0000${report.body.orderId}`;
    const later = furthestLater.get(key) ?? Number.NEGATIVE_INFINITY;
    if (report.kind === 'result') {
      furthestLater.set(key, Number.POSITIVE_INFINITY);
      continue;
    }
    const next = PROGRESS_TO_STATE[report.body.phase];
    const rank = next === undefined ? undefined : HOST_PHASE_ORDER[next];
    if (rank === undefined) continue;
    if (later >= rank && !report.body.health?.length) superseded.add(report);
    furthestLater.set(key, Math.max(later, rank));
  }
  return superseded;
}
