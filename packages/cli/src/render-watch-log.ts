import type { FailedHost, HostView, Patch } from '@fleetpatch/shared';
import { describeCounts } from './render-watch.js';
import { oneLine } from './terminal-text.js';
import type { WatchView } from './watch-view.js';

/**
 * `rollout status --watch` off a terminal (CI logs, a pipe): what changed, one plain line each,
 * for the caller to timestamp. The first status is described whole; then only transitions:
 *
 *   rollout ro_1 running: "Fix the TLS config" (OPS-42), 3 waves, 12 hosts, failures 0 of 2 tolerated
 *   wave 1 pending → running
 *   wave 1 web-1 queued → applying
 *   wave 1 web-1 applying → failed: health_failed: http check "api" returned 500
 *   rollout running → halted (failure budget exceeded)
 *
 * A large rollout (watched through its summary: no host list) gets its waves' counts when they move,
 * and each failed host the summary names, once:
 *
 *   wave 3: 812 done, 1 failed, 200 in flight, 1487 pending
 *   wave 3 web-0042 failed: health_failed: http check "api" returned 500
 *
 * Wave numbers are 1-based; every line is written with oneLine, so a value from the server (a
 * reason, a state, an id) is shown escaped and cannot start a line the caller would timestamp.
 */
export function describeWatchChanges(
  previous: WatchView | undefined,
  next: WatchView,
  patch: Pick<Patch, 'title' | 'ticket'> | undefined,
): string[] {
  const { rollout } = next;
  const reason = rollout.stateReason ? oneLine` (${rollout.stateReason})` : '';
  if (!previous) {
    const title = patch ? oneLine` "${patch.title}" (${patch.ticket}),` : '';
    return [
      oneLine`rollout ${rollout.id} ${rollout.state}${reason}:${title} ${shapeOf(next)}, failures ${next.failures} of ${next.toleratedFailures} tolerated`,
    ];
  }
  const lines: string[] = [];
  const before = new Map(previous.waves.map((w) => [w.wave, w]));
  for (const wave of next.waves) {
    const old = before.get(wave.wave);
    const label = oneLine`wave ${wave.wave + 1}`;
    const bake = wave.phase === 'baking' ? oneLine` (bake ${rollout.request.bakeSeconds}s)` : '';
    if (old && old.phase !== wave.phase) lines.push(oneLine`${label} ${old.phase} → ${wave.phase}${bake}`);
    // A wave first seen already under way (the waves are planned at the start, and the watch may
    // first see them a moment later): its phase, with nothing before it.
    if (!old && wave.phase !== 'pending') lines.push(oneLine`${label} ${wave.phase}${bake}`);
    if (wave.hosts) {
      // Every host is known (a small rollout): each one's move.
      const oldHosts = new Map((old?.hosts ?? []).map((h) => [h.hostId, h]));
      for (const host of wave.hosts) {
        const was = oldHosts.get(host.hostId);
        if (was && was.state === host.state) continue;
        lines.push(oneLine`${label} ${host.hostId} ${was ? oneLine`${was.state} → ` : ''}${host.state}${why(host)}`);
      }
    } else if (!old || describeCounts(old.counts) !== describeCounts(wave.counts)) {
      // A large rollout is followed by its counts: the wave's, when they moved.
      lines.push(oneLine`${label}: ${describeCounts(wave.counts)}`);
    }
  }
  // The failed hosts a summary names, each once, as it first appears (a full status's are above).
  if (!next.waves.some((w) => w.hosts)) {
    const named = new Set(previous.failedHosts.map((h) => h.hostId));
    for (const host of next.failedHosts) {
      if (!named.has(host.hostId)) lines.push(oneLine`wave ${host.wave + 1} ${host.hostId} ${host.state}${why(host)}`);
    }
  }
  if (previous.failures !== next.failures) {
    lines.push(oneLine`failures ${next.failures} of ${next.toleratedFailures} tolerated`);
  }
  if (previous.rollout.state !== rollout.state)
    lines.push(oneLine`rollout ${previous.rollout.state} → ${rollout.state}${reason}`);
  return lines;
}

/**
 * Its waves and hosts; before it starts there are none yet (the target is resolved and the waves
 * planned at the start), so what it asked for instead of "0 waves, 0 hosts".
 */
function shapeOf(view: WatchView): string {
  if (view.waves.length === 0) {
    return oneLine`waves ${JSON.stringify(view.rollout.request.waves)} planned when it starts`;
  }
  const hosts = view.waves.reduce((n, w) => n + w.hostCount, 0);
  return oneLine`${view.waves.length} waves, ${hosts} hosts`;
}

function why(host: Pick<HostView | FailedHost, 'errorCode' | 'reason'>): string {
  const parts = [host.errorCode, host.reason].filter((p): p is string => Boolean(p));
  return parts.length > 0 ? oneLine`: ${parts.join(': ')}` : '';
}
