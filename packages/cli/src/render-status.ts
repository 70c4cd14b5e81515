import {
  type AnalysisRunView,
  HOST_RUN_STATES,
  type HostView,
  type MeasurementView,
  type PromotionDecision,
  type RehearsalReport,
  type RolloutStatus,
} from '@fleetpatch/shared';
import { packageSetLines } from './render-package-moves.js';
import { renderSigning } from './render-statement.js';
import { plural } from './render-table.js';
import { describeWindow } from './render-window.js';
import { oneLine } from './terminal-text.js';

const FAILED_HOST_STATES: ReadonlySet<string> = new Set(['failed', 'timed_out', 'revert_failed', 'cancelled']);

/**
 * A wave of more hosts than this is shown by its hosts counted per state, not host by host: a wave of
 * 5,000 hosts was one line of ~100 KB. `rollout hosts` pages through them, by wave and state.
 */
export const WAVE_HOSTS_LISTED = 20;
/** At most this many lines about single hosts per wave (why one failed, what followed its change); the rest are counted. */
export const HOST_LINES_PER_WAVE = 10;

/**
 * The compact view ops staff watch:
 *
 *   rollout ro_1  running  patch pat_1  by alice  approved by bob
 *   failures 0 (tolerates 0; halts on the 1st failure)
 *   signed    statement 5e3c0a9d1f2b4c6e by alice (key …) as author, bob (key …) as approver; valid until …
 *   wave 1  passed   web-1:healthy
 *   wave 2  running  web-2:applying web-3:failed web-4:not_applicable
 *     web-3 failed: health_failed: http check "api" returned 500
 *     analysis error-rate  failed  1/3 taken, 1 failed (limit 0)  last 0.31 (threshold 0.01, < 0.01): fail
 *     web-4 not_applicable: no binary package of source openssl is installed on this host
 *     packages libssl3 3.0.14-1 → 3.0.15-1, openssl 3.0.14-1 → 3.0.15-1: web-1, web-2
 *
 * A wave of more than WAVE_HOSTS_LISTED hosts is counted by state instead (`wave 3  running  120
 * applying, 4812 healthy, 8 failed`), and at most HOST_LINES_PER_WAVE lines about its hosts follow
 * (why hosts went wrong first),
 * unless `everyHost` (the record at the end of a watch: where every host ended, and why).
 *
 * Each line is written with oneLine: a reason, an observation, a unit, even a state or an id is the
 * server's (often an agent's) text, and a newline in it must not forge a line — `--watch` off a
 * terminal timestamps every line of this view.
 */
