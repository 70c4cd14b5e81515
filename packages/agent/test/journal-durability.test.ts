import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Journal, readEntryFile } from '../src/journal.js';
import type { FsCallLog } from './support/fs-call-log.js';
import { sampleApplyOrder } from './support/sample-orders.js';

// A journal write is durable before the journal says it happened: the file-system calls behind
// each write, in order, all made before its promise settles; and what the journal holds when one fails.

const fsCalls = vi.hoisted(async () => new (await import('./support/fs-call-log.js')).FsCallLog());
vi.mock('node:fs/promises', async (importOriginal) => (await fsCalls).wrap(await importOriginal()));
vi.mock('node:fs', async (importOriginal) => (await fsCalls).wrapSync(await importOriginal()));

let dataDir: string;
let log: FsCallLog;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'fleetpatch-journal-durability-'));
  log = await fsCalls;
  log.clear();
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

const at = (ms: number) => new Date(ms).toISOString();

/** The atomic writer's calls for one entry write in `dir`. */
const entryWrite = (dir: string) => [
  `open ${dir}/.entry.json.fleetpatch-tmp-*`,
  `write ${dir}/.entry.json.fleetpatch-tmp-*`,
  `chmod ${dir}/.entry.json.fleetpatch-tmp-*`,
  `sync ${dir}/.entry.json.fleetpatch-tmp-*`,
  `close ${dir}/.entry.json.fleetpatch-tmp-*`,
  `rename ${dir}/.entry.json.fleetpatch-tmp-* -> ${dir}/entry.json`,
  `open ${dir}`,
  `sync ${dir}`,
  `close ${dir}`,
];

/** A later write of a known order's entry: its line appended, the data synced. */
const entryAppend = (dir: string) => [
  `open ${dir}/entry.json`,
  `write ${dir}/entry.json`,
  `sync ${dir}/entry.json`,
  `close ${dir}/entry.json`,
];

/** An order's first entry: its directory made durable, then the entry written atomically. */
const firstWrite = (orderId: string) => [
  `mkdir orders/${orderId}`,
  // The order's directory is an entry in orders/: without this a power cut could take the whole order.
  'open orders',
  'sync orders',
  'close orders',
  ...entryWrite(`orders/${orderId}`),
];

