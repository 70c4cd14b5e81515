import {
  ErrorCode,
  type HostRunState,
  type Patch,
  protocolGapOf,
  resolveWaveSizes,
  toleratedFailures,
  UNHEALTHY_BEFORE_PATCH,
  waveData,
} from '@fleetpatch/shared';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import { failTooOld } from './agent-too-old.js';
import type { AnalysisRunner } from './analysis-runner.js';
import type { EngineDeps } from './engine-interfaces.js';
import { IN_FLIGHT_HOST_STATES, TERMINAL_HOST_STATES } from './host-run-states.js';
import { dispatchHostRuns, type HostRunDispatch, transitionHostRun } from './host-run-transition.js';
import { newId } from './ids.js';
import { cancelInFlight, endBakeWatches, sendApplies, sendBakeWatch } from './order-sender.js';
import type { RevertRunner } from './revert-runner.js';
import { isSignedRollout, signedApplyOf } from './rollout-signing.js';
import { isoNow, SYSTEM, transitionRollout, WINDOW_PAUSE_REASON } from './rollout-transition.js';

/** A wave's hosts that keep it from passing, besides those still queued: orders out, and reverts. */
const WAVE_MOVING_STATES: readonly HostRunState[] = [...IN_FLIGHT_HOST_STATES, 'reverting'];

type AdvancerDeps = Pick<
  EngineDeps,
  'store' | 'channel' | 'clock' | 'waveGate' | 'windows' | 'markDirty' | 'checkpoint' | 'grace' | 'owedCancels'
>;

/** The advance loop: failure budgets, waves, bakes, maintenance windows, and dispatch of apply orders. */
export class WaveAdvancer {
  constructor(
    private readonly deps: AdvancerDeps,
    private readonly reverts: RevertRunner,
    private readonly analyses: AnalysisRunner,
  ) {}

  /** Moves one rollout as far as it can go right now. Idempotent: safe to call at any time. */
  async advance(id: string): Promise<void> {
    const { store } = this.deps;
    // Each pass either changes something or returns; the bound guards against a logic slip looping.
    for (let pass = 0; pass < 1000; pass++) {
      const rollout = await store.rollouts.get(id);
      if (!rollout) return;
      if (rollout.state === 'reverting') {
        await this.reverts.advance(rollout);
        return;
      }
      if (rollout.state === 'paused') {
        if (rollout.stateReason === WINDOW_PAUSE_REASON && this.windowOpen(rollout)) {
          await store.transaction(
            async () => await transitionRollout(this.deps, rollout, 'running', SYSTEM, 'maintenance window open'),
          );
          continue;
        }
        return;
      }
      if (rollout.state !== 'running') return;
      if (!(await this.advanceRunning(rollout))) return;
    }
  }

