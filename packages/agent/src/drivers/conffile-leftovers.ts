import { lstat, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { durableCopy } from './durable-copy.js';

/**
 * What dpkg leaves next to a conffile when it keeps the admin's version (`--force-confold`): the
 * package's version as `.dpkg-dist`, or the admin's old one as `.dpkg-old` — and dpkg deletes an
 * old `.dpkg-old` when it upgrades. An apply may rightly change them (the admin has a new default to
 * merge); a revert must leave them as they were before the apply. So the snapshot keeps a copy of
 * each one present, and the restore removes those dpkg wrote since and puts the kept ones back.
 */
const LEFTOVER_SUFFIXES = ['.dpkg-dist', '.dpkg-old'] as const;

/** A conffile path as dpkg lists it: absolute, no NUL, no newline. */
export const ConffilePathSchema = z
  .string()
  .regex(/^\/[^\0\n]*$/)
  .max(4096);

/** One leftover present before the change, and its copy in the order's snapshot dir. */
export const KeptLeftoverSchema = z
  .object({
    path: ConffilePathSchema,
    /** A file name inside the order's snapshot dir. */
    copy: z.string().regex(/^conffile-leftover-\d{1,6}$/),
    mode: z.number().int().min(0).max(0o7777),
  })
  .strict();
export type KeptLeftover = z.infer<typeof KeptLeftoverSchema>;

/** The conffiles dpkg lists for an installed package (`info/<name>[:arch].conffiles`); [] if none. */
export async function conffilesOf(root: string, name: string, architecture: string): Promise<string[]> {
  const info = join(root, 'var/lib/dpkg/info');
  for (const candidate of [`${name}:${architecture}.conffiles`, `${name}.conffiles`]) {
    try {
      const text = await readFile(join(info, candidate), 'utf8');
      return text
        .split('\n')
        .map((line) => line.trim().split(' ')[0] ?? '')
        .filter((path) => path.startsWith('/'));
    } catch {
      // Not under this name.
    }
  }
  return [];
}

/** The leftover files that exist next to `conffiles` right now (paths as dpkg names them, inside `root`). */
async function leftoversNow(root: string, conffiles: readonly string[]): Promise<{ path: string; mode: number }[]> {
  const found: { path: string; mode: number }[] = [];
  for (const conffile of conffiles) {
    for (const suffix of LEFTOVER_SUFFIXES) {
      const stat = await lstat(join(root, conffile + suffix)).catch(() => undefined);
      if (stat?.isFile()) found.push({ path: conffile + suffix, mode: stat.mode & 0o7777 });
    }
  }
  return found;
}

/** Copies the leftovers present now into `dir` (numbered from `first`), durably. */
export async function keepLeftovers(
  root: string,
  conffiles: readonly string[],
  dir: string,
  first: number,
): Promise<KeptLeftover[]> {
  const kept: KeptLeftover[] = [];
  for (const [i, leftover] of (await leftoversNow(root, conffiles)).entries()) {
    const copy = `conffile-leftover-${first + i}`;
    await durableCopy(join(root, leftover.path), join(dir, copy), 0o600);
    kept.push({ path: leftover.path, copy, mode: leftover.mode });
  }
  return kept;
}

/**
 * Leaves the leftovers next to `conffiles` as they were when `kept` was taken: removes those that
 * were not there (only regular files: never what a symlink points to) and puts back those dpkg
 * deleted. Returns what it changed, for the log.
 */
export async function restoreLeftovers(
  root: string,
  conffiles: readonly string[],
  kept: readonly KeptLeftover[],
  dir: string,
): Promise<{ removed: string[]; restored: string[] }> {
  const before = new Map(kept.map((k) => [k.path, k]));
  const now = await leftoversNow(root, conffiles);
  const removed: string[] = [];
  for (const leftover of now) {
    if (before.has(leftover.path)) continue;
    await rm(join(root, leftover.path), { force: true });
    removed.push(leftover.path);
  }
  const present = new Set(now.map((l) => l.path));
  const restored: string[] = [];
  for (const leftover of kept) {
    if (present.has(leftover.path)) continue;
    const target = join(root, leftover.path);
    await durableCopy(join(dir, leftover.copy), target, leftover.mode);
    restored.push(leftover.path);
  }
  return { removed, restored };
}
