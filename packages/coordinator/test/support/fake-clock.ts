import type { EngineClock } from '../../src/engine/engine-interfaces.js';

/** The engine's clock, moved only by the test: nothing in an engine specification waits on real time. */
export class FakeClock implements EngineClock {
  /** How far `stepWall` has moved the wall clock away from the time that passed. */
  private stepped = 0;

  constructor(public ms: number) {}

  now(): number {
    return this.ms;
  }

  /** The time that passed (a monotonic clock's reading, origin 0 at the epoch): `stepWall` does not move it. */
  monotonicNow(): number {
    return this.ms - this.stepped;
  }

  /** The wall clock alone jumps by `ms` (either way), as an NTP step does: no time passes. */
  stepWall(ms: number): void {
    this.ms += ms;
    this.stepped += ms;
  }
}
