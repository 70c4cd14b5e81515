import type { RolloutPlan } from '@fleetpatch/shared';
import { plural } from './render-table.js';

/**
 * rollout ro_1 plan (resolved from the fleet now): 3 hosts in 3 waves [1, 1, 1]; halts on the 1st failure
 *   wave 1  1 host   web-1
 */
export function renderPlan(plan: RolloutPlan): string {
  const basis = plan.frozen ? 'frozen at start' : 'resolved from the fleet now';
  const head =
    `rollout ${plan.rolloutId} plan (${basis}): ${plural(plan.hostCount, 'host')} in ` +
    `${plural(plan.waves.length, 'wave')} [${plan.waveSizes.join(', ')}]; ${plan.haltsOn}` +
    ` (tolerates ${plural(plan.toleratedFailures, 'failure')})`;
  if (plan.waves.length === 0) return `${head}\n  no host matches the target`;
  const sizeWidth = Math.max(...plan.waves.map((w) => plural(w.hosts.length, 'host').length));
  const lines = plan.waves.map(
    (w) =>
      `  wave ${String(w.wave + 1).padEnd(String(plan.waves.length).length)}  ` +
      `${plural(w.hosts.length, 'host').padEnd(sizeWidth)}  ${w.hosts.join(', ')}`,
  );
  return [head, ...lines].join('\n');
}
