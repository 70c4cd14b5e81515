import { describe, expect, it } from 'vitest';
import { renderPreflight } from '../src/render-rollouts.js';

describe('renderPreflight', () => {
  it('says under the summary when the patch is not revertable', () => {
    const results = [
      { hostId: 'web-1', outcome: 'would_apply' as const, reason: 'hello: 1.0-1 → 2.0-1', errorCode: null },
    ];
    const text = renderPreflight({ rolloutId: 'ro_1', revertable: false, summary: { would_apply: 1 }, results });
    const lines = text.split('\n');
    expect(lines[0]).toBe('preflight of rollout ro_1: 1 would_apply');
    expect(lines[1]).toMatch(/^ {2}NOT REVERTABLE: the patch is marked "revertable": false/);
    expect(lines.at(-1)).toMatch(/^web-1 +would_apply +hello: 1\.0-1 → 2\.0-1$/);
    const revertable = renderPreflight({ rolloutId: 'ro_1', revertable: true, summary: { would_apply: 1 }, results });
    expect(revertable).not.toContain('REVERTABLE');
  });
});
