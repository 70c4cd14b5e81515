import {
  assignWaves,
  type CoordinatorMessage,
  ErrorCode,
  FleetError,
  type Hello,
  type HostRunState,
  type MaintenanceWindow,
  type OrderProgress,
  type OrderResultBody,
  type Patch,
  type RolloutRequest,
  type RolloutState,
  toleratedFailures,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import type { Store } from '../store/store.js';
import { newId } from './ids.js';
import {
  assertTransition,
  assertVerb,
  FINAL_ROLLOUT_STATES,
  HOST_PHASE_ORDER,
  IN_FLIGHT_HOST_STATES,
  TERMINAL_HOST_STATES,
  VERB_TRANSITIONS,
} from './rollout-states.js';
import { resolveTarget, unknownHostIds } from './target-resolver.js';

/** How the engine reaches agents. The hub implements it; the engine never sees a socket. */
export interface AgentChannel {
  /** Sends when the agent is connected and returns true; false otherwise (the order waits in the store). */
  send(agentId: string, message: CoordinatorMessage): boolean;
  isOnline(agentId: string): boolean;
}

export interface EngineClock {
  now(): number;
}

/** Decides whether a new wave may start now; the maintenance-window calendar implements it. */
export type WaveGate = (window: MaintenanceWindow, now: number) => boolean;

/** Wakes the engine when a rollout's window opens or reaches its cutoff (node-cron in production). */
export interface WindowWatcher {
  watch(rolloutId: string, window: MaintenanceWindow): void;
  unwatch(rolloutId: string): void;
}

export interface RolloutEngineOptions {
  store: Store;
  channel: AgentChannel;
  log: Logger;
  clock?: EngineClock;
  waveGate?: WaveGate;
  /** Checks a window before a rollout is created with it; throws validation_failed. */
  validateWindow?: (window: MaintenanceWindow) => void;
  windows?: WindowWatcher;
}

/** Actor name recorded for transitions the engine makes by itself. */
const SYSTEM = 'system';

/** A rollout paused by its maintenance window resumes by itself; one paused by a person does not. */
const WINDOW_PAUSE_REASON = 'maintenance window closed';

type Report =
  | { agentId: string; kind: 'hello'; body: Hello }
  | { agentId: string; kind: 'result'; body: OrderResultBody }
  | { agentId: string; kind: 'progress'; body: OrderProgress };

const PROGRESS_TO_STATE: Partial<Record<OrderProgress['phase'], HostRunState>> = {
  accepted: 'delivered',
  baseline: 'delivered',
  snapshotted: 'snapshotted',
  applying: 'applying',
  applied: 'applying',
  verifying: 'verifying',
};

/**
 * The rollout engine: plain TypeScript over the store and an `AgentChannel`.
 *
 * All state lives in SQLite; the engine holds nothing it cannot rebuild, so a coordinator killed at
 * any instruction restarts and carries on. Every transition is one transaction with its event row,
 * and every order is committed (with its id) before it is sent: the agent journals order ids, so a
 * resend after a crash is answered with the recorded result instead of a second apply.
 */
export class RolloutEngine {
  private readonly store: Store;
  private readonly channel: AgentChannel;
  private readonly log: Logger;
  private readonly clock: EngineClock;
  private readonly waveGate: WaveGate;
  private readonly windows: WindowWatcher | undefined;
  private readonly validateWindow: (window: MaintenanceWindow) => void;
  private readonly dirty = new Set<string>();
  private reports: Report[] = [];
  private flushScheduled = false;
  private advanceScheduled = false;
  private stopped = false;

  constructor(options: RolloutEngineOptions) {
    this.store = options.store;
    this.channel = options.channel;
    this.log = options.log;
    this.clock = options.clock ?? { now: () => Date.now() };
    this.waveGate = options.waveGate ?? (() => true);
    this.windows = options.windows;
    this.validateWindow = options.validateWindow ?? (() => {});
  }

  /** After a restart: re-arms the window watch of every rollout that still has one to honour. */
  resumeWindows(): void {
    for (const rollout of this.store.rollouts.inStates(['scheduled', 'running', 'paused'])) {
      if (rollout.request.window) this.windows?.watch(rollout.id, rollout.request.window);
    }
  }

  /** Something outside (a window opening) says this rollout may be able to move. */
  wake(rolloutId: string): void {
    this.markDirty(rolloutId);
  }

  // ---- verbs ---------------------------------------------------------------------------------

  create(request: RolloutRequest, actor: string): RolloutRecord {
    const patch = this.store.patches.get(request.patchId);
    if (!patch)
      throw new FleetError(ErrorCode.validationFailed, `patch ${request.patchId} does not exist`, { path: 'patchId' });
    if (request.window) this.validateWindow(request.window);
    const unknown = unknownHostIds(request.target, this.store.agents.list());
    if (unknown.length > 0) {
      throw new FleetError(ErrorCode.validationFailed, `unknown host ids: ${unknown.join(', ')}`, {
        path: 'target.hostIds',
        unknown,
      });
    }
    const id = newId('ro');
    const state: RolloutState = request.draft ? 'draft' : approvalState(request);
    this.store.transaction(() => {
      this.store.rollouts.insert({ id, patchId: patch.id, request, state, createdBy: actor }, this.iso());
      this.store.appendEvent(
        { rolloutId: id, actor, type: 'rollout.created', toState: state, data: { request } },
        this.iso(),
      );
    });
    // Watched from the start, so the window's opening wakes the rollout (resumeWindows re-arms it after a restart).
    if (request.window) this.windows?.watch(id, request.window);
    return this.mustGet(id);
  }

  /** A draft goes up for approval (or straight to scheduled when it needs none). */
  submit(id: string, actor: string): RolloutRecord {
    this.store.transaction(() => {
      const rollout = this.mustGet(id);
      assertVerb(id, rollout.state, 'submit');
      this.transition(rollout, approvalState(rollout.request), actor, 'submitted');
    });
    return this.mustGet(id);
  }

  /** Approval by someone other than the creator; enough approvals make the rollout startable. */
  approve(id: string, actor: string): RolloutRecord {
    this.store.transaction(() => {
      const rollout = this.mustGet(id);
      assertVerb(id, rollout.state, 'approve');
      if (actor === rollout.createdBy) {
        throw new FleetError(
          ErrorCode.forbidden,
          'four eyes: a rollout cannot be approved by the person who created it',
          {
            rolloutId: id,
            createdBy: rollout.createdBy,
          },
        );
      }
      if (!this.store.rollouts.addApproval(id, actor, this.iso())) {
        throw new FleetError(ErrorCode.conflict, `${actor} has already approved this rollout`, { rolloutId: id });
      }
      this.store.appendEvent({ rolloutId: id, actor, type: 'rollout.approved' }, this.iso());
      if (this.store.rollouts.approvals(id).length >= rollout.request.requiredApprovals) {
        this.transition(rollout, 'scheduled', actor, 'approved');
      }
    });
    return this.mustGet(id);
  }

  /** Freezes the target set, assigns waves and starts the first one. */
  start(id: string, actor: string): RolloutRecord {
    this.store.transaction(() => {
      const rollout = this.mustGet(id);
      if (rollout.state === 'awaiting_approval') {
        const have = this.store.rollouts.approvals(id).length;
        throw new FleetError(
          ErrorCode.illegalTransition,
          `rollout needs ${rollout.request.requiredApprovals} approval(s), has ${have}`,
          {
            rolloutId: id,
            state: rollout.state,
          },
        );
      }
      assertVerb(id, rollout.state, 'start');
      const hosts = resolveTarget(rollout.request.target, this.store.agents.list());
      if (hosts.length === 0)
        throw new FleetError(ErrorCode.conflict, 'the target selects no hosts', { rolloutId: id });
      const waves = assignWaves(hosts, rollout.request.waves);
      waves.forEach((wave, waveIndex) => {
        wave.forEach((hostId, position) => {
          this.store.hostRuns.insert({ rolloutId: id, hostId, wave: waveIndex, position });
        });
      });
      this.store.rollouts.freezeTarget(id, hosts.length, waves.length);
      this.store.rollouts.setWave(id, 0, null, this.iso());
      this.transition(rollout, 'running', actor, null, {
        hostCount: hosts.length,
        waveSizes: waves.map((w) => w.length),
      });
      this.store.appendEvent(
        { rolloutId: id, actor: SYSTEM, type: 'wave.started', data: { wave: 0, hosts: waves[0] } },
        this.iso(),
      );
    });
    this.markDirty(id);
    return this.mustGet(id);
  }

  pause(id: string, actor: string): RolloutRecord {
    return this.verbTransition(id, 'pause', actor, 'paused by operator');
  }

  resume(id: string, actor: string): RolloutRecord {
    return this.verbTransition(id, 'resume', actor, null);
  }

  /** Sticky stop: nothing new is sent, in-flight orders are cancelled; only `retry` restarts. */
  abort(id: string, actor: string, reason: string | null): RolloutRecord {
    const rollout = this.verbTransition(id, 'abort', actor, reason ?? 'aborted by operator');
    this.cancelInFlight(id);
    return rollout;
  }

  /** Restarts a halted or aborted rollout: hosts that failed, timed out, were skipped or cancelled get a new order. */
  retry(id: string, actor: string): RolloutRecord {
    this.store.transaction(() => {
      const rollout = this.mustGet(id);
      assertVerb(id, rollout.state, 'retry');
      const retried = this.store.hostRuns
        .inStates(id, ['failed', 'timed_out', 'skipped', 'cancelled'])
        .filter((run) => run.wave <= rollout.currentWave && !run.changed);
      for (const run of retried) this.store.hostRuns.requeue(id, run.hostId);
      // Dispatch only reads the current wave: go back to the earliest wave with a requeued host (else it
      // would stay queued while later waves run), and let a retried wave pass its gate and bake again.
      if (retried.length > 0) {
        const wave = Math.min(rollout.currentWave, ...retried.map((r) => r.wave));
        this.store.rollouts.setWave(id, wave, null, this.iso());
        if (wave < rollout.currentWave)
          this.store.appendEvent(
            { rolloutId: id, actor: SYSTEM, type: 'wave.started', data: { wave, retry: true } },
            this.iso(),
          );
      }
      this.transition(rollout, 'running', actor, null, { requeued: retried.map((r) => r.hostId) });
    });
    this.markDirty(id);
    return this.mustGet(id);
  }

  /** Ends the current bake now. */
  promote(id: string, actor: string): RolloutRecord {
    this.store.transaction(() => {
      const rollout = this.mustGet(id);
      if (rollout.bakeUntil === null || (rollout.state !== 'running' && rollout.state !== 'paused')) {
        throw new FleetError(ErrorCode.illegalTransition, 'promote ends a bake; this rollout is not baking', {
          rolloutId: id,
          state: rollout.state,
        });
      }
      this.store.rollouts.setWave(id, rollout.currentWave, this.clock.now(), this.iso());
      this.store.appendEvent(
        { rolloutId: id, actor, type: 'rollout.promoted', data: { wave: rollout.currentWave } },
        this.iso(),
      );
    });
    this.markDirty(id);
    return this.mustGet(id);
  }

  /** One call puts every host that applied back to its snapshot; no waves, no gates. */
  revert(id: string, actor: string): RolloutRecord {
    this.store.transaction(() => {
      const rollout = this.mustGet(id);
      assertVerb(id, rollout.state, 'revert');
      // Asked by a person, a revert tries again every host still changed whose revert failed; the engine
      // never retries one by itself (advanceRevert skips a revert_failed host that has a revert order).
      for (const run of this.store.hostRuns.inStates(id, ['revert_failed'])) {
        if (run.changed) this.store.hostRuns.forgetRevertOrder(id, run.hostId);
      }
      this.transition(rollout, 'reverting', actor, 'revert requested');
    });
    this.cancelInFlight(id);
    this.markDirty(id);
    return this.mustGet(id);
  }

  /** Reverts one host of a rollout, whatever the rollout's state. */
  revertHost(id: string, hostId: string, actor: string): HostRunRecord {
    this.store.transaction(() => {
      this.mustGet(id);
      const run = this.store.hostRuns.get(id, hostId);
      if (!run) throw new FleetError(ErrorCode.notFound, `host ${hostId} is not part of rollout ${id}`);
      if (!TERMINAL_HOST_STATES.has(run.state) || run.state === 'reverted' || !run.changed) {
        throw new FleetError(
          ErrorCode.illegalTransition,
          `host ${hostId} is ${run.state}${run.changed ? '' : ' and carries no change'}; nothing to revert`,
          {
            rolloutId: id,
            hostId,
            state: run.state,
          },
        );
      }
      this.store.appendEvent({ rolloutId: id, hostId, actor, type: 'host.revert_requested' }, this.iso());
      this.dispatchRevert(run);
    });
    return this.store.hostRuns.get(id, hostId) as HostRunRecord;
  }

  // ---- agent reports -------------------------------------------------------------------------

  /**
   * An agent (re)connected. Its journal is the truth: results it reports are recorded, and orders
   * we think are in flight but it never mentioned are sent again (it answers known ids from its
   * journal, so a resend never applies twice).
   */
  onAgentHello(agentId: string, hello: Hello): void {
    this.report({ agentId, kind: 'hello', body: hello });
  }

  /** After a hello is committed: orders we think are in flight that the agent did not mention go again. */
  private resendAfterHello(agentId: string, hello: Hello): void {
    const reported = new Set(hello.orders.map((order) => order.orderId));
    for (const run of this.store.hostRuns.forHostInStates(agentId, [...IN_FLIGHT_HOST_STATES, 'reverting'])) {
      if (run.state === 'reverting' && run.revertOrderId && !reported.has(run.revertOrderId)) this.sendRevert(run);
      if (run.state !== 'reverting' && run.orderId && !reported.has(run.orderId)) {
        const rollout = this.store.rollouts.get(run.rolloutId);
        if (rollout && (rollout.state === 'running' || rollout.state === 'paused')) this.sendApply(rollout, run);
      }
    }
    for (const run of this.store.hostRuns.forHostInStates(agentId, ['queued'])) this.markDirty(run.rolloutId);
  }

  onOrderProgress(agentId: string, progress: OrderProgress): void {
    this.report({ agentId, kind: 'progress', body: progress });
  }

  /** Results are committed in batches (one transaction per burst); the agent is acked after commit. */
  onOrderResult(agentId: string, result: OrderResultBody): void {
    this.report({ agentId, kind: 'result', body: result });
  }

  // ---- time ----------------------------------------------------------------------------------

  /** Called every second or so: start times, deadlines, bakes, windows. Only rollouts that can move are read. */
  tick(): void {
    for (const rollout of this.store.rollouts.inStates(['scheduled'])) {
      const startAt = rollout.request.startAt;
      if (startAt === undefined || Date.parse(startAt) > this.clock.now()) continue;
      try {
        this.start(rollout.id, SYSTEM);
      } catch (err) {
        this.log.warn({ err, rolloutId: rollout.id }, 'scheduled start failed');
      }
    }
    this.expireDeadlines();
    for (const rollout of this.store.rollouts.inStates(['running', 'paused', 'reverting'])) this.markDirty(rollout.id);
    this.advanceDirty();
  }

  stop(): void {
    this.stopped = true;
  }

  // ---- internals -----------------------------------------------------------------------------

  private report(report: Report): void {
    this.reports.push(report);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flushReports());
  }

  private flushReports(): void {
    this.flushScheduled = false;
    if (this.reports.length === 0 || this.stopped) return;
    const batch = this.reports;
    this.reports = [];
    const acks: { agentId: string; orderId: string }[] = [];
    const hellos: { agentId: string; hello: Hello }[] = [];
    const result = (agentId: string, body: OrderResultBody) => {
      if (this.applyResult(agentId, body)) acks.push({ agentId, orderId: body.orderId });
    };
    this.store.transaction(() => {
      for (const report of batch) {
        switch (report.kind) {
          case 'hello':
            // The agent's journal is the truth: the results it reports are recorded like live ones.
            this.store.agents.recordHello(report.agentId, report.body, this.iso());
            this.store.appendEvent(
              {
                hostId: report.agentId,
                actor: report.agentId,
                type: 'agent.connected',
                data: { agentVersion: report.body.agentVersion },
              },
              this.iso(),
            );
            for (const order of report.body.orders) if (order.result) result(report.agentId, order.result);
            hellos.push({ agentId: report.agentId, hello: report.body });
            break;
          case 'progress':
            this.applyProgress(report.agentId, report.body);
            break;
          case 'result':
            result(report.agentId, report.body);
            break;
        }
      }
    });
    for (const ack of acks) this.channel.send(ack.agentId, { type: 'order.ack', orderId: ack.orderId });
    for (const { agentId, hello } of hellos) this.resendAfterHello(agentId, hello);
    this.advanceDirty();
  }

  private applyProgress(agentId: string, progress: OrderProgress): void {
    const run = this.store.hostRuns.byOrderId(progress.orderId);
    if (!run || run.hostId !== agentId) return;
    const next = PROGRESS_TO_STATE[progress.phase];
    const from = HOST_PHASE_ORDER[run.state];
    const to = next === undefined ? undefined : HOST_PHASE_ORDER[next];
    if (next === undefined || from === undefined || to === undefined || to <= from) return;
    this.store.hostRuns.update(run.rolloutId, run.hostId, { state: next });
    this.store.appendEvent(
      {
        rolloutId: run.rolloutId,
        hostId: run.hostId,
        actor: agentId,
        type: 'host.progress',
        fromState: run.state,
        toState: next,
        data: progress.message ? { message: progress.message } : null,
      },
      this.iso(),
    );
  }

  /** Returns whether the result may be acknowledged (it is recorded, or it can never be). */
  private applyResult(agentId: string, result: OrderResultBody): boolean {
    const run = this.store.hostRuns.byOrderId(result.orderId) ?? this.store.hostRuns.byRevertOrderId(result.orderId);
    if (!run) {
      this.log.warn({ agentId, orderId: result.orderId }, 'result for an unknown order; acknowledged and ignored');
      return true;
    }
    if (run.hostId !== agentId) {
      this.log.warn(
        { agentId, orderId: result.orderId, hostId: run.hostId },
        'agent reported an order of another host; ignored',
      );
      return false;
    }
    const isRevert = run.revertOrderId === result.orderId;
    const base = { rolloutId: run.rolloutId, hostId: run.hostId, actor: agentId, fromState: run.state };
    const health = result.health ?? null;
    const error = { errorCode: result.errorCode ?? null, reason: result.reason ?? null };
    if (isRevert) {
      // A revert given up on (no answer in time) that reports success after all is recorded; any other
      // report for a host no longer reverting is a duplicate of one already recorded.
      const lateSuccess = run.state === 'revert_failed' && result.outcome === 'reverted';
      if (run.state !== 'reverting' && !lateSuccess) return true;
      const state: HostRunState = result.outcome === 'reverted' ? 'reverted' : 'revert_failed';
      this.store.hostRuns.update(run.rolloutId, run.hostId, {
        state,
        changed: result.changed,
        finishedAt: this.clock.now(),
        ...(state === 'revert_failed' ? error : { errorCode: null, reason: null }),
      });
      this.store.appendEvent({ ...base, type: `host.${state}`, toState: state, data: { ...error } }, this.iso());
      if (lateSuccess) this.reopenFailedRevert(run.rolloutId);
      this.markDirty(run.rolloutId);
      return true;
    }
    if (TERMINAL_HOST_STATES.has(run.state) || run.state === 'reverting') {
      // A late answer (after a timeout, or a bake-time failure after healthy): record what the host carries now.
      const lateFailure =
        run.state === 'healthy' && (result.outcome === 'failed' || result.outcome === 'revert_failed');
      if (lateFailure) {
        const state: HostRunState = result.outcome === 'failed' ? 'failed' : 'revert_failed';
        this.store.hostRuns.update(run.rolloutId, run.hostId, {
          state,
          changed: result.changed,
          countedFailure: true,
          finishedAt: this.clock.now(),
          health,
          ...error,
        });
        this.store.appendEvent(
          { ...base, type: `host.${state}`, toState: state, data: { ...error, during: 'bake' } },
          this.iso(),
        );
      } else if (run.changed !== result.changed && run.state !== 'reverting') {
        this.store.hostRuns.update(run.rolloutId, run.hostId, { state: run.state, changed: result.changed });
        this.store.appendEvent(
          {
            ...base,
            type: 'host.late_result',
            toState: run.state,
            data: { outcome: result.outcome, changed: result.changed },
          },
          this.iso(),
        );
        if (result.changed) this.reopenRevert(run.rolloutId);
      }
      this.markDirty(run.rolloutId);
      return true;
    }
    const state = applyOutcomeToState(result.outcome);
    const countedFailure = state === 'failed' || state === 'revert_failed';
    this.store.hostRuns.update(run.rolloutId, run.hostId, {
      state,
      changed: result.changed,
      countedFailure,
      finishedAt: this.clock.now(),
      health,
      ...error,
    });
    this.store.appendEvent(
      // The health results (which check, what it saw) go into the audit trail with the outcome.
      {
        ...base,
        type: `host.${state}`,
        toState: state,
        data: { ...error, changed: result.changed, ...(health ? { health } : {}) },
      },
      this.iso(),
    );
    // A host of a wave halted with autoRevert `wave` that was in flight at the halt goes back like its wave.
    const rollout = this.store.rollouts.get(run.rolloutId);
    if (
      result.changed &&
      rollout?.state === 'halted' &&
      rollout.request.autoRevert === 'wave' &&
      run.wave === rollout.currentWave
    ) {
      this.dispatchRevert({ ...run, state, changed: true });
    }
    this.markDirty(run.rolloutId);
    return true;
  }

  private markDirty(rolloutId: string): void {
    this.dirty.add(rolloutId);
    if (this.advanceScheduled) return;
    this.advanceScheduled = true;
    setImmediate(() => this.advanceDirty());
  }

  private advanceDirty(): void {
    this.advanceScheduled = false;
    if (this.stopped) return;
    const ids = [...this.dirty];
    this.dirty.clear();
    for (const id of ids) {
      try {
        this.advance(id);
      } catch (err) {
        this.log.error({ err, rolloutId: id }, 'advancing rollout failed; will retry on the next tick');
      }
    }
  }

  /** Moves one rollout as far as it can go right now. Idempotent: safe to call at any time. */
  private advance(id: string): void {
    // Each pass either changes something or returns; the bound guards against a logic slip looping.
    for (let pass = 0; pass < 1000; pass++) {
      const rollout = this.store.rollouts.get(id);
      if (!rollout) return;
      if (rollout.state === 'reverting') {
        this.advanceRevert(rollout);
        return;
      }
      if (rollout.state === 'paused') {
        if (rollout.stateReason === WINDOW_PAUSE_REASON && this.windowOpen(rollout)) {
          this.store.transaction(() => this.transition(rollout, 'running', SYSTEM, 'maintenance window open'));
          continue;
        }
        return;
      }
      if (rollout.state !== 'running') return;
      if (!this.advanceRunning(rollout)) return;
    }
  }

  /** Returns true when it changed the rollout's wave or state, so the caller looks again. */
  private advanceRunning(rollout: RolloutRecord): boolean {
    const { id, request } = rollout;
    const now = this.clock.now();
    const failures = this.store.hostRuns.failures(id);
    const tolerated = toleratedFailures(request.maxFailures, rollout.hostCount);
    const waveRuns = this.store.hostRuns.countByState(id, rollout.currentWave);
    const waveSize = [...waveRuns.values()].reduce((a, b) => a + b, 0);
    const waveFailures =
      request.maxFailuresPerWave === undefined ? 0 : this.store.hostRuns.failures(id, rollout.currentWave);
    const waveTolerated =
      request.maxFailuresPerWave === undefined
        ? Number.POSITIVE_INFINITY
        : toleratedFailures(request.maxFailuresPerWave, waveSize);
    if (failures > tolerated || waveFailures > waveTolerated) {
      const reason =
        failures > tolerated
          ? `failure budget exceeded: ${failures} failed, ${tolerated} tolerated`
          : `wave ${rollout.currentWave + 1} failure budget exceeded: ${waveFailures} failed, ${waveTolerated} tolerated`;
      this.halt(rollout, reason);
      return true;
    }

    const inFlight = IN_FLIGHT_HOST_STATES.reduce((n, s) => n + (waveRuns.get(s) ?? 0), 0);
    const queued = waveRuns.get('queued') ?? 0;

    if (queued === 0 && inFlight === 0) {
      return this.finishWave(rollout, now);
    }
    if (queued > 0 && inFlight < request.maxParallel) {
      if (request.window && !this.waveGate(request.window, now)) {
        if (inFlight === 0)
          this.store.transaction(() => this.transition(rollout, 'paused', SYSTEM, WINDOW_PAUSE_REASON));
        return false;
      }
      this.dispatchApplies(rollout, request.maxParallel - inFlight);
    }
    return false;
  }

  private finishWave(rollout: RolloutRecord, now: number): boolean {
    const { id, request } = rollout;
    if (rollout.bakeUntil === null) {
      const bakeUntil = now + request.bakeSeconds * 1000;
      this.store.transaction(() => {
        this.store.rollouts.setWave(id, rollout.currentWave, bakeUntil, this.iso());
        this.store.appendEvent(
          {
            rolloutId: id,
            actor: SYSTEM,
            type: 'wave.passed',
            data: { wave: rollout.currentWave, bakeSeconds: request.bakeSeconds },
          },
          this.iso(),
        );
      });
      return true;
    }
    if (now < rollout.bakeUntil) return false;
    const next = rollout.currentWave + 1;
    this.store.transaction(() => {
      if (next >= rollout.waveCount) {
        this.transition(rollout, 'succeeded', SYSTEM, null);
        return;
      }
      if (request.window && !this.waveGate(request.window, now)) {
        this.transition(rollout, 'paused', SYSTEM, WINDOW_PAUSE_REASON);
        return;
      }
      this.store.rollouts.setWave(id, next, null, this.iso());
      this.store.appendEvent({ rolloutId: id, actor: SYSTEM, type: 'wave.started', data: { wave: next } }, this.iso());
    });
    return true;
  }

  private halt(rollout: RolloutRecord, reason: string): void {
    const scope = rollout.request.autoRevert;
    this.store.transaction(() => {
      this.transition(rollout, 'halted', SYSTEM, reason);
      if (scope === 'wave') {
        for (const run of this.store.hostRuns.forWave(rollout.id, rollout.currentWave)) {
          if (run.changed && TERMINAL_HOST_STATES.has(run.state) && run.state !== 'reverted') this.dispatchRevert(run);
        }
      }
    });
    if (scope === 'rollout') {
      const halted = this.mustGet(rollout.id);
      this.store.transaction(() => this.transition(halted, 'reverting', SYSTEM, 'auto-revert: rollout'));
      this.cancelInFlight(rollout.id);
      this.markDirty(rollout.id);
    }
  }

  private dispatchApplies(rollout: RolloutRecord, slots: number): void {
    const patch = this.store.patches.get(rollout.patchId) as Patch;
    const sends: HostRunRecord[] = [];
    this.store.transaction(() => {
      for (const run of this.store.hostRuns.nextQueued(rollout.id, rollout.currentWave, slots)) {
        if (!this.channel.isOnline(run.hostId) && rollout.request.offline.mode !== 'wait') {
          const failed = rollout.request.offline.mode === 'fail';
          const state: HostRunState = failed ? 'failed' : 'skipped';
          this.store.hostRuns.update(rollout.id, run.hostId, {
            state,
            countedFailure: failed,
            finishedAt: this.clock.now(),
            errorCode: ErrorCode.offline,
            reason: 'host offline at dispatch',
          });
          this.store.appendEvent(
            {
              rolloutId: rollout.id,
              hostId: run.hostId,
              actor: SYSTEM,
              type: `host.${state}`,
              fromState: 'queued',
              toState: state,
              data: { reason: 'offline' },
            },
            this.iso(),
          );
          continue;
        }
        const orderId = newId('ord');
        this.store.hostRuns.markDispatched(rollout.id, run.hostId, orderId, this.clock.now());
        this.store.appendEvent(
          {
            rolloutId: rollout.id,
            hostId: run.hostId,
            actor: SYSTEM,
            type: 'host.dispatched',
            fromState: 'queued',
            toState: 'dispatched',
            data: { orderId, wave: run.wave },
          },
          this.iso(),
        );
        sends.push({ ...run, orderId, state: 'dispatched' });
      }
    });
    // Sent only after the commit: a crash between the two leaves a committed order that the
    // agent's reconnect (hello) picks up, never an order that was sent but not recorded.
    for (const run of sends) this.sendApply(rollout, run, patch);
    if (sends.length > 0) this.markDirty(rollout.id);
  }

  private sendApply(rollout: RolloutRecord, run: HostRunRecord, patch?: Patch): void {
    const p = patch ?? (this.store.patches.get(rollout.patchId) as Patch);
    if (!run.orderId) return;
    this.channel.send(run.hostId, {
      type: 'order.apply',
      orderId: run.orderId,
      rolloutId: rollout.id,
      patchId: p.id,
      change: p.change,
      health: p.health,
      failIfUnhealthyBefore: rollout.request.failUnhealthyBefore,
      revertOnHealthFailure: rollout.request.autoRevert !== 'none',
      bakeSeconds: rollout.request.bakeSeconds,
    });
  }

  private advanceRevert(rollout: RolloutRecord): void {
    // Counts and a bounded query: called after every burst of results, so never a scan of every host.
    const counts = this.store.hostRuns.countByState(rollout.id);
    const inFlight = IN_FLIGHT_HOST_STATES.reduce((n, s) => n + (counts.get(s) ?? 0), 0);
    const reverting = counts.get('reverting') ?? 0;
    const slots = rollout.request.revertParallel - reverting;
    const candidates = slots > 0 ? this.store.hostRuns.revertCandidates(rollout.id, slots) : [];
    if (candidates.length > 0) {
      this.store.transaction(() => {
        for (const run of candidates) this.dispatchRevert(run);
      });
      return;
    }
    if (reverting > 0 || inFlight > 0) return;
    const failed = counts.get('revert_failed') ?? 0;
    this.store.transaction(() => {
      const current = this.mustGet(rollout.id);
      if (current.state !== 'reverting') return;
      if (failed > 0) this.transition(current, 'revert_failed', SYSTEM, `${failed} host(s) failed to revert`);
      else this.transition(current, 'reverted', SYSTEM, null);
    });
  }

  /**
   * Must run inside a transaction. A host timed out (its answer lost to a partition, say) counts as
   * unchanged; when its late result says it carries the change after the rollout was reverted, the
   * rollout is not reverted after all: it goes back to reverting and that host gets a revert order.
   */
  private reopenRevert(rolloutId: string): void {
    const rollout = this.store.rollouts.get(rolloutId);
    if (rollout?.state === 'reverted')
      this.transition(rollout, 'reverting', SYSTEM, 'a late result shows a host still carries the change');
  }

  /** Must run inside a transaction. A late successful revert may turn a revert_failed rollout into reverted. */
  private reopenFailedRevert(rolloutId: string): void {
    const rollout = this.store.rollouts.get(rolloutId);
    if (rollout?.state === 'revert_failed')
      this.transition(rollout, 'reverting', SYSTEM, 'a late revert result arrived');
  }

  /** Must run inside a transaction; the send follows the commit via setImmediate. */
  private dispatchRevert(run: HostRunRecord): void {
    if (!run.orderId) return;
    const orderId = newId('rev');
    this.store.hostRuns.markRevertDispatched(run.rolloutId, run.hostId, orderId, this.clock.now());
    this.store.appendEvent(
      {
        rolloutId: run.rolloutId,
        hostId: run.hostId,
        actor: SYSTEM,
        type: 'host.reverting',
        fromState: run.state,
        toState: 'reverting',
        data: { orderId },
      },
      this.iso(),
    );
    const sent = { ...run, state: 'reverting' as const, revertOrderId: orderId };
    setImmediate(() => {
      if (!this.stopped) this.sendRevert(sent);
    });
  }

  private sendRevert(run: HostRunRecord): void {
    if (!run.revertOrderId || !run.orderId) return;
    this.channel.send(run.hostId, { type: 'order.revert', orderId: run.revertOrderId, revertsOrderId: run.orderId });
  }

  private cancelInFlight(id: string): void {
    for (const run of this.store.hostRuns.inStates(id, IN_FLIGHT_HOST_STATES)) {
      if (run.orderId) this.channel.send(run.hostId, { type: 'order.cancel', orderId: run.orderId });
    }
  }

  /**
   * Hosts past their deadline, in every rollout (halted and aborted ones too: their in-flight hosts
   * still finish or time out): not delivered in time (offline, policy wait), no result in time, or
   * no answer to a revert order. Reads only dispatched hosts in flight, through the state index.
   */
  private expireDeadlines(): void {
    const now = this.clock.now();
    const rollouts = new Map<string, RolloutRecord | undefined>();
    const expired: { run: HostRunRecord; state: 'timed_out' | 'revert_failed'; reason: string }[] = [];
    for (const run of this.store.hostRuns.inStatesEverywhere([...IN_FLIGHT_HOST_STATES, 'reverting'])) {
      if (!rollouts.has(run.rolloutId)) rollouts.set(run.rolloutId, this.store.rollouts.get(run.rolloutId));
      const rollout = rollouts.get(run.rolloutId);
      if (!rollout || run.dispatchedAt === null) continue;
      const { hostTimeoutSeconds, offline } = rollout.request;
      const age = now - run.dispatchedAt;
      if (run.state === 'reverting') {
        if (age > hostTimeoutSeconds * 1000) {
          expired.push({ run, state: 'revert_failed', reason: `no revert result within ${hostTimeoutSeconds}s` });
        }
      } else if (run.state === 'dispatched' && age > offline.deliveryDeadlineSeconds * 1000) {
        expired.push({
          run,
          state: 'timed_out',
          reason: `not delivered within ${offline.deliveryDeadlineSeconds}s (host offline)`,
        });
      } else if (age > hostTimeoutSeconds * 1000) {
        expired.push({ run, state: 'timed_out', reason: `no result within ${hostTimeoutSeconds}s` });
      }
    }
    if (expired.length === 0) return;
    this.store.transaction(() => {
      for (const { run, state, reason } of expired) {
        this.store.hostRuns.update(run.rolloutId, run.hostId, {
          state,
          ...(state === 'timed_out' ? { countedFailure: true } : {}),
          finishedAt: now,
          errorCode: state === 'timed_out' ? ErrorCode.timedOut : ErrorCode.revertFailed,
          reason,
        });
        this.store.appendEvent(
          {
            rolloutId: run.rolloutId,
            hostId: run.hostId,
            actor: SYSTEM,
            type: `host.${state}`,
            fromState: run.state,
            toState: state,
            data: { reason },
          },
          this.iso(),
        );
      }
    });
    for (const { run, state } of expired) {
      // A timed-out apply is cancelled on the agent (it restores its snapshot if it got that far).
      if (state === 'timed_out' && run.orderId)
        this.channel.send(run.hostId, { type: 'order.cancel', orderId: run.orderId });
      this.markDirty(run.rolloutId);
    }
  }

  private windowOpen(rollout: RolloutRecord): boolean {
    return rollout.request.window === undefined || this.waveGate(rollout.request.window, this.clock.now());
  }

  private verbTransition(
    id: string,
    verb: 'pause' | 'resume' | 'abort',
    actor: string,
    reason: string | null,
  ): RolloutRecord {
    this.store.transaction(() => {
      const rollout = this.mustGet(id);
      assertVerb(id, rollout.state, verb);
      this.transition(rollout, VERB_TRANSITIONS[verb].to, actor, reason);
    });
    this.markDirty(id);
    return this.mustGet(id);
  }

  /** Must run inside a transaction. */
  private transition(
    rollout: RolloutRecord,
    to: RolloutState,
    actor: string,
    reason: string | null,
    data?: Record<string, unknown>,
  ): void {
    assertTransition(rollout.id, rollout.state, to, `move to ${to}`);
    this.store.rollouts.setState(rollout.id, to, reason, FINAL_ROLLOUT_STATES.has(to), this.iso());
    this.store.appendEvent(
      {
        rolloutId: rollout.id,
        actor,
        type: `rollout.${to}`,
        fromState: rollout.state,
        toState: to,
        data: { ...(reason ? { reason } : {}), ...data },
      },
      this.iso(),
    );
    const from = rollout.state;
    rollout.state = to;
    // Window watches only wake the engine, so arming one in a transaction that rolls back is harmless.
    const window = rollout.request.window;
    if (FINAL_ROLLOUT_STATES.has(to) || to === 'reverting') this.windows?.unwatch(rollout.id);
    else if (window && FINAL_ROLLOUT_STATES.has(from)) this.windows?.watch(rollout.id, window);
  }

  private mustGet(id: string): RolloutRecord {
    const rollout = this.store.rollouts.get(id);
    if (!rollout) throw new FleetError(ErrorCode.notFound, `rollout ${id} does not exist`);
    return rollout;
  }

  private iso(): string {
    return new Date(this.clock.now()).toISOString();
  }
}

function approvalState(request: RolloutRequest): RolloutState {
  return request.requiredApprovals > 0 ? 'awaiting_approval' : 'scheduled';
}

function applyOutcomeToState(outcome: OrderResultBody['outcome']): HostRunState {
  switch (outcome) {
    case 'healthy':
    case 'already_applied':
      return 'healthy';
    case 'skipped':
      return 'skipped';
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
