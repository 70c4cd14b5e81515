import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OrderApply } from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal } from '../src/journal.js';

const order: OrderApply = {
  type: 'order.apply',
  orderId: 'o1',
  rolloutId: 'ro_1',
  patchId: 'pat_1',
  change: {
    kind: 'file',
    path: '/etc/x.conf',
    content: 'new',
    encoding: 'utf8',
    mode: '0644',
    owner: 'root',
    group: 'root',
  },
  health: { checks: [], intervalSeconds: 1, minHealthySeconds: 0, healthyDeadlineSeconds: 10 },
  failIfUnhealthyBefore: false,
  revertOnHealthFailure: true,
  bakeSeconds: 0,
};

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'journal-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('Journal', () => {
  it('reopens at the last complete entry and removes the temp files of writes a crash interrupted', async () => {
    const journal = await Journal.open(dir);
    const entry = await journal.createApply(order, new Date(0).toISOString());
    await journal.update(entry, { phase: 'snapshotted', snapshot: { prior: 'old' } }, new Date(1).toISOString());
    const orderDir = join(dir, 'orders', 'o1');
    // A write cut short by a crash, in the shared writer's naming and in the one agents used before it.
    await writeFile(join(orderDir, '.entry.json.fleetpatch-tmp-0123456789abcdef'), '{"half":');
    await writeFile(join(orderDir, 'entry.json.0123456789ab.tmp'), '{"half":');

    const reopened = await Journal.open(dir);

    expect(reopened.get('o1')).toMatchObject({ kind: 'apply', phase: 'snapshotted', snapshot: { prior: 'old' } });
    expect(reopened.position).toBe(2);
    expect((await readdir(orderDir)).sort()).toEqual(['entry.json']);
  });
});
