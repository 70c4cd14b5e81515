import { createHash } from 'node:crypto';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FileChange, FileChangeSchema, FleetError } from '@fleetpatch/shared';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeNeeding, root } from '../../../test/support/requirements.js';
import type { DriverContext } from '../src/drivers/driver.js';
import { FileDriver, type FileSnapshot, FileSnapshotSchema } from '../src/drivers/file-driver.js';

const NOBODY = 65534;
const PATH = '/etc/myapp/app.conf';

let base: string;
let rootDir: string;
let appDir: string;
let target: string;
let snapshotDir: string;
let driver: FileDriver;
const ctx: DriverContext = { signal: new AbortController().signal, log: pino({ level: 'silent' }) };

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'fleetpatch-file-driver-'));
  rootDir = join(base, 'root');
  appDir = join(rootDir, 'etc', 'myapp');
  target = join(appDir, 'app.conf');
  snapshotDir = join(base, 'state', 'orders', 'order-1');
  await mkdir(appDir, { recursive: true });
  // mkdir honours the umask; the tests need to know the exact modes of the parents.
  for (const dir of [rootDir, join(rootDir, 'etc'), appDir]) await chmod(dir, 0o755);
  driver = new FileDriver({ rootDir, allowedRoots: ['/etc/myapp', '/opt'] });
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

function fileChange(overrides: Partial<Record<keyof FileChange, string | boolean>> = {}): FileChange {
  return FileChangeSchema.parse({
    kind: 'file',
    path: PATH,
    content: 'listen = 8080\n',
    mode: '0644',
    owner: 'root',
    group: 'root',
    ...overrides,
  });
}

function sha256(bytes: string | Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function failure(promise: Promise<unknown>): Promise<FleetError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof FleetError) return err;
    throw err;
  }
  throw new Error('expected the promise to reject with a FleetError');
}

interface Observed {
  bytes: Buffer;
  mode: number;
  uid: number;
  gid: number;
}

async function observe(path: string): Promise<Observed> {
  const info = await lstat(path);
  expect(info.isFile()).toBe(true);
  return { bytes: await readFile(path), mode: info.mode & 0o7777, uid: info.uid, gid: info.gid };
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

async function writeExisting(bytes: string | Uint8Array, mode: number, uid: number, gid: number): Promise<Observed> {
  await writeFile(target, bytes);
  await chown(target, uid, gid);
  await chmod(target, mode);
  return observe(target);
}

/** Priors with a non-root owner and setuid prove the chown-then-chmod order (chown clears setuid). */
async function writeSetuidPrior(): Promise<Observed> {
  return writeExisting(Buffer.from([0, 1, 2, 255, 10, 13, 0x80]), 0o4755, NOBODY, NOBODY);
}

describeNeeding([root], 'FileDriver apply and restore', () => {
  it('creates a new file exactly, and restore removes it again', async () => {
    // A setuid file is written exactly, when the patch says so (schemas refuse it otherwise).
    const change = fileChange({ owner: 'nobody', group: '65534', mode: '04755', allowSpecialModes: true });

    const snapshot = await driver.snapshot(change, snapshotDir, ctx);
    expect(snapshot).toEqual({ kind: 'file', version: 1, path: PATH, state: 'absent' });

    await driver.apply(change, ctx);
    expect(await observe(target)).toEqual({
      bytes: Buffer.from('listen = 8080\n'),
      mode: 0o4755,
      uid: NOBODY,
      gid: NOBODY,
    });
    await driver.verify(change, ctx);

    await driver.restore(change, snapshot, snapshotDir, ctx);
    expect(await exists(target)).toBe(false);
    expect(await readdir(appDir)).toEqual([]);
  });

  it('overwrites an existing file and restore puts back its exact bytes, setuid mode and owner', async () => {
    const prior = await writeSetuidPrior();
    const change = fileChange({ content: 'bmV3IGNvbnRlbnQK', encoding: 'base64', mode: '0640' });

    const snapshot = await driver.snapshot(change, snapshotDir, ctx);
    expect(snapshot).toMatchObject({ state: 'present', sha256: sha256(prior.bytes), mode: '04755', uid: NOBODY });
    expect(FileSnapshotSchema.parse(JSON.parse(JSON.stringify(snapshot)))).toEqual(snapshot);

    await driver.apply(change, ctx);
    expect(await observe(target)).toEqual({ bytes: Buffer.from('new content\n'), mode: 0o640, uid: 0, gid: 0 });

    await driver.restore(change, snapshot, snapshotDir, ctx);
    expect(await observe(target)).toEqual(prior);
    expect(await readdir(appDir)).toEqual(['app.conf']);
  });

  it('applies when the expected prior sha256 matches', async () => {
    await writeExisting('old\n', 0o644, 0, 0);
    const change = fileChange({ expectedPriorSha256: sha256('old\n') });
    await driver.apply(change, ctx);
    expect((await observe(target)).bytes.toString()).toBe('listen = 8080\n');
  });

  it('treats a re-run of apply on an already applied file as success (crash after rename)', async () => {
    await writeExisting('old\n', 0o644, 0, 0);
    const change = fileChange({ expectedPriorSha256: sha256('old\n') });
    await driver.apply(change, ctx);
    await driver.apply(change, ctx);
    await driver.verify(change, ctx);
  });

  it('leaves no temp files behind after apply', async () => {
    await driver.apply(fileChange(), ctx);
    expect(await readdir(appDir)).toEqual(['app.conf']);
  });

  it('does nothing when the order is already cancelled', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await failure(driver.apply(fileChange(), { ...ctx, signal: controller.signal }));
    expect(error.code).toBe('cancelled');
    expect(await exists(target)).toBe(false);
  });
});

