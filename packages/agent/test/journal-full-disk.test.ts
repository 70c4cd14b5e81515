import { existsSync, statfsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../scripts/lib/local-fleet.mjs';
import { describeNeeding } from '../../../test/support/requirements.js';
import { SmallFilesystem, smallFilesystems } from '../../../test/support/small-filesystem.js';
import { SpaceReserve } from '../src/fs/space-reserve.js';
import { Journal } from '../src/journal.js';
import { sampleApplyOrder } from './support/sample-orders.js';

// The journal on a disk that fills while an order runs (the end-to-end case is fault 8 "mid-order"):
// a real tmpfs filled to the last byte, no simulated ENOSPC.

const at = (ms: number) => new Date(ms).toISOString();
const result = (orderId: string, finishedAt: string) => ({
  orderId,
  outcome: 'failed' as const,
  changed: false,
  errorCode: 'storage_full' as const,
  reason: 'the data dir filled',
  finishedAt,
});

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'journal-full-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('SpaceReserve', () => {
  it('is not made while less than twice its size is free: it never takes the last room back', async () => {
    const { bavail, bsize } = statfsSync(dir);
    const path = join(dir, 'journal.reserve');
    const reserve = await SpaceReserve.open(path, Math.ceil((bavail * bsize) / 2) + 4096);
    expect(reserve.available).toBe(false);
    expect(existsSync(path)).toBe(false);
  });

  it('is made once, kept across opens, and given back on release', async () => {
    const path = join(dir, 'journal.reserve');
    const reserve = await SpaceReserve.open(path, 8192);
    expect(reserve.available).toBe(true);
    expect((await SpaceReserve.open(path, 8192)).available).toBe(true);
    expect(reserve.release()).toBe(true);
    expect(existsSync(path)).toBe(false);
    expect(reserve.release()).toBe(false);
    expect(await reserve.replenish()).toBe(true);
    expect(existsSync(path)).toBe(true);
  });
});

describeNeeding([smallFilesystems], 'Journal on a disk that fills', () => {
  let disk: SmallFilesystem | undefined;
  afterEach(() => disk?.unmount());

  it('lets the write that ends an order use the reserve, not one that moves it forward', async () => {
    disk = await SmallFilesystem.mount(join(dir, 'data'), 1024);
    const journal = await Journal.open(disk.dir);
    expect(journal.reserveHeld).toBe(true);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await disk.fill();

    // Each write is larger than a page, so none fits in what is left of the entry file's last page:
    // an append that fits there needs no room and succeeds on a full disk (see the test below).
    const large = { prior: 'p'.repeat(5000) };
    await expect(journal.update(entry, { phase: 'snapshotted', snapshot: large }, at(1))).rejects.toMatchObject({
      code: 'ENOSPC',
    });
    await journal.finish(entry, { ...result('o1', at(2)), reason: 'r'.repeat(5000) }, false);

    expect(journal.get('o1')).toMatchObject({ phase: 'done', changed: false });
    expect(journal.reserveHeld).toBe(false);
    // On disk, not only in memory: a new journal reads the order at rest.
    expect((await Journal.open(disk.dir)).get('o1')).toMatchObject({ phase: 'done', result: { outcome: 'failed' } });
  });

  it('appends a write that fits in the last page of its entry file, on a full disk', async () => {
    disk = await SmallFilesystem.mount(join(dir, 'data'), 1024);
    const journal = await Journal.open(disk.dir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await disk.fill();

    await journal.finish(entry, result('o1', at(1)), false);
    await journal.acknowledge('o1', at(1), at(2));

    expect(journal.get('o1')).toMatchObject({ phase: 'done', acked: true });
    expect(journal.reserveHeld).toBe(true);
    expect((await Journal.open(disk.dir)).get('o1')).toMatchObject({ phase: 'done', acked: true });
  });

  it('writes an ack a full disk refused once there is room, and makes the reserve again', async () => {
    // The order's result is sized so that its entry file ends exactly at a page's end: its ack needs
    // a page of its own. The same writes on a journal with room say how long the file is.
    const sized = async (journalDir: string, reasonChars: number) => {
      const journal = await Journal.open(journalDir);
      const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
      await journal.finish(entry, { ...result('o1', at(1)), reason: 'r'.repeat(reasonChars) }, false);
      return { journal, bytes: statSync(join(journalDir, 'orders', 'o1', 'entry.json')).size };
    };
    const { bytes } = await sized(join(dir, 'measure'), 0);
    const reasonChars = 4096 - (bytes % 4096);
    disk = await SmallFilesystem.mount(join(dir, 'data'), 1024);
    const { journal, bytes: filled } = await sized(disk.dir, reasonChars);
    expect(filled % 4096).toBe(0);
    await disk.fill();

    // The coordinator stored the result; the ack cannot be written now, and that is no error.
    await journal.acknowledge('o1', at(1), at(2));
    expect(journal.get('o1')?.acked).toBe(false);

    await disk.free();
    await journal.createApply(sampleApplyOrder('o2'), at(3));
    await waitFor('the deferred ack written', () => journal.get('o1')?.acked === true || undefined, {
      timeoutMs: 5000,
    });
    expect(journal.reserveHeld).toBe(true);
  });
});
