/** The bake-watch cancels owed to agents that were away when their rollout succeeded. */
import { describe, expect, it } from 'vitest';
import { OwedCancels } from '../src/engine/owed-cancels.js';

describe('OwedCancels', () => {
  it('gives an agent what it is owed once, and only while each watch may still run', () => {
    const owed = new OwedCancels();
    owed.owe('web-1', 'ord_a', 1_000);
    owed.owe('web-1', 'ord_b', 5_000);
    owed.owe('web-2', 'ord_c', 5_000);
    expect(owed.take('web-1', 2_000)).toEqual(['ord_b']);
    expect(owed.take('web-1', 2_000)).toEqual([]);
    expect(owed.take('web-2', 4_999)).toEqual(['ord_c']);
    expect(owed.take('web-3', 0)).toEqual([]);
  });

  it('forgets, when pruned, what no watch needs any more, and keeps the rest', () => {
    const owed = new OwedCancels();
    owed.owe('web-1', 'ord_a', 1_000);
    owed.owe('web-1', 'ord_b', 5_000);
    owed.owe('web-2', 'ord_c', 1_000);
    owed.prune(1_000);
    // Taken as of an earlier instant, only what survived the prune is left.
    expect(owed.take('web-1', 0)).toEqual(['ord_b']);
    expect(owed.take('web-2', 0)).toEqual([]);
  });
});
