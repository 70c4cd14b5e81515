import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal, readEntryFile } from '../src/journal.js';
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

  it('writes a large order once: each later write appends what it changed, and every one reads back as written', async () => {
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
    expect(readEntryFile(await readFile(file, 'utf8'))).toEqual(journal.get('o-large'));
    for (const [patch, at] of steps) {
      const before = (await stat(file)).size;
      entry = await journal.update(entry, patch, new Date(at).toISOString());
      // What is on disk is exactly the entry: its order unchanged, every other member as now.
      expect(readEntryFile(await readFile(file, 'utf8'))).toEqual(entry);
      // And the write cost a line of what changed, not the order's half megabyte again.
      expect((await stat(file)).size - before).toBeLessThan(200);
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

describe('the entry file: the entry whole, then a line per write', () => {
  const at = (ms: number) => new Date(ms).toISOString();
  const entryFile = (orderId: string) => join(dir, 'orders', orderId, 'entry.json');
  const linesOf = async (orderId: string) => (await readFile(entryFile(orderId), 'utf8')).split('\n');
  const healthy = (finishedAt: string) => ({ orderId: 'o1', outcome: 'healthy' as const, changed: true, finishedAt });
  /** o1 accepted, then applying with a snapshot: its first write renamed into place, the second appended. */
  const applyingEntry = async (journal: Journal) =>
    journal.update(await journal.createApply(order, at(0)), { phase: 'applying', snapshot: { prior: 'old' } }, at(1));
  /** o1 accepted, applying, done (healthy at 2): its first write renamed into place, the others appended. */
  const doneOrder = async (journal: Journal) =>
    journal.finish(
      await journal.update(await journal.createApply(order, at(0)), { phase: 'applying' }, at(1)),
      healthy(at(2)),
      true,
    );

  it('reads a last line cut short as a write that never completed, and writes the entry whole at its next write', async () => {
    const journal = await Journal.open(dir);
    const applying = await applyingEntry(journal);
    // A crash in the middle of the next append: its line is there in part, without its newline —
    // here even whole JSON, cut just before the newline, which is still a write that did not complete.
    await appendFile(entryFile('o1'), `${JSON.stringify({ seq: 99, updatedAt: at(2), phase: 'done' })}`);

    const reopened = await Journal.open(dir);
    expect(reopened.get('o1')).toEqual(applying);
    await reopened.update(applying, { phase: 'reverting' }, at(3));

    // Not appended after the torn line: replaced by the entry, whole, on one line.
    const lines = await linesOf('o1');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe('');
    expect((await Journal.open(dir)).get('o1')).toMatchObject({ phase: 'reverting', snapshot: { prior: 'old' } });
  });

  it('reads an entry an agent before appends wrote (one JSON text, no newline), and writes it whole at its next write', async () => {
    const journal = await Journal.open(dir);
    const entry = await journal.createApply(order, at(0));
    await writeFile(entryFile('o1'), JSON.stringify(entry));

    const reopened = await Journal.open(dir);
    expect(reopened.get('o1')).toEqual(entry);
    const acked = await reopened.update(entry, { acked: true }, at(1));

    expect(await linesOf('o1')).toEqual([JSON.stringify(acked), '']);
  });

  it('drops the unsynced lines a power cut kept in part: their first page lost (zeros), their newline kept', async () => {
    const journal = await Journal.open(dir);
    const done = await doneOrder(journal);
    const beforeAck = await readFile(entryFile('o1'));
    await journal.acknowledge('o1', at(2), at(3));
    const ack = (await readFile(entryFile('o1'))).subarray(beforeAck.byteLength);
    // The ack line is appended without a sync. A line that crosses a page boundary is two pages; after a
    // power cut the file's size may cover both while only the second (with the newline) reached the disk.
    const lost = Buffer.alloc(ack.byteLength - 10, 0);
    await writeFile(entryFile('o1'), Buffer.concat([beforeAck, lost, ack.subarray(lost.byteLength)]));

    // The ack may be lost: the agent starts, the order done and unacked, and its next write is whole.
    const reopened = await Journal.open(dir);
    expect(reopened.get('o1')).toEqual(done);
    await reopened.acknowledge('o1', at(2), at(4));
    expect(await linesOf('o1')).toHaveLength(2);

    // Two such lines (an unsynced ack, then a write whose sync the power cut interrupted): both dropped.
    await writeFile(entryFile('o1'), Buffer.concat([beforeAck, lost, Buffer.from('\n'), lost, Buffer.from('}\n')]));
    expect((await Journal.open(dir)).get('o1')).toEqual(done);
    // The ack's earlier page lost, the next line (whose sync the power cut interrupted) kept whole: no
    // sync after the lost page completed, so the line after it was not acted on either. Both dropped.
    const reverting = `${JSON.stringify({ seq: 9, updatedAt: at(5), phase: 'reverting' })}\n`;
    await writeFile(
      entryFile('o1'),
      Buffer.concat([beforeAck, lost, ack.subarray(lost.byteLength), Buffer.from(reverting)]),
    );
    expect((await Journal.open(dir)).get('o1')).toEqual(done);
  });

  it('replaces an entry it found at open at its next write, then appends to it again', async () => {
    const journal = await Journal.open(dir);
    const entry = await journal.update(await journal.createApply(order, at(0)), { phase: 'applying' }, at(1));

    // A crash may have left the file's last line, or its name, not durable: it is not appended to.
    const reopened = await Journal.open(dir);
    const done = await reopened.finish(entry, healthy(at(2)), true);
    expect(await linesOf('o1')).toEqual([JSON.stringify(done), '']);
    await reopened.acknowledge('o1', at(2), at(3));

    expect(await linesOf('o1')).toHaveLength(3);
    expect((await Journal.open(dir)).get('o1')).toEqual({ ...done, acked: true, seq: done.seq + 1, updatedAt: at(3) });
  });

  it('refuses to open on a line of JSON that is not a change to the entry, or on a first line that is not JSON', async () => {
    const journal = await Journal.open(dir);
    await journal.createApply(order, at(0));
    const first = await readFile(entryFile('o1'), 'utf8');

    await writeFile(entryFile('o1'), `${first}${JSON.stringify({ seq: 2, updatedAt: at(1), orderId: 'o2' })}\n`);
    await expect(Journal.open(dir)).rejects.toThrow(/journal entry o1 is corrupt: a line is not a change/);

    // A change the schema takes, to an entry it then refuses: a phase that does not exist.
    await writeFile(entryFile('o1'), `${first}${JSON.stringify({ seq: 2, updatedAt: at(1), phase: 'exploded' })}\n`);
    await expect(Journal.open(dir)).rejects.toThrow(/journal entry o1 is corrupt/);

    // The first line is put in place by a rename, whole or not at all: cut short, it is corruption.
    await writeFile(entryFile('o1'), `${first.slice(0, 40)}\n`);
    await expect(Journal.open(dir)).rejects.toThrow(/journal entry o1 is corrupt/);
  });

  it('writes a member a write drops, or one no write changes, by writing the entry whole', async () => {
    const journal = await Journal.open(dir);
    const entry = await applyingEntry(journal);

    const dropped = await journal.update(entry, { snapshot: undefined }, at(2));

    expect(dropped.snapshot).toBeUndefined();
    expect(await linesOf('o1')).toEqual([JSON.stringify(dropped), '']);
    // Written whole by this journal, its size is known still.
    expect(journal.entryBytes('o1')).toBe((await stat(entryFile('o1'))).size);
    expect((await Journal.open(dir)).get('o1')).toEqual(dropped);
  });

  it('appends after an appended ack: a bake failure after it is one line more', async () => {
    const journal = await Journal.open(dir);
    const done = await doneOrder(journal);
    await journal.acknowledge('o1', at(2), at(3));
    expect(await linesOf('o1')).toHaveLength(5);

    await journal.update(done, { phase: 'reverting' }, at(4));

    expect(await linesOf('o1')).toHaveLength(6);
    expect((await Journal.open(dir)).get('o1')).toMatchObject({ phase: 'reverting', acked: true });
  });

  it('knows the size of an entry file it wrote, whole or appended to, and forgets it when a write fails', async () => {
    let fail = false;
    const journal = await Journal.open(dir, {
      checkpoint: (name) => {
        if (fail && name === 'journal:apply:done:appended') throw new Error('the write failed');
      },
    });
    const size = async () => (await stat(entryFile('o1'))).size;
    const entry = await journal.createApply(order, at(0));
    expect(journal.entryBytes('o1')).toBe(await size());
    const applying = await journal.update(entry, { phase: 'applying', snapshot: { prior: 'old' } }, at(1));
    expect(journal.entryBytes('o1')).toBe(await size());

    fail = true;
    await expect(journal.finish(applying, healthy(at(2)), true)).rejects.toThrow('the write failed');
    expect(journal.entryBytes('o1')).toBeUndefined();
    fail = false;
    await journal.finish(applying, healthy(at(3)), true);
    expect(journal.entryBytes('o1')).toBeUndefined();
  });

  it('reads every line in order: a later change wins over an earlier one', () => {
    const first = {
      ...JSON.parse(JSON.stringify({ orderId: 'o1', kind: 'apply', seq: 1, phase: 'accepted', order })),
      updatedAt: at(0),
    };
    const raw = [
      JSON.stringify(first),
      JSON.stringify({ seq: 2, updatedAt: at(1), phase: 'applying', snapshot: { prior: 'a' } }),
      JSON.stringify({ seq: 3, updatedAt: at(2), snapshot: { prior: 'b' } }),
      '',
    ].join('\n');

    expect(readEntryFile(raw)).toMatchObject({
      seq: 3,
      updatedAt: at(2),
      phase: 'applying',
      snapshot: { prior: 'b' },
      changed: false,
      acked: false,
    });
  });
});
