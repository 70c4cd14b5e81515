import type { HostRunState, HostView, Patch, RolloutStatus, WaveStatus } from '@fleetpatch/shared';
import { formatAnalysis } from './render-status.js';
import { plural } from './render-table.js';
import { describeWindow } from './render-window.js';
import type { Style } from './terminal-style.js';
import { oneLine } from './terminal-text.js';
import { estimateRemainingMs, formatDuration, type WaveTimings } from './wave-timings.js';

/** How a person counts a host in a wave's bar. */
export type HostBucket = 'done' | 'failed' | 'inFlight' | 'pending';

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

export interface WaveCounts {
  done: number;
  failed: number;
  inFlight: number;
  pending: number;
}

export function countWave(wave: WaveStatus): WaveCounts {
  const counts: WaveCounts = { done: 0, failed: 0, inFlight: 0, pending: 0 };
  for (const host of wave.hosts) counts[hostBucket(host.state)]++;
  return counts;
}

export interface WatchFrame {
  status: RolloutStatus;
  /** The patch, for its title and ticket (undefined if it could not be read). */
  patch: Pick<Patch, 'title' | 'ticket'> | undefined;
  timings: WaveTimings;
  now: Date;
  /** Set while the coordinator cannot be reached: why, and since when. */
  lost?: { reason: string; since: Date } | undefined;
}

const BAR_WIDTH = 30;

/**
 * The terminal view of `rollout status --watch`, one frame (log-update redraws it in place):
 *
 *   rollout ro_1  running  "Fix the TLS config" (OPS-42)
 *   elapsed 3m 12s  ETA ~2m 40s  failures 1 of 2 tolerated (halts on the 3rd failure)
 *   wave 1  ██████████████████████████████  1 done                            passed
 *   wave 2  ██████████▓▓▓▓▒▒▒▒░░░░░░░░░░░░  2 done, 1 failed, 1 in flight, 4 pending  running
 *   bake of wave 2: 42s left
 *   failed  web-3 (wave 2) health_failed: http check "api" returned 500
 *
 * Every value from the server is shown escaped: each piece is written with oneLine before it is
 * painted (colour sequences are the CLI's own, never the server's). Wave numbers are 1-based.
 */
export function renderWatchFrame(frame: WatchFrame, style: Style): string {
  const { status, patch, timings, now, lost } = frame;
  const { rollout } = status;
  const stateColour = STATE_COLOURS[rollout.state] ?? 'cyan';
  // The patch by its title and ticket when it could be read (its id is in `rollout status`), else by id.
  const title = patch ? oneLine`"${patch.title}" (${patch.ticket})` : oneLine`patch ${rollout.patchId}`;
  const reason = rollout.stateReason ? oneLine` (${rollout.stateReason})` : '';
  const lines = [
    `${style.paint('bold', oneLine`rollout ${rollout.id}`)}  ${style.paint(stateColour, oneLine`${rollout.state}`)}${reason}  ${title}`,
    headerTimes(status, timings, now.getTime()),
  ];
  if (lost) {
    lines.push(
      style.paint(
        'yellow',
        oneLine`coordinator unreachable for ${formatDuration(now.getTime() - lost.since.getTime())} (${lost.reason}); reconnecting…`,
      ),
    );
  }
  const windowLine = describeWindow(status, now);
  if (windowLine) lines.push(windowLine);
  if (status.waves.length === 0) {
    lines.push(
      rollout.request.startAt && rollout.state === 'scheduled'
        ? startsIn(rollout.request.startAt, now)
        : 'hosts are chosen when the rollout starts',
    );
    return lines.join('\n');
  }
  const numberWidth = String(status.waves.length).length;
  const counts = status.waves.map(countWave);
  const countWidth = Math.max(...counts.map((c) => describeCounts(c).length));
  status.waves.forEach((wave, i) => {
    const c = counts[i] as WaveCounts;
    lines.push(
      `${oneLine`wave ${String(wave.wave + 1).padEnd(numberWidth)}`}  ${bar(c, wave.hosts.length, style)}  ${describeCounts(c).padEnd(countWidth)}  ${style.paint(PHASE_COLOURS[wave.phase] ?? 'cyan', oneLine`${wave.phase}`)}`,
    );
  });
  if (rollout.bakeUntil !== null && (rollout.state === 'running' || rollout.state === 'paused')) {
    const left = Math.max(0, Date.parse(rollout.bakeUntil) - now.getTime());
    lines.push(oneLine`bake of wave ${rollout.currentWave + 1}: ${formatDuration(left)} left`);
  }
  for (const run of status.analyses.filter((a) => a.wave === rollout.currentWave)) {
    lines.push(`  ${formatAnalysis(run)}`);
  }
  for (const wave of status.waves) {
    for (const host of wave.hosts) {
      const line = hostLine(host, wave.wave, style);
      if (line) lines.push(line);
    }
  }
  // The coordinator's own warnings when it sends them; an older coordinator's status is judged here.
  const revertedByHand =
    rollout.state === 'succeeded' && status.waves.some((w) => w.hosts.some((h) => h.state === 'reverted'));
  const warnings =
    status.warnings ??
    (revertedByHand ? ['succeeded, but some hosts were reverted since: they do not carry the change'] : []);
  for (const warning of warnings) lines.push(style.paint('yellow', oneLine`warning: ${warning}`));
  return lines.join('\n');
}

