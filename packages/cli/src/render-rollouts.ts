import type { PreflightResult, RolloutRecord } from '@fleetpatch/shared';
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

/** Dry run: what each target host says it would do. */
export function renderPreflight(preflight: PreflightResult): string {
  const summary = Object.entries(preflight.summary)
    .map(([outcome, n]) => `${n} ${outcome}`)
    .join(', ');
  const table = renderTable(
    ['host', 'outcome', 'reason'],
    preflight.results.map((r) => [
      r.hostId,
      r.outcome,
      [r.errorCode, r.reason].filter((p): p is string => Boolean(p)).join(': ') || '-',
    ]),
  );
  return `preflight of rollout ${preflight.rolloutId}: ${summary || 'no hosts'}\n${table}`;
}
