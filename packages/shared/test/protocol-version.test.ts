import { describe, expect, it } from 'vitest';
import { formatProtocolRange, negotiateProtocolVersion } from '../src/protocol-version.js';

describe('negotiateProtocolVersion', () => {
  it.each([
    [{ min: 1, max: 2 }, { min: 1, max: 1 }, 1],
    [{ min: 1, max: 2 }, { min: 1, max: 9 }, 2],
    [{ min: 1, max: 2 }, { min: 2, max: 3 }, 2],
    [{ min: 2, max: 4 }, { min: 1, max: 3 }, 3],
    [{ min: 1, max: 2 }, { min: 3, max: 4 }, undefined],
    [{ min: 3, max: 4 }, { min: 1, max: 2 }, undefined],
  ])('between %o and %o is %s: the highest both speak', (ours, theirs, expected) => {
    expect(negotiateProtocolVersion(ours, theirs)).toBe(expected);
  });

  it('names a range as refusals print it', () => {
    expect(formatProtocolRange({ min: 1, max: 2 })).toBe('1-2');
    expect(formatProtocolRange({ min: 2, max: 2 })).toBe('2');
  });
});