  /** Returns true when it changed the rollout's wave or state, so the caller looks again. */
  private async advanceRunning(rollout: RolloutRecord): Promise<boolean> {
    const { store, clock, waveGate } = this.deps;
    const { id, request } = rollout;
    const now = clock.now();
    // A rehearsed revert that failed halts at once, whatever the budget: the revert does not work,
    // and no other host may change until a person has looked.
    const rehearsal = await this.failedRehearsal(rollout);
    if (rehearsal) {
      await this.halt(
        rollout,
        `rehearsed revert failed on ${rehearsal.hostId}: ${rehearsal.reason ?? 'no reason given'}`,
      );
      return true;
    }
    const failures = await store.hostRuns.failures(id);
    const tolerated = toleratedFailures(request.maxFailures, rollout.hostCount);
    const waveFailures =
      request.maxFailuresPerWave === undefined ? 0 : await store.hostRuns.failures(id, rollout.currentWave);
    // The wave's size is fixed when the rollout starts (its target frozen into waves of these sizes).
    const waveTolerated =
      request.maxFailuresPerWave === undefined
        ? Number.POSITIVE_INFINITY
        : toleratedFailures(
            request.maxFailuresPerWave,
            resolveWaveSizes(rollout.hostCount, request.waves)[rollout.currentWave] ?? 0,
          );
    if (failures > tolerated || waveFailures > waveTolerated) {
      const budget =
        failures > tolerated
          ? `failure budget exceeded: ${failures} failed, ${tolerated} tolerated`
          : `wave ${rollout.currentWave + 1} failure budget exceeded: ${waveFailures} failed, ${waveTolerated} tolerated`;
      const analysis = await this.analyses.failedAnalysis(rollout);
      const reason = analysis
        ? `analysis ${analysis.name} failed on wave ${rollout.currentWave + 1}; ${budget}`
        : budget;
      await this.halt(rollout, reason);
      return true;
    }

    // Only the hosts still moving are counted, and whether any waits: never the whole wave, at every burst.
    const waveRuns = await store.hostRuns.countInWave(id, rollout.currentWave, WAVE_MOVING_STATES);
    const inFlight = IN_FLIGHT_HOST_STATES.reduce((n, s) => n + (waveRuns.get(s) ?? 0), 0);
    const queued = await store.hostRuns.anyQueued(id, rollout.currentWave);
    // A host of this wave being reverted (per-host revert, or autoRevert `wave` before a retry) has not
    // finished either: the wave must not pass, nor the rollout succeed, while its revert is out.
    const reverting = waveRuns.get('reverting') ?? 0;

    if (!queued && inFlight === 0 && reverting === 0) {
      return await this.finishWave(rollout, now);
    }
    const windowClosed = request.window !== undefined && !waveGate(request.window, now);
    if (windowClosed && (waveRuns.get('dispatched') ?? 0) > 0 && (await this.requeueUndelivered(rollout))) return true;
    if (queued && inFlight < request.maxParallel) {
      if (windowClosed) {
        if (inFlight === 0)
          await store.transaction(
            async () => await transitionRollout(this.deps, rollout, 'paused', SYSTEM, WINDOW_PAUSE_REASON),
          );
        return false;
      }
      // A signed rollout's statement that expired mid-rollout (during a long bake, a window's pause): every
      // agent would refuse the orders, each a counted failure. It halts and says why; nothing is sent.
      const expired = await this.expiredStatement(rollout, now);
      if (expired !== undefined) {
        await this.halt(rollout, expired);
        return true;
      }
      // Failures the burst may still record (offline policy `fail`, agents too old) before it exceeds a budget.
      const failuresLeft = Math.min(tolerated - failures, waveTolerated - waveFailures);
      await this.dispatchApplies(rollout, request.maxParallel - inFlight, failuresLeft);
    }
    return false;
  }

  /** A wave with every host done: starts its bake, or after the bake starts the next wave (or succeeds). */
  private async finishWave(rollout: RolloutRecord, now: number): Promise<boolean> {
    const { store, clock, waveGate } = this.deps;
    const { id, request } = rollout;
    if (rollout.bakeUntil === null) {
      const bakeUntil = now + request.bakeSeconds * 1000;
      await store.transaction(async () => {
        await store.rollouts.setWave(id, rollout.currentWave, bakeUntil, isoNow(clock));
        await store.appendEvent(
          {
            rolloutId: id,
            actor: SYSTEM,
            type: 'wave.passed',
            data: { ...waveData(rollout.currentWave), bakeSeconds: request.bakeSeconds },
          },
          isoNow(clock),
        );
      });
      await sendBakeWatch(store, this.deps.channel, rollout, rollout.currentWave);
      return true;
    }
    if (now < rollout.bakeUntil) return false;
    // A bake that ended while the coordinator was away: its hosts' agents may hold a failure their bake
    // watch saw meanwhile; it passes once they have said hello, or the grace has passed.
    if (!(await this.bakeHeardOut(rollout, now))) return false;
    // The wave's metric analyses have the last word: it passes once each has passed (or failed
    // within the failure budget, which the check above has let through).
    if (!(await this.analyses.analysesDecided(rollout))) return false;
    const next = rollout.currentWave + 1;
    // A per-host revert still out in an earlier wave (this wave's hold it open already): the rollout
    // does not end before it answers — succeeded with a host whose outcome is not known, and without
    // the warning that it was reverted by hand, would say more than anyone knows.
    if (
      next >= rollout.waveCount &&
      ((await store.hostRuns.countInStates(id, ['reverting'])).get('reverting') ?? 0) > 0
    )
      return false;
    let succeeded = false;
    await store.transaction(async () => {
      if (next >= rollout.waveCount) {
        const notTaken = await this.noHostTookIt(rollout);
        // Nothing patched is not a success (every host skipped as unhealthy before the patch, say):
        // halted, so it says so and a retry can send the skipped hosts their order again.
        if (notTaken) await transitionRollout(this.deps, rollout, 'halted', SYSTEM, notTaken);
        else {
          const warning = revertedByHandWarning(await store.hostRuns.inStates(id, ['reverted']));
          await transitionRollout(this.deps, rollout, 'succeeded', SYSTEM, warning?.text ?? null, warning?.data);
          succeeded = true;
        }
        return;
      }
      if (request.window && !waveGate(request.window, now)) {
        await transitionRollout(this.deps, rollout, 'paused', SYSTEM, WINDOW_PAUSE_REASON);
        return;
      }
      await store.rollouts.setWave(id, next, null, isoNow(clock));
      await this.analyses.startWave(rollout, next);
      await store.appendEvent(
        { rolloutId: id, actor: SYSTEM, type: 'wave.started', data: waveData(next) },
        isoNow(clock),
      );
    });
    // After the commit, as every send: a crash before it leaves watches that end by themselves, and a
    // failure one of them still reports is recorded as after the rollout's end (ReportRecorder).
    if (succeeded) await endBakeWatches(store, this.deps.channel, rollout, clock.now(), this.deps.owedCancels);
    return true;
  }

