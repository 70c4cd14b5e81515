import type { EventRecord } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderWatchFrame } from '../src/render-watch.js';
import { describeWatchChanges } from '../src/render-watch-log.js';
import { createStyle, wantsColour } from '../src/terminal-style.js';
import { viewOfStatus } from '../src/watch-view.js';
import { estimateRemainingMs, formatDuration, WaveTimings } from '../src/wave-timings.js';
import { closedWindow, host, NOW, status } from './status-fixture.js';

const PLAIN = createStyle(false);
const PATCH = { title: 'Fix the TLS config', ticket: 'OPS-42' };

function event(seq: number, type: string, wave: number, at: string): EventRecord {
  return {
    seq,
    rolloutId: 'ro_1',
    hostId: null,
    actor: 'system',
    type,
    fromState: null,
    toState: null,
    data: { wave },
    at,
  };
}

/** Wave 1 (index 0) took 60 s from start to pass; wave 2 started 20 s before NOW. */
function measuredTimings(): WaveTimings {
  const timings = new WaveTimings();
  timings.record(event(1, 'wave.started', 0, '2025-06-01T11:58:00.000Z'));
  timings.record(event(2, 'wave.passed', 0, '2025-06-01T11:59:00.000Z'));
  timings.record(event(3, 'wave.started', 1, '2025-06-01T11:59:40.000Z'));
  return timings;
}

/** Three waves: the canary passed, wave 2 half through with a failure, wave 3 pending. */
function running() {
  return status(
    { waveCount: 3, currentWave: 1, startedAt: '2025-06-01T11:58:00.000Z' },
    {
      failures: 1,
      toleratedFailures: 2,
      haltsOn: 'halts on the 3rd failure',
      waves: [
        { wave: 0, phase: 'passed', hosts: [host('web-1', 'healthy')] },
        {
          wave: 1,
          phase: 'running',
          hosts: [
            host('web-2', 'healthy'),
            host('web-3', 'failed', { errorCode: 'health_failed', reason: 'http check "api" returned 500' }),
            host('web-4', 'verifying', {
              health: [{ check: 'api', kind: 'http', ok: false, observed: 'HTTP 500', at: '2025-06-01T11:59:55.000Z' }],
            }),
            host('web-5', 'queued'),
          ],
        },
        { wave: 2, phase: 'pending', hosts: [host('web-6', 'queued'), host('web-7', 'queued')] },
      ],
    },
  );
}

