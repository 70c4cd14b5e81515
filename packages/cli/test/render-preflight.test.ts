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

  it('lists each host precondition that does not hold, per host, below the table', () => {
    const text = renderPreflight({
      rolloutId: 'ro_2',
      revertable: true,
      summary: { would_apply: 1, would_fail: 1 },
      results: [
        {
          hostId: 'web-1',
          outcome: 'would_apply',
          reason: 'replace /etc/app/app.conf',
          errorCode: null,
          preconditions: [
            { precondition: 'package libfoo >= 1.2-3', ok: true, observed: 'libfoo:amd64 1.2-3 installed' },
          ],
        },
        {
          hostId: 'web-2',
          outcome: 'would_fail',
          reason: 'host preconditions not met (2 of 3): …',
          errorCode: 'precondition_failed',
          preconditions: [
            {
              precondition: 'package libfoo >= 1.2-3',
              ok: false,
              observed: 'libfoo:amd64 1.0-1 installed, needs >= 1.2-3',
            },
            { precondition: 'command /bin/true', ok: true, observed: 'exit 0' },
            { precondition: 'file /etc/app/m.conf exists', ok: false, observed: '/etc/app/m.conf does not exist' },
          ],
        },
      ],
    });
    expect(text.split('\n').slice(2)).toEqual([
      expect.stringMatching(/^web-1 +would_apply +replace \/etc\/app\/app.conf$/),
      expect.stringMatching(/^web-2 +would_fail +precondition_failed: host preconditions not met \(2 of 3, below\)$/),
      'host preconditions not met:',
      '  web-2  package libfoo >= 1.2-3: libfoo:amd64 1.0-1 installed, needs >= 1.2-3',
      '  web-2  file /etc/app/m.conf exists: /etc/app/m.conf does not exist',
    ]);
  });

  it('lists each health check failing before the patch, per host, below the table', () => {
    const at = '2026-12-06T00:00:00.000Z';
    const text = renderPreflight({
      rolloutId: 'ro_3',
      revertable: true,
      summary: { would_apply: 1, would_fail: 1 },
      results: [
        { hostId: 'web-1', outcome: 'would_apply', reason: null, errorCode: null },
        {
          hostId: 'web-2',
          outcome: 'would_fail',
          reason: 'unhealthy before patch: app-port: connection refused; the apply would skip this host',
          errorCode: 'health_failed',
          health: [
            { check: 'app-port', kind: 'tcp', ok: false, observed: 'connection refused', at },
            { check: 'config', kind: 'file', ok: true, observed: 'present', at },
            { check: 'ready', kind: 'http', ok: false, observed: 'HTTP 503', at },
          ],
        },
      ],
    });
    expect(text.split('\n').slice(2)).toEqual([
      expect.stringMatching(/^web-1 +would_apply +-$/),
      expect.stringMatching(
        /^web-2 +would_fail +health_failed: unhealthy before the patch \(2 of 3 checks failing, below\)$/,
      ),
      'health checks failing before the patch:',
      '  web-2  app-port (tcp): connection refused',
      '  web-2  ready (http): HTTP 503',
    ]);
  });
});