describeNeeding([root], 'FileDriver preconditions', () => {
  it('refuses drift with the expected and found sha256 and leaves the file untouched', async () => {
    const prior = await writeExisting('edited by hand\n', 0o600, 0, 0);
    const change = fileChange({ expectedPriorSha256: sha256('what the operator saw\n') });
    const expectedMessage = `drift: expected sha256 ${sha256('what the operator saw\n')}, found ${sha256(prior.bytes)}`;

    const error = await failure(driver.apply(change, ctx));
    expect(error.code).toBe('precondition_failed');
    expect(error.message).toBe(expectedMessage);
    expect(await driver.preflight(change, ctx)).toEqual({
      outcome: 'would_fail',
      code: 'precondition_failed',
      detail: expectedMessage,
    });
    expect((await failure(driver.snapshot(change, snapshotDir, ctx))).code).toBe('precondition_failed');

    expect(await observe(target)).toEqual(prior);
    expect(await readdir(appDir)).toEqual(['app.conf']);
  });

  it('refuses an "absent" expectation when the file exists', async () => {
    const prior = await writeExisting('surprise\n', 0o644, 0, 0);
    const change = fileChange({ expectedPriorSha256: 'absent' });

    const error = await failure(driver.apply(change, ctx));
    expect(error.code).toBe('precondition_failed');
    expect(error.message).toBe(`drift: expected ${PATH} to be absent, found sha256 ${sha256('surprise\n')}`);
    expect(await observe(target)).toEqual(prior);
  });

  it('refuses an expected prior sha256 when the file is absent', async () => {
    const change = fileChange({ expectedPriorSha256: sha256('x') });
    const error = await failure(driver.apply(change, ctx));
    expect(error.code).toBe('precondition_failed');
    expect(error.message).toBe(`drift: expected sha256 ${sha256('x')}, found no file`);
    expect(await exists(target)).toBe(false);
  });

  it('refuses a parent directory that does not exist, and does not create it', async () => {
    const change = fileChange({ path: '/etc/myapp/conf.d/extra.conf' });
    const error = await failure(driver.apply(change, ctx));
    expect(error.code).toBe('precondition_failed');
    expect(error.message).toContain('/etc/myapp/conf.d does not exist');
    expect(await exists(join(appDir, 'conf.d'))).toBe(false);
  });

  it('refuses an unknown owner name', async () => {
    const error = await failure(driver.apply(fileChange({ owner: 'no_such_user_fp' }), ctx));
    expect(error.code).toBe('precondition_failed');
    expect(error.message).toContain('unknown user');
    expect(await exists(target)).toBe(false);
  });
});