describe('the watch view on a terminal', () => {
  it('has a header with title, ticket, state, elapsed and an ETA from measured wave times', () => {
    const frame = renderWatchFrame(
      { view: viewOfStatus(running()), patch: PATCH, timings: measuredTimings(), now: NOW },
      PLAIN,
    );
    const [first, second] = frame.split('\n');
    expect(first).toBe('rollout ro_1  running  "Fix the TLS config" (OPS-42)');
    // Wave 2: 60 s measured, 20 s run → 40 s; wave 3: 60 s; no bakes.
    expect(second).toBe('elapsed 2m 00s  ETA ~1m 40s  failures 1 of 2 tolerated (halts on the 3rd failure)');
  });

  it('draws one bar per wave, 1-based, with done / failed / in flight / pending counts', () => {
    const lines = renderWatchFrame(
      { view: viewOfStatus(running()), patch: PATCH, timings: measuredTimings(), now: NOW },
      PLAIN,
    ).split('\n');
    expect(lines[2]).toMatch(/^wave 1 {2}█{30} {2}1 done +passed$/);
    expect(lines[3]).toMatch(/^wave 2 {2}█{8}▓{8}▒{8}░{6} {2}1 done, 1 failed, 1 in flight, 1 pending {2}running$/);
    expect(lines[4]).toMatch(/^wave 3 {2}░{30} {2}0 done, 2 pending +pending$/);
  });

  it('names failed hosts with their reason, and in-flight hosts whose checks fail', () => {
    const frame = renderWatchFrame(
      { view: viewOfStatus(running()), patch: PATCH, timings: measuredTimings(), now: NOW },
      PLAIN,
    );
    expect(frame).toContain('failed  web-3 (wave 2) health_failed: http check "api" returned 500');
    expect(frame).toContain('failing web-4 (wave 2) verifying, 1 check failing: api: HTTP 500');
  });

  it('counts the bake down by the second, from the clock it is given', () => {
    const baking = status(
      { bakeUntil: '2025-06-01T12:00:42.000Z' },
      { waves: [{ wave: 0, phase: 'baking', hosts: [host('web-1', 'healthy')] }] },
    );
    const at = (iso: string) =>
      renderWatchFrame(
        { view: viewOfStatus(baking), patch: undefined, timings: new WaveTimings(), now: new Date(iso) },
        PLAIN,
      );
    expect(at('2025-06-01T12:00:00.000Z')).toContain('bake of wave 2: 42s left');
    expect(at('2025-06-01T12:00:01.000Z')).toContain('bake of wave 2: 41s left');
    expect(at('2025-06-01T12:01:00.000Z')).toContain('bake of wave 2: 0s left');
  });

  it('counts down to the maintenance window, and shows it before any wave is chosen', () => {
    const window = closedWindow();
    const paused = status({ state: 'paused', stateReason: 'maintenance window closed' }, { window });
    const at = (s: typeof paused, iso: string) =>
      renderWatchFrame(
        { view: viewOfStatus(s), patch: undefined, timings: new WaveTimings(), now: new Date(iso) },
        PLAIN,
      );
    expect(at(paused, '2025-06-01T13:59:30.000Z')).toContain(
      'maintenance window opens in 30s (2025-06-01T14:00:00.000Z)',
    );
    const waiting = status({ state: 'scheduled' }, { window, waves: [] });
    expect(at(waiting, '2025-06-01T13:00:00.000Z')).toContain('maintenance window opens in 1h 00m');
  });

  it('says the coordinator is away, and for how long, while it reconnects', () => {
    const frame = renderWatchFrame(
      {
        view: viewOfStatus(running()),
        patch: PATCH,
        timings: new WaveTimings(),
        now: NOW,
        lost: { reason: 'connection refused', since: new Date('2025-06-01T11:59:53.000Z') },
      },
      PLAIN,
    );
    expect(frame).toContain('coordinator unreachable for 7s (connection refused); reconnecting…');
    expect(frame).toContain('ETA after the first wave');
  });

  it('warns when a rollout succeeded but hosts were reverted by hand since', () => {
    const done = status(
      { state: 'succeeded' },
      { waves: [{ wave: 0, phase: 'passed', hosts: [host('web-1', 'healthy'), host('web-2', 'reverted')] }] },
    );
    expect(
      renderWatchFrame({ view: viewOfStatus(done), patch: PATCH, timings: new WaveTimings(), now: NOW }, PLAIN),
    ).toContain('warning: succeeded, but some hosts were reverted since');
  });

  it('colours only when asked, and then through real SGR sequences', () => {
    const input = { view: viewOfStatus(running()), patch: PATCH, timings: new WaveTimings(), now: NOW };
    expect(renderWatchFrame(input, PLAIN)).not.toContain('\x1b');
    const coloured = renderWatchFrame(input, createStyle(true));
    expect(coloured).toContain('\x1b[31m'); // red: the failed host and its cells
    expect(coloured).toContain('\x1b[32m'); // green: done cells
  });

  it('cannot be driven by the server: ANSI in a title, host id or reason is shown escaped', () => {
    const hostile = running();
    const wave = hostile.waves[1];
    if (wave) wave.hosts[1] = host('web-3\x1b]0;owned\x07', 'failed', { reason: '\x1b[2J\x1b[Hcleared\x9b31m' });
    const frame = renderWatchFrame(
      {
        view: viewOfStatus(hostile),
        patch: { title: 'Fix\x1b[2J\x1b[H', ticket: '\x1b]0;retitled\x07' },
        timings: new WaveTimings(),
        now: NOW,
      },
      PLAIN,
    );
    for (const raw of ['\x1b', '\x07', '\x9b']) expect(frame).not.toContain(raw);
    expect(frame).toContain('"Fix\\u001b[2J\\u001b[H" (\\u001b]0;retitled\\u0007)');
    expect(frame).toContain('web-3\\u001b]0;owned\\u0007 (wave 2) \\u001b[2J\\u001b[Hcleared\\u009b31m');
  });
});

