import type { Patch, RolloutState, WavePhase } from '@fleetpatch/shared';
import { formatAnalysis } from './render-status.js';
import { plural } from './render-table.js';
import { describeWindow } from './render-window.js';
import type { Style } from './terminal-style.js';
import { oneLine } from './terminal-text.js';
import { type FailingHostLine, unnamedFailures, type WatchView, type WaveCounts } from './watch-view.js';
import { estimateRemainingMs, formatDuration, type WaveTimings } from './wave-timings.js';

export interface WatchFrame {
  view: WatchView;
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
  const { view, patch, timings, now, lost } = frame;
  const { rollout } = view;
  const stateColour = STATE_COLOURS[rollout.state] ?? 'cyan';
  // The patch by its title and ticket when it could be read (its id is in `rollout status`), else by id.
  const title = patch ? oneLine`"${patch.title}" (${patch.ticket})` : oneLine`patch ${rollout.patchId}`;
  const reason = rollout.stateReason ? oneLine` (${rollout.stateReason})` : '';
  const lines = [
    `${style.paint('bold', oneLine`rollout ${rollout.id}`)}  ${style.paint(stateColour, oneLine`${rollout.state}`)}${reason}  ${title}`,
    headerTimes(view, timings, now.getTime()),
  ];
  if (lost) {
    lines.push(
      style.paint(
        'yellow',
        oneLine`coordinator unreachable for ${formatDuration(now.getTime() - lost.since.getTime())} (${lost.reason}); reconnecting…`,
      ),
    );
  }
  const windowLine = describeWindow(view, now);
  if (windowLine) lines.push(windowLine);
  if (view.waves.length === 0) {
    lines.push(
      rollout.request.startAt && rollout.state === 'scheduled'
        ? startsIn(rollout.request.startAt, now)
        : 'hosts are chosen when the rollout starts',
    );
    return lines.join('\n');
  }
  const numberWidth = String(view.waves.length).length;
  const countWidth = Math.max(...view.waves.map((w) => describeCounts(w.counts).length));
  for (const wave of view.waves) {
    lines.push(
      `${oneLine`wave ${String(wave.wave + 1).padEnd(numberWidth)}`}  ${bar(wave.counts, wave.hostCount, style)}  ${describeCounts(wave.counts).padEnd(countWidth)}  ${style.paint(PHASE_COLOURS[wave.phase] ?? 'cyan', oneLine`${wave.phase}`)}`,
    );
  }
  if (rollout.bakeUntil !== null && (rollout.state === 'running' || rollout.state === 'paused')) {
    const left = Math.max(0, Date.parse(rollout.bakeUntil) - now.getTime());
    lines.push(oneLine`bake of wave ${rollout.currentWave + 1}: ${formatDuration(left)} left`);
  }
  for (const run of view.analyses.filter((a) => a.wave === rollout.currentWave)) {
    lines.push(`  ${formatAnalysis(run)}`);
  }
  for (const host of view.failedHosts) {
    const why = [host.errorCode, host.reason].filter((p): p is string => Boolean(p)).join(': ') || 'no reason reported';
    lines.push(
      `${style.paint('red', oneLine`${host.state.padEnd(7)}`)} ${oneLine`${host.hostId} (wave ${host.wave + 1}) ${why}`}`,
    );
  }
  const unnamed = unnamedFailures(view);
  if (unnamed.length > 0) {
    const total = unnamed.reduce((n, [, count]) => n + count, 0);
    const which = unnamed.map(([state, count]) => `${count} ${state}`).join(', ');
    lines.push(
      style.paint('red', oneLine`… and ${total} more: ${which} (fleetpatch rollout hosts ${rollout.id} --state …)`),
    );
  }
  for (const host of view.failingHosts) lines.push(failingLine(host, style));
  for (const warning of view.warnings) lines.push(style.paint('yellow', oneLine`warning: ${warning}`));
  return lines.join('\n');
}

const STATE_COLOURS: Partial<Record<RolloutState, 'green' | 'red' | 'yellow' | 'cyan'>> = {
  succeeded: 'green',
  halted: 'red',
  aborted: 'red',
  revert_failed: 'red',
  paused: 'yellow',
  reverting: 'yellow',
  reverted: 'yellow',
};

/** A phase this CLI does not know (a newer coordinator's) is painted cyan rather than failing the frame. */
const PHASE_COLOURS: Partial<Record<WavePhase, 'green' | 'red' | 'gray' | 'cyan'>> = {
  pending: 'gray',
  running: 'cyan',
  baking: 'cyan',
  passed: 'green',
  stopped: 'red',
  failed: 'red',
};

function headerTimes(view: WatchView, timings: WaveTimings, now: number): string {
  const { rollout } = view;
  const parts: string[] = [];
  if (rollout.startedAt) {
    const end = rollout.finishedAt ? Date.parse(rollout.finishedAt) : now;
    parts.push(`elapsed ${formatDuration(end - Date.parse(rollout.startedAt))}`);
  }
  const eta = estimateRemainingMs(view, timings, now);
  if (eta !== undefined) parts.push(`ETA ~${formatDuration(eta)}`);
  else if (rollout.state === 'running') parts.push('ETA after the first wave');
  parts.push(oneLine`failures ${view.failures} of ${view.toleratedFailures} tolerated (${view.haltsOn})`);
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

/** An in-flight host whose latest health poll fails: which checks, what they saw, for how many polls. */
function failingLine(host: FailingHostLine, style: Style): string {
  const where = oneLine`${host.hostId} (wave ${host.wave + 1})`;
  const more = host.moreChecks ?? 0;
  const checks = [
    ...host.checks.map((check) => oneLine`${check.check}: ${check.observed}`),
    ...(more > 0 ? [`${more} more`] : []),
  ].join('; ');
  const polls = host.failingPolls > 1 ? ` (${host.failingPolls} polls in a row)` : '';
  return `${style.paint('yellow', 'failing')} ${oneLine`${where} ${host.state}, ${plural(host.checks.length + more, 'check')} failing${polls}: ${checks}`}`;
}
