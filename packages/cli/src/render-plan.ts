import { NOT_REVERTABLE_NOTE, type RolloutPlan } from '@fleetpatch/shared';
import { plural } from './render-table.js';
import { oneLine } from './terminal-text.js';

/**
 * rollout ro_1 plan (resolved from the fleet now): 3 hosts in 3 waves [1, 1, 1]; halts on the 1st failure
 *   wave 1  1 host   web-1
 *
 * Host ids and reasons are the server's text: each line is written with oneLine.
 */
export function renderPlan(plan: RolloutPlan): string {
  const basis = plan.frozen ? 'frozen at start' : 'resolved from the fleet now';
  const head =
    oneLine`rollout ${plan.rolloutId} plan (${basis}): ${plural(plan.hostCount, 'host')} in ` +
    oneLine`${plural(plan.waves.length, 'wave')} [${plan.waveSizes.join(', ')}]; ${plan.haltsOn}` +
    oneLine` (tolerates ${plural(plan.toleratedFailures, 'failure')})`;
  const judged = [
    ...(plan.exposedTo ? withoutInventoryLine(plan.exposedTo) : []),
    ...notRevertableLine(plan.revertable),
    ...(plan.incompatible ?? []).map((host) => oneLine`  ${host.hostId} is sent no order: ${host.reason}`),
  ];
  if (plan.waves.length === 0) return [head, '  no host matches the target', ...judged].join('\n');
  const sizeWidth = Math.max(...plan.waves.map((w) => plural(w.hosts.length, 'host').length));
  const lines = plan.waves.map(
    (w) =>
      oneLine`  wave ${String(w.wave + 1).padEnd(String(plan.waves.length).length)}  ` +
      oneLine`${plural(w.hosts.length, 'host').padEnd(sizeWidth)}  ${w.hosts.join(', ')}`,
  );
  return [head, ...lines, ...judged].join('\n');
}

/** The hosts an `exposedTo` target could not judge: said, since start leaves them out. */
function withoutInventoryLine(exposedTo: NonNullable<RolloutPlan['exposedTo']>): string[] {
  const { withoutInventory } = exposedTo;
  if (withoutInventory.length === 0) return [];
  const shown = withoutInventory.slice(0, 10).join(', ');
  const more = withoutInventory.length > 10 ? `, and ${withoutInventory.length - 10} more` : '';
  return [oneLine`  not judged (no package inventory), left out: ${shown}${more}`];
}

/** A patch that cannot be taken back is said before anyone starts it, not only in --json. */
export function notRevertableLine(revertable: boolean): string[] {
  return revertable ? [] : [`  NOT REVERTABLE: the patch is ${NOT_REVERTABLE_NOTE}`];
}
