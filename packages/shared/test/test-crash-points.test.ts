import { describe, expect, it } from 'vitest';
import { armedCrashPoints, armedPausePoints, crashingCheckpoint, pausingCheckpoint } from '../src/test-crash-points.js';

describe('test crash points', () => {
  it('arms nothing when FLEETPATCH_TEST_CRASH_AT is unset or empty, so the daemons wire no checkpoint', () => {
    const warned: string[] = [];
    const log = { warn: (fields: { checkpoint: string }) => warned.push(fields.checkpoint) };
    expect(armedCrashPoints({})).toEqual(new Set());
    expect(armedCrashPoints({ FLEETPATCH_TEST_CRASH_AT: '' })).toEqual(new Set());
    expect(crashingCheckpoint(armedCrashPoints({}), log)).toBeUndefined();
    expect(warned).toEqual([]);
  });

  it('arms each comma-separated name, and passes by every other one without a word', () => {
    const armed = armedCrashPoints({ FLEETPATCH_TEST_CRASH_AT: 'apply:accepted,,file:apply:renamed' });
    expect(armed).toEqual(new Set(['apply:accepted', 'file:apply:renamed']));
    const warned: string[] = [];
    const checkpoint = crashingCheckpoint(armed, { warn: (fields) => warned.push(fields.checkpoint) });
    checkpoint?.('apply:snapshotted');
    checkpoint?.('file:apply:temp-synced');
    expect(checkpoint).toBeTypeOf('function');
    expect(warned).toEqual([]);
  });

  it('arms pause points apart (FLEETPATCH_TEST_PAUSE_AT), and passes by every other step without a word', () => {
    expect(pausingCheckpoint(armedPausePoints({ FLEETPATCH_TEST_CRASH_AT: 'apply:applied' }), console)).toBeUndefined();
    const armed = armedPausePoints({ FLEETPATCH_TEST_PAUSE_AT: 'apply:snapshotted,,apply:applied' });
    expect(armed).toEqual(new Set(['apply:snapshotted', 'apply:applied']));
    const warned: string[] = [];
    // The stop itself (a SIGSTOP of this very process) is exercised by fault 8 "mid-order", on a real agent.
    const checkpoint = pausingCheckpoint(armed, { warn: (fields) => warned.push(fields.checkpoint) });
    checkpoint?.('apply:accepted');
    checkpoint?.('journal:apply:applied:renamed');
    expect(checkpoint).toBeTypeOf('function');
    expect(warned).toEqual([]);
  });
});
