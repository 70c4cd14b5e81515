import type { Facts, Target } from '@fleetpatch/shared';

export interface TargetCandidate {
  id: string;
  labels: Record<string, string>;
  facts: Facts | null;
}

/**
 * The hosts a target selects, sorted by id so the same fleet always gives the same waves.
 * Labels are all-of, excludeLabels any-of, facts all-of; a host that never reported facts matches
 * no fact selector (it cannot prove it is the right OS).
 */
export function resolveTarget(target: Target, candidates: readonly TargetCandidate[]): string[] {
  const wanted = target.hostIds === undefined ? null : new Set(target.hostIds);
  return candidates
    .filter((host) => {
      if (wanted !== null && !wanted.has(host.id)) return false;
      if (target.labels && !Object.entries(target.labels).every(([k, v]) => host.labels[k] === v)) return false;
      if (target.excludeLabels && Object.entries(target.excludeLabels).some(([k, v]) => host.labels[k] === v)) {
        return false;
      }
      if (target.facts) {
        if (host.facts === null) return false;
        const { os, distro, arch } = target.facts;
        if (os !== undefined && host.facts.os !== os) return false;
        if (distro !== undefined && host.facts.distro !== distro) return false;
        if (arch !== undefined && host.facts.arch !== arch) return false;
      }
      return true;
    })
    .map((host) => host.id)
    .sort();
}

/** Host ids named explicitly that are not registered: a typo must not shrink a rollout silently. */
export function unknownHostIds(target: Target, candidates: readonly TargetCandidate[]): string[] {
  if (target.hostIds === undefined) return [];
  const known = new Set(candidates.map((c) => c.id));
  return target.hostIds.filter((id) => !known.has(id));
}
