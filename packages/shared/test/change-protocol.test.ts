import { describe, expect, it } from 'vitest';
import {
  HEALTH_TOLERANCE_PROTOCOL,
  PACKAGE_SETS_PROTOCOL,
  protocolGapOf,
  protocolNeededFor,
} from '../src/change-protocol.js';
import { type HealthPolicy, HealthPolicySchema } from '../src/health-check.js';
import type { Change } from '../src/patch.js';

const file: Change = {
  kind: 'file',
  path: '/etc/app.conf',
  content: 'x\n',
  encoding: 'utf8',
  mode: '0644',
  owner: 'root',
  group: 'root',
} as Change;

describe('the protocol a change needs', () => {
  it('is 1 for a plain file change and a one-package change', () => {
    expect(protocolNeededFor({ change: file })).toBe(1);
    expect(
      protocolNeededFor({ change: { kind: 'package', manager: 'apt', name: 'nginx', version: '1.2' } as Change }),
    ).toBe(1);
  });

  it('is 4 for a set, a source change, or any change with services to restart (an older agent refuses the field)', () => {
    const set = { kind: 'package', manager: 'apt', packages: [{ name: 'a', version: '1' }] } as Change;
    const source = { kind: 'package', manager: 'apt', source: 'openssl', version: '3.0.15-1' } as Change;
    const restarting = { ...file, restart: { afterApply: ['nginx.service'], afterRevert: [] } } as Change;
    for (const change of [set, source, restarting]) expect(protocolNeededFor({ change })).toBe(PACKAGE_SETS_PROTOCOL);
    expect(protocolGapOf({ change: restarting }, 3)).toMatch(
      /^its agent speaks protocol 3; a change with services to restart needs protocol 4/,
    );
    expect(protocolGapOf({ change: set }, 3)).toMatch(/a package set or source change needs protocol 4/);
    expect(protocolGapOf({ change: restarting }, 4)).toBeUndefined();
    expect(protocolGapOf({ change: restarting }, undefined)).toBeUndefined();
  });
});

describe('the protocol a health policy needs', () => {
  const policy = (extra: Partial<HealthPolicy>): HealthPolicy => HealthPolicySchema.parse({ ...extra });

  it('is unchanged by a policy without tolerance fields (every agent reads it)', () => {
    expect(protocolNeededFor({ change: file, health: policy({}) })).toBe(1);
    const restarting = { ...file, restart: { afterApply: ['nginx.service'], afterRevert: [] } } as Change;
    expect(protocolNeededFor({ change: restarting, health: policy({}) })).toBe(PACKAGE_SETS_PROTOCOL);
  });

  it('is 6 for failAfterConsecutive or bakeTolerance: an older agent would refuse the strict policy', () => {
    for (const extra of [{ failAfterConsecutive: 3 }, { bakeTolerance: { consecutiveFailures: 2 } }]) {
      const order = { change: file, health: policy(extra) };
      expect(protocolNeededFor(order)).toBe(HEALTH_TOLERANCE_PROTOCOL);
      expect(protocolGapOf(order, 5)).toBe(
        'its agent speaks protocol 5; a health policy with failAfterConsecutive or bakeTolerance needs protocol 6: ' +
          'upgrade the agent (an older one cannot read the order)',
      );
      expect(protocolGapOf(order, 6)).toBeUndefined();
    }
  });
});
