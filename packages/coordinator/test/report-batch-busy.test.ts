/**
 * A batch of agent reports whose transaction cannot commit, provoked the SQLite way: another
 * connection holds the write lock and the engine's busy timeout is 0. SQLite only (the
 * coordinator-postgres project excludes it): PostgreSQL has no database-wide write lock to take.
 */
import Database from 'better-sqlite3';
import { afterEach, expect, it, vi } from 'vitest';
import { capturingLog } from './support/capturing-log.js';
import { settlesWithin } from './support/settles-within.js';
import { SimulatedFleet } from './support/simulated-fleet.js';

afterEach(() => {
  vi.useRealTimers();
});

it('a batch of reports that fails to commit (SQLITE_BUSY) is logged and recorded again, not lost nor fatal', async () => {
  const { log: captured, lines } = capturingLog();
  const fleet = await SimulatedFleet.open({ log: captured });
  await fleet.addHosts(['host-1']);
  const id = await fleet.launch({ waves: ['100%'] });
  // Another writer holds the database; the engine gives up at once instead of waiting.
  fleet.store.db.pragma('busy_timeout = 0');
  const other = new Database(fleet.file);
  other.exec('BEGIN IMMEDIATE');
  try {
    // Not `finish()`, which waits for the engine to be idle: a batch parked for its retry is not.
    fleet.report('host-1', fleet.mustOpenApply('host-1'), 'healthy', true);
    const failed = () => lines.some((l) => l.level >= 50 && /recording agent reports failed/.test(l.msg));
    await vi.waitFor(() => expect(failed()).toBe(true), { timeout: 5000, interval: 5 });
    expect(failed()).toBe(true);
    expect((await fleet.run(id, 'host-1')).state).toBe('dispatched');
    expect(fleet.sentOf('order.ack')).toEqual([]); // nothing acked: the agent keeps the result
  } finally {
    other.exec('COMMIT');
    other.close();
  }

  await fleet.engine.whenIdle(); // the parked batch is recorded on its retry, a second later
  expect(await fleet.state(id)).toBe('succeeded');
  expect((await fleet.run(id, 'host-1')).state).toBe('healthy');
  expect((await fleet.events(id)).filter((e) => e.type === 'host.healthy')).toHaveLength(1);
  expect(fleet.sentOf('order.ack', 'host-1')).toHaveLength(1);
});

it('a result that no other order can follow does not bring a failed batch’s retry forward', async () => {
  const { log: captured, lines } = capturingLog();
  const fleet = await SimulatedFleet.open({ log: captured, resultsAwaited: () => false });
  await fleet.addHosts(['host-1', 'host-2']);
  const id = await fleet.launch({ waves: ['100%'] });
  fleet.store.db.pragma('busy_timeout = 0');
  const other = new Database(fleet.file);
  other.exec('BEGIN IMMEDIATE');
  const failures = () => lines.filter((l) => l.level >= 50 && /recording agent reports failed/.test(l.msg)).length;
  try {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }); // the 1 s retry fires when the test says
    fleet.report('host-1', fleet.mustOpenApply('host-1'), 'healthy', true);
    await vi.waitFor(() => expect(failures()).toBe(1), { timeout: 5000, interval: 5 });
    // host-2's result owes no company, but the batch in front of it waits for its retry: so does it.
    fleet.report('host-2', fleet.mustOpenApply('host-2'), 'healthy', true);
    expect(await settlesWithin(fleet.engine.whenIdle(), 300)).toBe(false);
    expect(failures()).toBe(1); // not tried again against the held lock
  } finally {
    other.exec('COMMIT');
    other.close();
  }
  vi.advanceTimersByTime(1000);
  await fleet.engine.whenIdle();
  vi.useRealTimers();
  expect(await fleet.state(id)).toBe('succeeded');
  expect((await fleet.events(id)).filter((e) => e.type === 'host.healthy')).toHaveLength(2);
});
