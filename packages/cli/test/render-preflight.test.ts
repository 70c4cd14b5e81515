import { describe, expect, it } from 'vitest';
import { renderPreflight } from '../src/render-rollouts.js';

describe('renderPreflight', () => {
  it('shows the package set each host resolved a source change to, where its prior .deb comes from, and why others would not apply', () => {
    const text = renderPreflight({
      rolloutId: 'ro_1',
      revertable: true,
      summary: { would_apply: 1, not_applicable: 1, incompatible: 1 },
      results: [
        {
          hostId: 'web-1',
          outcome: 'would_apply',
          reason: null,
          errorCode: null,
          packages: [
            { name: 'fpsrc-bin', from: '1.0-1+b1', to: '2.0-1+b1', snapshot: 'apt-cache' },
            { name: 'libfpsrc1', from: null, to: '2.0-1', snapshot: 'not-installed' },
          ],
        },
        { hostId: 'web-2', outcome: 'not_applicable', reason: 'no binary package of source fpsrc', errorCode: null },
        { hostId: 'web-3', outcome: 'incompatible', reason: 'upgrade the agent', errorCode: 'precondition_failed' },
      ],
    });
    const lines = text.split('\n');
    expect(lines[0]).toBe('preflight of rollout ro_1: 1 would_apply, 1 not_applicable, 1 incompatible');
    expect(lines[1]).toMatch(/^host +outcome +packages +reason$/i);
    expect(lines[2]).toContain(
      'fpsrc-bin 1.0-1+b1 → 2.0-1+b1 (apt-cache), libfpsrc1 (not installed) → 2.0-1 (not-installed)',
    );
    expect(lines[3]).toMatch(/^web-2 +not_applicable +- +no binary package of source fpsrc$/);
    expect(lines[4]).toMatch(/^web-3 +incompatible +- +precondition_failed: upgrade the agent$/);
  });
});
