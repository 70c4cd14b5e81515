import type { RolloutSummary } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderWatchFrame } from '../src/render-watch.js';
import { describeWatchChanges } from '../src/render-watch-log.js';
import { createStyle } from '../src/terminal-style.js';
import { viewOfStatus, viewOfSummary } from '../src/watch-view.js';
import { WaveTimings } from '../src/wave-timings.js';
import { closedWindow, host, NOW, status, summary } from './status-fixture.js';

// A large rollout is watched through its summary (counts per wave and state, the first failed and
// failing hosts), never its full status: what the live view and the log show of it.

const PLAIN = createStyle(false);
const PATCH = { title: 'Raise workers', ticket: 'OPS-7' };

/** 5,000 hosts in three waves: the canary passed, wave 2 half through with 12 failures, wave 3 pending. */
function halfway(): RolloutSummary {
  return summary(
    { currentWave: 1 },
    {
      failures: 12,
      counts: { healthy: 251, failed: 12, applying: 150, verifying: 37, queued: 4550 },
      waves: [
        { wave: 0, phase: 'passed', hostCount: 1, counts: { healthy: 1 } },
        {
          wave: 1,
          phase: 'running',
          hostCount: 500,
          counts: { healthy: 250, failed: 12, applying: 150, verifying: 37, queued: 51 },
        },
        { wave: 2, phase: 'pending', hostCount: 4499, counts: { queued: 4499 } },
      ],
      failedHosts: Array.from({ length: 10 }, (_, i) => ({
        hostId: `web-${i}`,
        wave: 1,
        state: 'failed' as const,
        errorCode: 'health_failed',
        reason: 'http check "api" returned 500',
      })),
      failingHosts: [
        {
          hostId: 'web-77',
          wave: 1,
          state: 'verifying',
          failingPolls: 3,
          checks: [
            {
              check: 'api',
              kind: 'http',
              ok: false,
              observed: 'HTTP 503',
              at: NOW.toISOString(),
              since: NOW.toISOString(),
            },
          ],
        },
      ],
      analyses: [
        {
          wave: 1,
          name: 'errors',
          attempt: 1,
          condition: '< 0.01',
          verdict: 'running',
          taken: 1,
          count: 3,
          failed: 0,
          failureLimit: 0,
          inconclusive: 0,
          measurements: [
            {
              at: NOW.toISOString(),
              phase: 'verify',
              value: 0.002,
              baseline: null,
              threshold: 0.01,
              verdict: 'pass',
              reason: null,
            },
          ],
        },
      ],
    },
  );
}

const frameOf = (s: RolloutSummary) =>
  renderWatchFrame({ view: viewOfSummary(s), patch: PATCH, timings: new WaveTimings(), now: NOW }, PLAIN).split('\n');

