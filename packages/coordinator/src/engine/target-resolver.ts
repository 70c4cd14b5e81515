import type { Facts, Target } from '@fleetpatch/shared';

export interface TargetCandidate {
  id: string;
  /** Set by an admin at enrollment. */
  labels: Record<string, string>;
  /** What the agent says of itself. */
  reportedLabels: Record<string, string>;
  facts: Facts | null;
}

/**
 * The hosts a target selects, sorted by id so the same fleet always gives the same waves.
 * `labels` match admin labels only, so a host cannot report its way into a target; `reportedLabels`
 * (which the schema lets only narrow `hostIds` or `labels`) match what the host reports;
 * `excludeLabels` look at both, since a host's word may keep it out but never bring it in. A host
 * that never reported facts matches no fact selector (it cannot prove it is the right OS).
 * `exposedTo` keeps the hosts in `exposed`, which the caller computes from the package inventory
 * (fleet-target.ts): required when the target has it.
 */
export function resolveTarget(
  target: Target,
  candidates: readonly TargetCandidate[],
  exposed?: ReadonlySet<string>,
): string[] {
  if (target.exposedTo && !exposed) throw new Error('a target with exposedTo needs the exposed hosts');
  const wanted = target.hostIds === undefined ? null : new Set(target.hostIds);
  return candidates
    .filter((host) => {
      if (wanted !== null && !wanted.has(host.id)) return false;
      if (target.exposedTo && !exposed?.has(host.id)) return false;
      if (target.labels && !hasAll(host.labels, target.labels)) return false;
      if (target.reportedLabels && !hasAll(host.reportedLabels, target.reportedLabels)) return false;
      if (
        target.excludeLabels &&
        (hasAny(host.labels, target.excludeLabels) || hasAny(host.reportedLabels, target.excludeLabels))
      ) {
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

function hasAll(labels: Readonly<Record<string, string>>, wanted: Readonly<Record<string, string>>): boolean {
  return Object.entries(wanted).every(([k, v]) => labels[k] === v);
}

function hasAny(labels: Readonly<Record<string, string>>, wanted: Readonly<Record<string, string>>): boolean {
  return Object.entries(wanted).some(([k, v]) => labels[k] === v);
}

/** Host ids named explicitly that are not registered: a typo must not shrink a rollout silently. */
export function unknownHostIds(target: Target, candidates: readonly TargetCandidate[]): string[] {
  if (target.hostIds === undefined) return [];
  const known = new Set(candidates.map((c) => c.id));
  return target.hostIds.filter((id) => !known.has(id));
}