describeNeeding([root], 'FileDriver path policy', () => {
  it('refuses a symlink as the target and never touches what it points to', async () => {
    const secret = join(base, 'secret');
    await writeFile(secret, 'root:x:0:0\n');
    await symlink(secret, target);
    const change = fileChange();

    for (const attempt of [() => driver.apply(change, ctx), () => driver.snapshot(change, snapshotDir, ctx)]) {
      const error = await failure(attempt());
      expect(error.code).toBe('policy_denied');
      expect(error.message).toContain('symbolic link');
    }
    expect(await driver.preflight(change, ctx)).toMatchObject({ outcome: 'would_fail', code: 'policy_denied' });
    expect(await readFile(secret, 'utf8')).toBe('root:x:0:0\n');
    expect((await lstat(target)).isSymbolicLink()).toBe(true);
  });

  it('refuses a symlink anywhere among the parents', async () => {
    const elsewhere = join(base, 'elsewhere');
    await mkdir(elsewhere, { mode: 0o755 });
    await symlink(elsewhere, join(appDir, 'conf.d'));

    const error = await failure(driver.apply(fileChange({ path: '/etc/myapp/conf.d/extra.conf' }), ctx));
    expect(error.code).toBe('policy_denied');
    expect(error.message).toContain('/etc/myapp/conf.d is a symbolic link');
    expect(await readdir(elsewhere)).toEqual([]);
  });

  it('refuses a symlinked allowed root itself', async () => {
    const realOpt = join(base, 'real-opt');
    await mkdir(realOpt, { mode: 0o755 });
    await symlink(realOpt, join(rootDir, 'opt'));

    const error = await failure(driver.apply(fileChange({ path: '/opt/tool.conf' }), ctx));
    expect(error.code).toBe('policy_denied');
    expect(await readdir(realOpt)).toEqual([]);
  });

  it.each([
    ['group', 0o775],
    ['others', 0o757],
  ])('refuses a parent writable by %s', async (_who, mode) => {
    await chmod(appDir, mode);
    const error = await failure(driver.apply(fileChange(), ctx));
    expect(error.code).toBe('policy_denied');
    expect(error.message).toContain('writable by group or others');
    expect(await exists(target)).toBe(false);
  });

  it('refuses a parent owned by an unprivileged user', async () => {
    await chown(appDir, NOBODY, NOBODY);
    const error = await failure(driver.apply(fileChange(), ctx));
    expect(error.code).toBe('policy_denied');
    expect(await exists(target)).toBe(false);
  });

  it.each([['/etc/passwd'], ['/etc/myapp-evil/app.conf'], ['/optional/file']])(
    'refuses %s, which is outside the allowed roots',
    async (path) => {
      const error = await failure(driver.apply(fileChange({ path }), ctx));
      expect(error.code).toBe('policy_denied');
      expect(error.message).toContain('outside the allowed roots');
    },
  );

  it.each([['/etc/myapp/../passwd'], ['/etc/myapp//app.conf'], ['etc/myapp/app.conf'], ['/etc/myapp/a\0b']])(
    're-checks normalization even when the schema was bypassed: %j',
    async (path) => {
      const change = { ...fileChange(), path };
      const error = await failure(driver.apply(change, ctx));
      expect(error.code).toBe('policy_denied');
      expect(await readdir(join(rootDir, 'etc'))).toEqual(['myapp']);
    },
  );

  it('refuses a target that is a directory', async () => {
    await mkdir(target, { mode: 0o755 });
    const error = await failure(driver.apply(fileChange(), ctx));
    expect(error.code).toBe('policy_denied');
    expect(error.message).toContain('not a regular file');
  });

  it('refuses invalid allowed roots at construction', () => {
    expect(() => new FileDriver({ rootDir, allowedRoots: ['/etc/../root'] })).toThrow(FleetError);
    expect(() => new FileDriver({ rootDir, allowedRoots: ['etc'] })).toThrow(FleetError);
    expect(() => new FileDriver({ rootDir: 'relative', allowedRoots: ['/etc'] })).toThrow(FleetError);
  });
});

