import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, type FileChange, FileChangeSchema } from '@fleetpatch/shared';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { itNeeding, root } from '../../../test/support/requirements.js';
import type { DriverContext } from '../src/drivers/driver.js';
import { FileDriver, type FileSnapshot } from '../src/drivers/file-driver.js';
import type { FsCallLog } from './support/fs-call-log.js';
import { rejection } from './support/rejection.js';

// The file driver's checks that the happy path never reaches: what it refuses when the file changes
// under it, what it says when it refuses, and that it leaves nothing open or half-made. The other
// writer acts at an exact file-system call (FsCallLog), on real files in a temp dir; files are owned
// by whoever runs the test, so no root is needed. The driver's calls are synchronous, so are the acts.

const fsCalls = vi.hoisted(async () => new (await import('./support/fs-call-log.js')).FsCallLog());
vi.mock('node:fs/promises', async (importOriginal) => (await fsCalls).wrap(await importOriginal()));
vi.mock('node:fs', async (importOriginal) => (await fsCalls).wrapSync(await importOriginal()));

const PATH = '/etc/myapp/app.conf';
const OLD = 'listen = 80\n';
const NEW = 'listen = 8080\n';
const UID = process.geteuid?.() ?? 0;
const GID = process.getegid?.() ?? 0;

let base: string;
let appDir: string;
let target: string;
let snapshotDir: string;
let driver: FileDriver;
let log: FsCallLog;
const ctx: DriverContext = { signal: new AbortController().signal, log: pino({ level: 'silent' }) };

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'fleetpatch-file-checks-'));
  const rootDir = join(base, 'root');
  appDir = join(rootDir, 'etc', 'myapp');
  target = join(appDir, 'app.conf');
  snapshotDir = join(base, 'orders', 'o1', 'snapshot');
  await mkdir(appDir, { recursive: true });
  for (const dir of [rootDir, join(rootDir, 'etc'), appDir]) await chmod(dir, 0o755);
  await mkdir(join(base, 'orders', 'o1'), { recursive: true, mode: 0o700 });
  driver = new FileDriver({ rootDir, allowedRoots: ['/etc/myapp'] });
  log = await fsCalls;
  log.clear();
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