describe('Journal durability', () => {
  it("makes a new order's directory durable, then writes its entry atomically", async () => {
    const journal = await Journal.open(dataDir);
    log.clear();

    await journal.createApply(sampleApplyOrder('o1'), at(0));

    expect(log.lines(dataDir)).toEqual(firstWrite('o1'));
  });

  it("appends a known order's later writes to its entry file, synced, in the directory it does not make again", async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    log.clear();

    await journal.update(entry, { phase: 'snapshotted' }, at(1));

    // The directory and the file's name are durable since the order's first entry: no mkdir, no rename.
    expect(log.lines(dataDir)).toEqual(entryAppend('orders/o1'));
  });

  it('writes an entry whole again, atomically, once an append to it failed', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    log.before(
      (call) => call.call === 'sync' && call.path.endsWith('entry.json'),
      () => {
        throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
      },
    );
    await expect(journal.update(entry, { phase: 'applying' }, at(1))).rejects.toThrow('EIO');
    log.clear();

    // The failed append may have left part of a line: the next write does not append after it.
    await journal.update(entry, { phase: 'applying' }, at(2));

    expect(log.lines(dataDir)).toEqual(entryWrite('orders/o1'));
    expect((await Journal.open(dataDir)).get('o1')).toMatchObject({ phase: 'applying', updatedAt: at(2) });
  });

  it("makes a pruned order's directory again, durably, if the order is written after all", async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.finish(entry, { orderId: 'o1', outcome: 'healthy', changed: true, finishedAt: at(1) }, true);
    await journal.acknowledge('o1', at(1), at(2));
    expect(await journal.prune(0, Date.parse(at(10)))).toBe(1);
    log.clear();

    await journal.createApply(sampleApplyOrder('o1'), at(11));

    expect(log.lines(dataDir)).toEqual(firstWrite('o1'));
  });

  it('makes the orders directory durable when it creates it, and the data directory if that is new too', async () => {
    // orders/ itself is synced on every open: an order directory an agent made just before it was
    // killed, before it synced orders/, is durable from then on.
    const syncOrders = ['open orders', 'sync orders', 'close orders'];
    // The journal's reserve (a full disk's last room for bringing orders to rest): made once, durably.
    const makeReserve = [
      'open journal.reserve',
      'write journal.reserve',
      'write journal.reserve',
      'sync journal.reserve',
      'close journal.reserve',
      'open .',
      'sync .',
      'close .',
    ];
    await Journal.open(dataDir);
    expect(log.lines(dataDir)).toEqual(['mkdir orders', 'open .', 'sync .', 'close .', ...makeReserve, ...syncOrders]);

    log.clear();
    await Journal.open(dataDir);
    expect(log.lines(dataDir)).toEqual(['mkdir orders', ...syncOrders]);

    log.clear();
    await Journal.open(join(dataDir, 'new', 'data'));
    expect(log.lines(dataDir).filter((line) => line.startsWith('sync'))).toEqual([
      'sync new/data',
      'sync new',
      'sync .',
      'sync new/data/journal.reserve',
      'sync new/data',
      'sync new/data/orders',
    ]);
  });

  it('holds the old entry, in memory and on disk, when a write fails before its line is written', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    log.before(
      (call) => call.call === 'write' && call.path.endsWith('entry.json'),
      () => {
        throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
      },
    );

    await expect(journal.update(entry, { phase: 'applying' }, at(1))).rejects.toThrow('EIO');

    expect(journal.get('o1')).toEqual(entry);
    expect(readEntryFile(await readFile(join(dataDir, 'orders', 'o1', 'entry.json'), 'utf8'))).toEqual(entry);
    expect((await Journal.open(dataDir)).get('o1')).toEqual(entry);
  });

  it('holds the old entry when the whole write that follows a failed append fails before its rename', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    let failures = 0;
    const fail = () => {
      failures++;
      throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    };
    log.before((call) => call.call === 'write' && call.path.endsWith('entry.json'), fail);
    await expect(journal.update(entry, { phase: 'applying' }, at(1))).rejects.toThrow('EIO');
    log.before((call) => call.call === 'rename', fail);

    await expect(journal.update(entry, { phase: 'applying' }, at(2))).rejects.toThrow('EIO');

    expect(failures).toBe(2);
    expect(journal.get('o1')).toEqual(entry);
    expect((await Journal.open(dataDir)).get('o1')).toEqual(entry);
  });

  it('lets a write that arrives after an earlier one finished still wait for the one in between', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    // The writes are synchronous system calls, so nothing can hold one: the third write arrives
    // from inside the second, at its sync, once the first has finished.
    let third: Promise<unknown> | undefined;
    let syncs = 0;
    log.before(
      (call) => call.call === 'sync' && call.path.endsWith('entry.json') && ++syncs === 2,
      () => {
        third = journal.update(entry, { changed: true }, at(3));
      },
    );

    const first = journal.update(entry, { phase: 'snapshotted' }, at(1));
    const second = journal.update(entry, { snapshot: { prior: 'old' } }, at(2));
    await first;
    await second;
    expect(third).toBeDefined();
    await third;

    expect(journal.get('o1')).toMatchObject({ phase: 'snapshotted', snapshot: { prior: 'old' }, changed: true });
  });

  it('writes the entry whole again, durably, after an ack written whole without its directory’s sync', async () => {
    const journal = await Journal.open(dataDir);
    let entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    entry = await journal.update(entry, { phase: 'applying' }, at(1));
    entry = await journal.finish(entry, { orderId: 'o1', outcome: 'healthy', changed: true, finishedAt: at(2) }, true);
    // The ack's append meets a full disk: deferred (no error), and the entry is no longer appendable.
    log.before(
      (call) => call.call === 'write' && call.path.endsWith('entry.json'),
      () => {
        throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      },
    );
    await journal.acknowledge('o1', at(2), at(3));
    expect(journal.get('o1')).toMatchObject({ acked: false });
    // Room again: the ack is written whole, renamed without the directory's fsync (an ack may be lost).
    await journal.acknowledge('o1', at(2), at(4));
    expect(journal.get('o1')).toMatchObject({ acked: true });
    log.clear();

    // A bake failure: the order begins its revert. Appended to the file the unsynced rename put in
    // place, a power cut could take its line with the rename: it is written whole, directory synced.
    await journal.update(entry, { phase: 'reverting' }, at(5));

    expect(log.lines(dataDir)).toEqual(entryWrite('orders/o1'));
  });

  it('makes an order not at rest durable when it opens, before anything reports it; not one done and acknowledged', async () => {
    const journal = await Journal.open(dataDir);
    const done = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.finish(done, { orderId: 'o1', outcome: 'healthy', changed: true, finishedAt: at(1) }, true);
    await journal.acknowledge('o1', at(1), at(2));
    const running = await journal.createApply(sampleApplyOrder('o2'), at(3));
    await journal.update(running, { phase: 'applying' }, at(4));
    // Done, its result not acknowledged yet: reported in hello.
    const unacked = await journal.createApply(sampleApplyOrder('o3'), at(5));
    await journal.finish(unacked, { orderId: 'o3', outcome: 'healthy', changed: true, finishedAt: at(6) }, true);
    // Acknowledged, then a bake failure: reverting, and still marked acknowledged.
    const baked = await journal.createApply(sampleApplyOrder('o4'), at(7));
    const bakedDone = await journal.finish(
      baked,
      { orderId: 'o4', outcome: 'healthy', changed: true, finishedAt: at(8) },
      true,
    );
    await journal.acknowledge('o4', at(8), at(9));
    await journal.update(bakedDone, { phase: 'reverting' }, at(10));
    log.clear();

    // As a restart after a SIGKILL between an append and its sync would find them: in the page cache.
    const reopened = await Journal.open(dataDir);

    const syncs = log.lines(dataDir).filter((line) => line.startsWith('sync'));
    expect(syncs.slice(0, 1)).toEqual(['sync orders']);
    expect(syncs.slice(1).sort()).toEqual(
      ['o2', 'o3', 'o4'].flatMap((id) => [`sync orders/${id}/entry.json`, `sync orders/${id}`]).sort(),
    );
    expect(reopened.pendingReports().map((report) => report.orderId)).toEqual(['o2', 'o3', 'o4']);
  });

  it('keeps nothing of an order’s writes once they are done: a long-lived agent does not grow', async () => {
    const journal = await Journal.open(dataDir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await Promise.all([
      journal.update(entry, { phase: 'applying' }, at(1)),
      journal.update(entry, { changed: true }, at(2)),
    ]);
    await journal.createApply(sampleApplyOrder('o2'), at(3));
    // The queue of writes per order is private; its size is the one thing this test reads of it.
    expect((journal as unknown as { turns: Map<string, unknown> }).turns.size).toBe(0);
  });
});
