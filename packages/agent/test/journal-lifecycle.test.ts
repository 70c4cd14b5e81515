import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OrderResultBody } from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal, type JournalEntry, readEntryFile } from '../src/journal.js';
import { sampleApplyOrder } from './support/sample-orders.js';

// The journal on real files: what each write records, what survives a restart, what goes when.

let dataDir: string;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'fleetpatch-journal-'));
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

const at = (ms: number) => new Date(ms).toISOString();

function result(orderId: string, finishedAt: string, overrides: Partial<OrderResultBody> = {}): OrderResultBody {
  return { orderId, outcome: 'healthy', changed: true, finishedAt, ...overrides };
}

async function onDisk(orderId: string): Promise<unknown> {
  return readEntryFile(await readFile(join(dataDir, 'orders', orderId, 'entry.json'), 'utf8'));
}

describe('Journal entries', () => {
  it('records an accepted apply order durably on disk, private to root', async () => {
    const journal = await Journal.open(dataDir);
    const order = sampleApplyOrder('o1');

    const entry = await journal.createApply(order, at(0));

    const expected = {
      orderId: 'o1',
      kind: 'apply',
      seq: 1,
      phase: 'accepted',
      order,
      changed: false,
      acked: false,
      updatedAt: at(0),
    };
    expect(entry).toMatchObject(expected);
    expect(journal.get('o1')).toEqual(entry);
    expect(await onDisk('o1')).toEqual(entry);
    expect(journal.directory).toBe(join(dataDir, 'orders'));
    expect((await stat(join(dataDir, 'orders'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dataDir, 'orders', 'o1'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dataDir, 'orders', 'o1', 'entry.json'))).mode & 0o777).toBe(0o600);
  });

  it('records a revert order with the apply order it restores', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createRevert('r1', 'o1', at(5));
    const expected = {
      orderId: 'r1',
      kind: 'revert',
      seq: 1,
      phase: 'reverting',
      revertsOrderId: 'o1',
      changed: false,
      acked: false,
      updatedAt: at(5),
    };
    expect(entry).toMatchObject(expected);
    expect(await onDisk('r1')).toEqual(entry);
  });

  it('numbers every write of every order in one sequence, and lists entries in that order', async () => {
    const journal = await Journal.open(dataDir);
    const a = await journal.createApply(sampleApplyOrder('a'), at(0));
    const b = await journal.createApply(sampleApplyOrder('b'), at(1));
    const a2 = await journal.update(a, { phase: 'snapshotted' }, at(2));
    expect([a.seq, b.seq, a2.seq]).toEqual([1, 2, 3]);
    expect(journal.position).toBe(3);
    expect(journal.all().map((e) => e.orderId)).toEqual(['b', 'a']);
  });

  it('updates the entry as it is when the write runs, not as the caller last saw it', async () => {
    const journal = await Journal.open(dataDir);
    const stale = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.update(stale, { phase: 'snapshotted', snapshot: { prior: 'old' } }, at(1));

    const next = await journal.update(stale, { phase: 'applying' }, at(2));

    expect(next).toMatchObject({ phase: 'applying', snapshot: { prior: 'old' }, updatedAt: at(2), seq: 3 });
    expect(await onDisk('o1')).toEqual(next);
  });

  it('loses no update when writes of one order race', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));

    await Promise.all([
      journal.update(entry, { phase: 'snapshotted', snapshot: { prior: 'old' } }, at(1)),
      journal.update(entry, { changed: true }, at(2)),
      journal.update(entry, { phase: 'applying' }, at(3)),
    ]);

    const expected = { phase: 'applying', snapshot: { prior: 'old' }, changed: true, updatedAt: at(3), seq: 4 };
    expect(journal.get('o1')).toMatchObject(expected);
    expect(await onDisk('o1')).toMatchObject(expected);
  });

  it('keeps writing an order after one of its writes failed', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    const revertLike = { ...entry, kind: 'revert' } as unknown as JournalEntry;

    const [failed, next] = await Promise.allSettled([
      journal.update(revertLike, { phase: 'done' }, at(1)),
      journal.update(entry, { phase: 'snapshotted' }, at(2)),
    ]);

    expect(failed).toMatchObject({ status: 'rejected', reason: new Error('journal has no revert order o1') });
    expect(next).toMatchObject({ status: 'fulfilled', value: { phase: 'snapshotted' } });
  });

  it('refuses to update an order it does not have', async () => {
    const journal = await Journal.open(dataDir);
    const other = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await expect(journal.update({ ...other, orderId: 'o2' }, { phase: 'done' }, at(1))).rejects.toThrow(
      'journal has no apply order o2',
    );
    expect(journal.get('o2')).toBeUndefined();
  });

  it('finishes an order with its result, and a new result must be acknowledged again', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    const first = result('o1', at(10));
    await journal.finish(entry, first, true);
    await journal.acknowledge('o1', first.finishedAt, at(11));
    expect(journal.get('o1')).toMatchObject({ acked: true, updatedAt: at(11) });

    const second = result('o1', at(20), { outcome: 'failed', changed: false });
    const done = await journal.finish(entry, second, false);

    expect(done).toMatchObject({ phase: 'done', result: second, changed: false, acked: false, updatedAt: at(20) });
    expect(await onDisk('o1')).toEqual(done);
  });

  it('acknowledges only the result the coordinator names, and only once', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    const done = await journal.finish(entry, result('o1', at(10)), true);

    await journal.acknowledge('o1', at(9), at(11)); // a late ack of a result this one replaced
    expect(journal.get('o1')).toEqual(done);

    await journal.acknowledge('o1', at(10), at(12));
    const acked = journal.get('o1');
    expect(acked).toMatchObject({ acked: true, updatedAt: at(12), seq: done.seq + 1 });

    await journal.acknowledge('o1', at(10), at(13)); // a duplicate ack writes nothing
    expect(journal.get('o1')).toEqual(acked);
    expect(journal.position).toBe(done.seq + 1);
  });

  it('takes an ack without a result time (older coordinators) as an ack of the current result', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.finish(entry, result('o1', at(10)), true);
    await journal.acknowledge('o1', undefined, at(11));
    expect(journal.get('o1')).toMatchObject({ acked: true });
  });

  it('ignores an ack for an order that is unknown or not finished', async () => {
    const journal = await Journal.open(dataDir);
    await journal.acknowledge('nobody', undefined, at(1));
    expect(journal.get('nobody')).toBeUndefined();
    expect(await readdir(join(dataDir, 'orders'))).toEqual([]);

    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.acknowledge('o1', undefined, at(1));
    expect(journal.get('o1')).toEqual(entry);
  });

  it('reports unfinished orders and unacknowledged results, and nothing acknowledged', async () => {
    const journal = await Journal.open(dataDir);
    const running = await journal.createApply(sampleApplyOrder('running'), at(0));
    const waiting = await journal.createApply(sampleApplyOrder('waiting'), at(1));
    const acked = await journal.createApply(sampleApplyOrder('acked'), at(2));
    await journal.update(running, { phase: 'applying' }, at(3));
    const waitingResult = result('waiting', at(4));
    await journal.finish(waiting, waitingResult, true);
    await journal.finish(acked, result('acked', at(5)), true);
    await journal.acknowledge('acked', at(5), at(6));

    expect(journal.pendingReports()).toEqual([
      { orderId: 'running', phase: 'applying' },
      { orderId: 'waiting', phase: 'done', result: waitingResult },
    ]);

    // An order still running is reported whatever its entry says of acks.
    await journal.update(running, { acked: true }, at(7));
    expect(journal.pendingReports().map((r) => r.orderId)).toEqual(['waiting', 'running']);
  });

  it('keeps each order to its own directory, and refuses ids that could name anything else', async () => {
    const journal = await Journal.open(dataDir);
    expect(journal.snapshotDir('o1')).toBe(join(dataDir, 'orders', 'o1', 'snapshot'));
    expect(journal.snapshotDir('a.b_c-D9')).toBe(join(dataDir, 'orders', 'a.b_c-D9', 'snapshot'));
    expect(journal.snapshotDir('x'.repeat(100))).toBe(join(dataDir, 'orders', 'x'.repeat(100), 'snapshot'));
    for (const unsafe of ['', '..', '.hidden', '../etc', 'a/b', 'a\\b', 'a b', 'x'.repeat(101), 'o1\n']) {
      expect(() => journal.snapshotDir(unsafe), JSON.stringify(unsafe)).toThrow(`unsafe order id ${unsafe}`);
    }
  });
});