export function renderStatus(
  status: RolloutStatus,
  now: Date = new Date(),
  options: { everyHost?: boolean } = {},
): string {
  const { rollout } = status;
  const approvals =
    status.approvals.length > 0
      ? oneLine`approved by ${status.approvals.map((a) => a.approver).join(', ')}`
      : rollout.request.requiredApprovals > 0
        ? oneLine`needs ${plural(rollout.request.requiredApprovals, 'approval')}`
        : 'no approval needed';
  const state = rollout.stateReason ? oneLine`${rollout.state} (${rollout.stateReason})` : rollout.state;
  const lines = [
    oneLine`rollout ${rollout.id}  ${state}  patch ${rollout.patchId}  by ${rollout.createdBy}  ${approvals}`,
    oneLine`failures ${status.failures} (tolerates ${status.toleratedFailures}; ${status.haltsOn})`,
    ...(status.signing ? renderSigning(status.signing, now) : []),
  ];
  if (status.compliance) {
    const { source, fixed } = status.compliance;
    lines.push(
      oneLine`targets hosts exposed to ${source} < ${fixed}; see \`fleetpatch compliance --source ${source} --fixed ${fixed}\``,
    );
  }
  if (status.promotion) lines.push(...promotionLines(status.promotion));
  const window = describeWindow(status, now);
  if (window) lines.push(window);
  if (status.waves.length === 0) {
    lines.push('  hosts are chosen when the rollout starts (see `fleetpatch rollout plan`)');
    return lines.join('\n');
  }
  // Fixed width (the longest phase name) so that redrawn frames do not shift sideways.
  const phaseWidth = 'pending'.length;
  const numberWidth = String(status.waves.length).length;
  for (const wave of status.waves) {
    const bake =
      wave.phase === 'baking' && rollout.bakeUntil
        ? ` (${Math.max(0, Math.ceil((Date.parse(rollout.bakeUntil) - now.getTime()) / 1000))}s left)`
        : '';
    const everyHost = options.everyHost === true || wave.hosts.length <= WAVE_HOSTS_LISTED;
    const hosts = everyHost ? wave.hosts.map(formatHost).join(' ') : countStates(wave.hosts);
    lines.push(
      oneLine`wave ${String(wave.wave + 1).padEnd(numberWidth)}  ${wave.phase.padEnd(phaseWidth)}  ${hosts}${bake}`.trimEnd(),
    );
    // Why hosts went wrong first: a cap must never trade a failure for a report of restarted units.
    const problems: string[] = [];
    const reports: string[] = [];
    for (const host of wave.hosts) {
      const why = hostProblem(host);
      if (why) problems.push(oneLine`  ${host.hostId} ${host.state}: ${why}`);
      if (host.rehearsal) reports.push(oneLine`  ${host.hostId} ${formatRehearsal(host.rehearsal)}`);
      const after = afterChangeLine(host);
      if (after) reports.push(oneLine`  ${host.hostId} ${after}`);
    }
    const hostLines = [...problems, ...reports];
    const shown = options.everyHost === true ? hostLines.length : HOST_LINES_PER_WAVE;
    lines.push(...hostLines.slice(0, shown));
    if (hostLines.length > shown) {
      lines.push(
        oneLine`  … and ${hostLines.length - shown} more lines about hosts of wave ${wave.wave + 1} (each host's state and reason: fleetpatch rollout hosts ${rollout.id} --wave ${wave.wave + 1}; all of it: rollout status --json)`,
      );
    }
    for (const run of status.analyses.filter((a) => a.wave === wave.wave)) lines.push(`  ${formatAnalysis(run)}`);
  }
  // A package change: what each host resolved it to (hosts that moved alike share a line).
  lines.push(...packageSetLines(status.waves.flatMap((wave) => wave.hosts)));
  return lines.join('\n');
}

/**
 * What start decided under the promotion order:
 *   promotion env: prod 2 hosts; prod needs staging: passed by ro_1 (finished …)
 *   promotion OVERRIDDEN by admin at …: "hotfix for the outage, staging is down"
 */
export function promotionLines(promotion: PromotionDecision): string[] {
  const reached = promotion.environments.map((e) => oneLine`${e.env} ${plural(e.hosts, 'host')}`);
  if (promotion.unlabeled > 0) {
    reached.push(
      oneLine`${plural(promotion.unlabeled, 'host')} without ${promotion.label} (held as ${promotion.order.at(-1)})`,
    );
  }
  const needs = promotion.requirements.map((r) =>
    r.passedBy
      ? oneLine`${r.env} needs ${r.needs}: passed by ${r.passedBy.rolloutId} (finished ${r.passedBy.finishedAt})`
      : oneLine`${r.env} needs ${r.needs}: NOT passed (${r.missing})`,
  );
  const lines = [
    oneLine`promotion ${promotion.label}: ${reached.join(', ')}${needs.length > 0 ? `; ${needs.join('; ')}` : ''}`,
  ];
  if (promotion.override) {
    const { by, at, reason } = promotion.override;
    lines.push(oneLine`promotion OVERRIDDEN by ${by} at ${at}: "${reason}"`);
  }
  return lines;
}

/** `rehearsed revert: passed (restored exactly, healthy again)` or what differed. */
export function formatRehearsal(rehearsal: RehearsalReport): string {
  if (rehearsal.ok) return 'rehearsed revert: passed (restored exactly, healthy again, applied again)';
  const why = [
    ...rehearsal.differences,
    ...(rehearsal.healthyAfterRevert === false ? ['unhealthy after the revert'] : []),
    ...(rehearsal.differences.length === 0 && rehearsal.reason ? [rehearsal.reason] : []),
  ];
  return oneLine`rehearsed revert: FAILED (${why.join('; ') || 'no reason given'})`;
}

