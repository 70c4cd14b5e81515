import type { EventRecord } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../src/api-client.js';
import { ApiError, ConnectionError } from '../src/cli-errors.js';
import { followRolloutEvents } from '../src/rollout-event-stream.js';
import { FULL_STATUS_HOSTS, watchRollout } from '../src/watch-rollout.js';
import { host, status, summary } from './status-fixture.js';

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

const CREATED: EventRecord = {
  seq: 1,
  rolloutId: 'r-1',
  hostId: null,
  actor: 'alice',
  type: 'rollout.created',
  fromState: null,
  toState: 'draft',
  data: null,
  at: '2025-06-01T12:00:00.000Z',
};

/** A `host.progress` notice (a stream of every host event) or a `hosts.changed` one (coalesced). */
const NOTICES = {
  'host.progress': (state: string) =>
    `event: host.progress\ndata: ${JSON.stringify({ type: 'host.progress', rolloutId: 'r-1', hostId: 'web-1', state, at: '2025-06-01T12:00:01.000Z' })}\n\n`,
  'hosts.changed': () =>
    `event: hosts.changed\ndata: ${JSON.stringify({ type: 'hosts.changed', rolloutId: 'r-1', changes: 2 })}\n\n`,
};

describe('watchRollout', () => {
  it.each(Object.keys(NOTICES) as (keyof typeof NOTICES)[])(
    'fetches the status again on each %s notice, and hands no notice to onEvent',
    async (kind) => {
      const fetched = STATUSES.map(() => deferred());
      let calls = 0;
      const notice = (state: string) => new TextEncoder().encode(NOTICES[kind](state));
      const asked: string[] = [];
      const api = {
        // A small rollout: the summary read first says so, and its full status is read each time after.
        rolloutSummary: async () => summary({ hostCount: 3 }),
        rolloutStatus: async () => {
          const k = Math.min(calls++, STATUSES.length - 1);
          queueMicrotask(() => fetched[k]?.resolve());
          return STATUSES[k];
        },
        // Each notice goes out once the watch has shown the status before it.
        openEventStream: async (_id: string, _after: number, signal: AbortSignal, hostEvents: string) => {
          asked.push(hostEvents);
          return (async function* () {
            // An audit event first, as a real stream's backlog starts: the notices after it carry no id.
            yield new TextEncoder().encode(`id: 1\nevent: rollout.created\ndata: ${JSON.stringify(CREATED)}\n\n`);
            await fetched[0]?.promise;
            yield notice('applying');
            await fetched[1]?.promise;
            yield notice('verifying');
            // The stream stays open until the watch ends it, as a real one does.
            await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          })();
        },
      } as unknown as ApiClient;
      const seen: string[] = [];
      const events: EventRecord[] = [];
      // Polls far apart and a short timeout: only the notices can get the watch to the end in time.
      const outcome = await watchRollout(
        api,
        'r-1',
        (s) => void seen.push(s.kind === 'status' ? (s.status.waves[0]?.hosts[0]?.state ?? '-') : s.kind),
        {
          pollMs: 60_000,
          fallbackPollMs: 60_000,
          timeoutMs: 20_000,
          onEvent: (event) => events.push(event),
        },
      );
      expect(outcome.kind).toBe('final');
      expect(seen).toEqual(['dispatched', 'applying', 'healthy']);
      // The audit event once; no notice ever handed to onEvent as one.
      expect(events).toEqual([CREATED]);
      // It reads the status after a change, so it asks for a count of the hosts' moves, not each.
      expect(asked).toEqual(['coalesced']);
    },
  );

  it('throws a 400 that is not about hostEvents at once: it falls back once, never loops', async () => {
    const asked: string[] = [];
    const api = {
      openEventStream: async (_id: string, _after: number, _signal: AbortSignal, hostEvents: string) => {
        asked.push(hostEvents);
        throw new ApiError(400, 'validation_failed', 'id: too long', []);
      },
    } as unknown as ApiClient;
    const following = followRolloutEvents(api, 'r-1', {
      after: 0,
      signal: new AbortController().signal,
      hostEvents: 'coalesced',
      onEvent: () => {},
    });
    await expect(following).rejects.toThrow(/id: too long/);
    expect(asked).toEqual(['coalesced', 'all']);
  });

  it('follows every event from a coordinator that refuses hostEvents (one from before it), triggered all the same', async () => {
    const asked: string[] = [];
    let calls = 0;
    const api = {
      rolloutSummary: async () => summary({ hostCount: 3 }),
      rolloutStatus: async () => STATUSES[Math.min(calls++, STATUSES.length - 1)],
      openEventStream: async (_id: string, _after: number, signal: AbortSignal, hostEvents: string) => {
        asked.push(hostEvents);
        if (hostEvents !== 'all')
          throw new ApiError(400, 'validation_failed', 'querystring/hostEvents: unknown key', []);
        return (async function* () {
          for (const state of ['applying', 'verifying']) {
            await new Promise((resolve) => setTimeout(resolve, 20));
            yield new TextEncoder().encode(NOTICES['host.progress'](state));
          }
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        })();
      },
    } as unknown as ApiClient;
    // Polls far apart: only the stream's notices can get the watch to the end in time.
    const outcome = await watchRollout(api, 'r-1', () => {}, {
      pollMs: 60_000,
      fallbackPollMs: 60_000,
      minIntervalMs: 0,
      timeoutMs: 5_000,
    });
    expect(outcome.kind).toBe('final');
    expect(asked).toEqual(['coalesced', 'all']);
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

    /** The gaps between the status reads' starts; `down` answers (by read, from 0) throw as an unreachable coordinator. */
    async function fetchStarts(answerMs: number, minIntervalMs?: number, pollMs = 60_000, down: number[] = []) {
      const starts: number[] = [];
      let answered = 0;
      const api = {
        rolloutSummary: async () => summary({ hostCount: 3 }),
        rolloutStatus: async () => {
          starts.push(Date.now());
          await new Promise((resolve) => setTimeout(resolve, answerMs));
          if (down.includes(starts.length - 1)) throw new ConnectionError('cannot reach the coordinator');
          return STATUSES[Math.min(answered++, STATUSES.length - 1)];
        },
        openEventStream: flood,
      } as unknown as ApiClient;
      const outcome = await watchRollout(api, 'r-1', () => {}, {
        pollMs,
        fallbackPollMs: pollMs,
        timeoutMs: 20_000,
        ...(minIntervalMs === undefined ? {} : { minIntervalMs }),
      });
      expect(outcome.kind).toBe('final');
      return starts.slice(1).map((at, i) => at - (starts[i] as number));
    }

    it('waits at least minIntervalMs (250 by default) between two fetches of a quick status', async () => {
      const gaps = await fetchStarts(0);
      expect(gaps).toHaveLength(STATUSES.length - 1);
      for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(248); // the clock's grain
    });

    it('waits ten times as long as a slow status took to answer', async () => {
      // 40 ms an answer: ~400 ms apart (less a millisecond or two of the clock's grain on the 40),
      // though minIntervalMs alone would allow one every 10 ms.
      const gaps = await fetchStarts(40, 10);
      expect(gaps).toHaveLength(STATUSES.length - 1);
      for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(370);
    });

    it('never waits longer than the poll, however slow the status is to answer', async () => {
      // 100 ms an answer would space them 1 s apart; the poll of 300 ms caps it.
      const gaps = await fetchStarts(100, 10, 300);
      expect(gaps).toHaveLength(STATUSES.length - 1);
      for (const gap of gaps) {
        expect(gap).toBeGreaterThanOrEqual(290);
        expect(gap).toBeLessThan(700);
      }
    });

    it('paces its attempts while the coordinator cannot be reached, as it paces its reads', async () => {
      const gaps = await fetchStarts(0, undefined, 60_000, [1, 2, 3]);
      expect(gaps).toHaveLength(STATUSES.length - 1 + 3);
      for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(248); // the clock's grain
    });
  });

  describe('reads a large rollout through its summary, a small one through its full status', () => {
    /**
     * The answer to each call in turn, with the read it must be (another read fails the watch). The
     * stream is refused, so the watch polls, here every 5 ms. Resolves to the reads made, in order.
     */
    async function reads(script: ['status' | 'summary', unknown][], fullStatus = false) {
      const asked: string[] = [];
      const answer = (kind: 'status' | 'summary') => {
        const [expected, value] = script[Math.min(asked.length, script.length - 1)] ?? [];
        asked.push(kind);
        if (kind !== expected) throw new Error(`read ${asked.length} was the ${kind}, not the ${expected}`);
        return value;
      };
      const api = {
        rolloutStatus: async () => answer('status'),
        rolloutSummary: async () => answer('summary'),
        openEventStream: async () => {
          throw new Error('no stream here');
        },
      } as unknown as ApiClient;
      const outcome = await watchRollout(api, 'ro_1', () => {}, {
        fallbackPollMs: 5,
        minIntervalMs: 0,
        timeoutMs: 20_000,
        fullStatus,
      });
      return { asked, outcome };
    }
    const big = FULL_STATUS_HOSTS + 1;

    it('the dashboard draws a rollout from its full status up to the same size (it keeps its own copy: no bundler)', async () => {
      const source = new URL('../../coordinator/dashboard/rollout-source.js', import.meta.url).href;
      const dashboard = (await import(source)) as { FULL_STATUS_HOSTS: number };
      expect(dashboard.FULL_STATUS_HOSTS).toBe(FULL_STATUS_HOSTS);
    });

    it('a rollout of more than FULL_STATUS_HOSTS hosts: summaries only, never its full status', async () => {
      const { asked, outcome } = await reads([
        ['summary', summary({ hostCount: big })],
        ['summary', summary({ hostCount: big })],
        ['summary', summary({ hostCount: big, state: 'succeeded' })],
      ]);
      expect(asked).toEqual(['summary', 'summary', 'summary']);
      expect(outcome).toMatchObject({ kind: 'final', source: { kind: 'summary' } });
    });

    it('a rollout not started yet: its summary, then its full status; once it has 1 to 1,000 hosts, the full status only', async () => {
      const scheduled = { state: 'scheduled' as const, hostCount: 0, waveCount: 0 };
      const { asked, outcome } = await reads([
        ['summary', summary(scheduled)],
        ['status', status(scheduled)],
        // Started: the summary shows it small, and its full status is read at once, then alone.
        ['summary', summary({ hostCount: 6 })],
        ['status', status({ hostCount: 6 })],
        ['status', status({ hostCount: 6, state: 'succeeded' })],
      ]);
      expect(asked).toEqual(['summary', 'status', 'summary', 'status', 'status']);
      expect(outcome).toMatchObject({ kind: 'final', source: { kind: 'status' } });
    });

    it('with fullStatus (--json), the full status whatever the size', async () => {
      const { asked } = await reads(
        [
          ['status', status({ hostCount: big })],
          ['status', status({ hostCount: big, state: 'succeeded' })],
        ],
        true,
      );
      expect(asked).toEqual(['status', 'status']);
    });
  });
});