  /**
   * The window closed (or reached its cutoff) with orders of this wave still waiting for their hosts
   * (offline, policy wait): they go back in the queue, no failure, and the next window dispatches them
   * again; sent now, they would change a host outside the window. Only orders never handed to a
   * connection (`deliveredAt` null): an agent may hold any other. Returns whether any went back.
   */
  private async requeueUndelivered(rollout: RolloutRecord): Promise<boolean> {
    const { store, channel } = this.deps;
    const waiting = (await store.hostRuns.inStates(rollout.id, ['dispatched'])).filter(
      (run) => run.wave === rollout.currentWave && run.deliveredAt === null,
    );
    if (waiting.length === 0) return false;
    await store.transaction(async () => {
      for (const run of waiting) {
        await transitionHostRun(
          this.deps,
          run,
          { to: 'queued' },
          {
            actor: SYSTEM,
            type: 'host.requeued',
            data: { orderId: run.orderId, reason: 'maintenance window closed before its order reached the host' },
          },
        );
      }
    });
    // In a coordinator group an order for a host away waits in the outbox for a while: one the host
    // collects anyway is cancelled right behind it.
    for (const run of waiting)
      if (run.orderId) channel.send(run.hostId, { type: 'order.cancel', orderId: run.orderId });
    return true;
  }

  /** Why a signed rollout may send no more orders (its statement expired), or undefined. */
  private async expiredStatement(rollout: RolloutRecord, now: number): Promise<string | undefined> {
    const apply = await this.deps.store.statements.apply(rollout.id);
    if (apply === undefined || Date.parse(apply.statement.expiresAt) > now) return undefined;
    return `the signed statement expired at ${apply.statement.expiresAt}: agents would refuse its orders; create and sign a new rollout for the hosts left`;
  }

  /** Whether every host of the baking wave that took the change has been heard from, or the grace has passed. */
  private async bakeHeardOut(rollout: RolloutRecord, now: number): Promise<boolean> {
    const { grace, store } = this.deps;
    if (grace.over(now)) return true;
    // Only read in the grace's first seconds after a start, for a wave whose bake has ended.
    const runs = await store.hostRuns.forWave(rollout.id, rollout.currentWave);
    return runs.every((run) => !run.changed || grace.allows(run.hostId, now));
  }

  /** A canary whose rehearsed revert failed (only the canary wave rehearses, and it is small). */
  private async failedRehearsal(rollout: RolloutRecord): Promise<HostRunRecord | undefined> {
    if (!rollout.request.rehearseRevert || rollout.currentWave !== 0) return undefined;
    return (await this.deps.store.hostRuns.forWave(rollout.id, 0)).find(
      (run) => run.countedFailure && run.errorCode === ErrorCode.rehearsalFailed,
    );
  }