/** One analysis of a wave: its counters and its latest measurement (value, threshold, verdict). */
export function formatAnalysis(run: AnalysisRunView): string {
  const counters = [
    oneLine`${run.taken}/${run.count} taken`,
    ...(run.failed > 0 ? [oneLine`${run.failed} failed (limit ${run.failureLimit})`] : []),
    ...(run.inconclusive > 0 ? [oneLine`${run.inconclusive} inconclusive`] : []),
  ].join(', ');
  const last = run.measurements.at(-1);
  const retry = run.attempt > 1 ? oneLine` (attempt ${run.attempt})` : '';
  return oneLine`analysis ${run.name}${retry}  ${run.verdict}  ${counters}${last ? `  last ${formatMeasurement(last, run.condition)}` : ''}`;
}

export function formatMeasurement(m: MeasurementView, condition: string): string {
  const number = (n: number | null) => (n === null ? '-' : String(Number(n.toPrecision(6))));
  const seen =
    m.value === null && m.threshold === null
      ? ''
      : oneLine`${number(m.value)} (threshold ${number(m.threshold)}, ${condition}): `;
  return oneLine`${seen}${m.verdict}${m.reason && m.verdict !== 'fail' ? oneLine` (${m.reason})` : ''}`;
}

/**
 * "120 applying (3 offline), 4812 healthy, 8 failed": a wave's hosts by state, in the states' order;
 * a state this CLI does not know (a newer coordinator's) after them, so that the counts add up.
 */
function countStates(hosts: readonly HostView[]): string {
  const counts = new Map<string, { hosts: number; offline: number }>();
  for (const host of hosts) {
    const count = counts.get(host.state) ?? { hosts: 0, offline: 0 };
    count.hosts++;
    if (!host.online) count.offline++;
    counts.set(host.state, count);
  }
  const known: readonly string[] = HOST_RUN_STATES;
  const states = [...known, ...[...counts.keys()].filter((state) => !known.includes(state))];
  return states
    .flatMap((state) => {
      const count = counts.get(state);
      if (!count) return [];
      return [`${count.hosts} ${state}${count.offline > 0 ? ` (${count.offline} offline)` : ''}`];
    })
    .join(', ');
}

function formatHost(host: HostView): string {
  return oneLine`${host.hostId}:${host.state}${host.online ? '' : '(offline)'}`;
}

/** Why a host went wrong, for failed hosts and for any host carrying a reason (e.g. skipped). */
function hostProblem(host: HostView): string | undefined {
  if (!FAILED_HOST_STATES.has(host.state) && host.state !== 'skipped' && host.state !== 'not_applicable')
    return undefined;
  const parts = [host.errorCode, host.reason].filter((p): p is string => Boolean(p));
  const unknown = host.changed === 'unknown' ? [POSSIBLY_CHANGED] : [];
  if (parts.length === 0 && unknown.length === 0)
    return FAILED_HOST_STATES.has(host.state) ? 'no reason reported' : undefined;
  return [parts.join(': '), ...unknown].filter(Boolean).join('; ');
}

/** A timed-out host that has not answered may be stopped halfway: never shown as unchanged. */
const POSSIBLY_CHANGED = 'changed: unknown (no answer since; it may be half-changed until its agent reports)';

/**
 * What followed the change on a host, when anything did: "restarted app.service; still on old
 * libraries: cron.service (2 processes); reboot required (by this patch)". Undefined when nothing.
 */
export function afterChangeLine(host: Pick<HostView, 'afterChange'>): string | undefined {
  const report = host.afterChange;
  if (!report) return undefined;
  const parts: string[] = [];
  const restarted = report.restarts
    .filter((r) => r.ok)
    .map((r) => oneLine`${r.unit}${r.when === 'revert' ? ' (revert)' : ''}`);
  if (restarted.length > 0) parts.push(oneLine`restarted ${restarted.join(', ')}`);
  for (const failed of report.restarts.filter((r) => !r.ok))
    parts.push(oneLine`restart of ${failed.unit} FAILED: ${failed.detail}`);
  const processes = report.staleProcesses.length + report.moreStaleProcesses;
  if (report.staleUnits.length > 0 || processes > 0) {
    const units = report.staleUnits.length > 0 ? report.staleUnits.join(', ') : 'no service';
    parts.push(oneLine`still on old libraries: ${units} (${processes} process${processes === 1 ? '' : 'es'})`);
  }
  if (report.reboot.required)
    parts.push(`reboot required${report.reboot.causedByThisChange ? ' (by this patch)' : ''}`);
  return parts.length > 0 ? parts.join('; ') : undefined;
}
