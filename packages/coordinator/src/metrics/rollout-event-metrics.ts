import { type EventRecord, FINAL_ROLLOUT_STATES, type RolloutState } from '@fleetpatch/shared';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { CoordinatorMetrics, WaveOutcome } from './coordinator-metrics.js';

/** Where a host's apply ends; its duration is observed then. */
const HOST_END_STATES: ReadonlySet<string> = new Set(['healthy', 'failed', 'timed_out']);
/** Host runs counted as failures, by their error code. */
const HOST_FAILURE_STATES: ReadonlySet<string> = new Set(['failed', 'timed_out', 'revert_failed']);

/**
 * Turns the audit trail's events — the one place every transition already passes, after it has
 * committed — into wave and host metrics, so the engine carries no metric calls of its own.
 * Wave start times are kept in memory from `wave.started` to `wave.passed` (or the rollout's end), and
 * host dispatch times from `host.dispatched` to the host's end: a wave or host in flight across a
 * coordinator restart is not measured, rather than measured wrong. Only a failure reads its host run
 * (for its error code): a rollout of 10,000 healthy hosts costs no read at all.
 */
export class RolloutEventMetrics {
  /** `rolloutId` → the current wave and when it started (ms). */
  private readonly waveStarts = new Map<string, { wave: number; at: number }>();
  /** `rolloutId hostId` → when its apply was dispatched (ms), until it ends. */
  private readonly dispatched = new Map<string, number>();

  constructor(
    private readonly metrics: CoordinatorMetrics,
    private readonly hostRun: (rolloutId: string, hostId: string) => Promise<HostRunRecord | undefined>,
  ) {}

  async onEvent(event: EventRecord): Promise<void> {
    const { rolloutId } = event;
    if (rolloutId === null) return;
    if (event.type === 'wave.started') {
      const wave = event.data?.wave;
      if (typeof wave === 'number') this.waveStarts.set(rolloutId, { wave, at: Date.parse(event.at) });
      return;
    }
    if (event.type === 'wave.passed') {
      this.endWave(rolloutId, 'passed', event.at);
      return;
    }
    if (event.type.startsWith('rollout.') && FINAL_ROLLOUT_STATES.has(event.toState as RolloutState)) {
      // As the status names the wave's phase: a halt fails the wave it happens in; any other end stops it.
      this.endWave(rolloutId, event.toState === 'halted' ? 'failed' : 'stopped', event.at);
      this.forgetHosts(rolloutId);
      return;
    }
    if (event.hostId !== null && event.toState !== null && event.type.startsWith('host.')) {
      await this.onHostState(rolloutId, event.hostId, event.toState, Date.parse(event.at));
    }
  }

  private endWave(rolloutId: string, outcome: WaveOutcome, at: string): void {
    const started = this.waveStarts.get(rolloutId);
    if (!started) return;
    this.waveStarts.delete(rolloutId);
    this.metrics.waveFinished(outcome, Math.max(0, Date.parse(at) - started.at) / 1000);
  }

  private async onHostState(rolloutId: string, hostId: string, state: string, at: number): Promise<void> {
    const key = `${rolloutId} ${hostId}`;
    if (state === 'dispatched') {
      this.dispatched.set(key, at);
      return;
    }
    if (HOST_END_STATES.has(state)) {
      const since = this.dispatched.get(key);
      this.dispatched.delete(key);
      if (since !== undefined) this.metrics.hostFinished(state, Math.max(0, at - since) / 1000);
    }
    if (HOST_FAILURE_STATES.has(state)) {
      const run = await this.hostRun(rolloutId, hostId);
      if (run) this.metrics.hostFailed(run.errorCode);
    }
  }

  /** A rollout at rest: none of its hosts will end now without a new dispatch. */
  private forgetHosts(rolloutId: string): void {
    for (const key of this.dispatched.keys()) if (key.startsWith(`${rolloutId} `)) this.dispatched.delete(key);
  }
}
