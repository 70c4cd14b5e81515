import { describeChange, type PatchHistory, type PatchSummary } from '@fleetpatch/shared';
import { renderTable } from './render-table.js';
import { oneLine } from './terminal-text.js';

export function renderPatchList(patches: readonly PatchSummary[]): string {
  if (patches.length === 0) return 'no patches yet (fleetpatch patch create --file patch.json)';
  return renderTable(
    ['id', 'title', 'ticket', 'change', 'by', 'created'],
    patches.map((p) => [p.id, p.title, p.ticket, describeChange(p.change), p.createdBy, p.createdAt]),
  );
}

/**
 * The path of a patch's content through the environments, earliest first:
 *
 *   patch pat_1  content 3f2a…  promotion env: staging → prod
 *   env      rollout  patch  state      hosts  finished  reverted
 *   staging  ro_1     pat_1  succeeded  2      …         no
 *   prod     ro_2     pat_1  running    4      -         no (override)
 */
export function renderPatchHistory(history: PatchHistory): string {
  const order = history.order
    ? oneLine`promotion ${history.label}: ${history.order.join(' → ')}`
    : 'no promotion order';
  // The label and environments are the server's text: a newline in one must not forge a line.
  const head = oneLine`patch ${history.patchId}  content ${history.contentDigest.slice(0, 16)}  ${order}`;
  const rows = history.environments.flatMap(({ env, rollouts }) =>
    rollouts.map((r) => [
      env ?? `(no ${history.label})`,
      r.rolloutId,
      r.patchId,
      r.state,
      String(r.hostCount),
      r.finishedAt ?? '-',
      `${r.reverted ? 'yes' : 'no'}${r.overridden ? ' (override)' : ''}`,
    ]),
  );
  if (rows.length === 0) return `${head}\nno started rollout of this content yet`;
  return `${head}\n${renderTable(['env', 'rollout', 'patch', 'state', 'hosts', 'finished', 'reverted'], rows)}`;
}
