import {
  assignWaves,
  describeHaltPoint,
  ErrorCode,
  FleetError,
  type HostRunState,
  resolveWaveSizes,
  toleratedFailures,
} from '@fleetpatch/shared';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import type { Store } from '../store/store.js';
import { TERMINAL_HOST_STATES } from './rollout-states.js';
import { resolveTarget } from './target-resolver.js';

export interface RolloutPlan {
  rolloutId: string;
  /** Whether the host list is frozen (rollout started) or resolved from the fleet as it is now. */
  frozen: boolean;
  hostCount: number;
  waveSizes: number[];
  waves: { wave: number; hosts: string[] }[];
  toleratedFailures: number;
  haltsOn: string;
}

/** pending: not started; running; baking: passed, waiting out bakeSeconds; passed; stopped: the rollout halted or was aborted in it. */
export type WavePhase = 'pending' | 'running' | 'baking' | 'passed' | 'stopped';

export interface HostView {
  hostId: string;
  state: HostRunState;
  online: boolean;
  changed: boolean;
  orderId: string | null;
  errorCode: string | null;
  reason: string | null;
  health: HostRunRecord['health'];
}

export interface RolloutStatus {
  rollout: Omit<RolloutRecord, 'bakeUntil'> & { bakeUntil: string | null };
  approvals: { approver: string; at: string }[];
  failures: number;
  toleratedFailures: number;
  haltsOn: string;
  counts: Partial<Record<HostRunState, number>>;
  waves: { wave: number; phase: WavePhase; hosts: HostView[] }[];
}

/** Read-only views of a rollout for the API and CLI. */
export class RolloutView {
  constructor(
    private readonly store: Store,
    private readonly isOnline: (hostId: string) => boolean,
  ) {}

  plan(id: string): RolloutPlan {
    const rollout = this.mustGet(id);
    const frozen = rollout.hostCount > 0;
    let waves: string[][];
    if (frozen) {
      waves = Array.from({ length: rollout.waveCount }, () => []);
      for (const run of this.store.hostRuns.forRollout(id)) waves[run.wave]?.push(run.hostId);
    } else {
      waves = assignWaves(resolveTarget(rollout.request.target, this.store.agents.list()), rollout.request.waves);
    }
    const hostCount = waves.reduce((n, w) => n + w.length, 0);
    const tolerated = toleratedFailures(rollout.request.maxFailures, hostCount);
    return {
      rolloutId: id,
      frozen,
      hostCount,
      waveSizes: frozen ? waves.map((w) => w.length) : resolveWaveSizes(hostCount, rollout.request.waves),
      waves: waves.map((hosts, wave) => ({ wave, hosts })),
      toleratedFailures: tolerated,
      haltsOn: describeHaltPoint(tolerated),
    };
  }

  status(id: string): RolloutStatus {
    const rollout = this.mustGet(id);
    const runs = this.store.hostRuns.forRollout(id);
    const counts: Partial<Record<HostRunState, number>> = {};
    const waves: RolloutStatus['waves'] = Array.from({ length: rollout.waveCount }, (_, wave) => ({
      wave,
      phase: 'pending' as WavePhase,
      hosts: [],
    }));
    for (const run of runs) {
      counts[run.state] = (counts[run.state] ?? 0) + 1;
      waves[run.wave]?.hosts.push({
        hostId: run.hostId,
        state: run.state,
        online: this.isOnline(run.hostId),
        changed: run.changed,
        orderId: run.orderId,
        errorCode: run.errorCode,
        reason: run.reason,
        health: run.health,
      });
    }
    for (const wave of waves) {
      const ran = wave.hosts.length > 0 && wave.hosts.every((h) => TERMINAL_HOST_STATES.has(h.state));
      // A retry can take the rollout back to an earlier wave: later waves that already ran stay passed.
      if (wave.wave < rollout.currentWave || (wave.wave > rollout.currentWave && ran)) wave.phase = 'passed';
      else if (wave.wave === rollout.currentWave) wave.phase = currentWavePhase(rollout, ran);
    }
    const tolerated = toleratedFailures(rollout.request.maxFailures, rollout.hostCount);
    return {
      rollout: { ...rollout, bakeUntil: rollout.bakeUntil === null ? null : new Date(rollout.bakeUntil).toISOString() },
      approvals: this.store.rollouts.approvals(id),
      failures: runs.filter((r) => r.countedFailure).length,
      toleratedFailures: tolerated,
      haltsOn: describeHaltPoint(tolerated),
      counts,
      waves,
    };
  }

  /** Throws not-found for an unknown rollout; O(1), unlike `status`, which reads every host. */
  assertExists(id: string): void {
    this.mustGet(id);
  }

  private mustGet(id: string): RolloutRecord {
    const rollout = this.store.rollouts.get(id);
    if (!rollout) throw new FleetError(ErrorCode.notFound, `rollout ${id} does not exist`);
    return rollout;
  }
}

/** The phase of the wave the rollout is at, from the rollout's state. */
function currentWavePhase(rollout: RolloutRecord, ran: boolean): WavePhase {
  switch (rollout.state) {
    case 'draft':
    case 'awaiting_approval':
    case 'scheduled':
      return 'pending';
    case 'running':
    case 'paused':
      return rollout.bakeUntil !== null && ran ? 'baking' : 'running';
    case 'succeeded':
      return 'passed';
    case 'halted':
    case 'aborted':
      return 'stopped';
    case 'reverting':
    case 'reverted':
    case 'revert_failed':
      // The wave passed if it had reached its bake before the revert; else it was cut short.
      return rollout.bakeUntil !== null && ran ? 'passed' : 'stopped';
  }
}
