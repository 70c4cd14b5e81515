import type { HostView, RolloutStatus } from '@fleetpatch/shared';
import { renderSigning } from './render-statement.js';
import { plural } from './render-table.js';

const FAILED_HOST_STATES: ReadonlySet<string> = new Set(['failed', 'timed_out', 'revert_failed', 'cancelled']);

/**
 * The compact view ops staff watch:
 *
 *   rollout ro_1  running  patch pat_1  by alice  approved by bob
 *   failures 0 (tolerates 0; halts on the 1st failure)
 *   signed    statement 5e3c0a9d1f2b4c6e by alice (key …) as author, bob (key …) as approver; valid until …
 *   wave 1  passed   web-1:healthy
 *   wave 2  running  web-2:applying web-3:failed
 *     web-3 failed: health_failed: http check "api" returned 500
 */
export function renderStatus(status: RolloutStatus, now: Date = new Date()): string {
  const { rollout } = status;
  const approvals =
    status.approvals.length > 0
      ? `approved by ${status.approvals.map((a) => a.approver).join(', ')}`
      : rollout.request.requiredApprovals > 0
        ? `needs ${plural(rollout.request.requiredApprovals, 'approval')}`
        : 'no approval needed';
  const state = rollout.stateReason ? `${rollout.state} (${rollout.stateReason})` : rollout.state;
  const lines = [
    `rollout ${rollout.id}  ${state}  patch ${rollout.patchId}  by ${rollout.createdBy}  ${approvals}`,
    `failures ${status.failures} (tolerates ${status.toleratedFailures}; ${status.haltsOn})`,
    ...(status.signing ? renderSigning(status.signing, now) : []),
  ];
  if (status.compliance) {
    const { source, fixed } = status.compliance;
    lines.push(
      `targets hosts exposed to ${source} < ${fixed}; see \`fleetpatch compliance --source ${source} --fixed ${fixed}\``,
    );
  }
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
    const hosts = wave.hosts.map(formatHost).join(' ');
    lines.push(
      `wave ${String(wave.wave + 1).padEnd(numberWidth)}  ${wave.phase.padEnd(phaseWidth)}  ${hosts}${bake}`.trimEnd(),
    );
    for (const host of wave.hosts) {
      const why = hostProblem(host);
      if (why) lines.push(`  ${host.hostId} ${host.state}: ${why}`);
    }
  }
  return lines.join('\n');
}

function formatHost(host: HostView): string {
  return `${host.hostId}:${host.state}${host.online ? '' : '(offline)'}`;
}

/** Why a host went wrong, for failed hosts and for any host carrying a reason (e.g. skipped). */
function hostProblem(host: HostView): string | undefined {
  if (!FAILED_HOST_STATES.has(host.state) && host.state !== 'skipped') return undefined;
  const parts = [host.errorCode, host.reason].filter((p): p is string => Boolean(p));
  if (parts.length === 0) return FAILED_HOST_STATES.has(host.state) ? 'no reason reported' : undefined;
  return parts.join(': ');
}
