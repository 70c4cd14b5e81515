import type { RolloutPlan } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderPlan } from '../src/render-plan.js';

/** One host in one wave, nothing to add: what each case below changes. */
const oneHostPlan: RolloutPlan = {
  rolloutId: 'ro_3',
  frozen: false,
  hostCount: 1,
  waveSizes: [1],
  waves: [{ wave: 0, hosts: ['web-1'] }],
  toleratedFailures: 0,
  haltsOn: 'halts on the 1st failure',
  revertable: true,
};

describe('renderPlan', () => {
  it('lists each wave with its hosts and says which failure halts', () => {
    expect(
      renderPlan({
        rolloutId: 'ro_1',
        frozen: false,
        hostCount: 5,
        waveSizes: [1, 2, 2],
        waves: [
          { wave: 0, hosts: ['web-1'] },
          { wave: 1, hosts: ['web-2', 'web-3'] },
          { wave: 2, hosts: ['web-4', 'web-5'] },
        ],
        toleratedFailures: 3,
        haltsOn: 'halts on the 4th failure',
        revertable: true,
      }),
    ).toBe(
      [
        'rollout ro_1 plan (resolved from the fleet now): 5 hosts in 3 waves [1, 2, 2]; halts on the 4th failure (tolerates 3 failures)',
        '  wave 1  1 host   web-1',
        '  wave 2  2 hosts  web-2, web-3',
        '  wave 3  2 hosts  web-4, web-5',
      ].join('\n'),
    );
  });

  it('says when the target matches nothing, and when the plan is frozen', () => {
    const empty = renderPlan({
      rolloutId: 'ro_2',
      frozen: true,
      hostCount: 0,
      waveSizes: [],
      waves: [],
      toleratedFailures: 0,
      haltsOn: 'halts on the 1st failure',
      revertable: true,
    });
    expect(empty).toContain('(frozen at start): 0 hosts in 0 waves []');
    expect(empty).toContain('no host matches the target');
  });

  it('names the hosts an exposedTo target leaves out for want of a package inventory', () => {
    const text = renderPlan({
      ...oneHostPlan,
      exposedTo: { source: 'openssl', fixed: '3.0.15-1~deb12u1', withoutInventory: ['web-7', 'web-9'] },
    });
    expect(text.split('\n').at(-1)).toBe('  not judged (no package inventory), left out: web-7, web-9');
  });

  it('says out loud when the patch is not revertable', () => {
    const text = renderPlan({ ...oneHostPlan, revertable: false });
    expect(text.split('\n').at(-1)).toMatch(
      /^ {2}NOT REVERTABLE: the patch is marked "revertable": false — fleetpatch will not revert it/,
    );
  });

  it('names the hosts whose agent is too old for the change, with the reason', () => {
    const reason = 'its agent speaks protocol 3; a package set or source change needs protocol 4: upgrade the agent';
    const text = renderPlan({
      rolloutId: 'ro_4',
      frozen: false,
      hostCount: 2,
      waveSizes: [2],
      waves: [{ wave: 0, hosts: ['web-1', 'web-2'] }],
      toleratedFailures: 0,
      haltsOn: 'halts on the 1st failure',
      revertable: true,
      incompatible: [{ hostId: 'web-2', reason }],
    });
    expect(text.split('\n').at(-1)).toBe(`  web-2 is sent no order: ${reason}`);
  });
});
