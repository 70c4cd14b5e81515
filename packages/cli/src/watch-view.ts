import type {
  AnalysisRunView,
  FailedHost,
  HostRunState,
  HostView,
  RolloutStatus,
  RolloutSummary,
  WavePhase,
  WindowStatus,
} from '@fleetpatch/shared';

/**
 * What `rollout status --watch` shows, made from the rollout's full status (every host: a small
 * rollout) or from its summary (counts, and the first failed and failing hosts: a large one, whose
 * full status is megabytes). The live view and the log are drawn from this alone.
 */
export interface WatchView {
  rollout: RolloutStatus['rollout'] | RolloutSummary['rollout'];
  /** The rollout's hosts counted by state. */
  counts: Partial<Record<HostRunState, number>>;
  failures: number;
  toleratedFailures: number;
  haltsOn: string;
  waves: WatchWave[];
  /** Failed hosts named with their reason: every one from a full status, the first few from a summary. */
  failedHosts: FailedHost[];
  /** Hosts in flight whose latest health poll fails a check, with those checks. */
  failingHosts: FailingHostLine[];
  analyses: AnalysisRunView[];
  window?: WindowStatus | undefined;
  /** What a person should not miss (a succeeded rollout with hosts reverted since). */
  warnings: string[];
}

export interface WatchWave {
  wave: number;
  phase: WavePhase;
  hostCount: number;
  counts: WaveCounts;
  /** Every host of the wave, when the view was made from the full status: the log names each host's moves. */
  hosts?: HostView[];
}

export interface FailingHostLine {
  hostId: string;
  wave: number;
  state: HostRunState;
  failingPolls: number;
  checks: { check: string; observed: string }[];
  /** Failing checks not listed (a summary lists a host's first 3). */
  moreChecks?: number | undefined;
}

/** How a person counts a host in a wave's bar. */
export type HostBucket = 'done' | 'failed' | 'inFlight' | 'pending';

export interface WaveCounts {
  done: number;
  failed: number;
  inFlight: number;
  pending: number;
}

const BUCKETS: Readonly<Record<HostRunState, HostBucket>> = {
  queued: 'pending',
  dispatched: 'inFlight',
  delivered: 'inFlight',
  snapshotted: 'inFlight',
  applying: 'inFlight',
  verifying: 'inFlight',
  reverting: 'inFlight',
  healthy: 'done',
  skipped: 'done',
  not_applicable: 'done',
  reverted: 'done',
  failed: 'failed',
  timed_out: 'failed',
  cancelled: 'failed',
  revert_failed: 'failed',
};

export function hostBucket(state: HostRunState): HostBucket {
  return BUCKETS[state];
}

/** A wave's hosts by bucket, from its counts per state (a state this CLI does not know counts as in flight). */
export function countBuckets(counts: Partial<Record<HostRunState, number>>): WaveCounts {
  const buckets: WaveCounts = { done: 0, failed: 0, inFlight: 0, pending: 0 };
  for (const [state, n] of Object.entries(counts)) buckets[BUCKETS[state as HostRunState] ?? 'inFlight'] += n ?? 0;
  return buckets;
}

/** The view of a full status: every host counted, every failed host named, every failing one. */
export function viewOfStatus(status: RolloutStatus): WatchView {
  const failedHosts: FailedHost[] = [];
  const failingHosts: FailingHostLine[] = [];
  const waves = status.waves.map((wave): WatchWave => {
    const counts: Partial<Record<HostRunState, number>> = {};
    for (const host of wave.hosts) {
      counts[host.state] = (counts[host.state] ?? 0) + 1;
      const bucket = hostBucket(host.state);
      if (bucket === 'failed') {
        const { hostId, state, errorCode, reason } = host;
        failedHosts.push({ hostId, wave: wave.wave, state, errorCode, reason });
      }
      // The live poll while verifying or baking; the order's final health results otherwise.
      const failing = (host.liveHealth?.checks ?? host.health ?? []).filter((check) => !check.ok);
      if (bucket === 'inFlight' && failing.length > 0) {
        failingHosts.push({
          hostId: host.hostId,
          wave: wave.wave,
          state: host.state,
          failingPolls: host.liveHealth?.failingPolls ?? 0,
          checks: failing.map(({ check, observed }) => ({ check, observed })),
        });
      }
    }
    return {
      wave: wave.wave,
      phase: wave.phase,
      hostCount: wave.hosts.length,
      counts: countBuckets(counts),
      hosts: wave.hosts,
    };
  });
  return {
    rollout: status.rollout,
    counts: status.counts,
    failures: status.failures,
    toleratedFailures: status.toleratedFailures,
    haltsOn: status.haltsOn,
    waves,
    failedHosts,
    failingHosts,
    analyses: status.analyses,
    window: status.window,
    // The coordinator's own warnings when it sends them; an older coordinator's status is judged here.
    warnings: status.warnings ?? (revertedByHand(status) ? [REVERTED_BY_HAND] : []),
  };
}

/** The view of a summary: counts per wave and state, and the first failed and failing hosts it names. */
export function viewOfSummary(summary: RolloutSummary): WatchView {
  return {
    rollout: summary.rollout,
    counts: summary.counts,
    failures: summary.failures,
    toleratedFailures: summary.toleratedFailures,
    haltsOn: summary.haltsOn,
    waves: summary.waves.map(({ wave, phase, hostCount, counts }) => ({
      wave,
      phase,
      hostCount,
      counts: countBuckets(counts),
    })),
    // The summary names failures counted against the budget, whatever became of them since (a
    // failed host reverted stays counted): named here only while they are still failed.
    failedHosts: summary.failedHosts.filter((host) => hostBucket(host.state) === 'failed'),
    failingHosts: summary.failingHosts ?? [],
    analyses: summary.analyses ?? [],
    window: summary.window,
    warnings: summary.warnings ?? [],
  };
}

/**
 * Hosts that went wrong (failed, timed out, cancelled, revert failed) the view does not name, by
 * state: a summary names the first few failures counted against the budget.
 */
export function unnamedFailures(view: WatchView): [HostRunState, number][] {
  const named = new Map<HostRunState, number>();
  for (const host of view.failedHosts) named.set(host.state, (named.get(host.state) ?? 0) + 1);
  return (Object.entries(view.counts) as [HostRunState, number][])
    .filter(([state]) => hostBucket(state) === 'failed')
    .map(([state, n]): [HostRunState, number] => [state, n - (named.get(state) ?? 0)])
    .filter(([, n]) => n > 0);
}

const REVERTED_BY_HAND = 'succeeded, but some hosts were reverted since: they do not carry the change';

function revertedByHand(status: RolloutStatus): boolean {
  return status.rollout.state === 'succeeded' && status.waves.some((w) => w.hosts.some((h) => h.state === 'reverted'));
}