describe('Journal after a restart', () => {
  it('reopens every entry as last written, and goes on numbering after the highest', async () => {
    const journal = await Journal.open(dataDir);
    const a = await journal.createApply(sampleApplyOrder('a'), at(0));
    await journal.createRevert('r', 'a', at(1));
    const a2 = await journal.update(a, { phase: 'snapshotted', snapshot: { prior: 'old' } }, at(2));

    const reopened = await Journal.open(dataDir);

    expect(reopened.all()).toEqual(journal.all());
    expect(reopened.get('a')).toEqual(a2);
    expect(reopened.position).toBe(3);
    expect((await reopened.createApply(sampleApplyOrder('b'), at(3))).seq).toBe(4);
  });

  it('fills in what entries written by older agents leave out', async () => {
    const journal = await Journal.open(dataDir);
    await journal.createApply(sampleApplyOrder('o1'), at(0));
    const old = (await onDisk('o1')) as Record<string, unknown>;
    delete old.changed;
    delete old.acked;
    await writeFile(join(dataDir, 'orders', 'o1', 'entry.json'), JSON.stringify(old));

    expect((await Journal.open(dataDir)).get('o1')).toMatchObject({ changed: false, acked: false });
  });

  it('removes an order directory a crash left without an entry: nothing of that order ran', async () => {
    await mkdir(join(dataDir, 'orders', 'o1'), { recursive: true });
    await writeFile(join(dataDir, 'orders', 'o1', '.entry.json.fleetpatch-tmp-0123456789abcdef'), '{"half":');

    const journal = await Journal.open(dataDir);

    expect(journal.all()).toEqual([]);
    expect(journal.position).toBe(0);
    expect(await readdir(join(dataDir, 'orders'))).toEqual([]);
  });

  it("keeps an order's snapshot and other files, and removes only its interrupted entry writes", async () => {
    const journal = await Journal.open(dataDir);
    await journal.createApply(sampleApplyOrder('o1'), at(0));
    const orderDir = join(dataDir, 'orders', 'o1');
    await mkdir(join(orderDir, 'snapshot'));
    await writeFile(join(orderDir, 'snapshot', 'file-prior-content'), 'old');
    await writeFile(join(orderDir, '.file-prior-content.fleetpatch-tmp-0123456789abcdef'), 'other writer');
    const lookalikes = ['entry.json.tmp', 'entry.json.0abc.tmp.keep', 'my-entry.json.0abc.tmp', 'entry.json.xyz.tmp'];
    for (const name of lookalikes) await writeFile(join(orderDir, name), 'not an interrupted entry write');

    await Journal.open(dataDir);

    expect((await readdir(orderDir)).sort()).toEqual(
      ['.file-prior-content.fleetpatch-tmp-0123456789abcdef', 'entry.json', ...lookalikes, 'snapshot'].sort(),
    );
    expect(await readFile(join(orderDir, 'snapshot', 'file-prior-content'), 'utf8')).toBe('old');
  });

  it('refuses to start from a corrupt entry rather than forget the order', async () => {
    const journal = await Journal.open(dataDir);
    await journal.createApply(sampleApplyOrder('o1'), at(0));
    const entry = (await onDisk('o1')) as Record<string, unknown>;
    await writeFile(join(dataDir, 'orders', 'o1', 'entry.json'), JSON.stringify({ ...entry, phase: 'exploded' }));

    await expect(Journal.open(dataDir)).rejects.toThrow(/^journal entry o1 is corrupt: /);
  });

  it('passes on an entry it cannot read for another reason than absence', async () => {
    await mkdir(join(dataDir, 'orders', 'o1', 'entry.json'), { recursive: true });
    await expect(Journal.open(dataDir)).rejects.toMatchObject({ code: 'EISDIR' });
  });
});

