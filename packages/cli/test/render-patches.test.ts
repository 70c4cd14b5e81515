import { type PatchSummary, PatchSummarySchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderPatchList } from '../src/render-patches.js';

const META = {
  id: 'pat_1',
  createdBy: 'alice',
  createdAt: '2025-01-01T00:00:00.000Z',
  title: 'hello 2.0',
  ticket: 'OPS-1',
  contentDigest: 'd'.repeat(64),
};

/** What `GET /v1/patches` answers for a package patch. */
function packageSummary(revertable: boolean): PatchSummary {
  return PatchSummarySchema.parse({
    ...META,
    change: { kind: 'package', manager: 'apt', name: 'hello', version: '2.0-1', revertable },
  });
}

describe('renderPatchList', () => {
  it('says when a package patch is not revertable', () => {
    expect(renderPatchList([packageSummary(false)])).toContain('apt hello=2.0-1, NOT revertable');
    expect(renderPatchList([packageSummary(true)])).not.toContain('NOT revertable');
  });

  it('describes a file patch from its summary, which carries no content', () => {
    const summary = PatchSummarySchema.parse({
      ...META,
      change: {
        kind: 'file',
        path: '/etc/app/app.conf',
        mode: '0644',
        owner: 'root',
        group: 'root',
        contentSha256: 'a'.repeat(64),
        contentBytes: 12,
      },
    });
    expect(renderPatchList([summary])).toContain('file /etc/app/app.conf (mode 0644, root:root)');
  });
});
