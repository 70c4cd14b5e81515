import { randomInt } from 'node:crypto';

/** Names the seed of a randomized fault schedule: set it to replay a run (the seed is printed). */
export const SEED_ENV = 'FLEETPATCH_FAULT_SEED';

/**
 * A seeded pseudo-random source (mulberry32) for fault schedules: the same seed gives the same
 * schedule, so a failure can be replayed with `FLEETPATCH_FAULT_SEED=<seed> npm run test:faults`.
 * The seed comes from the environment, or is drawn fresh; either way it is printed.
 */
export class SeededRandom {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  static fromEnv(what: string): SeededRandom {
    const given = process.env[SEED_ENV];
    const seed = given === undefined || given === '' ? randomInt(1, 2 ** 31) : Number(given);
    if (!Number.isInteger(seed)) throw new Error(`${SEED_ENV} must be an integer, got ${given}`);
    console.log(`${what}: seed ${seed} (replay: ${SEED_ENV}=${seed} npm run test:faults)`);
    return new SeededRandom(seed);
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  between(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }
}