  /**
   * At the end of the last wave: why no host of the rollout took the patch (none is healthy:
   * every one skipped, failed within the budget, cancelled…), or undefined when at least one did.
   */
  private async noHostTookIt(rollout: RolloutRecord): Promise<string | undefined> {
    if (rollout.hostCount === 0) return undefined;
    // Counted over this rollout's index entries (host_runs_wave_state_position), not through the state
    // index: terminal states hold every host run ever finished, so that count would grow with history.
    const counts = new Map<HostRunState, number>();
    for (const { state, n } of await this.deps.store.hostRuns.countByWaveAndState(rollout.id)) {
      if (TERMINAL_HOST_STATES.has(state)) counts.set(state, (counts.get(state) ?? 0) + n);
    }
    if ((counts.get('healthy') ?? 0) > 0) return undefined;
    // A skip with health_failed is the agent's baseline verdict (the reason it gives is UNHEALTHY_BEFORE_PATCH).
    const skippedUnhealthy = (await this.deps.store.hostRuns.inStates(rollout.id, ['skipped'])).filter(
      (run) => run.errorCode === ErrorCode.healthFailed,
    ).length;
    const tally = [...counts]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .filter(([, n]) => n > 0)
      .map(([state, n]) => `${n} ${state}`)
      .join(', ');
    const unhealthy = skippedUnhealthy > 0 ? ` (${skippedUnhealthy} ${UNHEALTHY_BEFORE_PATCH})` : '';
    return `no host took the patch: ${tally}${unhealthy}`;
  }

  private async halt(rollout: RolloutRecord, reason: string): Promise<void> {
    const { store, channel, clock } = this.deps;
    // A signed rollout's hosts whose health fails revert themselves (their own order says so); the
    // coordinator's own reverts would need a revert statement people signed, which it cannot make.
    const autoRevert = rollout.request.autoRevert;
    const waits = (autoRevert === 'wave' || autoRevert === 'rollout') && (await isSignedRollout(store, rollout.id));
    const scope = waits ? 'host' : autoRevert;
    // One commit for the halt and, with autoRevert `rollout`, the move to reverting: a crash between
    // two commits would leave a halted rollout that nobody reverts (halted is final; nothing advances it).
    await store.transaction(async () => {
      await transitionRollout(this.deps, rollout, 'halted', SYSTEM, reason);
      if (waits) {
        await store.appendEvent(
          {
            rolloutId: rollout.id,
            actor: SYSTEM,
            type: 'rollout.revert_waiting',
            data: {
              autoRevert,
              reason: `a signed rollout's revert waits for a signed revert statement: fleetpatch rollout revert ${rollout.id} --sign-key <pem>`,
            },
          },
          isoNow(clock),
        );
      }
      if (scope === 'wave') {
        for (const run of await store.hostRuns.forWave(rollout.id, rollout.currentWave)) {
          if (run.changed && TERMINAL_HOST_STATES.has(run.state) && run.state !== 'reverted')
            await this.reverts.dispatch(run);
        }
      }
      // transitionRollout updated rollout.state in place, so this edge is checked from `halted`.
      if (scope === 'rollout') await transitionRollout(this.deps, rollout, 'reverting', SYSTEM, 'auto-revert: rollout');
    });
    if (scope === 'rollout') {
      await cancelInFlight(store, channel, rollout.id);
      this.deps.markDirty(rollout.id);
    }
  }

