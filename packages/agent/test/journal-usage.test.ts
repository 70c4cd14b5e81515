/**
 * The journal's measure for `journal.maxBytes`: always what a walk of the whole directory finds, but
 * walked whole only once — after that, only the orders the journal changed, or that can still grow,
 * are measured again, and an order whose every file the journal and its driver know is counted
 * without a walk. `readdirSync` is wrapped here only to count which directories are listed.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OrderResultBody } from '@fleetpatch/shared';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DriverContext } from '../src/drivers/driver.js';
import type { Journal as JournalOfOrders } from '../src/journal.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';

const listed = vi.hoisted(() => ({ dirs: [] as string[] }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  return {
    ...fs,
    readdirSync: ((path: string, options?: unknown) => {
      listed.dirs.push(String(path));
      return fs.readdirSync(path, options as never);
    }) as typeof fs.readdirSync,
  };
});

const { Journal } = await import('../src/journal.js');
const { JournalUsage, bytesUnder, journalQuotaRefusal } = await import('../src/policy/journal-quota.js');
const { FileDriver } = await import('../src/drivers/file-driver.js');

const at = (ms: number) => new Date(ms).toISOString();
const healthy = (orderId: string, finishedAt: string): OrderResultBody => ({
  orderId,
  outcome: 'healthy',
  changed: true,
  finishedAt,
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'journal-usage-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs order `id` through the journal to done and, unless `acked` is false, acknowledged. */
async function finishedOrder(journal: JournalOfOrders, id: string, acked = true): Promise<void> {
  const entry = await journal.createApply(sampleApplyOrder(id), at(1));
  const done = await journal.finish(entry, healthy(id, at(2)), true);
  if (acked) await journal.acknowledge(id, done.result?.finishedAt, at(3));
}

describe('the journal usage', () => {
  it('is what a walk of the whole directory finds, through new, growing, rewritten, acknowledged and pruned orders', async () => {
    const journal = await Journal.open(dir);
    const usage = new JournalUsage(journal);
    const walked = () => bytesUnder(journal.directory);
    expect(usage.bytes()).toBe(walked());

    for (const id of ['o1', 'o2', 'o3']) await finishedOrder(journal, id);
    expect(usage.bytes()).toBe(walked());

    // A running order's snapshot grows with no entry written: measured again all the same.
    const running = await journal.createApply(sampleApplyOrder('o4'), at(4));
    expect(usage.bytes()).toBe(walked());
    await mkdir(journal.snapshotDir('o4'), { recursive: true });
    await writeFile(join(journal.snapshotDir('o4'), 'file-prior-content'), 'x'.repeat(5000));
    expect(usage.bytes()).toBe(walked());
    await journal.finish(running, healthy('o4', at(5)), true);
    expect(usage.bytes()).toBe(walked());

    // A finished, acknowledged order written again (a revert's changed: false) is measured again.
    const o1 = journal.get('o1');
    if (!o1) throw new Error('o1 is gone');
    await journal.update(o1, { changed: false, result: { ...healthy('o1', at(6)), reason: 'r'.repeat(3000) } }, at(6));
    expect(usage.bytes()).toBe(walked());

    // Pruned orders leave the measure with their directories.
    await journal.acknowledge('o1', at(6), at(7));
    await journal.acknowledge('o4', at(5), at(7));
    expect(await journal.prune(0, Date.parse(at(10)))).toBe(4);
    expect(usage.bytes()).toBe(walked());
    expect(usage.bytes()).toBe(0);
  });

  it('counts what was there before it first measured, a stray file included', async () => {
    const journal = await Journal.open(dir);
    await finishedOrder(journal, 'o1');
    await finishedOrder(journal, 'o2', false);
    await writeFile(join(journal.directory, 'stray'), 'y'.repeat(123));
    const usage = new JournalUsage(journal);
    expect(usage.bytes()).toBe(bytesUnder(journal.directory));
    await finishedOrder(journal, 'o3');
    expect(usage.bytes()).toBe(bytesUnder(journal.directory));
  });

  it("lists the journal's directory once: a new order costs what changed, not a walk of every order kept", async () => {
    const journal = await Journal.open(dir);
    const usage = new JournalUsage(journal);
    for (let i = 0; i < 40; i++) await finishedOrder(journal, `kept-${i}`);
    usage.bytes();

    listed.dirs = [];
    await finishedOrder(journal, 'new');
    const bytes = usage.bytes();
    const listedToMeasure = listed.dirs.filter((path) => path.startsWith(journal.directory));

    expect(listedToMeasure).toEqual([join(journal.directory, 'new')]);
    expect(bytes).toBe(bytesUnder(journal.directory));
  });

  it('counts orders, for journal.maxOrders, without listing them', async () => {
    const journal = await Journal.open(dir);
    for (const id of ['o1', 'o2']) await finishedOrder(journal, id);
    expect(journal.size).toBe(2);
    listed.dirs = [];
    const refusal = journalQuotaRefusal(new JournalUsage(journal), { maxOrders: 2, maxBytes: 1024 ** 3 });
    expect(refusal).toContain('holds 2 orders, its quota (journal.maxOrders) is 2');
    expect(listed.dirs).toEqual([]);
  });
});

