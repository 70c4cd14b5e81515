import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal } from '../src/journal.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';

const order = sampleApplyOrder('o1');

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

  it('leaves no order directory behind when the first entry cannot be written (a full disk)', async () => {
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    // The write fails after the order's directory and the temp file exist, as on a disk that fills then.
    const journal = await Journal.open(dir, {
      checkpoint: (name) => {
        if (name === 'journal:apply:accepted:temp-written') throw full;
      },
    });
    await expect(journal.createApply(order, new Date(0).toISOString())).rejects.toBe(full);
    expect(journal.get('o1')).toBeUndefined();
    expect(await readdir(join(dir, 'orders'))).toEqual([]);
    expect((await Journal.open(dir)).all()).toEqual([]);
  });

  it('settles only once every write begun has ended, so a graceful stop never cuts one short', async () => {
    const journal = await Journal.open(dir);
    const entry = await journal.createApply(order, new Date(0).toISOString());
    const ended: string[] = [];
    const writes = [
      journal.update(entry, { phase: 'snapshotted' }, new Date(1).toISOString()),
      journal.acknowledge('o1', undefined, new Date(2).toISOString()),
      journal.createApply(sampleApplyOrder('o2'), new Date(3).toISOString()),
    ];
    writes.forEach((write, i) => void write.then(() => ended.push(`write ${i}`)));

    await journal.settle();

    expect(ended.sort()).toEqual(['write 0', 'write 1', 'write 2']);
    expect((await Journal.open(dir)).get('o2')).toMatchObject({ phase: 'accepted' });
  });

  it('writes each entry of a large order whole, its order serialized once, and reads every one back as written', async () => {
    const large = sampleApplyOrder('o-large', {
      change: sampleFileChange({ content: 'größe = 8 "quoted" \\ 🚀\n'.repeat(20_000) }),
    });
    const journal = await Journal.open(dir);
    const file = join(dir, 'orders', 'o-large', 'entry.json');
    let entry = await journal.createApply(large, new Date(0).toISOString());
    const steps: [Parameters<Journal['update']>[1], number][] = [
      [{ phase: 'snapshotted', snapshot: { prior: 'old' } }, 1],
      [{ phase: 'applying' }, 2],
      [{ phase: 'done', changed: true }, 3],
    ];
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(journal.get('o-large'));
    for (const [patch, at] of steps) {
      entry = await journal.update(entry, patch, new Date(at).toISOString());
      // What is on disk is exactly the entry: its order unchanged, every other member as now.
      expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(entry);
    }
    expect(entry.order).toEqual(large);
    expect((await Journal.open(dir)).get('o-large')).toEqual(entry);
  });

  it('marks where each order started, keeps it through every later write, and reads it back', async () => {
    const journal = await Journal.open(dir);
    const first = await journal.createApply(sampleApplyOrder('o-first'), '2026-12-06T00:00:00Z');
    const second = await journal.createApply(sampleApplyOrder('o-second'), '2026-12-06T00:00:01Z');
    expect([first.startedSeq, second.startedSeq]).toEqual([first.seq, second.seq]);
    const done = await journal.update(first, { phase: 'applying', changed: true }, '2026-12-06T00:00:02Z');
    expect(done.seq).toBeGreaterThan(second.seq);
    expect(done.startedSeq).toBe(first.seq);
    expect((await Journal.open(dir)).get('o-first')?.startedSeq).toBe(first.seq);
  });

  it('gives an entry written before startedSeq existed the position of its last write: before any order begun since', async () => {
    const journal = await Journal.open(dir);
    const entry = await journal.createApply(sampleApplyOrder('o-old'), '2026-12-06T00:00:00Z');
    const { startedSeq: _, ...older } = entry;
    await writeFile(join(dir, 'orders', 'o-old', 'entry.json'), JSON.stringify(older));
    const reopened = await Journal.open(dir);
    const read = reopened.get('o-old');
    expect(read?.startedSeq).toBeUndefined();
    const newer = await reopened.createApply(sampleApplyOrder('o-new'), '2026-12-06T00:00:01Z');
    // Its ack written after the newer order began: it keeps a start before the newer one's.
    const acked = await reopened.update(read as typeof entry, { acked: true }, '2026-12-06T00:00:02Z');
    expect(acked.startedSeq).toBe(entry.seq);
    expect(acked.startedSeq).toBeLessThan(newer.startedSeq as number);
  });
});
