import type { EventRecord, RolloutStatus, RolloutSummary } from '@fleetpatch/shared';

/**
 * When each wave started and passed, as the audit trail says (`wave.started`, `wave.passed`; the
 * watch replays the whole trail, so a watch started late still has every wave's times). A retried
 * wave's times are its latest attempt's.
 */
export class WaveTimings {
  private readonly started = new Map<number, number>();
  private readonly passed = new Map<number, number>();

  record(event: EventRecord): void {
    const wave = event.data?.wave;
    if (typeof wave !== 'number') return;
    const at = Date.parse(event.at);
    if (event.type === 'wave.started') {
      this.started.set(wave, at);
      this.passed.delete(wave);
    } else if (event.type === 'wave.passed') this.passed.set(wave, at);
  }

  /** Milliseconds from start to pass of every wave that passed: what the ETA is measured from. */
  measured(): number[] {
    const times: number[] = [];
    for (const [wave, start] of this.started) {
      const end = this.passed.get(wave);
      if (end !== undefined && end >= start) times.push(end - start);
    }
    return times;
  }

  startedAt(wave: number): number | undefined {
    return this.started.get(wave);
  }
}

/**
 * Milliseconds left until the rollout is done, from measured wave times: the mean time a wave took
 * to pass, for the current wave (less what it has run) and each wave after it, plus their bakes and
 * what is left of a running bake. Undefined until a wave has been measured, or when nothing will move.
 */
export function estimateRemainingMs(
  status: { rollout: RolloutStatus['rollout'] | RolloutSummary['rollout'] },
  timings: WaveTimings,
  now: number,
): number | undefined {
  const { rollout } = status;
  if (rollout.state !== 'running' || rollout.waveCount === 0) return undefined;
  const measured = timings.measured();
  if (measured.length === 0) return undefined;
  const perWave = measured.reduce((a, b) => a + b, 0) / measured.length;
  const bakeMs = rollout.request.bakeSeconds * 1000;
  const current = rollout.currentWave;
  const later = rollout.waveCount - current - 1;
  let currentLeft: number;
  if (rollout.bakeUntil !== null) currentLeft = Math.max(0, Date.parse(rollout.bakeUntil) - now);
  else {
    const since = timings.startedAt(current);
    currentLeft = Math.max(0, perWave - (since === undefined ? 0 : now - since)) + bakeMs;
  }
  // Every passed wave bakes, the last one too, before the next starts or the rollout succeeds.
  return currentLeft + later * (perWave + bakeMs);
}

/** "2h 03m", "4m 05s", "12s". */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}
