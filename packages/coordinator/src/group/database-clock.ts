import type { Clock } from '@fleetpatch/shared';

/**
 * How far a new reading of the database's clock may stray from the offset in use, beyond its own
 * uncertainty (half its round trip), and still be taken for noise: the offset stays, so `now` does not
 * jitter back and forth by a few milliseconds at every heartbeat.
 */
export const DATABASE_CLOCK_TOLERANCE_MS = 10;

/**
 * The clock of a coordinator group: the database's. Members judge instants other members wrote — a
 * bake's end, a host's delivery, a lease-holder's dispatch — and each member's machine may be minutes
 * off the others (NTP not yet synced, a VM resumed): judged on its own wall clock, a member ends a
 * bake early or times hosts out that are not late. So a member reads the database's clock when it
 * joins and at every heartbeat, and its `now` is its monotonic clock (never stepped) plus the offset
 * last measured. A step of the member's own wall clock moves nothing; a step of the database's moves
 * every member alike, and each member's engine follows it as it follows any step (ClockStepWatch).
 */
export class DatabaseClock implements Clock {
  private constructor(
    private readonly readDatabaseMs: () => Promise<number>,
    private readonly base: Pick<Clock, 'monotonicNow' | 'sleep'>,
    /** The database's milliseconds since the epoch minus the monotonic clock's reading. */
    private offset: number,
  ) {}

  /** A clock on the database's time: `readDatabaseMs` reads it (ms since the epoch), once now. */
  static async measure(
    readDatabaseMs: () => Promise<number>,
    base: Pick<Clock, 'monotonicNow' | 'sleep'>,
  ): Promise<DatabaseClock> {
    const { offset } = await reading(readDatabaseMs, base);
    return new DatabaseClock(readDatabaseMs, base, offset);
  }

  /**
   * Reads the database's clock again: the offset follows it when the reading is further off than
   * the reading's own uncertainty allows (the database's clock was stepped, or the monotonic one
   * drifted), and stays otherwise. Returns how far the offset moved (0: it stayed).
   */
  async remeasure(): Promise<number> {
    const { offset, uncertainty } = await reading(this.readDatabaseMs, this.base);
    const moved = offset - this.offset;
    if (Math.abs(moved) <= uncertainty + DATABASE_CLOCK_TOLERANCE_MS) return 0;
    this.offset = offset;
    return moved;
  }

  now(): number {
    return Math.round(this.base.monotonicNow() + this.offset);
  }

  monotonicNow(): number {
    return this.base.monotonicNow();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.base.sleep(ms, signal);
  }
}

/** One reading: the database's time against the middle of the round trip that read it. */
async function reading(
  readDatabaseMs: () => Promise<number>,
  base: Pick<Clock, 'monotonicNow'>,
): Promise<{ offset: number; uncertainty: number }> {
  const asked = base.monotonicNow();
  const databaseMs = await readDatabaseMs();
  const answered = base.monotonicNow();
  return { offset: databaseMs - (asked + answered) / 2, uncertainty: (answered - asked) / 2 };
}
