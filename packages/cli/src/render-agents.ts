import type { AgentView } from '@fleetpatch/shared';
import { formatAge, formatLabels, renderTable } from './render-table.js';

export function renderAgents(agents: readonly AgentView[], now: Date = new Date()): string {
  if (agents.length === 0) return 'no agents registered (fleetpatch agent register <id>)';
  return renderTable(
    ['id', 'online', 'labels', 'os/arch', 'last seen'],
    agents.map((a) => [
      a.id,
      a.online ? 'yes' : 'no',
      formatLabels(a.labels),
      a.facts ? `${a.facts.os}/${a.facts.arch}` : '-',
      formatAge(a.lastSeenAt, now),
    ]),
  );
}
