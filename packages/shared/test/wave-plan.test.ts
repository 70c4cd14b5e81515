import { describe, expect, it } from 'vitest';
import {
  assignWaves,
  type CanaryFitness,
  canaryOrder,
  describeHaltPoint,
  ordinal,
  resolveWaveSizes,
  toleratedFailures,
  waveData,
} from '../src/wave-plan.js';

describe('resolveWaveSizes', () => {
  it('resolves the DESIGN example: 37 hosts, [1, "10%", "50%", "100%"] → [1, 3, 18, 15]', () => {
    expect(resolveWaveSizes(37, [1, '10%', '50%', '100%'])).toEqual([1, 3, 18, 15]);
  });

  it('returns no waves for no hosts', () => {
    expect(resolveWaveSizes(0, [1, '10%', '100%'])).toEqual([]);
  });

  it('puts a single host in the first wave only', () => {
    expect(resolveWaveSizes(1, [1, '10%', '100%'])).toEqual([1]);
    expect(resolveWaveSizes(1, ['50%'])).toEqual([1]);
  });

  it('rounds percents down but never below one host', () => {
    expect(resolveWaveSizes(5, ['10%', '50%'])).toEqual([1, 2, 2]);
    expect(resolveWaveSizes(3, ['1%'])).toEqual([1, 1, 1]);
  });

  it('caps percents over 100 and counts over N at what is left', () => {
    expect(resolveWaveSizes(4, ['250%'])).toEqual([4]);
    expect(resolveWaveSizes(4, [1, 100])).toEqual([1, 3]);
  });

  it('stops early when the list is longer than the hosts', () => {
    expect(resolveWaveSizes(2, [1, 1, 1, 1, 1])).toEqual([1, 1]);
  });

  it('repeats the last step until every host is covered', () => {
    expect(resolveWaveSizes(10, [1, 3])).toEqual([1, 3, 3, 3]);
    expect(resolveWaveSizes(10, ['20%'])).toEqual([2, 2, 2, 2, 2]);
  });

  it('always covers every host exactly once', () => {
    for (let n = 0; n <= 200; n++) {
      const sizes = resolveWaveSizes(n, [1, '10%', '33.3%', '100%']);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(n);
      expect(sizes.every((s) => s >= 1)).toBe(true);
    }
  });

  it('refuses an empty step list and negative or fractional counts, saying which', () => {
    expect(() => resolveWaveSizes(3, [])).toThrow(new RangeError('at least one wave step is required'));
    expect(() => resolveWaveSizes(-1, [1])).toThrow(new RangeError('hostCount must be a whole number ≥ 0'));
    expect(() => resolveWaveSizes(2.5, [1])).toThrow(new RangeError('hostCount must be a whole number ≥ 0'));
  });
});

describe('assignWaves', () => {
  it('splits hosts in order into the resolved waves', () => {
    expect(assignWaves(['a', 'b', 'c'], [1, '50%', '100%'])).toEqual([['a'], ['b'], ['c']]);
  });
});

describe('canaryOrder', () => {
  const fitness: Record<string, CanaryFitness> = {
    a: 'never_connected',
    b: 'offline',
    c: 'online',
    d: 'never_connected',
    e: 'online',
    f: 'offline',
  };
  const of = (host: string): CanaryFitness => fitness[host] ?? 'online';

  it('puts online hosts first, then offline ones that connected before, never-connected last, each in order', () => {
    expect(canaryOrder(['a', 'b', 'c', 'd', 'e', 'f'], of)).toEqual(['c', 'e', 'b', 'f', 'a', 'd']);
  });

  it('keeps the given order within a group, and leaves its input alone', () => {
    const input = ['e', 'c', 'f', 'b'];
    expect(canaryOrder(input, of)).toEqual(['e', 'c', 'f', 'b']);
    expect(input).toEqual(['e', 'c', 'f', 'b']);
    expect(canaryOrder(['d', 'a'], of)).toEqual(['d', 'a']);
    expect(canaryOrder([], of)).toEqual([]);
  });

  it('never makes a never-connected host the canary when another host can be', () => {
    expect(assignWaves(canaryOrder(['a', 'b'], of), [1, '100%'])).toEqual([['b'], ['a']]);
    expect(assignWaves(canaryOrder(['a', 'f', 'c'], of), [1, '100%'])).toEqual([['c'], ['f', 'a']]);
  });
});

describe('waveData', () => {
  it('names a wave by its 0-based index and its 1-based number', () => {
    expect(waveData(0)).toEqual({ wave: 0, waveNumber: 1 });
    expect(waveData(4)).toEqual({ wave: 4, waveNumber: 5 });
  });
});

describe('failure budget', () => {
  it('tolerates a count or a percent of the rollout, rounded down', () => {
    expect(toleratedFailures(0, 37)).toBe(0);
    expect(toleratedFailures(3, 37)).toBe(3);
    expect(toleratedFailures('10%', 37)).toBe(3);
    expect(toleratedFailures('1%', 37)).toBe(0);
  });

  it('states the failure that halts', () => {
    expect(describeHaltPoint(0)).toBe('halts on the 1st failure');
    expect(describeHaltPoint(3)).toBe('halts on the 4th failure');
    expect(describeHaltPoint(10)).toBe('halts on the 11th failure');
    expect(describeHaltPoint(21)).toBe('halts on the 22nd failure');
  });

  it('says 1st, 2nd, 3rd, but 11th, 12th and 13th, in every hundred', () => {
    const said = [1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 101, 102, 103, 111, 112, 113, 1000].map(ordinal);
    expect(said).toEqual([
      '1st',
      '2nd',
      '3rd',
      '4th',
      '11th',
      '12th',
      '13th',
      '14th',
      '21st',
      '22nd',
      '23rd',
      '101st',
      '102nd',
      '103rd',
      '111th',
      '112th',
      '113th',
      '1000th',
    ]);
  });
});
