import { rmSync, writeFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { itNeeding, root } from '../../../test/support/requirements.js';
import { assertPathAllowed, isErrno, isValidAllowedRoot, resolveSafePath } from '../src/drivers/safe-path.js';
import { rejection } from './support/rejection.js';

const fsCalls = vi.hoisted(async () => new (await import('./support/fs-call-log.js')).FsCallLog());
vi.mock('node:fs/promises', async (importOriginal) => (await fsCalls).wrap(await importOriginal()));
vi.mock('node:fs', async (importOriginal) => (await fsCalls).wrapSync(await importOriginal()));

// The path checks that stand between an order and a root-owned write, on real directories.

let base: string;
let rootDir: string;

beforeEach(async () => {
  (await fsCalls).clear();
  base = await mkdtemp(join(tmpdir(), 'fleetpatch-safe-path-'));
  rootDir = join(base, 'root');
  await mkdir(join(rootDir, 'etc', 'app'), { recursive: true });
  // mkdir honours the umask; the tests need to know the exact modes of the parents.
  for (const dir of [rootDir, join(rootDir, 'etc'), join(rootDir, 'etc', 'app')]) await chmod(dir, 0o755);
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

/** A matcher for the FleetError `toThrow` should see. */
const policyDenied = (message: string, details: Record<string, unknown>) =>
  expect.objectContaining({ code: ErrorCode.policyDenied, message, details });

describe('isValidAllowedRoot', () => {
  it('takes / and absolute, normalized paths only', () => {
    expect(isValidAllowedRoot('/')).toBe(true);
    expect(isValidAllowedRoot('/etc/app')).toBe(true);
    for (const bad of ['', 'etc', '/etc/', '//', '/etc/../root', '/etc/./app', '/etc//app']) {
      expect(isValidAllowedRoot(bad), bad).toBe(false);
    }
  });
});

describe('assertPathAllowed', () => {
  it('allows a path under a root, the root itself, and anything under /', () => {
    expect(() => assertPathAllowed('/etc/app/app.conf', ['/opt', '/etc/app'])).not.toThrow();
    expect(() => assertPathAllowed('/etc/app/deep/er/x', ['/etc/app'])).not.toThrow();
    expect(() => assertPathAllowed('/etc/app.conf', ['/etc/app.conf'])).not.toThrow();
    expect(() => assertPathAllowed('/anything/at/all', ['/'])).not.toThrow();
  });

  it('refuses a sibling that only shares the prefix of a root', () => {
    expect(() => assertPathAllowed('/etc/app2/x', ['/etc/app'])).toThrow(
      policyDenied('path /etc/app2/x is outside the allowed roots (/etc/app)', {
        path: '/etc/app2/x',
        allowedRoots: ['/etc/app'],
      }),
    );
  });

  it('refuses a parent of a root', () => {
    expect(() => assertPathAllowed('/etc', ['/etc/app'])).toThrow(expect.objectContaining({ code: 'policy_denied' }));
  });

  it('names every root, or says none is configured', () => {
    expect(() => assertPathAllowed('/srv/x', ['/etc/app', '/opt'])).toThrow(
      'path /srv/x is outside the allowed roots (/etc/app, /opt)',
    );
    expect(() => assertPathAllowed('/srv/x', [])).toThrow('path /srv/x is outside the allowed roots (none configured)');
  });

  it('refuses a path that is not absolute and normalized before looking at roots, even under /', () => {
    for (const bad of [
      'etc/app/x',
      '/etc/app/../../root/x',
      '/etc/app/./x',
      '/etc/app/',
      '/etc//app/x',
      '/etc/app/x\n',
    ]) {
      expect(() => assertPathAllowed(bad, ['/']), bad).toThrow(
        policyDenied(`path ${JSON.stringify(bad)} is not an absolute, normalized path`, { path: bad }),
      );
    }
  });
});

describe('resolveSafePath', () => {
  it('resolves a patch path to the file, its directory and its name under rootDir', async () => {
    expect(await resolveSafePath(rootDir, '/etc/app/app.conf', ['/etc/app'])).toEqual({
      path: '/etc/app/app.conf',
      hostPath: join(rootDir, 'etc', 'app', 'app.conf'),
      hostDir: join(rootDir, 'etc', 'app'),
      name: 'app.conf',
    });
  });

  it('resolves a file directly under / to rootDir itself', async () => {
    expect(await resolveSafePath(rootDir, '/top', ['/'])).toEqual({
      path: '/top',
      hostPath: join(rootDir, 'top'),
      hostDir: rootDir,
      name: 'top',
    });
  });

  it('resolves under the root of the file system, as in production, to the plain paths', async () => {
    // Read-only: a walk lstats the parents and touches nothing (/etc is there on any Linux).
    expect(await resolveSafePath('/', '/etc/hostname', ['/etc'], 'read')).toEqual({
      path: '/etc/hostname',
      hostPath: '/etc/hostname',
      hostDir: '/etc',
      name: 'hostname',
    });
    expect(await resolveSafePath(`${rootDir}/`, '/etc/app/app.conf', ['/etc/app'])).toMatchObject({
      hostPath: join(rootDir, 'etc', 'app', 'app.conf'),
      hostDir: join(rootDir, 'etc', 'app'),
    });
  });

  it('checks policy first: a path outside the roots is refused before the disk is read', async () => {
    const err = await rejection(resolveSafePath(join(base, 'missing'), '/srv/x', ['/etc/app']));
    expect(err.code).toBe(ErrorCode.policyDenied);
    expect(err.message).toMatch(/outside the allowed roots/);
  });

  it('refuses a relative rootDir', async () => {
    const err = await rejection(resolveSafePath('root', '/etc/app/x', ['/']));
    expect(err.code).toBe(ErrorCode.policyDenied);
    expect(err.message).toBe('rootDir root is not absolute');
    expect(err.details).toEqual({ rootDir: 'root' });
  });

  it('refuses a rootDir that is missing, a file or a symlink', async () => {
    await writeFile(join(base, 'file'), '');
    await symlink(rootDir, join(base, 'link'));
    for (const bad of [join(base, 'missing'), join(base, 'file'), join(base, 'link')]) {
      const err = await rejection(resolveSafePath(bad, '/etc/app/x', ['/']));
      expect(err.code, bad).toBe(ErrorCode.policyDenied);
      expect(err.message, bad).toBe(`rootDir ${bad} is not a real directory`);
      expect(err.details, bad).toEqual({ rootDir: bad });
    }
  });

  it('refuses a missing parent as a precondition, naming the first one missing, and creates nothing', async () => {
    const err = await rejection(resolveSafePath(rootDir, '/etc/app/sub/deeper/x', ['/']));
    expect(err.code).toBe(ErrorCode.preconditionFailed);
    expect(err.message).toBe('parent directory /etc/app/sub does not exist (fleetpatch does not create directories)');
    expect(err.details).toEqual({ path: '/etc/app/sub/deeper/x', parent: '/etc/app/sub', reason: 'missing_parent' });
  });

  it('treats a parent swapped for a file during the walk (ENOTDIR) as missing', async () => {
    await mkdir(join(rootDir, 'etc', 'app', 'sub'), { mode: 0o755 });
    (await fsCalls).before(
      (call) => call.call === 'lstat' && call.path === join(rootDir, 'etc', 'app', 'sub'),
      () => {
        rmSync(join(rootDir, 'etc', 'app'), { recursive: true });
        writeFileSync(join(rootDir, 'etc', 'app'), '');
      },
    );
    const err = await rejection(resolveSafePath(rootDir, '/etc/app/sub/x', ['/']));
    expect(err.code).toBe(ErrorCode.preconditionFailed);
    expect(err.details).toEqual({ path: '/etc/app/sub/x', parent: '/etc/app/sub', reason: 'missing_parent' });
  });

  it('passes on any other error of the walk as it is', async () => {
    const tooLong = `/etc/${'a'.repeat(300)}/x`;
    await expect(resolveSafePath(rootDir, tooLong, ['/'])).rejects.toMatchObject({ code: 'ENAMETOOLONG' });
  });

  it('refuses a parent that is a file', async () => {
    await writeFile(join(rootDir, 'etc', 'app', 'file'), '');
    const err = await rejection(resolveSafePath(rootDir, '/etc/app/file/x', ['/']));
    expect(err.code).toBe(ErrorCode.policyDenied);
    expect(err.message).toBe('parent /etc/app/file is not a directory');
    expect(err.details).toEqual({ path: '/etc/app/file/x', parent: '/etc/app/file' });
  });

  it('refuses a symlinked parent, for reads as well as writes', async () => {
    await mkdir(join(base, 'elsewhere'), { mode: 0o755 });
    await symlink(join(base, 'elsewhere'), join(rootDir, 'etc', 'link'));
    for (const use of ['write', 'read'] as const) {
      const err = await rejection(resolveSafePath(rootDir, '/etc/link/x', ['/'], use));
      expect(err.code, use).toBe(ErrorCode.policyDenied);
      expect(err.message, use).toBe('parent /etc/link is a symbolic link; fleetpatch never follows symlinks');
      expect(err.details, use).toEqual({ path: '/etc/link/x', parent: '/etc/link' });
    }
  });

  it('refuses a parent that group or others may write, for a write only', async () => {
    for (const mode of [0o775, 0o757, 0o777, 0o1777]) {
      await chmod(join(rootDir, 'etc'), mode);
      const err = await rejection(resolveSafePath(rootDir, '/etc/app/x', ['/']));
      expect(err.code).toBe(ErrorCode.policyDenied);
      expect(err.message).toBe(`parent /etc is writable by group or others (mode 0${mode.toString(8)})`);
      expect(err.details).toEqual({ path: '/etc/app/x', parent: '/etc', mode });
      await expect(resolveSafePath(rootDir, '/etc/app/x', ['/'], 'read')).resolves.toMatchObject({ name: 'x' });
    }
  });

  it('accepts parents that only their owner may write', async () => {
    for (const mode of [0o755, 0o700, 0o751, 0o555]) {
      await chmod(join(rootDir, 'etc'), mode);
      await expect(resolveSafePath(rootDir, '/etc/app/x', ['/'])).resolves.toMatchObject({ name: 'x' });
    }
  });

  itNeeding([root], 'trusts parents owned by root or by the agent’s own user, and no one else', async () => {
    // The agent as uid 1000: its own directories are as safe as root's; another user's are not.
    const geteuid = vi.spyOn(process, 'geteuid').mockReturnValue(1000);
    try {
      await chown(join(rootDir, 'etc', 'app'), 1000, 0);
      await expect(resolveSafePath(rootDir, '/etc/app/x', ['/'])).resolves.toMatchObject({ name: 'x' });
      await chown(join(rootDir, 'etc', 'app'), 0, 0);
      await expect(resolveSafePath(rootDir, '/etc/app/x', ['/'])).resolves.toMatchObject({ name: 'x' });
      await chown(join(rootDir, 'etc', 'app'), 1001, 0);
      const err = await rejection(resolveSafePath(rootDir, '/etc/app/x', ['/']));
      expect(err.details).toMatchObject({ parent: '/etc/app', uid: 1001 });
    } finally {
      geteuid.mockRestore();
    }
  });

  itNeeding([root], 'refuses a parent owned by another user for a write, and allows it for a read', async () => {
    await chown(join(rootDir, 'etc', 'app'), 65534, 0);
    const err = await rejection(resolveSafePath(rootDir, '/etc/app/x', ['/']));
    expect(err.code).toBe(ErrorCode.policyDenied);
    expect(err.message).toBe(
      'parent /etc/app is owned by uid 65534, who could swap its entries; only root-owned directories are trusted',
    );
    expect(err.details).toEqual({ path: '/etc/app/x', parent: '/etc/app', uid: 65534 });
    await expect(resolveSafePath(rootDir, '/etc/app/x', ['/'], 'read')).resolves.toMatchObject({ name: 'x' });
  });
});

describe('isErrno', () => {
  it('matches an Error with that code only', () => {
    const enoent = Object.assign(new Error('gone'), { code: 'ENOENT' });
    expect(isErrno(enoent, 'ENOENT')).toBe(true);
    expect(isErrno(enoent, 'EEXIST')).toBe(false);
    expect(isErrno({ code: 'ENOENT' }, 'ENOENT')).toBe(false);
    expect(isErrno(new Error('no code'), 'ENOENT')).toBe(false);
  });
});
