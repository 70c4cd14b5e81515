/**
 * Agent reports are recorded in bursts (group commit): the first report of a burst waits a few
 * milliseconds for others to share its transaction. A report that comes after a quiet spell finds no
 * burst to join and is recorded at once: a canary's result does not wait for company that is not
 * coming. Nor does a result that no other order's result can follow (the hub counts what is owed): a
 * wave's last result is recorded at once, with the burst it closes.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { settlesWithin } from './support/settles-within.js';
import { SimulatedFleet } from './support/simulated-fleet.js';

afterEach(() => {
  vi.useRealTimers();
});

it('records a report after a quiet spell at once, and holds one close behind another for its burst', async () => {
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(['host-1', 'host-2']);
  const id = await fleet.launch({ waves: ['100%'] });
  fleet.now += 60_000; // a quiet minute on the engine's clock
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }); // no timer fires unless the test says

  fleet.report('host-1', fleet.mustOpenApply('host-1'), 'healthy', true);
  expect(await settlesWithin(fleet.engine.whenIdle(), 10_000)).toBe(true);
  expect((await fleet.run(id, 'host-1')).state).toBe('healthy');

  // host-2 reports at the same instant: a burst is under way, so its report waits for company.
  fleet.report('host-2', fleet.mustOpenApply('host-2'), 'healthy', true);
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
  fleet.now += 60_000;
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });

  fleet.report('host-1', fleet.mustOpenApply('host-1'), 'healthy', true);
  expect(await settlesWithin(fleet.engine.whenIdle(), 10_000)).toBe(true);

  // host-2 opens a burst while host-3's order is still out: it waits for company.
  fleet.report('host-2', fleet.mustOpenApply('host-2'), 'healthy', true);
  expect(await settlesWithin(fleet.engine.whenIdle(), 300)).toBe(false);
  expect((await fleet.run(id, 'host-2')).state).toBe('dispatched');

  // host-3's is the last result owed: the burst is recorded now, without its timer.
  awaited = false;
  fleet.report('host-3', fleet.mustOpenApply('host-3'), 'healthy', true);
  const recorded = fleet.engine.whenIdle();
  const succeeded = async () => (await fleet.state(id)) === 'succeeded';
  const deadline = Date.now() + 10_000;
  while (!(await succeeded()) && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
  expect(await fleet.state(id)).toBe('succeeded');
  expect((await fleet.run(id, 'host-2')).state).toBe('healthy');
  expect((await fleet.run(id, 'host-3')).state).toBe('healthy');
  // The burst's wait was cancelled, not left to run: nothing is scheduled any more.
  expect(await settlesWithin(recorded, 10_000)).toBe(true);
});

it('keeps a burst of hellos together when no order owes a result (a reconnect storm)', async () => {
  const fleet = await SimulatedFleet.open({ resultsAwaited: () => false });
  await fleet.addHosts(['host-1', 'host-2']);
  await fleet.engine.whenIdle();
  fleet.now += 60_000;
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  fleet.hello('host-1');
  expect(await settlesWithin(fleet.engine.whenIdle(), 10_000)).toBe(true);
  fleet.hello('host-2'); // close behind: it waits for company, results owed or not
  const recorded = fleet.engine.whenIdle();
  expect(await settlesWithin(recorded, 300)).toBe(false);
  vi.advanceTimersByTime(5);
  expect(await settlesWithin(recorded, 10_000)).toBe(true);
});