const STATE_COLOURS: Partial<Record<RolloutStatus['rollout']['state'], 'green' | 'red' | 'yellow' | 'cyan'>> = {
  succeeded: 'green',
  halted: 'red',
  aborted: 'red',
  revert_failed: 'red',
  paused: 'yellow',
  reverting: 'yellow',
  reverted: 'yellow',
};

/** A phase this CLI does not know (a newer coordinator's) is painted cyan rather than failing the frame. */
const PHASE_COLOURS: Partial<Record<WaveStatus['phase'], 'green' | 'red' | 'gray' | 'cyan'>> = {
  pending: 'gray',
  running: 'cyan',
  baking: 'cyan',
  passed: 'green',
  stopped: 'red',
  failed: 'red',
};

function headerTimes(status: RolloutStatus, timings: WaveTimings, now: number): string {
  const { rollout } = status;
  const parts: string[] = [];
  if (rollout.startedAt) {
    const end = rollout.finishedAt ? Date.parse(rollout.finishedAt) : now;
    parts.push(`elapsed ${formatDuration(end - Date.parse(rollout.startedAt))}`);
  }
  const eta = estimateRemainingMs(status, timings, now);
  if (eta !== undefined) parts.push(`ETA ~${formatDuration(eta)}`);
  else if (rollout.state === 'running') parts.push('ETA after the first wave');
  parts.push(oneLine`failures ${status.failures} of ${status.toleratedFailures} tolerated (${status.haltsOn})`);
  return parts.join('  ');
}

function startsIn(startAt: string, now: Date): string {
  return oneLine`starts in ${formatDuration(Date.parse(startAt) - now.getTime())} (at ${startAt})`;
}

export function describeCounts(c: WaveCounts): string {
  const parts = [
    `${c.done} done`,
    ...(c.failed > 0 ? [`${c.failed} failed`] : []),
    ...(c.inFlight > 0 ? [`${c.inFlight} in flight`] : []),
    ...(c.pending > 0 ? [`${c.pending} pending`] : []),
  ];
  return parts.join(', ');
}

/** Done █ (green), failed █ (red), in flight ▒ (yellow), pending ░: the glyphs tell them apart without colour. */
function bar(c: WaveCounts, total: number, style: Style): string {
  if (total === 0) return '░'.repeat(BAR_WIDTH);
  const cells = (n: number) => Math.round((n / total) * BAR_WIDTH);
  const done = cells(c.done);
  const failed = Math.min(BAR_WIDTH - done, Math.max(c.failed > 0 ? 1 : 0, cells(c.failed)));
  const inFlight = Math.min(BAR_WIDTH - done - failed, Math.max(c.inFlight > 0 ? 1 : 0, cells(c.inFlight)));
  const pending = BAR_WIDTH - done - failed - inFlight;
  return [
    style.paint('green', '█'.repeat(done)),
    style.paint('red', '▓'.repeat(failed)),
    style.paint('yellow', '▒'.repeat(inFlight)),
    style.paint('gray', '░'.repeat(pending)),
  ].join('');
}

/** A failed host with its reason, or an in-flight host whose latest health check fails (live health). */
function hostLine(host: HostView, wave: number, style: Style): string | undefined {
  const where = oneLine`${host.hostId} (wave ${wave + 1})`;
  const bucket = hostBucket(host.state);
  if (bucket === 'failed') {
    const why = [host.errorCode, host.reason].filter((p): p is string => Boolean(p)).join(': ') || 'no reason reported';
    return `${style.paint('red', oneLine`${host.state.padEnd(7)}`)} ${where} ${oneLine`${why}`}`;
  }
  // The live poll while verifying or baking; the order's final health results otherwise.
  const failing = (host.liveHealth?.checks ?? host.health ?? []).filter((check) => !check.ok);
  if (bucket === 'inFlight' && failing.length > 0) {
    const checks = failing.map((check) => oneLine`${check.check}: ${check.observed}`).join('; ');
    const polls =
      host.liveHealth && host.liveHealth.failingPolls > 1 ? ` (${host.liveHealth.failingPolls} polls in a row)` : '';
    return `${style.paint('yellow', 'failing')} ${oneLine`${where} ${host.state}, ${plural(failing.length, 'check')} failing${polls}: ${checks}`}`;
  }
  return undefined;
}
