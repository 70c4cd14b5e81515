import type { PreflightResult, RolloutRecord } from '@fleetpatch/shared';
import { formatPackageMoves } from './render-package-moves.js';
import { renderTable } from './render-table.js';

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

/** Dry run: what each target host says it would do (a package change: the set it resolved to there). */
export function renderPreflight(preflight: PreflightResult): string {
  const summary = Object.entries(preflight.summary)
    .map(([outcome, n]) => `${n} ${outcome}`)
    .join(', ');
  const withPackages = preflight.results.some((r) => r.packages !== undefined);
  const table = renderTable(
    ['host', 'outcome', ...(withPackages ? ['packages'] : []), 'reason'],
    preflight.results.map((r) => [
      r.hostId,
      r.outcome,
      ...(withPackages ? [r.packages ? formatPackageMoves(r.packages) : '-'] : []),
      [r.errorCode, r.reason].filter((p): p is string => Boolean(p)).join(': ') || '-',
    ]),
  );
  return `preflight of rollout ${preflight.rolloutId}: ${summary || 'no hosts'}\n${table}`;
}
