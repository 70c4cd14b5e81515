import type { AgentDetail, AgentView } from '@fleetpatch/shared';
import { formatPackageMoves } from './render-package-moves.js';
import { formatAge, formatLabels, renderTable } from './render-table.js';
import { oneLine } from './terminal-text.js';

export function renderAgents(agents: readonly AgentView[], now: Date = new Date()): string {
  if (agents.length === 0) return 'no agents enrolled (fleetpatch join-token create, then start an agent with it)';
  return renderTable(
    ['id', 'online', 'labels', 'reported', 'os/arch', 'last seen'],
    agents.map((a) => [
      a.id,
      a.revokedAt ? 'revoked' : a.online ? 'yes' : 'no',
      formatLabels(a.labels),
      formatLabels(reportedBeyondAdmin(a)),
      a.facts ? `${a.facts.os}/${a.facts.arch}` : '-',
      formatAge(a.lastSeenAt, now),
    ]),
  );
}

/**
 * What the agent reports that its admin labels do not already say (extra keys, or other values):
 * the part of its word that needs a second look. `agent show` lists all of it.
 */
function reportedBeyondAdmin(agent: AgentView): Record<string, string> {
  return Object.fromEntries(Object.entries(agent.reportedLabels).filter(([k, v]) => agent.labels[k] !== v));
}

/** One host: its facts and labels, then its part in recent rollouts, newest first. */
export function renderAgentDetail(detail: AgentDetail, now: Date = new Date()): string {
  const { agent, hostRuns } = detail;
  // Facts, version and reported labels are the host's own words: a newline in them must not forge a line.
  const facts = agent.facts
    ? oneLine`${agent.facts.hostname} ${agent.facts.distro} ${agent.facts.release} ${agent.facts.arch}, kernel ${agent.facts.kernel}, ${agent.facts.cpus} cpus`
    : 'no facts reported yet';
  const state = agent.revokedAt ? oneLine`revoked ${agent.revokedAt}` : agent.online ? 'online' : 'offline';
  const head = [
    oneLine`${agent.id}  ${state}  last seen ${formatAge(agent.lastSeenAt, now)}  agent ${agent.agentVersion ?? '-'}`,
    oneLine`labels    ${formatLabels(agent.labels)}`,
    oneLine`reported  ${formatLabels(agent.reportedLabels)}${Object.keys(agent.reportedLabels).length > 0 ? "  (the host's word: targets match it only by reportedLabels)" : ''}`,
    `facts     ${facts}`,
  ].join('\n');
  if (hostRuns.length === 0) return `${head}\n\nno rollouts yet`;
  const withPackages = hostRuns.some((r) => r.packages !== undefined);
  const runs = renderTable(
    ['rollout', 'wave', 'state', 'changed', ...(withPackages ? ['packages'] : []), 'why'],
    hostRuns.map((r) => [
      r.rolloutId,
      String(r.wave + 1),
      r.state,
      r.changed === 'unknown' ? 'unknown (no answer yet)' : r.changed ? 'yes' : 'no',
      ...(withPackages ? [r.packages ? formatPackageMoves(r.packages) : ''] : []),
      r.reason ?? r.errorCode ?? '',
    ]),
  );
  return `${head}\n\n${runs}`;
}
