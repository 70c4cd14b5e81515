import { afterEach, describe, expect, it, vi } from 'vitest';
import { type HostChangeNotice, HostChangeNotices } from '../src/routes/host-change-notices.js';

// A stream that coalesces host events says "hosts moved" at most once an interval: the first move
// at once, a burst's moves in one notice at the interval's end, none lost and none after the end.

afterEach(() => {
  vi.useRealTimers();
});

function notices(intervalMs = 250) {
  vi.useFakeTimers();
  const sent: { at: number; notice: HostChangeNotice }[] = [];
  const coalescer = new HostChangeNotices(
    'ro_1',
    (notice) => sent.push({ at: Date.now(), notice }),
    intervalMs,
    () => Date.now(),
  );
  return { coalescer, sent, start: Date.now() };
}

describe('HostChangeNotices', () => {
  it('says the first move at once', () => {
    const { coalescer, sent, start } = notices();
    coalescer.note();
    expect(sent).toEqual([{ at: start, notice: { type: 'hosts.changed', rolloutId: 'ro_1', changes: 1 } }]);
  });

  it('says a burst once, at the end of the interval, with how many moves it stands for', () => {
    const { coalescer, sent, start } = notices();
    coalescer.note();
    for (let i = 0; i < 999; i++) coalescer.note();
    vi.advanceTimersByTime(249);
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sent.map((s) => [s.at - start, s.notice.changes])).toEqual([
      [0, 1],
      [250, 999],
    ]);
    // Nothing moved since: no timer, no notice.
    vi.advanceTimersByTime(10_000);
    expect(sent).toHaveLength(2);
  });

  it('counts every move, whatever their spacing, and keeps notices an interval apart', () => {
    const { coalescer, sent } = notices();
    let moves = 0;
    for (let ms = 0; ms < 2000; ms += 30) {
      coalescer.note();
      moves++;
      vi.advanceTimersByTime(30);
    }
    vi.advanceTimersByTime(250);
    expect(sent.reduce((sum, s) => sum + s.notice.changes, 0)).toBe(moves);
    const gaps = sent.slice(1).map((s, i) => s.at - (sent[i]?.at ?? 0));
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(250);
    expect(sent.length).toBeLessThanOrEqual(Math.ceil(2250 / 250));
  });

  it('a move after a quiet interval is said at once again', () => {
    const { coalescer, sent, start } = notices();
    coalescer.note();
    vi.advanceTimersByTime(1000);
    coalescer.note();
    expect(sent.map((s) => s.at - start)).toEqual([0, 1000]);
  });

  it('sends nothing once stopped', () => {
    const { coalescer, sent } = notices();
    coalescer.note();
    coalescer.note();
    coalescer.stop();
    vi.advanceTimersByTime(1000);
    expect(sent).toHaveLength(1);
  });
});
