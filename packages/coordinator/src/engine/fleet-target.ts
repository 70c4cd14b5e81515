import type { Target } from '@fleetpatch/shared';
import { exposedHostIds } from '../inventory/compliance.js';
import type { Store } from '../store/store.js';
import { resolveTarget } from './target-resolver.js';

/** The hosts a rollout's target selects in the fleet as it is now. */
export interface FleetTarget {
  hosts: string[];
  /**
   * With `exposedTo`: the hosts the other selectors pick that have no package inventory to judge by
   * (never reported, an agent too old, no dpkg). They are not selected: said, not hidden.
   */
  withoutInventory: string[];
}

/**
 * Resolves `target` against the registered hosts and, for `exposedTo`, their stored inventories:
 * what `start` freezes and what an unstarted plan shows.
 */
export function resolveFleetTarget(store: Store, target: Target): FleetTarget {
  const candidates = store.agents.list();
  if (!target.exposedTo) return { hosts: resolveTarget(target, candidates), withoutInventory: [] };
  const { source, fixed } = target.exposedTo;
  const exposed = exposedHostIds(store.inventory.binariesOfSource(source), fixed);
  const { exposedTo: _exposedTo, ...others } = target;
  const reported = new Set(
    store.inventory
      .hostStates()
      .filter((host) => host.inventory?.state === 'reported')
      .map((host) => host.hostId),
  );
  return {
    hosts: resolveTarget(target, candidates, exposed),
    withoutInventory: resolveTarget(others, candidates).filter((id) => !reported.has(id)),
  };
}
