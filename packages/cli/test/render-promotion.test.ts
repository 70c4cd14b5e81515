import type { PatchHistory, PromotionDecision } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderPatchHistory } from '../src/render-patches.js';
import { promotionLines } from '../src/render-status.js';

const DECISION: PromotionDecision = {
  label: 'env',
  order: ['staging', 'prod'],
  minSoakMinutes: 60,
  environments: [{ env: 'prod', hosts: 2 }],
  unlabeled: 1,
  requirements: [
    { env: 'prod', needs: 'staging', passedBy: null, missing: 'no rollout of this content on staging yet' },
  ],
  override: { by: 'root', at: '2026-12-04T08:00:00.000Z', reason: 'INC-1\u001b[31m' },
};

describe('promotionLines', () => {
  it('names the environments, the unlabelled hosts held as the last, what is missing, and the override escaped', () => {
    expect(promotionLines(DECISION)).toEqual([
      'promotion env: prod 2 hosts, 1 host without env (held as prod); prod needs staging: NOT passed (no rollout of this content on staging yet)',
      'promotion OVERRIDDEN by root at 2026-12-04T08:00:00.000Z: "INC-1\\u001b[31m"',
    ]);
  });
});

describe('renderPatchHistory', () => {
  const history: PatchHistory = {
    patchId: 'pat_1',
    contentDigest: 'a'.repeat(64),
    label: 'env',
    order: null,
    environments: [],
  };

  it('says when nothing of the content ran yet, and when there is no promotion order', () => {
    expect(renderPatchHistory(history)).toBe(
      `patch pat_1  content ${'a'.repeat(16)}  no promotion order\nno started rollout of this content yet`,
    );
  });

  it('lists hosts without the label under (no env)', () => {
    const rollout = {
      rolloutId: 'ro_1',
      patchId: 'pat_1',
      state: 'succeeded' as const,
      hostCount: 1,
      startedAt: '2026-12-04T08:00:00.000Z',
      finishedAt: '2026-12-04T08:01:00.000Z',
      reverted: false,
      overridden: false,
    };
    const shown = renderPatchHistory({ ...history, environments: [{ env: null, rollouts: [rollout] }] });
    expect(shown).toMatch(/\n\(no env\) +ro_1 +pat_1 +succeeded +1 +2026-12-04T08:01:00.000Z +no$/);
  });
});
