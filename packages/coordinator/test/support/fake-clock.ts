import type { EngineClock } from '../../src/engine/engine-interfaces.js';

/** The engine's clock, moved only by the test: nothing in an engine specification waits on real time. */
export class FakeClock implements EngineClock {
  constructor(public ms: number) {}

  now(): number {
    return this.ms;
  }
}
