import { describe, expect, it } from 'vitest';
import { byCodeUnits } from '../src/code-unit-order.js';

describe('byCodeUnits', () => {
  it('orders by UTF-16 code units, whatever the locale: capitals before small letters, accents after z', () => {
    expect(['web-b', 'Web-a', 'web-a', 'wéb', 'web-10', 'web-9'].sort(byCodeUnits)).toEqual([
      'Web-a',
      'web-10',
      'web-9',
      'web-a',
      'web-b',
      'wéb',
    ]);
    expect(byCodeUnits('a', 'a')).toBe(0);
    expect(byCodeUnits('a', 'b')).toBeLessThan(0);
    expect(byCodeUnits('b', 'a')).toBeGreaterThan(0);
  });
});
