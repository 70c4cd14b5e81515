import { lstatSync } from 'node:fs';
import { ErrorCode, isFleetError } from '@fleetpatch/shared';
import { resolveSafePath } from '../drivers/safe-path.js';

/**
 * Where a path leads on this host, judged at admission: a name under an allowed root can still go
 * elsewhere through a symlinked directory (`/etc/app` → `/root`), so before an order is journaled and
 * its baseline checks run, the path is walked as the driver (for a change) or the file check (for a
 * check) will walk it: no symlinked or non-directory parent; for a change also no parent others can
 * write, and a target that is a regular file if it exists. They walk it again when they use it (the
 * host may change in between): this only makes the refusal come before anything runs.
 *
 * Returns why the path is refused, or undefined. A missing parent is not a refusal here: the order
 * fails on it later, as a precondition, like any change to a directory that is not there.
 */
export async function hostPathRefusal(
  rootDir: string,
  path: string,
  use: 'write' | 'read',
): Promise<string | undefined> {
  let hostPath: string;
  try {
    hostPath = (await resolveSafePath(rootDir, path, ['/'], use)).hostPath;
  } catch (err) {
    if (!isFleetError(err)) throw err;
    if (err.code === ErrorCode.policyDenied) return err.message;
    if (err.details?.reason === 'missing_parent') return undefined;
    throw err;
  }
  // A file check looks at a symlink itself (lstat, O_NOFOLLOW), never through it: nothing more to judge.
  if (use === 'read') return undefined;
  const target = lstatSync(hostPath, { throwIfNoEntry: false });
  if (target === undefined) return undefined;
  if (target.isSymbolicLink()) return `${path} is a symbolic link; fleetpatch never follows symlinks`;
  if (!target.isFile()) return `${path} is not a regular file`;
  return undefined;
}
