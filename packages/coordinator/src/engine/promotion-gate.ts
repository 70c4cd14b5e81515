import type { PromotionDecision, PromotionEvidence, PromotionRequirement, RolloutState } from '@fleetpatch/shared';
import type { PromotionConfig } from '../config.js';
import type { Store } from '../store/store.js';

/** Where a host stands in the promotion order. */
export interface HostEnvironment {
  /** Its environment; a host without the label (or with a value not in the order) is held to the last. */
  env: string;
  labeled: boolean;
}

/**
 * A host's environment: its admin label (set by the join token, which the host cannot change) when
 * the value is in the order. Anything else counts as the last environment: a host nobody labelled
 * is treated as production, so forgetting a label can only make a rollout wait, never skip staging.
 */
export function environmentOf(labels: Readonly<Record<string, string>>, policy: PromotionConfig): HostEnvironment {
  const value = labels[policy.label];
  if (value !== undefined && policy.order.includes(value)) return { env: value, labeled: true };
  return { env: policy.order[policy.order.length - 1] as string, labeled: false };
}

/** An earlier rollout of the same content, as the rule reads it. */
export interface StageRun {
  rolloutId: string;
  patchId: string;
  state: RolloutState;
  finishedAt: string | null;
  /** The labelled environments its hosts were in when it started. */
  environments: readonly string[];
  /** Asked to revert (the rollout, or one of its hosts) at or after it finished. */
  revertedSince: boolean;
}

export interface PromotionCheck {
  decision: PromotionDecision;
  /** The requirements not met: start is refused unless an admin overrides. */
  blocking: PromotionRequirement[];
}

/**
 * The promotion rule, pure: every environment the rollout's hosts are in that has one before it
 * needs that one passed by the same content — a succeeded rollout on its hosts, finished at least
 * `minSoakMinutes` before `now`, not reverted since. Only the environment just before is checked: it
 * could only have started once the one before it was passed (or an admin said why not).
 */
export function checkPromotion(
  policy: PromotionConfig,
  hosts: readonly HostEnvironment[],
  runs: readonly StageRun[],
  now: number,
): PromotionCheck {
  const counts = new Map<string, number>();
  let unlabeled = 0;
  for (const host of hosts) {
    if (host.labeled) counts.set(host.env, (counts.get(host.env) ?? 0) + 1);
    else unlabeled++;
  }
  const reached = new Set(hosts.map((host) => host.env));
  const requirements: PromotionRequirement[] = [];
  policy.order.forEach((env, index) => {
    const needs = policy.order[index - 1];
    if (index === 0 || needs === undefined || !reached.has(env)) return;
    requirements.push(
      requirementFor(
        env,
        needs,
        runs.filter((run) => run.environments.includes(needs)),
        policy.minSoakMinutes,
        now,
      ),
    );
  });
  return {
    decision: {
      label: policy.label,
      order: [...policy.order],
      minSoakMinutes: policy.minSoakMinutes,
      environments: policy.order.filter((env) => counts.has(env)).map((env) => ({ env, hosts: counts.get(env) ?? 0 })),
      unlabeled,
      requirements,
      override: null,
    },
    blocking: requirements.filter((requirement) => requirement.passedBy === null),
  };
}

function requirementFor(
  env: string,
  needs: string,
  runs: readonly StageRun[],
  minSoakMinutes: number,
  now: number,
): PromotionRequirement {
  const soakMs = minSoakMinutes * 60_000;
  const succeeded = runs
    .filter((run) => run.state === 'succeeded' && run.finishedAt !== null)
    .sort((a, b) => Date.parse(b.finishedAt ?? '') - Date.parse(a.finishedAt ?? ''));
  const standing = succeeded.filter((run) => !run.revertedSince);
  const soaked = standing.find((run) => Date.parse(run.finishedAt ?? '') + soakMs <= now);
  const base = { env, needs, passedBy: null, minutesLeft: undefined };
  if (soaked) return { env, needs, passedBy: evidence(soaked), missing: null };
  const soaking = standing[0];
  if (soaking) {
    const minutesLeft = Math.max(0, (Date.parse(soaking.finishedAt ?? '') + soakMs - now) / 60_000);
    return {
      ...base,
      minutesLeft: Math.round(minutesLeft * 100) / 100,
      missing: `rollout ${soaking.rolloutId} succeeded on ${needs} at ${soaking.finishedAt} and is soaking: ${formatMinutes(minutesLeft)} left of ${formatMinutes(minSoakMinutes)}`,
    };
  }
  const reverted = succeeded[0];
  if (reverted) {
    return {
      ...base,
      missing: `rollout ${reverted.rolloutId} succeeded on ${needs} but was reverted after it finished; a new rollout on ${needs} must succeed`,
    };
  }
  const latest = runs[runs.length - 1];
  return {
    ...base,
    missing: latest
      ? `no succeeded rollout on ${needs}: the latest, ${latest.rolloutId}, is ${latest.state}`
      : `no rollout of this content on ${needs} yet`,
  };
}

function evidence(run: StageRun): PromotionEvidence {
  return { rolloutId: run.rolloutId, patchId: run.patchId, finishedAt: run.finishedAt ?? '' };
}

function formatMinutes(minutes: number): string {
  const rounded = minutes >= 10 ? Math.ceil(minutes) : Math.ceil(minutes * 10) / 10;
  return `${rounded} min`;
}

/** The one sentence a refused start answers with: which environment, which rollout, how long. */
export function promotionRefusal(blocking: readonly PromotionRequirement[], contentDigest: string): string {
  const parts = blocking.map(
    (requirement) => `hosts in ${requirement.env} need ${requirement.needs} passed first: ${requirement.missing}`,
  );
  return `promotion order: ${parts.join('; ')} (content digest ${contentDigest.slice(0, 16)}; an admin may override with a reason)`;
}

/**
 * Every started rollout of the content `contentDigest` (any patch with that digest) but `exceptId`,
 * read as the rule reads it: the environments it reached, and whether it was reverted after it finished.
 */
export async function stageRunsOf(
  store: Store,
  contentDigest: string,
  policy: PromotionConfig,
  exceptId?: string,
): Promise<StageRun[]> {
  const rollouts = (await store.rollouts.ofPatches(await store.patches.idsWithDigest(contentDigest))).filter(
    (rollout) => rollout.id !== exceptId && rollout.startedAt !== null,
  );
  return Promise.all(
    rollouts.map(async (rollout) => ({
      rolloutId: rollout.id,
      patchId: rollout.patchId,
      state: rollout.state,
      finishedAt: rollout.finishedAt,
      environments: await environmentsReached(store, rollout.id, policy),
      revertedSince:
        rollout.state === 'reverted' ||
        (rollout.finishedAt !== null && (await store.rollouts.revertedSince(rollout.id, rollout.finishedAt))),
    })),
  );
}

/**
 * The labelled environments a started rollout's hosts were in: as recorded by its start, or — for a
 * rollout started before this coordinator had a promotion order — from its hosts' labels now.
 */
export async function environmentsReached(store: Store, rolloutId: string, policy: PromotionConfig): Promise<string[]> {
  const recorded = await store.rollouts.promotion(rolloutId);
  if (recorded && recorded.label === policy.label) return recorded.environments.map((entry) => entry.env);
  const labels = new Map((await store.agents.list()).map((agent) => [agent.id, agent.labels]));
  const envs = new Set<string>();
  for (const run of await store.hostRuns.forRollout(rolloutId)) {
    const host = environmentOf(labels.get(run.hostId) ?? {}, policy);
    if (host.labeled) envs.add(host.env);
  }
  return policy.order.filter((env) => envs.has(env));
}
