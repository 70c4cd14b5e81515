/**
 * `durableRename: false` leaves out only the directory's fsync after the rename (the journal's ack):
 * the temp file is still synced before it is renamed, so the file is never torn. Every fsync the
 * writer makes is recorded here with what it synced, a file or a directory.
 */
import * as fs from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { writeAll, writeFileAtomically } from '../src/fs/atomic-file.js';
import { Journal } from '../src/journal.js';
import { sampleApplyOrder } from './support/sample-orders.js';

const synced: ('file' | 'directory' | 'file data')[] = [];
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  return {
    ...actual,
    fsyncSync: (fd: number) => {
      synced.push(actual.fstatSync(fd).isDirectory() ? 'directory' : 'file');
      actual.fsyncSync(fd);
    },
    fdatasyncSync: (fd: number) => {
      synced.push('file data');
      actual.fdatasyncSync(fd);
    },
  };
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleetpatch-durable-rename-'));
  synced.length = 0;
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const write = (options: { durableRename?: boolean }) =>
  writeFileAtomically(dir, 'entry.json', { mode: 0o600 }, (fd) => writeAll(fd, Buffer.from('{"acked":true}')), options);

describe('writeFileAtomically and durableRename', () => {
  it('syncs the temp file, then the directory after the rename, by default', async () => {
    await write({});
    expect(synced).toEqual(['file', 'directory']);
    expect(fs.readdirSync(dir)).toEqual(['entry.json']);
  });

  it('with durableRename: false syncs the temp file and not the directory', async () => {
    await write({ durableRename: false });
    expect(synced).toEqual(['file']);
    expect(await readFile(join(dir, 'entry.json'), 'utf8')).toBe('{"acked":true}');
    expect(fs.readdirSync(dir)).toEqual(['entry.json']);
  });

  it("the journal's ack is its one write not synced: appended without fdatasync, or renamed without the directory's sync", async () => {
    const journal = await Journal.open(dir);
    synced.length = 0;
    const entry = await journal.createApply(sampleApplyOrder('o1'), '2026-01-01T00:00:00.000Z');
    // The order's new directory in orders/, then its entry renamed into place: file and directory.
    expect(synced).toEqual(['directory', 'file', 'directory']);
    synced.length = 0;
    await journal.finish(
      entry,
      { orderId: 'o1', outcome: 'healthy', changed: true, finishedAt: '2026-01-01T00:00:01.000Z' },
      true,
    );
    expect(synced).toEqual(['file data']);
    synced.length = 0;
    await journal.acknowledge('o1', '2026-01-01T00:00:01.000Z', '2026-01-01T00:00:02.000Z');
    expect(synced).toEqual([]);
    expect(journal.get('o1')).toMatchObject({ phase: 'done', acked: true });
    expect((await Journal.open(dir)).get('o1')).toMatchObject({ phase: 'done', acked: true });

    // An entry written whole (an old agent's, reopened) is renamed: its file synced, not its directory.
    const { acked: _, ...unacked } = journal.get('o1') as NonNullable<ReturnType<Journal['get']>>;
    fs.writeFileSync(join(dir, 'orders', 'o1', 'entry.json'), JSON.stringify({ ...unacked, acked: false }));
    const reopened = await Journal.open(dir);
    synced.length = 0;
    await reopened.acknowledge('o1', '2026-01-01T00:00:01.000Z', '2026-01-01T00:00:03.000Z');
    expect(synced).toEqual(['file']);
    expect(journal.get('o1')).toMatchObject({ phase: 'done', acked: true });
    expect((await Journal.open(dir)).get('o1')).toMatchObject({ phase: 'done', acked: true });
  });
});
