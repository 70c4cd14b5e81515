/**
 * Which later order stands over an apply order's change (`supersedingOrder`): the rule that keeps a
 * bake of a replaced order from reverting the newer change. The agent's side, with real orders, is
 * in `bake-superseded.test.ts`.
 */
import type { OrderApply, PackageChange } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import type { ApplyEntry } from '../src/journal.js';
import { supersedingOrder } from '../src/orders/superseded.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';

let position = 0;
/** A journal entry begun at the next position; done and carrying its change unless `over` says otherwise. */
function entry(orderId: string, order: Partial<OrderApply> = {}, over: Partial<ApplyEntry> = {}): ApplyEntry {
  position += 10;
  return {
    kind: 'apply',
    orderId,
    seq: position + 5,
    startedSeq: position,
    phase: 'done',
    changed: true,
    acked: true,
    executions: 1,
    updatedAt: '2026-12-06T00:00:00Z',
    order: sampleApplyOrder(orderId, order),
    ...over,
  };
}

const packages = (...names: string[]): Partial<OrderApply> => {
  const change: PackageChange = {
    kind: 'package',
    manager: 'apt',
    packages: names.map((name) => ({ name, version: '2.0-1' })),
    revertable: true,
  };
  return { change };
};

describe('supersedingOrder', () => {
  it('a later order on the same file that carries its change supersedes an earlier one, not the other way round', () => {
    const a = entry('ord-a');
    const b = entry('ord-b');
    expect(supersedingOrder([a, b], a)?.orderId).toBe('ord-b');
    expect(supersedingOrder([a, b], b)).toBeUndefined();
  });

  it('so does a later one changing the file now (applying, or restoring its snapshot), not one that has changed nothing yet', () => {
    const a = entry('ord-a');
    for (const phase of ['applying', 'reverting'] as const) {
      const b = entry('ord-b', {}, { phase, changed: false });
      expect(supersedingOrder([a, b], a)?.orderId).toBe('ord-b');
    }
    for (const phase of ['accepted', 'baseline'] as const) {
      const b = entry('ord-b', {}, { phase, changed: false });
      expect(supersedingOrder([a, b], a)).toBeUndefined();
    }
  });

  it('a later one that failed and restored its snapshot gave the file back: it does not', () => {
    const a = entry('ord-a');
    const b = entry('ord-b', {}, { changed: false });
    expect(supersedingOrder([a, b], a)).toBeUndefined();
  });

  it('an order on another file, or a revert entry, does not', () => {
    const a = entry('ord-a');
    const other = entry('ord-other', { change: sampleFileChange({ path: '/etc/y.conf' }) });
    const revert = {
      kind: 'revert' as const,
      orderId: 'rev-a',
      revertsOrderId: 'ord-a',
      seq: 1000,
      startedSeq: 1000,
      phase: 'done' as const,
      changed: true,
      acked: true,
      executions: 1,
      updatedAt: '2026-12-06T00:00:00Z',
    };
    expect(supersedingOrder([a, other, revert], a)).toBeUndefined();
  });

  it('package orders supersede each other only through a package they share, named or moved', () => {
    const a = entry('ord-a', packages('openssl', 'libssl3'));
    expect(supersedingOrder([a, entry('ord-b', packages('nginx'))], a)).toBeUndefined();
    expect(supersedingOrder([a, entry('ord-c', packages('libssl3'))], a)?.orderId).toBe('ord-c');
    // A finished order counts the packages it moved as well as those it named.
    const moved = entry('ord-d', packages('curl'), {
      result: {
        orderId: 'ord-d',
        outcome: 'healthy',
        changed: true,
        finishedAt: '2026-12-06T00:00:00Z',
        packages: [{ name: 'openssl', from: '1.0-1', to: '2.0-1', snapshot: 'apt-cache' }],
      },
    });
    expect(supersedingOrder([a, moved], a)?.orderId).toBe('ord-d');
  });

  it('an entry from before startedSeq existed is placed by its last write', () => {
    const { startedSeq: _, ...old } = entry('ord-old');
    const later = entry('ord-new');
    expect(supersedingOrder([old, later], old)?.orderId).toBe('ord-new');
    const { startedSeq: __, ...laterOld } = entry('ord-later-old');
    expect(supersedingOrder([old, laterOld], old)?.orderId).toBe('ord-later-old');
  });
});