describe('the live view of a large rollout, from its summary', () => {
  it('draws each wave from its counts, as from a full status', () => {
    const lines = frameOf(halfway());
    expect(lines[2]).toMatch(/^wave 1 {2}█{30} {2}1 done +passed$/);
    expect(lines[3]).toMatch(
      /^wave 2 {2}█{15}▓▒{11}░{3} {2}250 done, 12 failed, 187 in flight, 51 pending {2}running$/,
    );
    expect(lines[4]).toMatch(/^wave 3 {2}░{30} {2}0 done, 4499 pending +pending$/);
    expect(lines[1]).toContain('failures 12 of 50 tolerated (halts on the 51st failure)');
  });

  it('names the failed hosts it has, says how many more there are and where to find them', () => {
    const lines = frameOf(halfway());
    expect(lines).toContain('failed  web-0 (wave 2) health_failed: http check "api" returned 500');
    expect(lines.filter((line) => line.startsWith('failed '))).toHaveLength(10);
    expect(lines).toContain('… and 2 more: 2 failed (fleetpatch rollout hosts ro_1 --state …)');
  });

  it('names the hosts whose health checks fail, and the analysis of the current wave', () => {
    const lines = frameOf(halfway());
    expect(lines).toContain('failing web-77 (wave 2) verifying, 1 check failing (3 polls in a row): api: HTTP 503');
    expect(lines).toContain('  analysis errors  running  1/3 taken  last 0.002 (threshold 0.01, < 0.01): pass');
  });

  it("counts a failing host's checks the summary did not list", () => {
    const summary = halfway();
    const [first] = summary.failingHosts ?? [];
    const lines = frameOf({ ...summary, failingHosts: first ? [{ ...first, moreChecks: 29 }] : [] });
    expect(lines).toContain(
      'failing web-77 (wave 2) verifying, 30 checks failing (3 polls in a row): api: HTTP 503; 29 more',
    );
  });

  it("shows the window and warnings a summary carries, and reads an older coordinator's summary without them", () => {
    const window = closedWindow();
    const withBoth = frameOf({ ...halfway(), window, warnings: ['succeeded, but 2 host(s) were reverted by hand'] });
    expect(withBoth).toContain('maintenance window opens in 2h 00m (2025-06-01T14:00:00.000Z)');
    expect(withBoth).toContain('warning: succeeded, but 2 host(s) were reverted by hand');
    const { failingHosts: _f, analyses: _a, ...older } = halfway();
    expect(() => frameOf(older)).not.toThrow();
    expect(frameOf(older).some((line) => line.startsWith('failing'))).toBe(false);
  });

  it('agrees with the view of the full status on the same rollout', () => {
    const full = status(
      { hostCount: 3 },
      {
        failures: 1,
        waves: [
          { wave: 0, phase: 'passed', hosts: [host('web-1', 'healthy')] },
          {
            wave: 1,
            phase: 'running',
            hosts: [
              host('web-2', 'failed', { errorCode: 'health_failed', reason: 'HTTP 500' }),
              host('web-3', 'queued'),
            ],
          },
        ],
      },
    );
    const brief = summary(
      { hostCount: 3, waveCount: 2 },
      {
        failures: 1,
        toleratedFailures: 0,
        haltsOn: 'halts on the 1st failure',
        waves: [
          { wave: 0, phase: 'passed', hostCount: 1, counts: { healthy: 1 } },
          { wave: 1, phase: 'running', hostCount: 2, counts: { failed: 1, queued: 1 } },
        ],
        failedHosts: [{ hostId: 'web-2', wave: 1, state: 'failed', errorCode: 'health_failed', reason: 'HTTP 500' }],
      },
    );
    const draw = (view: ReturnType<typeof viewOfStatus>) =>
      renderWatchFrame({ view, patch: PATCH, timings: new WaveTimings(), now: NOW }, PLAIN);
    expect(draw(viewOfSummary(brief))).toBe(draw(viewOfStatus(full)));
  });
});

describe('the log of a large rollout, from its summaries', () => {
  it("says a wave's counts when they move, and each failed host once, as it first appears", () => {
    const before = halfway();
    const after = halfway();
    const wave = after.waves[1];
    if (wave) wave.counts = { healthy: 260, failed: 13, applying: 150, verifying: 37, queued: 40 };
    after.failures = 13;
    after.failedHosts = [
      ...before.failedHosts.slice(0, 5),
      { hostId: 'web-404', wave: 1, state: 'timed_out', errorCode: null, reason: 'no answer in 600s' },
      ...before.failedHosts.slice(5, 9),
    ];
    expect(describeWatchChanges(undefined, viewOfSummary(before), PATCH)).toEqual([
      'rollout ro_1 running: "Raise workers" (OPS-7), 3 waves, 5000 hosts, failures 12 of 50 tolerated',
    ]);
    expect(describeWatchChanges(viewOfSummary(before), viewOfSummary(after), PATCH)).toEqual([
      'wave 2: 260 done, 13 failed, 187 in flight, 40 pending',
      'wave 2 web-404 timed_out: no answer in 600s',
      'failures 13 of 50 tolerated',
    ]);
    expect(describeWatchChanges(viewOfSummary(after), viewOfSummary(after), PATCH)).toEqual([]);
  });

  it('follows a rollout from before its start (a full status, no hosts yet) to its summaries', () => {
    const scheduled = status({ state: 'scheduled', startedAt: null, waveCount: 0, hostCount: 0 }, { waves: [] });
    expect(describeWatchChanges(viewOfStatus(scheduled), viewOfSummary(halfway()), PATCH)).toEqual([
      'wave 1 passed',
      'wave 1: 1 done',
      'wave 2 running',
      'wave 2: 250 done, 12 failed, 187 in flight, 51 pending',
      'wave 3: 0 done, 4499 pending',
      ...halfway().failedHosts.map((h) => `wave 2 ${h.hostId} failed: health_failed: http check "api" returned 500`),
      'failures 12 of 50 tolerated',
      'rollout scheduled → running',
    ]);
  });
});
