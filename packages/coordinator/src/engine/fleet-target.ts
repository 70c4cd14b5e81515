import {
  assignWaves,
  type CanaryFitness,
  canaryOrder,
  ErrorCode,
  FleetError,
  type Target,
  type WaveStep,
} from '@fleetpatch/shared';
import { exposedHostIds } from '../inventory/compliance.js';
import type { AgentRecord } from '../store/agent-repository.js';
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
  /** The fleet as it was listed for this (removed agents left out): `canaryFitnessOf` reads it again. */
  agents: readonly AgentRecord[];
}

/**
 * Resolves `target` against the registered hosts and, for `exposedTo`, their stored inventories:
 * what `start` freezes and what an unstarted plan shows.
 */
export async function resolveFleetTarget(store: Store, target: Target): Promise<FleetTarget> {
  // A removed agent (DELETE /v1/agents/:id) is no longer part of the fleet: no target selects it.
  const candidates = (await store.agents.list()).filter((agent) => agent.removedAt === null);
  if (!target.exposedTo) return { hosts: resolveTarget(target, candidates), withoutInventory: [], agents: candidates };
  const { source, fixed } = target.exposedTo;
  const exposed = exposedHostIds(await store.inventory.binariesOfSource(source), fixed);
  const { exposedTo: _exposedTo, ...others } = target;
  const reported = new Set(
    (await store.inventory.hostStates())
      .filter((host) => host.inventory?.state === 'reported')
      .map((host) => host.hostId),
  );
  return {
    hosts: resolveTarget(target, candidates, exposed),
    withoutInventory: resolveTarget(others, candidates).filter((id) => !reported.has(id)),
    agents: candidates,
  };
}

/**
 * How fit each host of `agents` (the fleet as its target was resolved: one listing, which at 10,000
 * agents is ~43 ms on an idle machine) is to be a canary: online now, seen before, or never connected (see
 * `canaryOrder`).
 */
export function canaryFitnessOf(
  agents: readonly AgentRecord[],
  isOnline: (hostId: string) => boolean,
): (hostId: string) => CanaryFitness {
  const seenBefore = new Set(agents.filter((agent) => agent.lastSeenAt).map((agent) => agent.id));
  return (hostId) => {
    if (isOnline(hostId)) return 'online';
    return seenBefore.has(hostId) ? 'offline' : 'never_connected';
  };
}

/**
 * The hosts in wave order (online first, never-connected last) and the waves they make. Throws a
 * conflict when the first wave would still hold a host that never connected: there is no online
 * host to be the canary, and one that never connected would only hold the rollout for its delivery
 * deadline.
 */
export function planCanaryFirst(
  hosts: readonly string[],
  fitness: (hostId: string) => CanaryFitness,
  steps: readonly WaveStep[],
): string[][] {
  const waves = assignWaves(canaryOrder(hosts, fitness), steps);
  const neverConnected = (waves[0] ?? []).filter((hostId) => fitness(hostId) === 'never_connected');
  if (neverConnected.length > 0) {
    throw new FleetError(
      ErrorCode.conflict,
      `no host can be the canary: ${neverConnected.join(', ')} never connected, and a canary must be a host that has; ` +
        'start the agents (or take them out of the target) and start again',
      { neverConnected },
    );
  }
  return waves;
}
