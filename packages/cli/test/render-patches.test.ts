import { type Patch, PatchSchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderPatchList } from '../src/render-patches.js';

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
    contentDigest: 'd'.repeat(64),
    change: { kind: 'package', manager: 'apt', name: 'hello', version: '2.0-1', revertable },
  });
}

describe('renderPatchList', () => {
  it('says when a package patch is not revertable', () => {
    expect(renderPatchList([packagePatch(false)])).toContain('apt hello=2.0-1, NOT revertable');
    expect(renderPatchList([packagePatch(true)])).not.toContain('NOT revertable');
  });
});
