import { describe, expect, it } from 'vitest';
import { CoordinatorRotation } from '../src/coordinator-rotation.js';

// The schedule alone, with the jitter's draw fixed at its top (just below 1), so each wait is its ceiling:
// the real sockets are in coordinator-failover.test.ts.
const TOP = () => 0.999_999;

function rotation(urls: string[], random = TOP) {
  return new CoordinatorRotation({ urls, backoffBaseMs: 1000, backoffMaxMs: 30_000, random });
}

const dials = (r: CoordinatorRotation, count: number) =>
  Array.from({ length: count }, () => {
    const { url, delayMs, endOfRound } = r.next({ needsHuman: false });
    return [url, Math.round(delayMs / 1000), endOfRound];
  });

describe('CoordinatorRotation', () => {
  it('with one URL backs off exponentially on every failure, as a single coordinator always did', () => {
    expect(dials(rotation(['a']), 7)).toEqual([
      ['a', 1, true],
      ['a', 2, true],
      ['a', 4, true],
      ['a', 8, true],
      ['a', 16, true],
      ['a', 30, true],
      ['a', 30, true],
    ]);
  });

  it('moves round robin and grows the backoff per full round, not per URL', () => {
    // Within a round each move waits at most the base; the wait before the round starts again grows.
    expect(dials(rotation(['a', 'b', 'c']), 9)).toEqual([
      ['b', 1, false],
      ['c', 1, false],
      ['a', 1, true],
      ['b', 1, false],
      ['c', 1, false],
      ['a', 2, true],
      ['b', 1, false],
      ['c', 1, false],
      ['a', 4, true],
    ]);
  });

  it('starts the round again from the coordinator that welcomed it, with the backoff reset', () => {
    const r = rotation(['a', 'b', 'c']);
    dials(r, 6); // two failed rounds
    r.next({ needsHuman: false }); // to b
    r.welcomed();
    expect(r.current).toBe('b');
    // b drops it: c, then a are tried at once-ish; the round ends back at b with the first backoff step.
    expect(dials(r, 3)).toEqual([
      ['c', 1, false],
      ['a', 1, false],
      ['b', 1, true],
    ]);
  });

  it('waits the cap after a refusal only a person can fix, and still moves on', () => {
    const r = rotation(['a', 'b']);
    expect(r.next({ needsHuman: true })).toEqual({ url: 'b', delayMs: 30_000, endOfRound: false });
  });

  it('never redials sooner than 50 ms, whatever the draw', () => {
    const r = rotation(['a', 'b'], () => 0);
    expect(r.next({ needsHuman: false }).delayMs).toBe(50);
    expect(r.next({ needsHuman: false }).delayMs).toBe(50);
  });

  it('refuses an empty list', () => {
    expect(() => rotation([])).toThrow(/at least one URL/);
  });
});