function fileChange(overrides: Partial<FileChange> = {}): FileChange {
  return FileChangeSchema.parse({
    kind: 'file',
    path: PATH,
    content: NEW,
    mode: '0644',
    owner: String(UID),
    group: String(GID),
    ...overrides,
  });
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Runs `act` just before the driver's next call of `call` on `path`. */
function before(call: string, path: string, act: () => void): void {
  log.before((c) => c.call === call && c.path === path, act);
}

/** Every handle the driver opened, and whether it was closed again. */
function openHandles(): string[] {
  const open: string[] = [];
  for (const c of log.calls) {
    if (c.call === 'open') open.push(c.path);
    if (c.call === 'close') open.splice(open.indexOf(c.path), 1);
  }
  return open;
}

describe('FileDriver construction', () => {
  it('refuses a relative rootDir and invalid allowed roots, naming them', () => {
    expect(() => new FileDriver({ rootDir: 'root', allowedRoots: [] })).toThrow(
      expect.objectContaining({ code: ErrorCode.validationFailed, message: 'rootDir must be absolute, got root' }),
    );
    expect(() => new FileDriver({ rootDir: base, allowedRoots: ['/etc', 'etc', '/opt/'] })).toThrow(
      expect.objectContaining({
        code: ErrorCode.validationFailed,
        message: 'allowed roots must be absolute, normalized paths: etc, /opt/',
        details: { invalid: ['etc', '/opt/'] },
      }),
    );
  });
});

describe('FileDriver snapshot when the file changes under it', () => {
  beforeEach(async () => {
    await writeFile(target, OLD, { mode: 0o644 });
    await chmod(target, 0o644);
  });

  const whileCopying = (act: () => void) =>
    log.before((c) => c.call === 'rename' && c.to === join(snapshotDir, 'file-prior-content'), act);

  it('refuses a snapshot when the mode changes while it is copied', async () => {
    whileCopying(() => chmodSync(target, 0o600));
    const err = await rejection(driver.snapshot(fileChange(), snapshotDir, ctx));
    expect(err.code).toBe(ErrorCode.snapshotFailed);
    expect(err.message).toBe(`${PATH} changed while it was being snapshotted`);
    expect(err.details).toEqual({ path: PATH });
  });

  it('refuses a snapshot when the content changes while it is copied', async () => {
    whileCopying(() => writeFileSync(target, 'other\n'));
    expect((await rejection(driver.snapshot(fileChange(), snapshotDir, ctx))).code).toBe(ErrorCode.snapshotFailed);
  });

  it('records a mode as four octal digits however small', async () => {
    await chmod(target, 0o40);
    expect(await driver.snapshot(fileChange(), snapshotDir, ctx)).toMatchObject({ state: 'present', mode: '0040' });
  });

  it('refuses a snapshot when the file is removed while it is copied', async () => {
    whileCopying(() => rmSync(target));
    expect((await rejection(driver.snapshot(fileChange(), snapshotDir, ctx))).code).toBe(ErrorCode.snapshotFailed);
  });

  itNeeding([root], 'refuses a snapshot when the owner or the group changes while it is copied', async () => {
    whileCopying(() => chownSync(target, 65534, GID));
    expect((await rejection(driver.snapshot(fileChange(), snapshotDir, ctx))).code).toBe(ErrorCode.snapshotFailed);
    await chown(target, UID, GID);
    await rm(snapshotDir, { recursive: true });
    whileCopying(() => chownSync(target, UID, 65534));
    expect((await rejection(driver.snapshot(fileChange(), snapshotDir, ctx))).code).toBe(ErrorCode.snapshotFailed);
  });

  it('refuses to snapshot a file that is not the one the order expects', async () => {
    const other = sha256('other');
    const err = await rejection(driver.snapshot(fileChange({ expectedPriorSha256: other }), snapshotDir, ctx));
    expect(err).toMatchObject({
      code: ErrorCode.preconditionFailed,
      message: `drift: expected sha256 ${other}, found ${sha256(OLD)}`,
    });
  });

  it('says what it expected and found when the copy does not read back', async () => {
    log.before(
      (c) => c.call === 'lstat' && c.path === join(snapshotDir, 'file-prior-content'),
      () => writeFileSync(join(snapshotDir, 'file-prior-content'), 'bit rot'),
    );
    const err = await rejection(driver.snapshot(fileChange(), snapshotDir, ctx));
    expect(err).toMatchObject({
      code: ErrorCode.snapshotFailed,
      message: `snapshot copy of ${PATH} does not read back intact`,
      details: { path: PATH, expected: sha256(OLD), found: sha256('bit rot') },
    });
  });

  it('says "absent" when the copy is gone before it is read back', async () => {
    log.before(
      (c) => c.call === 'lstat' && c.path === join(snapshotDir, 'file-prior-content'),
      () => rmSync(join(snapshotDir, 'file-prior-content')),
    );
    const err = await rejection(driver.snapshot(fileChange(), snapshotDir, ctx));
    expect(err.details).toEqual({ path: PATH, expected: sha256(OLD), found: 'absent' });
  });

  it('makes the new snapshot directory durable in its parent, and closes every handle it opened', async () => {
    await driver.snapshot(fileChange(), snapshotDir, ctx);
    const lines = log.lines(base);
    expect(
      lines.slice(lines.indexOf('mkdir orders/o1/snapshot'), lines.indexOf('mkdir orders/o1/snapshot') + 4),
    ).toEqual(['mkdir orders/o1/snapshot', 'open orders/o1', 'sync orders/o1', 'close orders/o1']);
    expect(openHandles()).toEqual([]);
  });
});

describe('FileDriver apply when the file changes under it', () => {
  const whileWriting = (act: () => void) =>
    log.before((c) => c.call === 'open' && c.path.includes('/.app.conf.fleetpatch-tmp-'), act);

  it('refuses drift that appears while the new file is written, up to the rename', async () => {
    await writeFile(target, OLD);
    whileWriting(() => writeFileSync(target, 'other\n'));
    const err = await rejection(driver.apply(fileChange({ expectedPriorSha256: sha256(OLD) }), ctx));
    expect(err).toMatchObject({ code: ErrorCode.preconditionFailed, details: { found: sha256('other\n') } });
    expect(await readFile(target, 'utf8')).toBe('other\n');
    expect(await readdir(appDir)).toEqual(['app.conf']);
  });

  it('refuses a file that appears while the new one is written, when the order expected none', async () => {
    whileWriting(() => writeFileSync(target, 'other\n'));
    const err = await rejection(driver.apply(fileChange({ expectedPriorSha256: 'absent' }), ctx));
    expect(err.code).toBe(ErrorCode.preconditionFailed);
    expect(await readFile(target, 'utf8')).toBe('other\n');
  });

  it('stops before the rename when the order is cancelled while the file is written', async () => {
    await writeFile(target, OLD);
    const cancel = new AbortController();
    whileWriting(() => cancel.abort());
    const err = await rejection(driver.apply(fileChange(), { ...ctx, signal: cancel.signal }));
    expect(err).toMatchObject({ code: ErrorCode.cancelled, message: 'order cancelled' });
    expect(await readFile(target, 'utf8')).toBe(OLD);
  });
});

describe('FileDriver snapshot of a file that is not there', () => {
  it('records absence, and holds the order to an "absent" expectation or refuses it', async () => {
    expect(await driver.snapshot(fileChange({ expectedPriorSha256: 'absent' }), snapshotDir, ctx)).toEqual({
      kind: 'file',
      version: 1,
      path: PATH,
      state: 'absent',
    });
    const err = await rejection(driver.snapshot(fileChange({ expectedPriorSha256: sha256(OLD) }), snapshotDir, ctx));
    expect(err).toMatchObject({
      code: ErrorCode.preconditionFailed,
      message: `drift: expected sha256 ${sha256(OLD)}, found no file`,
      details: { path: PATH, expected: sha256(OLD), found: 'absent' },
    });
  });

  it('never records a path it cannot look at as absent', async () => {
    const change = { ...fileChange(), path: `/etc/myapp/${'n'.repeat(300)}` };
    const err = await rejection(driver.snapshot(change, snapshotDir, ctx));
    expect(err).toMatchObject({ code: ErrorCode.snapshotFailed, details: { errno: 'ENAMETOOLONG' } });
  });
});

describe('FileDriver reading a file swapped while it is inspected', () => {
  beforeEach(async () => {
    await writeFile(target, OLD, { mode: 0o644 });
  });

  it('refuses a file replaced between its lstat and its open', async () => {
    before('open', target, () => {
      writeFileSync(join(appDir, 'swap'), OLD);
      renameSync(join(appDir, 'swap'), target);
    });
    const verdict = await driver.preflight(fileChange(), ctx);
    expect(verdict).toEqual({
      outcome: 'would_fail',
      code: ErrorCode.preconditionFailed,
      detail: `${PATH} was replaced while being inspected`,
    });
    expect(openHandles()).toEqual([]);
    before('open', target, () => {
      writeFileSync(join(appDir, 'swap'), OLD);
      renameSync(join(appDir, 'swap'), target);
    });
    expect((await rejection(driver.apply(fileChange(), ctx))).details).toEqual({ path: PATH });
  });

  it('refuses a symlink swapped in between its lstat and its open', async () => {
    await writeFile(join(base, 'secret'), 'root only\n');
    before('open', target, () => {
      rmSync(target);
      symlinkSync(join(base, 'secret'), target);
    });
    const err = await rejection(driver.apply(fileChange(), ctx));
    expect(err).toMatchObject({
      code: ErrorCode.policyDenied,
      message: `${PATH} is a symbolic link; fleetpatch never follows symlinks`,
      details: { path: PATH },
    });
    expect(await readFile(join(base, 'secret'), 'utf8')).toBe('root only\n');
  });

  it('refuses a FIFO swapped in between its lstat and its open, without hanging on it', async () => {
    before('open', target, () => {
      rmSync(target);
      execFileSync('mkfifo', [target]);
    });
    const err = await rejection(driver.verify(fileChange(), ctx));
    expect(err).toMatchObject({
      code: ErrorCode.verifyFailed,
      message: `${PATH} is not a regular file`,
      details: { path: PATH, cause: ErrorCode.policyDenied },
    });
    expect(openHandles()).toEqual([]);
  });
});

describe('FileDriver refusals say what and where', () => {
  it('preflight names the planned change, or that it is already there', async () => {
    expect(await driver.preflight(fileChange(), ctx)).toEqual({
      outcome: 'would_apply',
      detail: `create ${PATH} with sha256 ${sha256(NEW)} (${NEW.length} bytes, mode 0644, ${UID}:${GID})`,
    });
    await writeFile(target, OLD);
    expect(await driver.preflight(fileChange({ mode: '0640' }), ctx)).toEqual({
      outcome: 'would_apply',
      detail: `replace ${PATH} (sha256 ${sha256(OLD)}) with sha256 ${sha256(NEW)} (${NEW.length} bytes, mode 0640, ${UID}:${GID})`,
    });
    await driver.apply(fileChange(), ctx);
    expect(await driver.preflight(fileChange(), ctx)).toEqual({
      outcome: 'already_applied',
      detail: `${PATH} already has the requested content and attributes`,
    });
  });

  it('drift says what was expected and what was found', async () => {
    await writeFile(target, OLD);
    const absent = await rejection(driver.apply(fileChange({ expectedPriorSha256: 'absent' }), ctx));
    expect(absent).toMatchObject({
      code: ErrorCode.preconditionFailed,
      message: `drift: expected ${PATH} to be absent, found sha256 ${sha256(OLD)}`,
      details: { path: PATH, expected: 'absent', found: sha256(OLD) },
    });
    const other = sha256('other');
    const changed = await rejection(driver.apply(fileChange({ expectedPriorSha256: other }), ctx));
    expect(changed.message).toBe(`drift: expected sha256 ${other}, found ${sha256(OLD)}`);
  });

  it('verify lists every attribute that differs', async () => {
    await driver.apply(fileChange(), ctx);
    await writeFile(target, OLD);
    await chmod(target, 0o600);
    const err = await rejection(driver.verify(fileChange(), ctx));
    const mismatches = [`sha256 is ${sha256(OLD)}, expected ${sha256(NEW)}`, 'mode is 0600, expected 0644'];
    expect(err).toMatchObject({
      code: ErrorCode.verifyFailed,
      message: `${PATH} does not match the change: ${mismatches.join('; ')}`,
    });
    // Its own failure is not re-wrapped: no `cause` of the same code.
    expect(err.details).toStrictEqual({ path: PATH, mismatches });
    await rm(target);
    expect((await rejection(driver.verify(fileChange(), ctx))).details).toEqual({
      path: PATH,
      mismatches: ['file is absent'],
    });
  });

  it('re-checks a mode the schema should have refused, before anything is written', async () => {
    for (const mode of ['77777', '8', '-1', 'rw']) {
      const err = await rejection(driver.apply({ ...fileChange(), mode }, ctx));
      expect(err, mode).toMatchObject({
        code: ErrorCode.policyDenied,
        message: `mode ${mode} is not a valid octal mode`,
        details: { path: PATH },
      });
    }
    expect(await readdir(appDir)).toEqual([]);
    await driver.apply({ ...fileChange(), mode: '7777', allowSpecialModes: true }, ctx);
    await driver.apply({ ...fileChange(), mode: '0' }, ctx);
  });

  it('an error of the file system keeps its errno and the path, under the step’s code', async () => {
    log.before(
      (c) => c.call === 'rename' && c.to === target,
      () => {
        throw Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' });
      },
    );
    const err = await rejection(driver.apply(fileChange(), ctx));
    expect(err).toMatchObject({
      code: ErrorCode.applyFailed,
      message: `${PATH}: EIO: i/o error, rename`,
      details: { path: PATH, errno: 'EIO' },
    });
    expect(err.cause).toMatchObject({ code: 'EIO' });
  });

  it('an error without an errno is reported with the path only', async () => {
    log.before(
      (c) => c.call === 'rename' && c.to === target,
      () => {
        throw new Error('disk says no');
      },
    );
    const err = await rejection(driver.apply(fileChange(), ctx));
    expect(err).toMatchObject({ code: ErrorCode.applyFailed, message: `${PATH}: disk says no` });
    expect(err.details).toStrictEqual({ path: PATH });
  });
});

describe('FileDriver restore, checked to the end', () => {
  it('refuses a record whose mode is not four or five octal digits with a leading 0, nothing around them', async () => {
    await writeFile(target, OLD);
    const snapshot = await driver.snapshot(fileChange(), snapshotDir, ctx);
    for (const mode of ['x0644', '0644x', '644', '08644']) {
      const err = await rejection(
        driver.restore(fileChange(), { ...snapshot, mode } as FileSnapshot, snapshotDir, ctx),
      );
      expect(err.message, mode).toBe(`snapshot record for ${PATH} is invalid`);
    }
  });

  it('writes nothing when the file is already as the snapshot has it, and closes what it opened', async () => {
    await writeFile(target, OLD);
    await chmod(target, 0o644);
    const snapshot = await driver.snapshot(fileChange(), snapshotDir, ctx);
    log.clear();
    await driver.restore(fileChange(), snapshot, snapshotDir, ctx);
    expect(log.calls.filter((c) => c.call === 'rename' || c.call === 'write')).toEqual([]);

    await driver.apply(fileChange(), ctx);
    log.clear();
    await driver.restore(fileChange(), snapshot, snapshotDir, ctx);
    expect(log.calls.filter((c) => c.call === 'rename').map((c) => c.to)).toEqual([target]);
    expect(openHandles()).toEqual([]);
  });

  it('says the copy is corrupt, with the digests, and keeps the current file', async () => {
    await writeFile(target, OLD);
    const snapshot = await driver.snapshot(fileChange(), snapshotDir, ctx);
    await driver.apply(fileChange(), ctx);
    await writeFile(join(snapshotDir, 'file-prior-content'), 'bit rot');
    const err = await rejection(driver.restore(fileChange(), snapshot, snapshotDir, ctx));
    expect(err).toMatchObject({
      code: ErrorCode.revertFailed,
      message: `snapshot content for ${PATH} is corrupt`,
      details: { path: PATH, expected: sha256(OLD), found: sha256('bit rot') },
    });
    // Already a revert failure, so passed on as it is: not wrapped in another naming itself as its cause.
    expect(err.details).toStrictEqual({ path: PATH, expected: sha256(OLD), found: sha256('bit rot') });
    expect(err.cause).toBeUndefined();
    expect(await readFile(target, 'utf8')).toBe(NEW);
  });

  it('fails when the restored file is not what the snapshot says once it is in place', async () => {
    await writeFile(target, OLD);
    await chmod(target, 0o644);
    const snapshot = await driver.snapshot(fileChange(), snapshotDir, ctx);
    await driver.apply(fileChange(), ctx);
    // Right after the rename, before the directory fsync: content and mode changed, so both are listed.
    before('open', appDir, () => {
      writeFileSync(target, 'meddled\n');
      chmodSync(target, 0o600);
    });
    const err = await rejection(driver.restore(fileChange(), snapshot, snapshotDir, ctx));
    const mismatches = [`sha256 is ${sha256('meddled\n')}, expected ${sha256(OLD)}`, 'mode is 0600, expected 0644'];
    expect(err).toMatchObject({
      code: ErrorCode.revertFailed,
      message: `${PATH} does not match its snapshot after restore: ${mismatches[0]}; ${mismatches[1]}`,
      details: { path: PATH, mismatches },
    });
  });

  it('refuses an invalid record, listing where it is wrong', async () => {
    const record = {
      kind: 'file',
      version: 1,
      path: PATH,
      state: 'present',
      sha256: 'nope',
    } as unknown as FileSnapshot;
    const err = await rejection(driver.restore(fileChange(), record, snapshotDir, ctx));
    expect(err.code).toBe(ErrorCode.revertFailed);
    expect(err.message).toBe(`snapshot record for ${PATH} is invalid`);
    expect(err.details?.issues).toEqual(expect.arrayContaining(['sha256: must be a lower-case hex sha256']));
  });

  it('refuses a record made for another path, naming both', async () => {
    const record: FileSnapshot = { kind: 'file', version: 1, path: '/etc/myapp/other.conf', state: 'absent' };
    const err = await rejection(driver.restore(fileChange(), record, snapshotDir, ctx));
    expect(err).toMatchObject({
      code: ErrorCode.revertFailed,
      message: `snapshot record is for /etc/myapp/other.conf, not ${PATH}`,
      details: { path: PATH, snapshotPath: '/etc/myapp/other.conf' },
    });
  });

  it('makes an absence durable even when the file is already gone (a crash after the unlink)', async () => {
    await driver.restore(fileChange(), { kind: 'file', version: 1, path: PATH, state: 'absent' }, snapshotDir, ctx);
    expect(log.lines(appDir).filter((l) => !l.startsWith('lstat'))).toEqual(['open .', 'sync .', 'close .']);
  });

  it('fails when the file is back right after its removal', async () => {
    await writeFile(target, NEW);
    before('open', appDir, () => writeFileSync(target, 'again\n'));
    const err = await rejection(
      driver.restore(fileChange(), { kind: 'file', version: 1, path: PATH, state: 'absent' }, snapshotDir, ctx),
    );
    expect(err).toMatchObject({
      code: ErrorCode.revertFailed,
      message: `${PATH} is still present after removal`,
      details: { path: PATH },
    });
  });

  it('keeps the cause when an earlier step refused with another code', async () => {
    const change = fileChange({ path: '/etc/myapp/missing/app.conf' });
    const err = await rejection(
      driver.restore(change, { kind: 'file', version: 1, path: change.path, state: 'absent' }, snapshotDir, ctx),
    );
    expect(err).toMatchObject({
      code: ErrorCode.revertFailed,
      details: { parent: '/etc/myapp/missing', reason: 'missing_parent', cause: ErrorCode.preconditionFailed },
    });
    expect(err.cause).toMatchObject({ code: ErrorCode.preconditionFailed });
  });
});

describe('FileDriver cleanup', () => {
  it('removes leftover temp files and then makes their removal durable', async () => {
    await writeFile(join(appDir, '.app.conf.fleetpatch-tmp-0123456789abcdef'), 'x');
    await driver.cleanup(fileChange(), ctx);
    expect(await readdir(appDir)).toEqual([]);
    expect(log.lines(appDir).filter((l) => !l.startsWith('lstat'))).toEqual([
      'unlink .app.conf.fleetpatch-tmp-*',
      'open .',
      'sync .',
      'close .',
    ]);
  });

  it('touches nothing, not even with an fsync, when there is nothing to remove', async () => {
    await mkdir(join(appDir, '.app.conf.fleetpatch-tmp-aaaaaaaaaaaaaaaa'));
    await writeFile(join(appDir, 'app.conf'), OLD);
    log.clear();
    await driver.cleanup(fileChange(), ctx);
    expect(log.lines(appDir).filter((l) => !l.startsWith('lstat'))).toEqual([]);
    expect((await readdir(appDir)).sort()).toEqual(['.app.conf.fleetpatch-tmp-aaaaaaaaaaaaaaaa', 'app.conf']);
  });

  it('does nothing, and says nothing, when the parent directory does not exist', async () => {
    await expect(driver.cleanup(fileChange({ path: '/etc/myapp/missing/x.conf' }), ctx)).resolves.toBeUndefined();
    expect(log.calls.filter((c) => c.call !== 'lstat')).toEqual([]);
  });

  it('reports a failure to remove as internal, with the path', async () => {
    await writeFile(join(appDir, '.app.conf.fleetpatch-tmp-0123456789abcdef'), 'x');
    log.before(
      (c) => c.call === 'unlink',
      () => {
        throw Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
      },
    );
    const err = await rejection(driver.cleanup(fileChange(), ctx));
    expect(err).toMatchObject({ code: ErrorCode.internal, details: { path: PATH, errno: 'EROFS' } });
  });

  it('keeps the code of a policy refusal', async () => {
    const err = await rejection(driver.cleanup(fileChange({ path: '/srv/x.conf' }), ctx));
    expect(err.code).toBe(ErrorCode.policyDenied);
  });
});
