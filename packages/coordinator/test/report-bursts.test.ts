/**
 * Agent reports are recorded in bursts (group commit): the first report of a burst waits a few
 * milliseconds for others to share its transaction. A report that comes after a quiet spell finds no
 * burst to join and is recorded at once: a canary's result does not wait for company that is not coming.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { SimulatedFleet } from './support/simulated-fleet.js';

afterEach(() => {
  vi.useRealTimers();
});

/** Whether `promise` settles within `ms` of real time while timers stand still (only I/O and immediates run). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void promise.then(() => {
    settled = true;
  });
  const deadline = Date.now() + ms;
  while (!settled && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

it('records a report after a quiet spell at once, and holds one close behind another for its burst', async () => {
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(['host-1', 'host-2']);
  const id = await fleet.launch({ waves: ['100%'] });
  const openApply = (hostId: string) => {
    const entry = fleet.agent(hostId).openApply();
    if (!entry) throw new Error(`${hostId} holds no open apply order`);
    return entry;
  };
  fleet.now += 60_000; // a quiet minute on the engine's clock
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }); // no timer fires unless the test says

  fleet.report('host-1', openApply('host-1'), 'healthy', true);
  expect(await settlesWithin(fleet.engine.whenIdle(), 10_000)).toBe(true);
  expect((await fleet.run(id, 'host-1')).state).toBe('healthy');

  // host-2 reports at the same instant: a burst is under way, so its report waits for company.
  fleet.report('host-2', openApply('host-2'), 'healthy', true);
  const recorded = fleet.engine.whenIdle();
  expect(await settlesWithin(recorded, 300)).toBe(false);
  expect((await fleet.run(id, 'host-2')).state).toBe('dispatched');
  vi.advanceTimersByTime(5);
  expect(await settlesWithin(recorded, 10_000)).toBe(true);
  expect((await fleet.run(id, 'host-2')).state).toBe('healthy');
  expect(await fleet.state(id)).toBe('succeeded');
});

it('records a report close behind another at once when no order owes a result, and a burst once its last result is in', async () => {
  let awaited = true;
  const fleet = await SimulatedFleet.open({ resultsAwaited: () => awaited });
  await fleet.addHosts(['host-1', 'host-2', 'host-3']);
  const id = await fleet.launch({ waves: ['100%'] });
  const openApply = (hostId: string) => {
    const entry = fleet.agent(hostId).openApply();
    if (!entry) throw new Error(`${hostId} holds no open apply order`);
    return entry;
  };
  fleet.now += 60_000;
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });

  fleet.report('host-1', openApply('host-1'), 'healthy', true);
  expect(await settlesWithin(fleet.engine.whenIdle(), 10_000)).toBe(true);

  // host-2 opens a burst while host-3's order is still out: it waits for company.
  fleet.report('host-2', openApply('host-2'), 'healthy', true);
  expect(await settlesWithin(fleet.engine.whenIdle(), 300)).toBe(false);
  expect((await fleet.run(id, 'host-2')).state).toBe('dispatched');

  // host-3's is the last result owed: the burst is recorded now, without its timer.
  awaited = false;
  fleet.report('host-3', openApply('host-3'), 'healthy', true);
  const recorded = fleet.engine.whenIdle();
  const succeeded = async () => (await fleet.state(id)) === 'succeeded';
  const deadline = Date.now() + 10_000;
  while (!(await succeeded()) && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
  expect(await fleet.state(id)).toBe('succeeded');
  expect((await fleet.run(id, 'host-2')).state).toBe('healthy');
  expect((await fleet.run(id, 'host-3')).state).toBe('healthy');
  // The burst's own timer is still counted until it fires, and then finds nothing left to record.
  expect(await settlesWithin(recorded, 300)).toBe(false);
  vi.advanceTimersByTime(5);
  expect(await settlesWithin(recorded, 10_000)).toBe(true);
});
