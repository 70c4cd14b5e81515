/**
 * A coordinator group's clock: the database's time, carried forward on the member's monotonic clock
 * between readings, and never the member's own wall clock (which may be minutes off the others').
 */
import type { Clock } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { DATABASE_CLOCK_TOLERANCE_MS, DatabaseClock } from '../src/group/database-clock.js';

/** A member's machine: a monotonic clock the test moves, and a wall clock nobody may read. */
class Machine implements Clock {
  monotonic = 5_000;
  now(): number {
    throw new Error("the member's wall clock was read");
  }
  monotonicNow(): number {
    return this.monotonic;
  }
  async sleep(): Promise<void> {}
}

/** The database: its time (ms since the epoch), and how long each reading's round trip takes. */
function database(machine: Machine, start: number) {
  const db = { time: start, roundTripMs: 2 };
  const read = async () => {
    // Half the round trip there, the reading, half back: the machine's clock moves with it.
    machine.monotonic += db.roundTripMs / 2;
    db.time += db.roundTripMs / 2;
    const reading = db.time;
    machine.monotonic += db.roundTripMs / 2;
    db.time += db.roundTripMs / 2;
    return reading;
  };
  const pass = (ms: number) => {
    machine.monotonic += ms;
    db.time += ms;
  };
  return { db, read, pass };
}

const T = Date.UTC(2030, 0, 7, 12, 0, 0);

describe('DatabaseClock', () => {
  it("tells the database's time and carries it forward on the monotonic clock, never reading the wall clock", async () => {
    const machine = new Machine();
    const { read, pass } = database(machine, T);
    const clock = await DatabaseClock.measure(read, machine);
    expect(clock.now()).toBe(T + 2);
    pass(90_000);
    expect(clock.now()).toBe(T + 2 + 90_000);
    expect(clock.monotonicNow()).toBe(machine.monotonic);
  });

  it('keeps its offset through readings that differ by no more than their uncertainty and the tolerance', async () => {
    const machine = new Machine();
    const { db, read, pass } = database(machine, T);
    const clock = await DatabaseClock.measure(read, machine);
    pass(3_000);
    const before = clock.now();
    // The database's clock a few milliseconds off, and a slow reading (100 ms round trip: ±50 ms).
    db.time += DATABASE_CLOCK_TOLERANCE_MS;
    expect(await clock.remeasure()).toBe(0);
    db.roundTripMs = 100;
    db.time += 40;
    expect(await clock.remeasure()).toBe(0);
    expect(clock.now() - before).toBe(2 + 100);
  });

  it("follows a step of the database's clock at the next reading", async () => {
    const machine = new Machine();
    const { db, read, pass } = database(machine, T);
    const clock = await DatabaseClock.measure(read, machine);
    pass(1_000);
    db.time += 120_000;
    expect(await clock.remeasure()).toBe(120_000);
    expect(clock.now()).toBe(db.time);
    db.time -= 60_000;
    expect(await clock.remeasure()).toBe(-60_000);
    expect(clock.now()).toBe(db.time);
  });

  it('a failed reading fails the measure and leaves the offset as it was', async () => {
    const machine = new Machine();
    const { read, pass } = database(machine, T);
    let down = false;
    const clock = await DatabaseClock.measure(async () => {
      if (down) throw new Error('connection refused');
      return await read();
    }, machine);
    const offsetAt = () => clock.now() - machine.monotonic;
    const offset = offsetAt();
    down = true;
    await expect(clock.remeasure()).rejects.toThrow('connection refused');
    pass(500);
    expect(offsetAt()).toBe(offset);
  });
});
