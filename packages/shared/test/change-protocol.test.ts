import { describe, expect, it } from 'vitest';
import { PACKAGE_SETS_PROTOCOL, protocolGapOf, protocolNeededFor } from '../src/change-protocol.js';
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
    expect(protocolNeededFor(file)).toBe(1);
    expect(protocolNeededFor({ kind: 'package', manager: 'apt', name: 'nginx', version: '1.2' } as Change)).toBe(1);
  });

  it('is 4 for a set, a source change, or any change with services to restart (an older agent refuses the field)', () => {
    const set = { kind: 'package', manager: 'apt', packages: [{ name: 'a', version: '1' }] } as Change;
    const source = { kind: 'package', manager: 'apt', source: 'openssl', version: '3.0.15-1' } as Change;
    const restarting = { ...file, restart: { afterApply: ['nginx.service'], afterRevert: [] } } as Change;
    for (const change of [set, source, restarting]) expect(protocolNeededFor(change)).toBe(PACKAGE_SETS_PROTOCOL);
    expect(protocolGapOf(restarting, 3)).toMatch(
      /^its agent speaks protocol 3; a change with services to restart needs protocol 4/,
    );
    expect(protocolGapOf(set, 3)).toMatch(/a package set or source change needs protocol 4/);
    expect(protocolGapOf(restarting, 4)).toBeUndefined();
    expect(protocolGapOf(restarting, undefined)).toBeUndefined();
  });
});
