import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Where `path` really is, every symlink resolved, whether or not it exists yet (apt's staging
 * directory is made on first use): the real path of its nearest existing ancestor, then the rest as
 * written. A dangling symlink counts as missing, as the walk up from it finds its parent.
 *
 * Each agent starts with this (see `ownDirectoriesOf`), and a fleet restarted together starts
 * thousands at once on shared machines: `existsSync` answers a missing step without an exception,
 * and `realpathSync.native` resolves the existing part in one system call where `realpathSync`
 * walks it with an `lstat` per component. Measured alone, ~14 µs against ~37 µs per agent.
 */
export function realPathOf(path: string): string {
  const rest: string[] = [];
  for (let dir = path; ; ) {
    if (existsSync(dir)) {
      try {
        return join(realpathSync.native(dir), ...rest);
      } catch {
        // Gone since it was seen: look higher up, as for any missing step.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return join(dir, ...rest);
    rest.unshift(basename(dir));
    dir = parent;
  }
}
