import type { PreflightAnswer, PreflightOutcome, PreflightResult, RolloutRecord } from '@fleetpatch/shared';
import { ExitCode } from './cli-errors.js';
import { formatPackageMoves } from './render-package-moves.js';
import { notRevertableLine } from './render-plan.js';
import { renderTable } from './render-table.js';
import { oneLine } from './terminal-text.js';

export function renderRolloutList(rollouts: readonly RolloutRecord[]): string {
  if (rollouts.length === 0) return 'no rollouts yet (fleetpatch rollout create --patch <id> ...)';
  return renderTable(
    ['id', 'state', 'patch', 'hosts', 'by', 'created'],
    rollouts.map((r) => [
      r.id,
      r.state,
      r.patchId,
      r.hostCount > 0 ? String(r.hostCount) : '-',
      r.createdBy,
      r.createdAt,
    ]),
  );
}

/**
 * Dry run: what each target host says it would do (a package change: the set it resolved to there).
 * What a host observed is its agent's text: each line below the table is written with oneLine.
 */
export function renderPreflight(preflight: PreflightResult): string {
  const summary = Object.entries(preflight.summary)
    .map(([outcome, n]) => oneLine`${n} ${outcome}`)
    .join(', ');
  const withPackages = preflight.results.some((r) => r.packages !== undefined);
  const table = renderTable(
    ['host', 'outcome', ...(withPackages ? ['packages'] : []), 'reason'],
    preflight.results.map((r) => [
      r.hostId,
      r.outcome,
      ...(withPackages ? [r.packages ? formatPackageMoves(r.packages) : '-'] : []),
      [r.errorCode, tableReason(r)].filter((p): p is string => Boolean(p)).join(': ') || '-',
    ]),
  );
  const failing = preflight.results.flatMap((r) =>
    failingPreconditions(r).map((p) => oneLine`  ${r.hostId}  ${p.precondition}: ${p.observed}`),
  );
  const unhealthy = preflight.results.flatMap((r) =>
    failingChecks(r).map((c) => oneLine`  ${r.hostId}  ${c.check} (${c.kind}): ${c.observed}`),
  );
  return [
    oneLine`preflight of rollout ${preflight.rolloutId}: ${summary || 'no hosts'}`,
    ...notRevertableLine(preflight.revertable),
    table,
    ...(failing.length > 0 ? ['host preconditions not met:', ...failing] : []),
    ...(unhealthy.length > 0 ? ['health checks failing before the patch:', ...unhealthy] : []),
  ].join('\n');
}

/** The table's reason: what fails is listed below the table, so the table only counts it. */
function tableReason(r: PreflightAnswer): string | null {
  if (failingPreconditions(r).length > 0) return notMetSummary(r);
  const checks = failingChecks(r).length;
  if (checks > 0) return `unhealthy before the patch (${checks} of ${r.health?.length ?? 0} checks failing, below)`;
  return r.reason;
}

function failingChecks(r: PreflightAnswer): NonNullable<PreflightAnswer['health']> {
  return (r.health ?? []).filter((c) => !c.ok);
}

function failingPreconditions(r: PreflightAnswer): NonNullable<PreflightAnswer['preconditions']> {
  return (r.preconditions ?? []).filter((p) => !p.ok);
}

/** The table's word on a host whose preconditions fail; each one is listed below the table. */
function notMetSummary(r: PreflightAnswer): string {
  return `host preconditions not met (${failingPreconditions(r).length} of ${r.preconditions?.length ?? 0}, below)`;
}

/**
 * What a dry run clears a host for: it would change it, it is already there, or the change does not
 * concern it (a source change none of whose binaries it has: not a failure).
 */
const PREFLIGHT_CLEAR: ReadonlySet<PreflightOutcome> = new Set(['would_apply', 'already_applied', 'not_applicable']);
/** The host could not say: offline, or no answer before the coordinator stopped waiting. */
const PREFLIGHT_UNANSWERED: ReadonlySet<PreflightOutcome> = new Set(['offline', 'no_answer']);

/**
 * 0 when every host is clear, 3 when any host would fail or is blocked (or answered anything else
 * a dry run does not clear), 4 when none does but some did not answer — so a script can gate a
 * start on the dry run.
 */
export function preflightExitCode(preflight: PreflightResult): ExitCode {
  const outcomes = preflight.results.map((r) => r.outcome);
  if (outcomes.some((o) => !PREFLIGHT_CLEAR.has(o) && !PREFLIGHT_UNANSWERED.has(o))) return ExitCode.wouldNotApply;
  if (outcomes.some((o) => PREFLIGHT_UNANSWERED.has(o))) return ExitCode.unanswered;
  return ExitCode.ok;
}
