import { createHash } from 'node:crypto';
import { fstatSync, writeSync, writevSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { itNeeding, root } from '../../../test/support/requirements.js';
import {
  fsyncDirectory,
  isTempFileFor,
  makeDirectoryDurably,
  removeFileDurably,
  tempPrefixFor,
  writeAll,
  writeAllChunks,
  writeFileAtomically,
} from '../src/fs/atomic-file.js';
import type { FsCallLog } from './support/fs-call-log.js';

const fsCalls = vi.hoisted(async () => new (await import('./support/fs-call-log.js')).FsCallLog());
vi.mock('node:fs/promises', async (importOriginal) => (await fsCalls).wrap(await importOriginal()));
vi.mock('node:fs', async (importOriginal) => (await fsCalls).wrapSync(await importOriginal()));

let dir: string;
let log: FsCallLog;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleetpatch-atomic-'));
  log = await fsCalls;
  log.clear();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const write = (bytes: string) => (handle: Parameters<Parameters<typeof writeFileAtomically>[3]>[0]) =>
  writeAll(handle, Buffer.from(bytes));

describe('writeFileAtomically', () => {
  it('writes and fsyncs a temp file, renames it over the target, then fsyncs the directory', async () => {
    await writeFileAtomically(dir, 'app.conf', { mode: 0o640 }, write('new\n'));

    expect(log.lines(dir)).toEqual([
      'open .app.conf.fleetpatch-tmp-*',
      'write .app.conf.fleetpatch-tmp-*',
      'chmod .app.conf.fleetpatch-tmp-*',
      'sync .app.conf.fleetpatch-tmp-*',
      'close .app.conf.fleetpatch-tmp-*',
      'rename .app.conf.fleetpatch-tmp-* -> app.conf',
      'open .',
      'sync .',
      'close .',
    ]);
    expect(await readFile(join(dir, 'app.conf'), 'utf8')).toBe('new\n');
    expect((await stat(join(dir, 'app.conf'))).mode & 0o7777).toBe(0o640);
    expect(await readdir(dir)).toEqual(['app.conf']);
  });

  it('replaces the target by rename, so a reader holding the old file keeps the old bytes', async () => {
    await writeFile(join(dir, 'app.conf'), 'old\n');
    const before = await stat(join(dir, 'app.conf'));

    await writeFileAtomically(dir, 'app.conf', { mode: 0o600 }, write('new\n'));

    const after = await stat(join(dir, 'app.conf'));
    expect(after.ino).not.toBe(before.ino);
    expect(await readFile(join(dir, 'app.conf'), 'utf8')).toBe('new\n');
  });

  it('runs beforeRename once the temp file is complete and durable, while the target is still the old one', async () => {
    await writeFile(join(dir, 'app.conf'), 'old\n');
    const seen: { temp: string[]; target: string; tempBytes: string; tempMode: number }[] = [];

    await writeFileAtomically(dir, 'app.conf', { mode: 0o644 }, write('new\n'), {
      beforeRename: async () => {
        const temp = (await readdir(dir)).filter((name) => isTempFileFor('app.conf', name));
        seen.push({
          temp,
          target: await readFile(join(dir, 'app.conf'), 'utf8'),
          tempBytes: await readFile(join(dir, temp[0] as string), 'utf8'),
          tempMode: (await stat(join(dir, temp[0] as string))).mode & 0o7777,
        });
        expect(log.lines(dir).slice(-2)).toEqual([
          'sync .app.conf.fleetpatch-tmp-*',
          'close .app.conf.fleetpatch-tmp-*',
        ]);
      },
    });

    expect(seen).toEqual([{ temp: [expect.any(String)], target: 'old\n', tempBytes: 'new\n', tempMode: 0o644 }]);
    expect(await readFile(join(dir, 'app.conf'), 'utf8')).toBe('new\n');
  });

  it('keeps the temp file private (0600) until its real mode is set', async () => {
    let modeWhileWriting: number | undefined;
    await writeFileAtomically(dir, 'secret', { mode: 0o644 }, (fd) => {
      modeWhileWriting = fstatSync(fd).mode & 0o7777;
      writeAll(fd, Buffer.from('x'));
    });
    expect(modeWhileWriting).toBe(0o600);
  });

  it('leaves the target and the directory as they were when the content cannot be written', async () => {
    await writeFile(join(dir, 'app.conf'), 'old\n');

    await expect(
      writeFileAtomically(dir, 'app.conf', { mode: 0o644 }, (fd) => {
        writeAll(fd, Buffer.from('half'));
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');

    expect(await readFile(join(dir, 'app.conf'), 'utf8')).toBe('old\n');
    expect(await readdir(dir)).toEqual(['app.conf']);
    expect(log.lines(dir).filter((line) => line.startsWith('rename'))).toEqual([]);
  });

  it('leaves the target as it was and removes the temp file when beforeRename backs out', async () => {
    await writeFile(join(dir, 'app.conf'), 'old\n');

    await expect(
      writeFileAtomically(dir, 'app.conf', { mode: 0o644 }, write('new\n'), {
        beforeRename: async () => {
          throw new Error('drift');
        },
      }),
    ).rejects.toThrow('drift');

    expect(await readFile(join(dir, 'app.conf'), 'utf8')).toBe('old\n');
    expect(await readdir(dir)).toEqual(['app.conf']);
    expect(log.lines(dir).at(-1)).toBe('unlink .app.conf.fleetpatch-tmp-*');
  });

  it('keeps the target and removes the temp file when beforeRename finds it as it should be', async () => {
    await writeFile(join(dir, 'app.conf'), 'new\n');

    const renamed = await writeFileAtomically(dir, 'app.conf', { mode: 0o644 }, write('new\n'), {
      beforeRename: async () => false,
    });

    expect(renamed).toBe(false);
    expect(await readdir(dir)).toEqual(['app.conf']);
    expect(log.lines(dir).filter((line) => line.startsWith('rename'))).toEqual([]);
    // The removal is durable: the temp file was fsync'd, and must not come back after a power cut.
    expect(log.lines(dir).slice(-4)).toEqual(['unlink .app.conf.fleetpatch-tmp-*', 'open .', 'sync .', 'close .']);
    expect(await writeFileAtomically(dir, 'app.conf', { mode: 0o644 }, write('newer\n'))).toBe(true);
  });

  it('removes nothing after a successful rename', async () => {
    await writeFileAtomically(dir, 'app.conf', { mode: 0o644 }, write('new\n'));
    expect(log.calls.filter((c) => c.call === 'unlink')).toEqual([]);
  });

  it('never writes through a symlink that takes the target name: the link itself is replaced', async () => {
    await writeFile(join(dir, 'elsewhere'), 'untouched\n');
    await symlink(join(dir, 'elsewhere'), join(dir, 'app.conf'));

    await writeFileAtomically(dir, 'app.conf', { mode: 0o644 }, write('new\n'));

    expect((await lstat(join(dir, 'app.conf'))).isFile()).toBe(true);
    expect(await readFile(join(dir, 'elsewhere'), 'utf8')).toBe('untouched\n');
  });

  itNeeding([root], 'sets the owner before the mode, so setuid and setgid bits survive the chown', async () => {
    await writeFileAtomically(dir, 'tool', { mode: 0o6755, owner: { uid: 65534, gid: 65534 } }, write('#!/bin/sh\n'));

    const info = await stat(join(dir, 'tool'));
    expect({ mode: info.mode & 0o7777, uid: info.uid, gid: info.gid }).toEqual({
      mode: 0o6755,
      uid: 65534,
      gid: 65534,
    });
    const handleCalls = log.lines(dir).filter((line) => line.startsWith('chown') || line.startsWith('chmod'));
    expect(handleCalls).toEqual(['chown .tool.fleetpatch-tmp-*', 'chmod .tool.fleetpatch-tmp-*']);
  });

  it('without an owner, leaves the file to the writing process and never calls chown', async () => {
    await writeFileAtomically(dir, 'app.conf', { mode: 0o644 }, write('x'));

    const info = await stat(join(dir, 'app.conf'));
    expect({ uid: info.uid, gid: info.gid }).toEqual({ uid: process.geteuid?.(), gid: process.getegid?.() });
    expect(log.calls.filter((c) => c.call === 'chown')).toEqual([]);
  });
});

describe('writeAll', () => {
  it('writes every byte even when one write takes only part of them', async () => {
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 7, 0xab);
    await writeFileAtomically(dir, 'big', { mode: 0o600 }, (fd) => {
      // A write that takes at most 1000 bytes a call, as a pipe or a full disk may.
      const partial = (fd: number, buffer: Uint8Array, offset: number, length: number) =>
        writeSync(fd, buffer, offset, Math.min(length, 1000));
      writeAll(fd, bytes.subarray(0, 4321), partial);
      writeAll(fd, bytes.subarray(4321));
    });
    const written = await readFile(join(dir, 'big'));
    expect(written.byteLength).toBe(bytes.byteLength);
    expect(createHash('sha256').update(written).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('fails, and leaves the target as it was, when a write takes no bytes, instead of asking again for ever', async () => {
    await writeFile(join(dir, 'stuck'), 'old\n');
    let calls = 0;
    const takesNothing = () => {
      calls++;
      return 0;
    };
    const writing = writeFileAtomically(dir, 'stuck', { mode: 0o600 }, (fd) =>
      writeAll(fd, Buffer.from('new\n'), takesNothing),
    );
    await expect(writing).rejects.toMatchObject({ message: 'a write took no bytes', code: 'EIO' });
    expect(calls).toBe(1);
    expect(await readFile(join(dir, 'stuck'), 'utf8')).toBe('old\n');
    expect((await readdir(dir)).filter((name) => name.includes('stuck'))).toEqual(['stuck']);
  });

  it('writes nothing for no bytes', async () => {
    await writeFileAtomically(dir, 'empty', { mode: 0o600 }, (handle) => writeAll(handle, new Uint8Array(0)));
    expect((await stat(join(dir, 'empty'))).size).toBe(0);
    expect(log.calls.filter((c) => c.call === 'write')).toEqual([]);
  });
});

describe('writeAllChunks', () => {
  it('writes the chunks in order as one, in a single call when it takes them all', async () => {
    const chunks = [Buffer.from('{"order":'), Buffer.from('"größe 🚀"'), Buffer.alloc(0), Buffer.from(',"seq":3}')];
    await writeFileAtomically(dir, 'entry.json', { mode: 0o600 }, (fd) => writeAllChunks(fd, chunks));
    expect(await readFile(join(dir, 'entry.json'), 'utf8')).toBe('{"order":"größe 🚀","seq":3}');
    expect(log.calls.filter((c) => c.call === 'write')).toHaveLength(1);
  });

  it('fails when a call takes no bytes, instead of asking again for ever', () => {
    let calls = 0;
    const takesNothing = () => {
      calls++;
      return 0;
    };
    expect(() => writeAllChunks(-1, [Buffer.from('{"seq":3}')], takesNothing)).toThrow('a write took no bytes');
    expect(calls).toBe(1);
  });

  it('writes every byte even when one call takes only part of them, splitting a chunk mid-way', async () => {
    const chunks = [Buffer.alloc(2500, 0x61), Buffer.alloc(3, 0x62), Buffer.alloc(1_000_007, 0x63)];
    const taken: number[] = [];
    await writeFileAtomically(dir, 'big', { mode: 0o600 }, (fd) => {
      // A call that takes at most 999 bytes, as a pipe or a full disk may: chunks end mid-call and mid-chunk.
      writeAllChunks(fd, chunks, (fd, pending) => {
        const n = writevSync(fd, [Buffer.concat(pending.map((c) => Buffer.from(c))).subarray(0, 999)]);
        taken.push(n);
        return n;
      });
    });
    const written = await readFile(join(dir, 'big'));
    expect(written.equals(Buffer.concat(chunks))).toBe(true);
    expect(taken.every((n) => n <= 999)).toBe(true);
  });
});

describe('temp file names', () => {
  it('are .<name>.fleetpatch-tmp- plus 16 lower-case hex digits', () => {
    expect(tempPrefixFor('app.conf')).toBe('.app.conf.fleetpatch-tmp-');
    expect(isTempFileFor('app.conf', '.app.conf.fleetpatch-tmp-0123456789abcdef')).toBe(true);
  });

  it('recognise only a temp file of that very name', () => {
    const valid = '.app.conf.fleetpatch-tmp-0123456789abcdef';
    expect(isTempFileFor('app.conf', valid)).toBe(true);
    for (const other of [
      'app.conf',
      '.app.conf.fleetpatch-tmp-',
      '.app.conf.fleetpatch-tmp-0123456789abcde',
      '.app.conf.fleetpatch-tmp-0123456789abcdef0',
      '.app.conf.fleetpatch-tmp-0123456789ABCDEF',
      '.app.conf.fleetpatch-tmp-0123456789abcdeg',
      `${valid}.bak`,
      `x${valid}`,
      '.other.conf.fleetpatch-tmp-0123456789abcdef',
      '.app.conf.fleetpatch-tmp-.0123456789abcde',
    ]) {
      expect(isTempFileFor('app.conf', other), other).toBe(false);
    }
  });

  it('use a digest for names too long to fit, and keep names up to 200 bytes as they are', () => {
    const longest = 'a'.repeat(200);
    expect(tempPrefixFor(longest)).toBe(`.${longest}.fleetpatch-tmp-`);

    const tooLong = 'a'.repeat(201);
    const digest = createHash('sha256').update(tooLong).digest('hex').slice(0, 32);
    expect(tempPrefixFor(tooLong)).toBe(`.${digest}.fleetpatch-tmp-`);
    // Bytes, not characters: 101 two-byte characters are 202 bytes.
    const wide = 'é'.repeat(101);
    expect(tempPrefixFor(wide)).toBe(
      `.${createHash('sha256').update(wide).digest('hex').slice(0, 32)}.fleetpatch-tmp-`,
    );
  });

  it('stay within NAME_MAX for the longest legal name, which the writer can then replace', async () => {
    const name = 'n'.repeat(255);
    await writeFileAtomically(dir, name, { mode: 0o600 }, write('x'));
    expect(await readdir(dir)).toEqual([name]);
  });
});

describe('makeDirectoryDurably', () => {
  it('makes the directory and its missing parents, syncs each into its parent, and says it made it', async () => {
    expect(await makeDirectoryDurably(join(dir, 'a', 'b'), 0o700)).toBe(true);
    expect(log.lines(dir)).toEqual(['mkdir a/b', 'open a', 'sync a', 'close a', 'open .', 'sync .', 'close .']);
    expect((await stat(join(dir, 'a', 'b'))).mode & 0o777).toBe(0o700);
  });

  it('makes and syncs nothing for a directory already there, and says so', async () => {
    await mkdir(join(dir, 'there'));
    log.clear();
    expect(await makeDirectoryDurably(join(dir, 'there'), 0o700)).toBe(false);
    expect(log.lines(dir)).toEqual(['mkdir there']);
  });
});

describe('fsyncDirectory and removeFileDurably', () => {
  it('fsyncs the directory through a handle that it closes again', async () => {
    await fsyncDirectory(dir);
    expect(log.lines(dir)).toEqual(['open .', 'sync .', 'close .']);
  });

  it('refuses a symlink in place of the directory', async () => {
    await mkdir(join(dir, 'real'));
    await symlink(join(dir, 'real'), join(dir, 'link'));
    // O_DIRECTORY | O_NOFOLLOW on a symlink: Linux answers ENOTDIR (the link itself is no directory).
    await expect(fsyncDirectory(join(dir, 'link'))).rejects.toMatchObject({ code: 'ENOTDIR' });
  });

  it('refuses a file in place of the directory', async () => {
    await writeFile(join(dir, 'file'), '');
    await expect(fsyncDirectory(join(dir, 'file'))).rejects.toMatchObject({ code: 'ENOTDIR' });
  });

  it('removes the file, then makes the removal durable', async () => {
    await writeFile(join(dir, 'gone'), 'x');
    await removeFileDurably(dir, 'gone');
    expect(await readdir(dir)).toEqual([]);
    expect(log.lines(dir)).toEqual(['unlink gone', 'open .', 'sync .', 'close .']);
  });
});
