import type { OrderProgress } from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FIRST_REPORT_MAX_HOLD_MS, ProgressCoalescer } from '../src/progress-coalescer.js';

const report = (orderId: string, phase: OrderProgress['phase'], extra: Partial<OrderProgress> = {}): OrderProgress => ({
  type: 'order.progress',
  orderId,
  phase,
  ...extra,
});
const HEALTH = [{ check: 'http 200', ok: true, observed: 200 }] as unknown as NonNullable<OrderProgress['health']>;

describe('ProgressCoalescer', () => {
  let sent: OrderProgress[];
  let coalescer: ProgressCoalescer;
  const phases = () => sent.map((r) => `${r.orderId}:${r.phase}`);

  beforeEach(() => {
    vi.useFakeTimers();
    sent = [];
    coalescer = new ProgressCoalescer((r) => sent.push(r), 200);
  });
  afterEach(() => {
    coalescer.close();
    vi.useRealTimers();
  });

  it('a fast order is reported by its result alone: its arrival and every phase after it are dropped', () => {
    for (const phase of ['accepted', 'snapshotted', 'applying', 'applied', 'verifying'] as const)
      coalescer.progress(report('o-1', phase));
    coalescer.finished('o-1');
    vi.advanceTimersByTime(10_000);
    expect(phases()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('an order still running when its window ends shows its newest report; the next opens a new window', () => {
    coalescer.progress(report('o-1', 'accepted'));
    coalescer.progress(report('o-1', 'snapshotted'));
    vi.advanceTimersByTime(150);
    coalescer.progress(report('o-1', 'applying', { message: 'dpkg --unpack' }));
    expect(phases()).toEqual([]);
    vi.advanceTimersByTime(50);
    expect(phases()).toEqual(['o-1:applying']);
    expect(sent[0]?.message).toBe('dpkg --unpack');
    coalescer.progress(report('o-1', 'verifying'));
    vi.advanceTimersByTime(199);
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(phases()).toEqual(['o-1:applying', 'o-1:verifying']);
  });

  it('holds the first report at most FIRST_REPORT_MAX_HOLD_MS, however long the window: delivery shows well within any delivery deadline', () => {
    const long = new ProgressCoalescer((r) => sent.push(r), 5000);
    long.progress(report('o-1', 'accepted'));
    vi.advanceTimersByTime(FIRST_REPORT_MAX_HOLD_MS - 1);
    expect(phases()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(phases()).toEqual(['o-1:accepted']);
    // After it, the window is the configured one.
    long.progress(report('o-1', 'applying'));
    vi.advanceTimersByTime(4999);
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(phases()).toEqual(['o-1:accepted', 'o-1:applying']);
    long.close();
  });

  it('health results go at once, after what was held for the order, so no poll is replaced', () => {
    coalescer.progress(report('o-1', 'accepted'));
    coalescer.progress(report('o-1', 'applied'));
    coalescer.progress(report('o-1', 'verifying', { health: HEALTH, failingPolls: 0 }));
    coalescer.progress(report('o-1', 'verifying', { health: HEALTH, failingPolls: 1 }));
    // The held arrival was replaced by `applied`, which goes first.
    expect(phases()).toEqual(['o-1:applied', 'o-1:verifying', 'o-1:verifying']);
    expect(sent.map((r) => r.failingPolls)).toEqual([undefined, 0, 1]);
  });

  it('keeps orders apart: one order’s result drops only its own held report', () => {
    coalescer.progress(report('o-1', 'accepted'));
    coalescer.progress(report('o-2', 'accepted'));
    coalescer.progress(report('o-1', 'applying'));
    coalescer.progress(report('o-2', 'applying'));
    coalescer.finished('o-1');
    vi.advanceTimersByTime(200);
    expect(phases()).toEqual(['o-2:applying']);
  });

  it('an order seen again after its result (a revert of it, a resend) starts over: its first report is held again', () => {
    coalescer.progress(report('o-1', 'accepted'));
    coalescer.finished('o-1');
    coalescer.progress(report('o-1', 'reverting'));
    expect(phases()).toEqual([]);
    vi.advanceTimersByTime(200);
    expect(phases()).toEqual(['o-1:reverting']);
  });

  it('close stops every timer and sends nothing held', () => {
    coalescer.progress(report('o-1', 'accepted'));
    coalescer.progress(report('o-1', 'applying'));
    coalescer.close();
    vi.advanceTimersByTime(1000);
    expect(phases()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('window 0 sends every report at once', () => {
    const all = new ProgressCoalescer((r) => sent.push(r), 0);
    for (const phase of ['accepted', 'snapshotted', 'applying', 'applied', 'verifying'] as const)
      all.progress(report('o-9', phase));
    expect(phases()).toEqual(['o-9:accepted', 'o-9:snapshotted', 'o-9:applying', 'o-9:applied', 'o-9:verifying']);
    expect(vi.getTimerCount()).toBe(0);
  });
});
