/**
 * At most once, observably: the journal counts how many times each order id was started, on disk,
 * so a second run of a re-delivered id shows in the entry (the end-to-end tests assert it is 1).
 * And the journal's writes carry the test crash points the crash matrix kills the agent at.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal, readEntryFile } from '../src/journal.js';
import { sampleApplyOrder } from './support/sample-orders.js';

const at = (ms: number) => new Date(ms).toISOString();

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'journal-executions-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function onDisk(orderId: string): Promise<Record<string, unknown>> {
  return readEntryFile(await readFile(join(dir, 'orders', orderId, 'entry.json'), 'utf8')) as Record<string, unknown>;
}

describe('Journal executions', () => {
  it('records one execution when an order starts, and keeps it through every later write and a reopen', async () => {
    const journal = await Journal.open(dir);
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    const later = await journal.update(entry, { phase: 'applying' }, at(1));
    await journal.finish(later, { orderId: 'o1', outcome: 'healthy', changed: true, finishedAt: at(2) }, true);
    await journal.acknowledge('o1', at(2), at(3));

    expect(await onDisk('o1')).toMatchObject({ phase: 'done', acked: true, executions: 1 });
    expect((await Journal.open(dir)).get('o1')?.executions).toBe(1);
  });

  it('counts a second start of the same id, for apply and revert orders alike, and the count survives a reopen', async () => {
    const journal = await Journal.open(dir);
    await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.createApply(sampleApplyOrder('o1'), at(1));
    await journal.createRevert('r1', 'o1', at(2));
    await journal.createRevert('r1', 'o1', at(3));

    expect(await onDisk('o1')).toMatchObject({ executions: 2 });
    expect(await onDisk('r1')).toMatchObject({ executions: 2 });
    const reopened = await Journal.open(dir);
    await reopened.createApply(sampleApplyOrder('o1'), at(4));
    expect(await onDisk('o1')).toMatchObject({ executions: 3 });
  });

  it('reads an entry written before executions were counted as started once', async () => {
    const journal = await Journal.open(dir);
    await journal.createApply(sampleApplyOrder('o1'), at(0));
    const { executions: _dropped, ...older } = await onDisk('o1');
    await writeFile(join(dir, 'orders', 'o1', 'entry.json'), JSON.stringify(older));

    expect((await Journal.open(dir)).get('o1')?.executions).toBe(1);
  });
});

describe('Journal crash points', () => {
  it('names each step of each write after the order kind and the phase written (or acked)', async () => {
    const reached: string[] = [];
    const journal = await Journal.open(dir, { checkpoint: (name) => reached.push(name) });
    const entry = await journal.createApply(sampleApplyOrder('o1'), at(0));
    await journal.finish(entry, { orderId: 'o1', outcome: 'healthy', changed: true, finishedAt: at(1) }, true);
    await journal.acknowledge('o1', at(1), at(2));
    await journal.createRevert('r1', 'o1', at(3));

    // An order's first write replaces its entry file; each later one is appended to it, and an ack is not synced.
    const steps = (write: string) => [`${write}:temp-written`, `${write}:temp-synced`, `${write}:renamed`];
    expect(reached).toEqual([
      ...steps('journal:apply:accepted'),
      'journal:apply:done:appended',
      'journal:apply:done:synced',
      'journal:apply:acked:appended',
      ...steps('journal:revert:reverting'),
    ]);
  });
});
