import type { PatchHistory, PatchHistoryRollout } from '@fleetpatch/shared';
import type { PromotionConfig } from '../config.js';
import { environmentOf } from '../engine/promotion-gate.js';
import type { Store } from '../store/store.js';

/** Without a promotion order, history groups rollouts by this label all the same. */
const DEFAULT_LABEL = 'env';

const REVERTED_STATES = new Set(['reverting', 'reverted', 'revert_failed']);

/** A started rollout on the path, and the environments (null: hosts without the label) it reached. */
export interface HistoryEntry {
  rollout: PatchHistoryRollout;
  environments: (string | null)[];
}

/**
 * Every started rollout of a content digest (any patch with it), oldest first, with where it ran:
 * the environments its start recorded, or — started before there was a promotion order — its hosts'
 * labels now.
 */
export async function historyEntries(
  store: Store,
  contentDigest: string,
  policy: PromotionConfig | undefined,
): Promise<HistoryEntry[]> {
  const label = policy?.label ?? DEFAULT_LABEL;
  const labels = new Map((await store.agents.list()).map((agent) => [agent.id, agent.labels]));
  const rollouts = (await store.rollouts.ofPatches(await store.patches.idsWithDigest(contentDigest))).filter(
    (rollout) => rollout.startedAt !== null,
  );
  return Promise.all(
    rollouts.map(async (rollout) => {
      const decision = await store.rollouts.promotion(rollout.id);
      let environments: (string | null)[];
      if (decision && decision.label === label) {
        environments = decision.environments.map((entry) => entry.env);
        if (decision.unlabeled > 0) environments.push(null);
      } else {
        const seen = new Set<string | null>();
        for (const run of await store.hostRuns.forRollout(rollout.id)) {
          const hostLabels = labels.get(run.hostId) ?? {};
          seen.add(policy ? envOrNull(environmentOf(hostLabels, policy)) : (hostLabels[label] ?? null));
        }
        environments = [...seen];
      }
      return {
        environments,
        rollout: {
          rolloutId: rollout.id,
          patchId: rollout.patchId,
          state: rollout.state,
          hostCount: rollout.hostCount,
          startedAt: rollout.startedAt,
          finishedAt: rollout.finishedAt,
          reverted:
            REVERTED_STATES.has(rollout.state) ||
            (await store.hostRuns.forRollout(rollout.id)).some((run) => REVERTED_STATES.has(run.state)) ||
            (rollout.finishedAt !== null && (await store.rollouts.revertedSince(rollout.id, rollout.finishedAt))),
          overridden: (decision?.override ?? null) !== null,
        },
      };
    }),
  );
}

function envOrNull(host: { env: string; labeled: boolean }): string | null {
  return host.labeled ? host.env : null;
}

/** `GET /v1/patches/:id/history`: rollouts by environment, in promotion order, then others, then unlabelled. */
export async function patchHistory(
  store: Store,
  patch: { id: string; contentDigest: string },
  policy: PromotionConfig | undefined,
): Promise<PatchHistory> {
  const entries = await historyEntries(store, patch.contentDigest, policy);
  const seen = new Set(entries.flatMap((entry) => entry.environments));
  const order = policy?.order ?? [];
  const others = [...seen].filter((env): env is string => env !== null && !order.includes(env)).sort();
  const envs: (string | null)[] = [...order.filter((env) => seen.has(env)), ...others];
  if (seen.has(null)) envs.push(null);
  return {
    patchId: patch.id,
    contentDigest: patch.contentDigest,
    label: policy?.label ?? DEFAULT_LABEL,
    order: policy ? [...policy.order] : null,
    environments: envs.map((env) => ({
      env,
      rollouts: entries.filter((entry) => entry.environments.includes(env)).map((entry) => entry.rollout),
    })),
  };
}
