/**
 * PostgresHostRunRepository against HostRunRepository (SQLite, the reference): a rollout's host runs
 * dispatched, answered, failed, reverted, requeued — and every query the engine and the API make
 * between those writes answers the same on both stores: order, booleans, nulls, JSON reports, the
 * counts by state, and the writes refused from a stale state.
 */
import type { HostRunState } from '@fleetpatch/shared';
import { expect, it } from 'vitest';
import { postgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { HostRunRepository } from '../src/store/host-run-repository.js';
import { PostgresHostRunRepository } from '../src/store/postgres/postgres-host-run-repository.js';
import { useStoreTwins } from './support/store-twins.js';

const T0 = 1_764_860_400_000;

describeNeeding(postgresCluster, 'PostgresHostRunRepository', () => {
  const { same } = useStoreTwins(async (twins) => {
    await twins.seed.rollout('r1');
    await twins.seed.rollout('r2');
    return {
      sqlite: new HostRunRepository(twins.sqlite),
      postgres: new PostgresHostRunRepository(twins.postgres) as unknown as HostRunRepository,
    };
  });

  /** Every read the repository offers, on both stores, for the rollouts and hosts of this test. */
  async function readEverything(): Promise<void> {
    const some: HostRunState[] = ['dispatched', 'failed', 'reverting', 'healthy'];
    for (const rolloutId of ['r1', 'r2', 'nowhere']) {
      await same((r) => r.forRollout(rolloutId));
      for (const wave of [0, 1, 2]) {
        await same((r) => r.forWave(rolloutId, wave));
        await same((r) => r.countInWave(rolloutId, wave, some));
        await same((r) => r.countInWave(rolloutId, wave, ['queued', 'verifying']));
        await same((r) => r.anyQueued(rolloutId, wave));
        await same((r) => r.nextQueued(rolloutId, wave, 2));
        await same((r) => r.failures(rolloutId, wave));
        await same((r) => r.page(rolloutId, { wave, limit: 3 }));
      }
      await same((r) => r.countByWaveAndState(rolloutId));
      await same((r) => r.firstFailures(rolloutId, 2));
      await same((r) => r.failures(rolloutId));
      await same((r) => r.page(rolloutId, { limit: 4 }));
      await same((r) => r.page(rolloutId, { limit: 4, after: { wave: 1, position: 0 } }));
      await same((r) => r.page(rolloutId, { limit: 10, state: 'queued' }));
      await same((r) => r.page(rolloutId, { limit: 10, state: 'failed', wave: 1, after: { wave: 0, position: 9 } }));
      await same((r) => r.countInStates(rolloutId, some));
      await same((r) => r.countInStates(rolloutId, []));
      await same((r) => r.inStates(rolloutId, some));
      await same((r) => r.revertCandidates(rolloutId, 3));
      await same((r) => r.revertCandidates(rolloutId, 100));
    }
    await same((r) => r.inStatesEverywhere(some));
    await same((r) => r.inStatesEverywhere(['queued']));
    for (const hostId of ['h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'nobody']) {
      await same((r) => r.recentForHost(hostId, 1));
      await same((r) => r.recentForHost(hostId, 5));
      await same((r) => r.forHostInStates(hostId, some));
    }
  }

  it('dispatches a burst in one call as the SQLite store does: every run still queued, none that is not', async () => {
    await same((r) =>
      r.insertQueued('r1', [
        { hostId: 'h0', wave: 0, position: 0 },
        { hostId: 'h1', wave: 0, position: 1 },
        { hostId: 'h2', wave: 0, position: 2 },
        { hostId: 'h3', wave: 1, position: 0 },
      ]),
    );
    await same((r) => r.insertQueued('r2', [{ hostId: 'h0', wave: 0, position: 0 }]));
    await same((r) => r.transition('r1', 'h0', 'queued', { to: 'skipped', reason: 'by hand' }));
    // Sorted: which rows were written is the answer, not the order PostgreSQL returns them in.
    const burst = (rolloutId: string, at: number, dispatches: Parameters<HostRunRepository['dispatchQueued']>[2]) =>
      same(async (r) => (await r.dispatchQueued(rolloutId, at, dispatches)).sort());
    expect(
      await burst('r1', T0, [
        { hostId: 'h2', orderId: 'o-h2', deliveredAt: T0 },
        { hostId: 'h0', orderId: 'o-h0', deliveredAt: T0 }, // skipped: not written
        { hostId: 'h1', orderId: 'o-h1', deliveredAt: null },
        { hostId: 'nobody', orderId: 'o-nobody', deliveredAt: T0 },
      ]),
    ).toEqual(['h1', 'h2']);
    expect(await burst('r1', T0 + 5, [{ hostId: 'h1', orderId: 'o-again', deliveredAt: T0 }])).toEqual([]);
    expect(await burst('r2', T0, [])).toEqual([]);
    // Order ids are unique across rollouts: the whole call is refused.
    await same((r) => r.dispatchQueued('r2', T0, [{ hostId: 'h0', orderId: 'o-h2', deliveredAt: T0 }]), {
      refusal: true,
    });
    await readEverything();
    await same((r) => r.byOrderId('o-h1'));
    await same((r) => r.byOrderId('o-h2'));
  });

  it('answers every query as the SQLite store does, through a rollout and a revert', async () => {
    // Written out of order: positions and waves, not the order of inserts, order a rollout.
    const planned = [
      { hostId: 'h3', wave: 1, position: 1 },
      { hostId: 'h0', wave: 0, position: 0 },
      { hostId: 'h2', wave: 1, position: 0 },
      { hostId: 'h1', wave: 0, position: 1 },
      { hostId: 'h4', wave: 2, position: 0 },
      { hostId: 'h5', wave: 1, position: 2 },
    ];
    await same((r) => r.insertQueued('r1', planned));
    await same((r) => r.insertQueued('r2', [{ hostId: 'h1', wave: 0, position: 0 }]));
    await same((r) => r.insertQueued('r2', [{ hostId: 'h0', wave: 0, position: 1 }]));
    await same((r) => r.insertQueued('r2', []));
    // A host is in a rollout once.
    await same((r) => r.insertQueued('r1', [{ hostId: 'h0', wave: 2, position: 5 }]), { refusal: true });
    await readEverything();

    // Delivered at dispatch (the host is connected), or waiting for its host (null).
    const dispatch = (rolloutId: string, hostId: string, orderId: string, at: number, waits = false) =>
      same((r) =>
        r.transition(rolloutId, hostId, 'queued', { to: 'dispatched', orderId, at, deliveredAt: waits ? null : at }),
      );
    expect(await dispatch('r1', 'h0', 'o-h0', T0)).toBe(true);
    expect(await dispatch('r1', 'h1', 'o-h1', T0 + 5, true)).toBe(true);
    expect(await dispatch('r2', 'h1', 'o2-h1', T0 + 1, true)).toBe(true);
    expect(await dispatch('r2', 'h0', 'o2-h0', T0 + 5)).toBe(true);
    // From a state it is no longer in: nothing is written.
    expect(await dispatch('r1', 'h0', 'o-again', T0 + 9)).toBe(false);
    // Order ids are unique across rollouts.
    await same(
      (r) => r.transition('r1', 'h2', 'queued', { to: 'dispatched', orderId: 'o-h0', at: T0, deliveredAt: T0 }),
      { refusal: true },
    );
    // Its host's hello: the waiting order is handed over; a second hello keeps the first instant, and a
    // run delivered at dispatch keeps its own.
    await same((r) => r.markDelivered('r1', 'h1', T0 + 50));
    await same((r) => r.markDelivered('r1', 'h1', T0 + 60));
    await same((r) => r.markDelivered('r1', 'h0', T0 + 60));
    // A progress report of an order delivered already keeps its instant; of one never handed over writes it.
    expect(await same((r) => r.transition('r2', 'h0', 'dispatched', { to: 'delivered', deliveredAt: T0 + 70 }))).toBe(
      true,
    );
    expect(await same((r) => r.transition('r2', 'h1', 'dispatched', { to: 'applying', deliveredAt: T0 + 70 }))).toBe(
      true,
    );
    await readEverything();
    await same((r) => r.markAnswered('r1', 'h0'));
    // Each of h0 and h1 dispatched in both rollouts: two runs of one host in one state.
    await readEverything();
    await same((r) => r.byOrderId('o-h0'));
    await same((r) => r.byOrderId('o-nothing'));

    const health = [{ check: 'http', kind: 'http', ok: true, observed: 'HTTP 200 ✓', at: '2026-12-04T15:00:00.000Z' }];
    expect(
      await same((r) =>
        r.transition('r1', 'h0', 'dispatched', {
          to: 'healthy',
          changed: true,
          finishedAt: T0 + 100,
          health,
          afterChange: { restarted: ['nginx.service'], stale: [], rebootRequired: false } as never,
          packages: [{ name: 'openssl', from: '1', to: '2' }] as never,
          rehearsal: { ok: true, restored: 3 } as never,
        }),
      ),
    ).toBe(true);
    expect(
      await same((r) =>
        r.transition('r1', 'h1', 'dispatched', {
          to: 'failed',
          changed: true,
          countedFailure: true,
          // Written with the result it answered with (the engine's one UPDATE for both).
          answered: true,
          finishedAt: T0 + 200,
          errorCode: 'health_failed',
          reason: 'unhealthy after patch',
          health: null,
        }),
      ),
    ).toBe(true);
    // Fields left undefined keep their value; a falsy after-change report writes nothing.
    expect(
      await same((r) =>
        r.transition('r2', 'h1', 'applying', {
          to: 'timed_out',
          countedFailure: true,
          reason: 'no answer',
          afterChange: null,
        }),
      ),
    ).toBe(true);
    expect(
      await same((r) => r.transition('r2', 'h0', 'delivered', { to: 'failed', changed: false, errorCode: 'x' })),
    ).toBe(true);
    await readEverything();

    // The revert: h1 reverted, h0's revert fails, a late result says r2/h0 changed after all.
    expect(
      await same((r) => r.transition('r1', 'h1', 'failed', { to: 'reverting', revertOrderId: 'rv-h1', at: T0 + 300 })),
    ).toBe(true);
    expect(
      await same((r) => r.transition('r1', 'h0', 'healthy', { to: 'reverting', revertOrderId: 'rv-h0', at: T0 + 301 })),
    ).toBe(true);
    await same((r) => r.byRevertOrderId('rv-h1'));
    expect(
      await same((r) =>
        r.transition('r1', 'h1', 'reverting', { to: 'reverted', changed: false, finishedAt: T0 + 400 }),
      ),
    ).toBe(true);
    expect(
      await same((r) =>
        r.transition('r1', 'h0', 'reverting', {
          to: 'revert_failed',
          finishedAt: null,
          errorCode: null,
          reason: 'dpkg',
        }),
      ),
    ).toBe(true);
    await same((r) => r.setChanged('r2', 'h0', true));
    await readEverything();
    // A revert_failed host is a candidate again once its revert order is forgotten.
    await same((r) => r.forgetRevertOrder('r1', 'h0'));
    expect((await same((r) => r.revertCandidates('r1', 10))).map((run) => run.hostId)).toEqual(['h0']);

    // A retry requeues a failed host: the previous attempt's outcome is cleared, `changed` is kept.
    expect(await same((r) => r.transition('r2', 'h1', 'timed_out', { to: 'queued' }))).toBe(true);
    expect(await same((r) => r.get('r2', 'h1'))).toMatchObject({
      state: 'queued',
      countedFailure: false,
      orderId: null,
      dispatchedAt: null,
      deliveredAt: null,
    });
    await readEverything();
  });

  it('queues a start of more hosts than one statement takes, each at its place', async () => {
    const planned = Array.from({ length: 10_003 }, (_, i) => ({
      hostId: `host-${String(i).padStart(5, '0')}`,
      wave: i === 0 ? 0 : 1,
      position: i === 0 ? 0 : i - 1,
    }));
    await same((r) => r.insertQueued('r1', planned));
    expect(await same((r) => r.countByWaveAndState('r1'))).toEqual([
      { wave: 0, state: 'queued', n: 1 },
      { wave: 1, state: 'queued', n: 10_002 },
    ]);
    await same((r) => r.page('r1', { wave: 1, limit: 4, after: { wave: 1, position: 9_997 } }));
    await same((r) => r.nextQueued('r1', 1, 3));
  });
});
