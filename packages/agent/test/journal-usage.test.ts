/**
 * The journal's measure for `journal.maxBytes`: always what a walk of the whole directory finds, but
 * walked whole only once — after that, only the orders the journal changed, or that can still grow,
 * are measured again. `readdirSync` is wrapped here only to count which directories are listed.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OrderResultBody } from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Journal as JournalOfOrders } from '../src/journal.js';
import { sampleApplyOrder } from './support/sample-orders.js';

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
