import { describe, expect, it } from 'vitest';
import { newId } from '../src/engine/ids.js';

describe('newId', () => {
  it('is the prefix, the time in base 36 and 12 hex digits, and never repeats across pool refills', () => {
    const before = Date.now();
    // 2,000 ids: the random pool (256 ids) is refilled several times on the way.
    const ids = Array.from({ length: 2000 }, () => newId('ord'));
    const after = Date.now();
    for (const id of ids) {
      const match = /^ord_([0-9a-z]+)([0-9a-f]{12})$/.exec(id);
      expect(match, id).not.toBeNull();
      const time = Number.parseInt(match?.[1] ?? '', 36);
      expect(time).toBeGreaterThanOrEqual(before);
      expect(time).toBeLessThanOrEqual(after);
    }
    expect(new Set(ids.map((id) => id.slice(-12))).size).toBe(ids.length);
  });
});
