import type { FailureBudget, WaveStep } from './rollout.js';

/**
 * Resolves Ansible-style `serial` steps into concrete wave sizes for `hostCount` hosts.
 *
 * Integers are host counts; percents are of the whole (frozen) target set, rounded down, at least 1.
 * Each wave takes at most what is left, and the last step repeats until every host is covered.
 * 37 hosts with [1, "10%", "50%", "100%"] → [1, 3, 18, 15].
 */
export function resolveWaveSizes(hostCount: number, steps: readonly WaveStep[]): number[] {
  if (!Number.isInteger(hostCount) || hostCount < 0) throw new RangeError('hostCount must be a whole number ≥ 0');
  if (steps.length === 0) throw new RangeError('at least one wave step is required');
  const sizes: number[] = [];
  let remaining = hostCount;
  for (let i = 0; remaining > 0; i++) {
    const step = steps[Math.min(i, steps.length - 1)] as WaveStep;
    const size = Math.min(remaining, stepSize(step, hostCount));
    sizes.push(size);
    remaining -= size;
  }
  return sizes;
}

function stepSize(step: WaveStep, hostCount: number): number {
  if (typeof step === 'number') return Math.max(1, Math.floor(step));
  return Math.max(1, Math.floor((hostCount * Number.parseFloat(step)) / 100));
}

/**
 * How many failures a rollout of `hostCount` hosts tolerates. The rollout halts when failures
 * *exceed* this number, i.e. on failure number `tolerated + 1`.
 */
export function toleratedFailures(budget: FailureBudget, hostCount: number): number {
  if (typeof budget === 'number') return budget;
  return Math.floor((hostCount * Number.parseFloat(budget)) / 100);
}

/** "halts on the 1st failure", "halts on the 4th failure" — said in the plan before anything runs. */
export function describeHaltPoint(tolerated: number): string {
  return `halts on the ${ordinal(tolerated + 1)} failure`;
}

export function ordinal(n: number): string {
  const lastTwo = n % 100;
  if (lastTwo >= 11 && lastTwo <= 13) return `${n}th`;
  switch (n % 10) {
    case 1:
      return `${n}st`;
    case 2:
      return `${n}nd`;
    case 3:
      return `${n}rd`;
    default:
      return `${n}th`;
  }
}

/** Splits an ordered host list into waves of the resolved sizes. */
export function assignWaves<T>(hosts: readonly T[], steps: readonly WaveStep[]): T[][] {
  const waves: T[][] = [];
  let offset = 0;
  for (const size of resolveWaveSizes(hosts.length, steps)) {
    waves.push(hosts.slice(offset, offset + size));
    offset += size;
  }
  return waves;
}

/** How fit a host is to be a canary: its agent is online, offline but has connected before, or has never connected. */
export type CanaryFitness = 'online' | 'offline' | 'never_connected';

const CANARY_RANK: Readonly<Record<CanaryFitness, number>> = { online: 0, offline: 1, never_connected: 2 };

/**
 * The hosts in the order waves take them: online first, then those offline now that have connected
 * before, hosts that never connected last — each group in its given order. The first wave (the
 * canary) is thus made of online hosts whenever there are enough: a host that never connected
 * would hold it for the whole delivery deadline and prove nothing.
 */
export function canaryOrder<T>(hosts: readonly T[], fitness: (host: T) => CanaryFitness): T[] {
  // Array.prototype.sort is stable: within a group, hosts keep their given order.
  return hosts
    .map((host) => ({ host, rank: CANARY_RANK[fitness(host)] }))
    .sort((a, b) => a.rank - b.rank)
    .map(({ host }) => host);
}

/**
 * How an event names a wave: `wave` is the 0-based index the API uses everywhere (`currentWave`,
 * `waves[].wave`), `waveNumber` the 1-based number people read ("wave 1" is the canary).
 */
export function waveData(wave: number): { wave: number; waveNumber: number } {
  return { wave, waveNumber: wave + 1 };
}
