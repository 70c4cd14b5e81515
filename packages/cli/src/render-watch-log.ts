import type { HostView, Patch, RolloutStatus } from '@fleetpatch/shared';
import { oneLine } from './terminal-text.js';

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
 * Wave numbers are 1-based; every line is written with oneLine, so a value from the server (a
 * reason, a state, an id) is shown escaped and cannot start a line the caller would timestamp.
 */
export function describeWatchChanges(
  previous: RolloutStatus | undefined,
  next: RolloutStatus,
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
    const oldHosts = new Map((old?.hosts ?? []).map((h) => [h.hostId, h]));
    for (const host of wave.hosts) {
      const was = oldHosts.get(host.hostId);
      if (was && was.state === host.state) continue;
      lines.push(oneLine`${label} ${host.hostId} ${was ? oneLine`${was.state} → ` : ''}${host.state}${why(host)}`);
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
function shapeOf(status: RolloutStatus): string {
  if (status.waves.length === 0) {
    return oneLine`waves ${JSON.stringify(status.rollout.request.waves)} planned when it starts`;
  }
  const hosts = status.waves.reduce((n, w) => n + w.hosts.length, 0);
  return oneLine`${status.waves.length} waves, ${hosts} hosts`;
}

function why(host: HostView): string {
  const parts = [host.errorCode, host.reason].filter((p): p is string => Boolean(p));
  return parts.length > 0 ? oneLine`: ${parts.join(': ')}` : '';
}
