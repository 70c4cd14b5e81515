import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PackageChangeSchema } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { orderRanDpkg } from '../src/inventory/order-ran-dpkg.js';
import { Journal } from '../src/journal.js';
import { sampleApplyOrder } from './support/sample-orders.js';

const AT = '2026-12-05T08:00:00.000Z';
const packageChange = PackageChangeSchema.parse({
  kind: 'package',
  manager: 'apt',
  name: 'openssl',
  version: '3.0.15-1~deb12u1',
  revertable: true,
});

describe('orderRanDpkg: which results make the agent read its dpkg database again', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /** A real journal holding a file order, a package order and a revert of each. */
  async function journalWithOrders(): Promise<Journal> {
    const dir = mkdtempSync(join(tmpdir(), 'fleetpatch-ran-dpkg-'));
    dirs.push(dir);
    const journal = await Journal.open(join(dir, 'data'));
    await journal.createApply(sampleApplyOrder('ord_file'), AT);
    await journal.createApply(sampleApplyOrder('ord_pkg', { change: packageChange }), AT);
    await journal.createRevert('rev_file', 'ord_file', AT);
    await journal.createRevert('rev_pkg', 'ord_pkg', AT);
    return journal;
  }

  it('a package order and the revert of one ran dpkg', async () => {
    const journal = await journalWithOrders();
    expect(orderRanDpkg(journal, 'ord_pkg')).toBe(true);
    expect(orderRanDpkg(journal, 'rev_pkg')).toBe(true);
  });

  it('a file order and the revert of one did not: the packages are as they were', async () => {
    const journal = await journalWithOrders();
    expect(orderRanDpkg(journal, 'ord_file')).toBe(false);
    expect(orderRanDpkg(journal, 'rev_file')).toBe(false);
  });

  it('an order the journal does not hold ran nothing (refused, or a dry run), nor a revert of one it no longer holds', async () => {
    const journal = await journalWithOrders();
    expect(orderRanDpkg(journal, 'ord_never_journaled')).toBe(false);
    await journal.createRevert('rev_pruned', 'ord_pruned', AT);
    expect(orderRanDpkg(journal, 'rev_pruned')).toBe(false);
  });
});
