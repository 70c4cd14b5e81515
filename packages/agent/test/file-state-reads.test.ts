/**
 * What a file's state is read with: its digest comes from exactly the bytes it holds, in as few reads
 * as that takes — one for a file smaller than the buffer, none after a short read — and a file that
 * grew since its size was taken is read to its new end. `readSync` is wrapped here only to count.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

const reads = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  return {
    ...fs,
    readSync: (...args: Parameters<typeof fs.readSync>) => {
      reads.count++;
      return fs.readSync(...args);
    },
  };
});

const { digestFrom, readFileState } = await import('../src/drivers/file-state.js');

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const KIB = 1024;

describe('reading a file state', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'file-state-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    reads.count = 0;
  });

  it.each([
    ['an empty file', 0, 1],
    ['a small file', 300, 1],
    ['a file of one read buffer, exactly', 64 * KIB - 1, 1],
    ['a file of 64 KiB', 64 * KIB, 2],
    ['a file of three and a half buffers', 3 * 64 * KIB + 32 * KIB, 4],
    ['a file of exactly three buffers', 3 * 64 * KIB, 4],
  ])('digests %s from its bytes, in as many reads as it takes', async (_name, size, expectedReads) => {
    const bytes = Buffer.alloc(size, 0);
    for (let i = 0; i < size; i++) bytes[i] = (i * 7 + 3) % 256;
    const path = join(dir, `file-${size}`);
    await writeFile(path, bytes);
    reads.count = 0;
    const state = await readFileState(path, '/etc/app.conf');
    expect(state).toMatchObject({ exists: true, sha256: sha256(bytes), size });
    expect(reads.count).toBe(expectedReads);
  });

  it('reads a file that grew since its size was taken to its new end, and copies all of it', async () => {
    const bytes = Buffer.from('x'.repeat(10 * KIB));
    const path = join(dir, 'grown');
    const copyPath = join(dir, 'grown-copy');
    await writeFile(path, bytes);
    const source = openSync(path, 'r');
    const copy = openSync(copyPath, 'w');
    try {
      // Told it holds 100 bytes: its buffer (512) fills, so it reads on to the end.
      const digest = await digestFrom(source, copy, 100);
      expect(digest).toEqual({ sha256: sha256(bytes), size: bytes.length });
    } finally {
      closeSync(source);
      closeSync(copy);
    }
    expect(await readFile(copyPath)).toEqual(bytes);
  });
});
