import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** What Debian's `/var/run/reboot-required` (and its `.pkgs`) say: a package wants the host rebooted. */
export interface RebootState {
  required: boolean;
  packages: string[];
}

/** Read under `root` (the dpkg root: `/` on a real host). */
export async function readRebootState(root: string): Promise<RebootState> {
  const flag = join(root, 'var/run/reboot-required');
  const required = await stat(flag).then(
    () => true,
    () => false,
  );
  const pkgs = await readFile(`${flag}.pkgs`, 'utf8').catch(() => '');
  const packages = [...new Set(pkgs.split('\n').map((line) => line.trim()))].filter(Boolean).slice(0, 100);
  return { required, packages };
}

/**
 * Whether this change is why a reboot is wanted: the flag was not there before it, or `.pkgs` gained
 * one of the packages it touched. Without a "before" (read lost to a crash) only the second counts.
 */
export function rebootCausedBy(
  before: RebootState | undefined,
  after: RebootState,
  touchedPackages: readonly string[],
): boolean {
  if (!after.required) return false;
  if (before && !before.required) return true;
  return after.packages.some((name) => touchedPackages.includes(name) && !before?.packages.includes(name));
}
