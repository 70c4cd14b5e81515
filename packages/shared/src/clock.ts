import { setTimeout as delay } from 'node:timers/promises';

/**
 * Time, behind one interface so logic that waits or stamps can be tested without waiting. Code that
 * only reads the time takes `Pick<Clock, 'now'>`, so a test's fake can be `{ now: () => t }`.
 */
export interface Clock {
  /** Milliseconds since the epoch, like `Date.now()`: for stamps. NTP may step it either way. */
  now(): number;
  /**
   * Milliseconds on a clock that is never stepped (`performance.now()`; the one timers run on), from
   * an arbitrary origin: what a duration or deadline inside one process is measured on, so that a step
   * of the wall clock neither ends it early nor stretches it.
   */
  monotonicNow(): number;
  /** Resolves after `ms`, or rejects with the signal's reason when it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonicNow: () => performance.now(),
  sleep: async (ms, signal) => {
    await delay(ms, undefined, signal ? { signal } : undefined);
  },
};

/** The ISO 8601 instant written with rows and events. */
export function isoAt(clock: Pick<Clock, 'now'>): string {
  return new Date(clock.now()).toISOString();
}