describeNeeding([root], 'FileDriver preflight', () => {
  it('says would_apply for a new file and changes nothing', async () => {
    const verdict = await driver.preflight(fileChange(), ctx);
    expect(verdict.outcome).toBe('would_apply');
    expect(verdict.detail).toContain(`create ${PATH}`);
    expect(await exists(target)).toBe(false);
  });

  it('says already_applied only when content, mode, owner and group all match', async () => {
    const change = fileChange({ owner: 'nobody', group: 'nogroup', mode: '0640' });
    await writeExisting('listen = 8080\n', 0o640, NOBODY, NOBODY);
    expect((await driver.preflight(change, ctx)).outcome).toBe('already_applied');

    await chmod(target, 0o644);
    expect((await driver.preflight(change, ctx)).outcome).toBe('would_apply');
    await chmod(target, 0o640);
    await chown(target, 0, NOBODY);
    expect((await driver.preflight(change, ctx)).outcome).toBe('would_apply');
    await chown(target, NOBODY, 0);
    expect((await driver.preflight(change, ctx)).outcome).toBe('would_apply');
  });

  it('says already_applied after an apply even though the prior expectation no longer holds', async () => {
    await writeExisting('old\n', 0o644, 0, 0);
    const change = fileChange({ expectedPriorSha256: sha256('old\n') });
    await driver.apply(change, ctx);
    expect((await driver.preflight(change, ctx)).outcome).toBe('already_applied');
  });

  it('says would_fail with the code for policy and precondition problems', async () => {
    expect(await driver.preflight(fileChange({ path: '/root/.ssh/authorized_keys' }), ctx)).toMatchObject({
      outcome: 'would_fail',
      code: 'policy_denied',
    });
    expect(await driver.preflight(fileChange({ group: 'no_such_group_fp' }), ctx)).toMatchObject({
      outcome: 'would_fail',
      code: 'precondition_failed',
    });
    expect(await driver.preflight(fileChange({ path: '/etc/myapp/missing/x.conf' }), ctx)).toMatchObject({
      outcome: 'would_fail',
      code: 'precondition_failed',
    });
  });
});

describeNeeding([root], 'FileDriver verify', () => {
  it('passes right after apply and catches tampered content, mode, owner and group', async () => {
    const change = fileChange({ mode: '0600' });
    await driver.apply(change, ctx);
    await driver.verify(change, ctx);

    const tamperings: Array<[string, () => Promise<void>, () => Promise<void>]> = [
      ['sha256', () => writeFile(target, 'listen = 9090\n'), () => writeFile(target, 'listen = 8080\n')],
      ['mode', () => chmod(target, 0o644), () => chmod(target, 0o600)],
      ['uid', () => chown(target, NOBODY, 0), () => chown(target, 0, 0)],
      ['gid', () => chown(target, 0, NOBODY), () => chown(target, 0, 0)],
    ];
    for (const [what, tamper, undo] of tamperings) {
      await tamper();
      const error = await failure(driver.verify(change, ctx));
      expect(error.code).toBe('verify_failed');
      expect(error.message).toContain(`${what} is`);
      await undo();
      await driver.verify(change, ctx);
    }
  });

  it('fails when the file is gone or replaced by a symlink', async () => {
    const change = fileChange();
    expect((await failure(driver.verify(change, ctx))).code).toBe('verify_failed');

    await writeFile(join(base, 'lookalike'), 'listen = 8080\n');
    await symlink(join(base, 'lookalike'), target);
    const error = await failure(driver.verify(change, ctx));
    expect(error.code).toBe('verify_failed');
    expect(error.details).toMatchObject({ cause: 'policy_denied' });
  });
});