describe('Journal pruning', () => {
  const DAY = 24 * 3600 * 1000;

  it('removes finished, acknowledged orders older than the retention, snapshots with them', async () => {
    const journal = await Journal.open(dataDir);
    const old = await journal.createApply(sampleApplyOrder('old'), at(0));
    await journal.finish(old, result('old', at(DAY)), true);
    await journal.acknowledge('old', at(DAY), at(DAY));
    await mkdir(journal.snapshotDir('old'));

    const kept = await journal.createApply(sampleApplyOrder('recent'), at(0));
    await journal.finish(kept, result('recent', at(2 * DAY)), true);
    await journal.acknowledge('recent', at(2 * DAY), at(2 * DAY));

    const removed = await journal.prune(DAY, 2 * DAY + 1);

    expect(removed).toBe(1);
    expect(journal.all().map((e) => e.orderId)).toEqual(['recent']);
    expect(await readdir(join(dataDir, 'orders'))).toEqual(['recent']);
    expect((await Journal.open(dataDir)).get('old')).toBeUndefined();
  });

  it('keeps an order exactly at the retention age', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.finish(entry, result('o1', at(DAY)), true);
    await journal.acknowledge('o1', at(DAY), at(DAY));
    expect(await journal.prune(DAY, 2 * DAY)).toBe(0);
    expect(await journal.prune(DAY, 2 * DAY + 1)).toBe(1);
  });

  it('keeps unfinished orders and results not acknowledged, however old', async () => {
    const journal = await Journal.open(dataDir);
    await journal.createApply(sampleApplyOrder('running'), at(0));
    const unacked = await journal.createApply(sampleApplyOrder('unacked'), at(0));
    await journal.finish(unacked, result('unacked', at(0)), true);

    expect(await journal.prune(DAY, 100 * DAY)).toBe(0);
    expect(journal.all().map((e) => e.orderId)).toEqual(['running', 'unacked']);
    expect((await readdir(join(dataDir, 'orders'))).sort()).toEqual(['running', 'unacked']);
  });

  it('only ever prunes finished orders, even one marked acknowledged', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.update(entry, { phase: 'applying', acked: true }, at(0));
    expect(await journal.prune(DAY, 10 * DAY)).toBe(0);
    expect(journal.get('o1')).toBeDefined();
  });

  it('lets an ack that arrives while its order is being pruned find nothing to do', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.finish(entry, result('o1', at(0)), true);
    await journal.acknowledge('o1', at(0), at(0));

    const [removed] = await Promise.all([journal.prune(DAY, 10 * DAY), journal.acknowledge('o1', at(0), at(1))]);

    expect(removed).toBe(1);
    expect(journal.get('o1')).toBeUndefined();
  });

  it('counts an order once when two prunes race for it', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.finish(entry, result('o1', at(0)), true);
    await journal.acknowledge('o1', at(0), at(0));

    const counts = await Promise.all([journal.prune(DAY, 10 * DAY), journal.prune(DAY, 10 * DAY)]);

    expect(counts.sort()).toEqual([0, 1]);
    expect(journal.all()).toEqual([]);
  });

  it('forgets an order whose directory is already gone', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.finish(entry, result('o1', at(0)), true);
    await journal.acknowledge('o1', at(0), at(0));
    await rm(join(dataDir, 'orders', 'o1'), { recursive: true });

    expect(await journal.prune(DAY, 10 * DAY)).toBe(1);
    expect(journal.get('o1')).toBeUndefined();
  });

  it('keeps an order written to while the prune waited for its turn', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.finish(entry, result('o1', at(0)), true);
    await journal.acknowledge('o1', at(0), at(0));

    // A bake failure's new result is queued first; the prune's turn comes after it.
    const finishing = journal.finish(entry, result('o1', at(DAY), { outcome: 'failed' }), false);
    const pruning = journal.prune(DAY, 10 * DAY);
    await finishing;

    expect(await pruning).toBe(0);
    expect(journal.get('o1')).toMatchObject({ acked: false, result: { outcome: 'failed' } });
  });
});
