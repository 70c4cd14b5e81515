import { type Patch, PatchSchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderPatch, renderPatchList } from '../src/render-patches.js';

function packagePatch(revertable: boolean): Patch {
  return PatchSchema.parse({
    id: 'pat_1',
    createdBy: 'alice',
    createdAt: '2025-01-01T00:00:00.000Z',
    title: 'hello 2.0',
    problem: 'p',
    rootCause: 'r',
    intendedFix: 'f',
    ticket: 'OPS-1',
    change: { kind: 'package', manager: 'apt', name: 'hello', version: '2.0-1', revertable },
  });
}

describe('renderPatch', () => {
  it('says when a package patch is not revertable, in show and in the list', () => {
    const shown = renderPatch(packagePatch(false));
    expect(shown).toContain('  change        apt hello=2.0-1, NOT revertable');
    expect(shown).toContain('  revert        none: marked "revertable": false — fleetpatch will not revert it');
    expect(renderPatchList([packagePatch(false)])).toContain('apt hello=2.0-1, NOT revertable');
  });

  it('says nothing of reverting a revertable patch', () => {
    const shown = renderPatch(packagePatch(true));
    expect(shown).toContain('  change        apt hello=2.0-1\n');
    expect(shown).not.toContain('revert');
  });

  it('lists what the patch requires of a host, one precondition a line', () => {
    const patch = PatchSchema.parse({
      ...packagePatch(true),
      change: {
        ...packagePatch(true).change,
        requires: [
          { package: 'libfoo', version: '>= 1:1.2-3' },
          { file: '/etc/app/module.conf', sha256: 'ab'.repeat(32) },
          { command: ['/usr/local/bin/app-ready', '--quiet'] },
        ],
      },
    });
    expect(renderPatch(patch)).toContain(
      [
        '  change        apt hello=2.0-1',
        '  requires      package libfoo >= 1:1.2-3',
        '                file /etc/app/module.conf sha256 abababababab…',
        '                command /usr/local/bin/app-ready --quiet',
        '  health ',
      ].join('\n'),
    );
  });
});