describeNeeding([root], 'FileDriver snapshot', () => {
  it('stores the prior content durably in the order dir and records its sha256', async () => {
    const prior = await writeSetuidPrior();
    const snapshot = await driver.snapshot(fileChange(), snapshotDir, ctx);
    expect(snapshot).toEqual({
      kind: 'file',
      version: 1,
      path: PATH,
      state: 'present',
      contentFile: 'file-prior-content',
      sha256: sha256(prior.bytes),
      size: prior.bytes.byteLength,
      mode: '04755',
      uid: NOBODY,
      gid: NOBODY,
    });
    expect(await readdir(snapshotDir)).toEqual(['file-prior-content']);
    expect(await readFile(join(snapshotDir, 'file-prior-content'))).toEqual(prior.bytes);
    // Prior content may be secret: the copy is private to the agent.
    expect((await stat(join(snapshotDir, 'file-prior-content'))).mode & 0o777).toBe(0o600);
  });

  it("says what its snapshot keeps in the order's directory: the copy's bytes, or none for an absent file", async () => {
    await writeFile(target, 'p'.repeat(1234));
    const present = await driver.snapshot(fileChange(), snapshotDir, ctx);
    const kept = await Promise.all(
      (await readdir(snapshotDir)).map(async (f) => (await stat(join(snapshotDir, f))).size),
    );
    expect(driver.keptBytes(present)).toBe(1234);
    expect(kept).toEqual([1234]);

    await rm(target);
    const absent = await driver.snapshot(fileChange(), join(base, 'other-order'), ctx);
    expect(driver.keptBytes(absent)).toBe(0);
    expect(await exists(join(base, 'other-order'))).toBe(false);
  });
});

describe('FileDriver keptBytes', () => {
  const present: FileSnapshot = {
    kind: 'file',
    version: 1,
    path: PATH,
    state: 'present',
    contentFile: 'file-prior-content',
    sha256: 'a'.repeat(64),
    size: 77,
    mode: '0644',
    uid: 0,
    gid: 0,
  };

  it.each([
    ['no record', undefined],
    ['a record of another driver', { ...present, kind: 'package' }],
    ['a record of another version', { ...present, version: 2 }],
    ['a record in no known state', { ...present, state: 'unknown' }],
    ['a present record without a whole size', { ...present, size: 1.5 }],
    ['a present record without a size', { ...present, size: undefined }],
  ])('cannot say for %s: the quota walks the directory', (_what, record) => {
    expect(driver.keptBytes(record)).toBeUndefined();
  });

  it('counts a present record at its size and an absent one at nothing', () => {
    expect(driver.keptBytes(present)).toBe(77);
    expect(driver.keptBytes({ kind: 'file', version: 1, path: PATH, state: 'absent' })).toBe(0);
    // An absent record carries no size; one that did would still keep nothing.
    expect(driver.keptBytes({ kind: 'file', version: 1, path: PATH, state: 'absent', size: 5 })).toBe(0);
  });
});

describeNeeding([root], 'FileDriver restore', () => {
  it('is idempotent for a file that was absent', async () => {
    const change = fileChange();
    const snapshot = await driver.snapshot(change, snapshotDir, ctx);
    await driver.apply(change, ctx);
    await driver.restore(change, snapshot, snapshotDir, ctx);
    await driver.restore(change, snapshot, snapshotDir, ctx);
    expect(await exists(target)).toBe(false);
  });

  it('is idempotent for a file that existed, including after a crash mid-restore', async () => {
    const prior = await writeSetuidPrior();
    const change = fileChange();
    const snapshot = await driver.snapshot(change, snapshotDir, ctx);
    await driver.apply(change, ctx);

    await driver.restore(change, snapshot, snapshotDir, ctx);
    await driver.restore(change, snapshot, snapshotDir, ctx);
    expect(await observe(target)).toEqual(prior);

    // As if a crash hit after the bytes came back but before ownership and mode did.
    await chown(target, 0, 0);
    await chmod(target, 0o644);
    await driver.restore(change, snapshot, snapshotDir, ctx);
    expect(await observe(target)).toEqual(prior);
  });

  it('refuses a snapshot record that fails schema validation and changes nothing', async () => {
    await writeSetuidPrior();
    const change = fileChange();
    const snapshot = await driver.snapshot(change, snapshotDir, ctx);
    await driver.apply(change, ctx);
    const applied = await observe(target);

    const bad: unknown[] = [
      { ...snapshot, contentFile: '../../../etc/shadow' },
      { ...snapshot, mode: 'rwxr-xr-x' },
      { ...snapshot, sha256: 'not-a-sha' },
      { ...snapshot, uid: -1 },
      { ...snapshot, extra: true },
      { kind: 'file', version: 1, path: PATH, state: 'present' },
      { kind: 'file', version: 2, path: PATH, state: 'absent' },
      { kind: 'file', version: 1, path: '/etc/myapp/../shadow', state: 'absent' },
      null,
      'absent',
    ];
    for (const record of bad) {
      const error = await failure(driver.restore(change, record as FileSnapshot, snapshotDir, ctx));
      expect(error.code).toBe('revert_failed');
      expect(error.message).toContain('snapshot record');
    }
    expect(await observe(target)).toEqual(applied);
  });

  it('refuses a snapshot record made for another path', async () => {
    const change = fileChange();
    const error = await failure(
      driver.restore(
        change,
        { kind: 'file', version: 1, path: '/etc/myapp/other.conf', state: 'absent' },
        snapshotDir,
        ctx,
      ),
    );
    expect(error.code).toBe('revert_failed');
  });

  it('refuses to restore from a corrupted snapshot copy and keeps the current file', async () => {
    await writeSetuidPrior();
    const change = fileChange();
    const snapshot = await driver.snapshot(change, snapshotDir, ctx);
    await driver.apply(change, ctx);
    const applied = await observe(target);

    await writeFile(join(snapshotDir, 'file-prior-content'), 'bit rot');
    const error = await failure(driver.restore(change, snapshot, snapshotDir, ctx));
    expect(error.code).toBe('revert_failed');
    expect(error.message).toContain('corrupt');
    expect(await observe(target)).toEqual(applied);
    expect(await readdir(appDir)).toEqual(['app.conf']);
  });

  it('fails with revert_failed when the snapshot copy is missing', async () => {
    await writeSetuidPrior();
    const change = fileChange();
    const snapshot = await driver.snapshot(change, snapshotDir, ctx);
    await driver.apply(change, ctx);
    await rm(join(snapshotDir, 'file-prior-content'));
    expect((await failure(driver.restore(change, snapshot, snapshotDir, ctx))).code).toBe('revert_failed');
  });
});