describe('the watch off a terminal: one line per change', () => {
  it('describes the first status whole, then only what moved, with 1-based waves', () => {
    const before = running();
    const after = running();
    const wave = after.waves[1];
    if (wave) {
      wave.hosts[2] = host('web-4', 'failed', { errorCode: 'health_failed', reason: 'HTTP 500' });
      wave.phase = 'stopped';
    }
    after.failures = 2;
    after.rollout.state = 'halted';
    after.rollout.stateReason = 'failure budget exceeded';
    expect(describeWatchChanges(undefined, viewOfStatus(before), PATCH)).toEqual([
      'rollout ro_1 running: "Fix the TLS config" (OPS-42), 3 waves, 7 hosts, failures 1 of 2 tolerated',
    ]);
    expect(describeWatchChanges(viewOfStatus(before), viewOfStatus(after), PATCH)).toEqual([
      'wave 2 running → stopped',
      'wave 2 web-4 verifying → failed: health_failed: HTTP 500',
      'failures 2 of 2 tolerated',
      'rollout running → halted (failure budget exceeded)',
    ]);
    expect(describeWatchChanges(viewOfStatus(after), viewOfStatus(after), PATCH)).toEqual([]);
  });

  it('gives a rollout not started yet the waves it asked for, not "0 waves, 0 hosts"', () => {
    const scheduled = status({ state: 'scheduled', startedAt: null, waveCount: 0, hostCount: 0 }, { waves: [] });
    expect(describeWatchChanges(undefined, viewOfStatus(scheduled), PATCH)).toEqual([
      'rollout ro_1 scheduled: "Fix the TLS config" (OPS-42), waves [1,"100%"] planned when it starts, failures 0 of 0 tolerated',
    ]);
  });

  it('names the phase of a wave first seen already under way, and nothing of one still pending', () => {
    // The watch fetched before the start, and next when the canary already baked.
    const scheduled = status({ state: 'scheduled', startedAt: null, waveCount: 0, hostCount: 0 }, { waves: [] });
    const baking = status(
      { state: 'running', waveCount: 2, hostCount: 2 },
      {
        waves: [
          { wave: 0, phase: 'baking', hosts: [host('web-1', 'healthy')] },
          { wave: 1, phase: 'pending', hosts: [host('web-2', 'queued')] },
        ],
      },
    );
    baking.rollout.request.bakeSeconds = 300;
    expect(describeWatchChanges(viewOfStatus(scheduled), viewOfStatus(baking), PATCH)).toEqual([
      'wave 1 baking (bake 300s)',
      'wave 1 web-1 healthy',
      'wave 2 web-2 queued',
      'rollout scheduled → running',
    ]);
  });
});

describe('wave timings and durations', () => {
  it('has no ETA before a wave was measured, nor for a rollout that is not running', () => {
    expect(estimateRemainingMs(running(), new WaveTimings(), NOW.getTime())).toBeUndefined();
    expect(
      estimateRemainingMs(status({ state: 'paused', waveCount: 3 }), measuredTimings(), NOW.getTime()),
    ).toBeUndefined();
  });

  it('adds the bakes still to come, and what is left of the running one', () => {
    const baking = status({ waveCount: 3, currentWave: 1, bakeUntil: '2025-06-01T12:00:30.000Z' });
    baking.rollout.request.bakeSeconds = 30;
    // 30 s left of this bake; then wave 3: 60 s measured + 30 s bake.
    expect(estimateRemainingMs(baking, measuredTimings(), NOW.getTime())).toBe(120_000);
  });

  it('formats durations for people', () => {
    expect([formatDuration(0), formatDuration(12_400), formatDuration(245_000), formatDuration(7_380_000)]).toEqual([
      '0s',
      '12s',
      '4m 05s',
      '2h 03m',
    ]);
  });
});

describe('colour follows NO_COLOR and FORCE_COLOR', () => {
  it.each([
    [{}, true, true],
    [{}, false, false],
    [{ NO_COLOR: '1' }, true, false],
    [{ NO_COLOR: '' }, true, true],
    [{ FORCE_COLOR: '1' }, false, true],
    [{ FORCE_COLOR: '0' }, true, false],
    [{ NO_COLOR: '1', FORCE_COLOR: '1' }, true, false],
  ])('%j on a terminal: %s → %s', (env, terminal, expected) => {
    expect(wantsColour(env, terminal)).toBe(expected);
  });
});
