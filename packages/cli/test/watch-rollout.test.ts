import type { EventRecord } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../src/api-client.js';
import { watchRollout } from '../src/watch-rollout.js';
import { host, status } from './status-fixture.js';

// The watch follows a host's phases live: a `host.progress` notice on the event stream (no `id:`,
// not an audit event) makes it fetch the status again, without waiting for the safety-net poll.

const wave = (state: Parameters<typeof host>[1]) => ({
  waves: [{ wave: 0, phase: 'running' as const, hosts: [host('web-1', state)] }],
});
const STATUSES = [
  status({}, wave('dispatched')),
  status({}, wave('applying')),
  status({ state: 'succeeded' }, wave('healthy')),
];

function deferred() {
  let resolve = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('watchRollout', () => {
  it('fetches the status again on each host.progress notice, and hands no notice to onEvent', async () => {
    const fetched = STATUSES.map(() => deferred());
    let calls = 0;
    const notice = (state: string) =>
      new TextEncoder().encode(
        `event: host.progress\ndata: ${JSON.stringify({ type: 'host.progress', rolloutId: 'r-1', hostId: 'web-1', state, at: '2025-06-01T12:00:01.000Z' })}\n\n`,
      );
    const api = {
      rolloutStatus: async () => {
        const k = Math.min(calls++, STATUSES.length - 1);
        queueMicrotask(() => fetched[k]?.resolve());
        return STATUSES[k];
      },
      // Each notice goes out once the watch has shown the status before it.
      openEventStream: async (_id: string, _after: number, signal: AbortSignal) =>
        (async function* () {
          await fetched[0]?.promise;
          yield notice('applying');
          await fetched[1]?.promise;
          yield notice('verifying');
          // The stream stays open until the watch ends it, as a real one does.
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        })(),
    } as unknown as ApiClient;
    const seen: string[] = [];
    const events: EventRecord[] = [];
    // Polls far apart and a short timeout: only the notices can get the watch to the end in time.
    const outcome = await watchRollout(api, 'r-1', (s) => void seen.push(s.waves[0]?.hosts[0]?.state ?? '-'), {
      pollMs: 60_000,
      fallbackPollMs: 60_000,
      timeoutMs: 20_000,
      onEvent: (event) => events.push(event),
    });
    expect(outcome.kind).toBe('final');
    expect(seen).toEqual(['dispatched', 'applying', 'healthy']);
    expect(events).toEqual([]);
  });

  describe('paces its fetches while changes pour in', () => {
    /** A stream that says a host moved every 5 ms until the watch ends it, as a large rollout's does. */
    const flood = async (_id: string, _after: number, signal: AbortSignal) =>
      (async function* () {
        while (!signal.aborted) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          yield new TextEncoder().encode(
            `event: host.progress\ndata: ${JSON.stringify({ type: 'host.progress', rolloutId: 'r-1', hostId: 'web-1', state: 'applying', at: '2025-06-01T12:00:01.000Z' })}\n\n`,
          );
        }
      })();

    async function fetchStarts(answerMs: number, minIntervalMs?: number) {
      const starts: number[] = [];
      const api = {
        rolloutStatus: async () => {
          starts.push(Date.now());
          await new Promise((resolve) => setTimeout(resolve, answerMs));
          return STATUSES[Math.min(starts.length - 1, STATUSES.length - 1)];
        },
        openEventStream: flood,
      } as unknown as ApiClient;
      const outcome = await watchRollout(api, 'r-1', () => {}, {
        pollMs: 60_000,
        fallbackPollMs: 60_000,
        timeoutMs: 20_000,
        ...(minIntervalMs === undefined ? {} : { minIntervalMs }),
      });
      expect(outcome.kind).toBe('final');
      return starts.slice(1).map((at, i) => at - (starts[i] as number));
    }

    it('waits at least minIntervalMs (250 by default) between two fetches of a quick status', async () => {
      const gaps = await fetchStarts(0);
      expect(gaps).toHaveLength(STATUSES.length - 1);
      for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(249);
    });

    it('waits ten times as long as a slow status took to answer', async () => {
      // 40 ms an answer: 400 ms apart, though minIntervalMs alone would allow one every 10 ms.
      const gaps = await fetchStarts(40, 10);
      expect(gaps).toHaveLength(STATUSES.length - 1);
      for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(399);
    });
  });
});