describeNeeding([root], 'FileDriver cleanup', () => {
  it("removes only this target's leftover temp files", async () => {
    await writeExisting('keep me\n', 0o644, 0, 0);
    const leftovers = ['.app.conf.fleetpatch-tmp-0123456789abcdef', '.app.conf.fleetpatch-tmp-fedcba9876543210'];
    const others = [
      'app.conf',
      '.other.conf.fleetpatch-tmp-0123456789abcdef',
      '.app.conf.fleetpatch-tmp-0123456789abcdef.bak',
      '.app.conf.fleetpatch-tmp-NOTHEX0123456789',
      'app.conf.fleetpatch-tmp-0123456789abcdef',
      '.app.conf.swp',
    ];
    for (const name of [...leftovers, ...others.filter((n) => n !== 'app.conf')]) {
      await writeFile(join(appDir, name), 'x');
    }
    // A directory wearing a temp name is not something this driver could have left.
    await mkdir(join(appDir, '.app.conf.fleetpatch-tmp-aaaaaaaaaaaaaaaa'));

    await driver.cleanup(fileChange(), ctx);
    await driver.cleanup(fileChange(), ctx);

    expect((await readdir(appDir)).sort()).toEqual([...others, '.app.conf.fleetpatch-tmp-aaaaaaaaaaaaaaaa'].sort());
    expect(await readFile(target, 'utf8')).toBe('keep me\n');
  });

  it('is a no-op when the parent directory does not exist', async () => {
    // A crash before the first order for this path left nothing: recovery must not fail on it.
    await expect(driver.cleanup(fileChange({ path: '/etc/myapp/missing/x.conf' }), ctx)).resolves.toBeUndefined();
    expect(await exists(join(appDir, 'missing'))).toBe(false);
    expect(await readdir(appDir)).toEqual([]);
  });

  it('refuses to look inside a directory reached through a symlink', async () => {
    const elsewhere = join(base, 'elsewhere');
    await mkdir(elsewhere, { mode: 0o755 });
    await writeFile(join(elsewhere, '.x.conf.fleetpatch-tmp-0123456789abcdef'), 'x');
    await symlink(elsewhere, join(appDir, 'conf.d'));
    const error = await failure(driver.cleanup(fileChange({ path: '/etc/myapp/conf.d/x.conf' }), ctx));
    expect(error.code).toBe('policy_denied');
    expect(await readdir(elsewhere)).toEqual(['.x.conf.fleetpatch-tmp-0123456789abcdef']);
  });
});
