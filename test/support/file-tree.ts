/**
 * What a directory tree holds, entry by entry, for tests that must prove nothing was written: two
 * snapshots compare equal only if no file was created, removed, rewritten (even with the same bytes:
 * the inode or times move), re-moded or re-owned, and no link was pointed elsewhere.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export type TreeEntry =
  | { type: 'dir'; mode: string; uid: number; gid: number }
  | {
      type: 'file';
      mode: string;
      uid: number;
      gid: number;
      size: number;
      sha256: string;
      ino: number;
      mtimeMs: number;
      ctimeMs: number;
    }
  | { type: 'symlink'; target: string; uid: number; gid: number }
  | { type: 'other'; mode: string };

/** Every entry under `dir` (not `dir` itself), keyed by its path relative to `dir`; `skip` leaves one out. */
export async function treeOf(
  dir: string,
  skip: (relative: string) => boolean = () => false,
): Promise<Record<string, TreeEntry>> {
  const tree: Record<string, TreeEntry> = {};
  const walk = async (relative: string): Promise<void> => {
    for (const name of (await readdir(join(dir, relative))).sort()) {
      const path = relative === '' ? name : `${relative}/${name}`;
      if (skip(path)) continue;
      const full = join(dir, path);
      const stat = await lstat(full);
      const mode = (stat.mode & 0o7777).toString(8).padStart(4, '0');
      if (stat.isSymbolicLink())
        tree[path] = { type: 'symlink', target: await readlink(full), uid: stat.uid, gid: stat.gid };
      else if (stat.isDirectory()) {
        tree[path] = { type: 'dir', mode, uid: stat.uid, gid: stat.gid };
        await walk(path);
      } else if (stat.isFile()) {
        tree[path] = {
          type: 'file',
          mode,
          uid: stat.uid,
          gid: stat.gid,
          size: stat.size,
          sha256: createHash('sha256')
            .update(await readFile(full))
            .digest('hex'),
          ino: stat.ino,
          mtimeMs: stat.mtimeMs,
          ctimeMs: stat.ctimeMs,
        };
      } else tree[path] = { type: 'other', mode };
    }
  };
  await walk('');
  return tree;
}

/** The bytes of every regular file under `dir`: how much room something left behind. */
export async function fileBytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of Object.values(await treeOf(dir))) if (entry.type === 'file') total += entry.size;
  return total;
}