  /**
   * Dispatches up to `slots` queued hosts of the current wave. A host failed at dispatch counts against
   * the budget at once: once `failuresLeft` is used up, the burst stops there (nothing new is sent
   * past a failure that halts), and the next pass halts the rollout.
   */
  private async dispatchApplies(rollout: RolloutRecord, slots: number, failuresLeft: number): Promise<void> {
    const { store, channel, clock } = this.deps;
    const patch = (await store.patches.get(rollout.patchId)) as Patch;
    const sends: HostRunRecord[] = [];
    let left = failuresLeft;
    await store.transaction(async () => {
      // One dispatch time for the burst (one commit): its hosts' deadlines are the same, so they time
      // out in the same sweep, never one halting the rollout a moment before the next is due.
      const at = clock.now();
      const queued = await store.hostRuns.nextQueued(rollout.id, rollout.currentWave, slots);
      const dispatches: HostRunDispatch[] = [];
      // Skipped or failed as offline is for good: in a group, first ask whether the host connected to
      // another member since this one last read who is where.
      const judgesOffline = rollout.request.offline.mode !== 'wait';
      if (judgesOffline && queued.some((run) => !channel.isOnline(run.hostId))) await channel.refreshPresence?.();
      for (const run of queued) {
        if (left < 0) break;
        if (judgesOffline && !channel.isOnline(run.hostId)) {
          // Just started, the host not heard from yet: it may be reconnecting. It stays queued until it
          // has, or the grace has passed (see ReconnectGrace), not skipped or failed as offline.
          if (!this.deps.grace.allows(run.hostId, at)) continue;
          const failed = rollout.request.offline.mode === 'fail';
          // The dispatches before it are written first: the audit trail keeps the burst's order.
          await dispatchHostRuns(this.deps, rollout.id, at, dispatches.splice(0));
          await transitionHostRun(
            this.deps,
            run,
            {
              to: failed ? 'failed' : 'skipped',
              countedFailure: failed,
              finishedAt: clock.now(),
              errorCode: ErrorCode.offline,
              reason: 'host offline at dispatch',
            },
            { actor: SYSTEM, data: { reason: 'offline' } },
          );
          if (failed) left--;
          continue;
        }
        const gap = protocolGapOf(patch, channel.protocolVersionOf(run.hostId));
        if (gap !== undefined) {
          await dispatchHostRuns(this.deps, rollout.id, at, dispatches.splice(0));
          await failTooOld(this.deps, run, gap);
          left--;
          continue;
        }
        const orderId = newId('ord');
        dispatches.push({
          run,
          orderId,
          // Handed to its connection after the commit; an offline host's (policy wait) waits for its hello.
          deliveredAt: channel.isOnline(run.hostId) ? at : null,
          event: { actor: SYSTEM, data: { orderId, ...waveData(run.wave) } },
        });
        sends.push({ ...run, orderId, state: 'dispatched' });
      }
      await dispatchHostRuns(this.deps, rollout.id, at, dispatches);
    });
    // Sent only after the commit: a crash between the two leaves a committed order that the
    // agent's reconnect (hello) picks up, never an order that was sent but not recorded.
    const signed = sends.length > 0 ? await signedApplyOf(store, rollout.id) : undefined;
    if (sends.length > 0) this.deps.checkpoint?.('order:committed');
    sendApplies(channel, rollout, sends, patch, signed, () => this.deps.checkpoint?.('order:sent'));
    // Looked at again when the burst left something to decide: failures it recorded (a halt, now),
    // or slots it did not fill (hosts it finished as offline or too old, or held back for their
    // grace). A burst that filled every slot with an order leaves nothing: the wave is full until a
    // result comes, and each result's commit looks again (at 10,000 hosts this was a second pass of
    // reads after every burst, each finding the wave full).
    const filledEverySlot = sends.length === slots;
    if (!filledEverySlot && (sends.length > 0 || left < failuresLeft)) this.deps.markDirty(rollout.id);
  }

  private windowOpen(rollout: RolloutRecord): boolean {
    return rollout.request.window === undefined || this.deps.waveGate(rollout.request.window, this.deps.clock.now());
  }
}

/**
 * A rollout that succeeds with hosts reverted by hand (`revert-host`) did not patch them: said in
 * its final state's reason and event, so nobody reads `succeeded` as "every host carries the patch".
 */
export function revertedByHandWarning(
  reverted: readonly HostRunRecord[],
): { text: string; data: Record<string, unknown> } | undefined {
  if (reverted.length === 0) return undefined;
  const hosts = reverted.map((run) => run.hostId);
  const shown = hosts.slice(0, 10).join(', ') + (hosts.length > 10 ? `, … (${hosts.length - 10} more)` : '');
  const text = `succeeded, but ${hosts.length} host(s) were reverted by hand and do not carry the patch: ${shown}`;
  return { text, data: { warning: text, revertedByHand: hosts.slice(0, 100) } };
}