describe('the journal usage of orders whose every file is known', () => {
  const ctx: DriverContext = { signal: new AbortController().signal, log: pino({ level: 'silent' }) };
  const PRIOR = 'p'.repeat(4321);
  let root: string;
  let driver: InstanceType<typeof FileDriver>;
  /** The usage as the executor makes it: the file driver says what a snapshot it recorded keeps. */
  const usageOf = (journal: JournalOfOrders) =>
    new JournalUsage(journal, (entry) =>
      entry.kind === 'apply' && entry.snapshot !== undefined ? driver.keptBytes(entry.snapshot) : undefined,
    );
  /** What lies in the journal's order directories that listing them found. */
  const listedOrders = (journal: JournalOfOrders) => listed.dirs.filter((path) => path.startsWith(journal.directory));

  beforeEach(async () => {
    root = join(dir, 'root');
    await mkdir(join(root, 'etc'), { recursive: true, mode: 0o755 });
    await writeFile(join(root, 'etc', 'x.conf'), PRIOR, { mode: 0o644 });
    driver = new FileDriver({ rootDir: root, allowedRoots: ['/etc'] });
  });

  /** A file order as the executor runs it: journaled, snapshotted, applying with its record, done, acked. */
  async function snapshottedOrder(journal: JournalOfOrders, id: string): Promise<void> {
    const change = sampleFileChange();
    const entry = await journal.createApply(sampleApplyOrder(id, { change }), at(1));
    const snapshot = await driver.snapshot(change, journal.snapshotDir(id), ctx);
    const applying = await journal.update(entry, { phase: 'applying', snapshot }, at(2));
    const done = await journal.finish(applying, healthy(id, at(3)), true);
    await journal.acknowledge(id, done.result?.finishedAt, at(4));
  }

  it("counts a file order's entry and snapshot copy without listing its directories, as a walk would", async () => {
    const journal = await Journal.open(join(dir, 'data'));
    const usage = usageOf(journal);
    expect(usage.bytes()).toBe(0);
    listed.dirs = [];
    await snapshottedOrder(journal, 'o1');
    const bytes = usage.bytes();
    expect(listedOrders(journal)).toEqual([]);
    expect(bytes).toBe(bytesUnder(journal.directory));
    // The copy is most of it: an entry alone would be far less.
    expect(bytes).toBeGreaterThan(PRIOR.length);
  });

  it('counts nothing kept for a file that was absent', async () => {
    await rm(join(root, 'etc', 'x.conf'));
    const journal = await Journal.open(join(dir, 'data'));
    const usage = usageOf(journal);
    usage.bytes();
    listed.dirs = [];
    await snapshottedOrder(journal, 'o1');
    const bytes = usage.bytes();
    expect(listedOrders(journal)).toEqual([]);
    expect(bytes).toBe(bytesUnder(journal.directory));
  });

  it('refuses an order over journal.maxBytes counted with the snapshot copies, not the entries alone', async () => {
    const journal = await Journal.open(join(dir, 'data'));
    const usage = usageOf(journal);
    usage.bytes();
    await snapshottedOrder(journal, 'o1');
    const entryOnly = journal.entryBytes('o1') ?? Number.NaN;
    const quota = { maxOrders: 10, maxBytes: entryOnly + PRIOR.length };
    expect(journalQuotaRefusal(usage, quota)).toContain(`uses ${entryOnly + PRIOR.length} bytes`);
    expect(journalQuotaRefusal(usage, { ...quota, maxBytes: quota.maxBytes + 1 })).toBeUndefined();
  });

  it('walks an order whose snapshot has no record: a copy a failed snapshot left is counted', async () => {
    const journal = await Journal.open(join(dir, 'data'));
    const usage = usageOf(journal);
    usage.bytes();
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(1));
    await mkdir(journal.snapshotDir('o1'));
    await writeFile(join(journal.snapshotDir('o1'), 'file-prior-content'), 'half a copy');
    await journal.finish(entry, { ...healthy('o1', at(2)), outcome: 'failed', changed: false }, false);
    listed.dirs = [];
    expect(usage.bytes()).toBe(bytesUnder(journal.directory));
    expect(listedOrders(journal)).toContain(join(journal.directory, 'o1'));
  });

  it('walks an order whose directory was there before its first entry, with whatever it held', async () => {
    const journal = await Journal.open(join(dir, 'data'));
    const usage = usageOf(journal);
    usage.bytes();
    await mkdir(join(journal.directory, 'o1'));
    await writeFile(join(journal.directory, 'o1', 'left-over'), 'z'.repeat(777));
    await snapshottedOrder(journal, 'o1');
    expect(journal.entryBytes('o1')).toBeUndefined();
    expect(usage.bytes()).toBe(bytesUnder(journal.directory));
  });

  it('walks an order a write of failed, and whatever that write may have left', async () => {
    let failDone = true;
    const journal = await Journal.open(join(dir, 'data'), {
      checkpoint: (name) => {
        if (failDone && name === 'journal:apply:done:appended') throw new Error('the write failed');
      },
    });
    const usage = usageOf(journal);
    usage.bytes();
    const change = sampleFileChange();
    const entry = await journal.createApply(sampleApplyOrder('o1', { change }), at(1));
    const snapshot = await driver.snapshot(change, journal.snapshotDir('o1'), ctx);
    const applying = await journal.update(entry, { phase: 'applying', snapshot }, at(2));
    await expect(journal.finish(applying, healthy('o1', at(3)), true)).rejects.toThrow('the write failed');
    // What a failed write can leave when its temp file cannot be removed.
    await writeFile(join(journal.directory, 'o1', '.entry.json.fleetpatch-tmp-0123456789abcdef'), 't'.repeat(999));
    failDone = false;
    await journal.finish(applying, healthy('o1', at(4)), true);
    expect(journal.entryBytes('o1')).toBeUndefined();
    expect(usage.bytes()).toBe(bytesUnder(journal.directory));
  });

  it('leaves pruned orders out, and counts after a restart what a crash left in one it knew', async () => {
    const data = join(dir, 'data');
    const journal = await Journal.open(data);
    const usage = usageOf(journal);
    usage.bytes();
    for (const id of ['o1', 'o2']) await snapshottedOrder(journal, id);
    expect(usage.bytes()).toBe(bytesUnder(journal.directory));
    expect(await journal.prune(0, Date.parse(at(10)))).toBe(2);
    expect(usage.bytes()).toBe(0);

    await snapshottedOrder(journal, 'o3');
    await writeFile(
      join(journal.snapshotDir('o3'), '.file-prior-content.fleetpatch-tmp-0123456789abcdef'),
      'c'.repeat(55),
    );
    const reopened = await Journal.open(data);
    expect(reopened.entryBytes('o3')).toBeUndefined();
    expect(usageOf(reopened).bytes()).toBe(bytesUnder(reopened.directory));
  });
});
