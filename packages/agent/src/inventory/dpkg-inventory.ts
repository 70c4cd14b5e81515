import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { type InstalledPackage, InstalledPackageSchema, WIRE_LIMITS } from '@fleetpatch/shared';
import { outputTail, runCommand } from '../process/command-runner.js';
import { SYSTEM_PATH } from '../process/system-path.js';

/** What one read of the dpkg database gives: the installed packages, or why there are none to report. */
export type InventoryRead =
  | {
      available: true;
      packages: InstalledPackage[];
      /** Lines dpkg-query printed that are no valid package record (logged, never sent). */
      skipped: string[];
    }
  | { available: false; reason: string };

export interface DpkgInventoryOptions {
  /** The dpkg root whose database is read: its admindir is `<root>/var/lib/dpkg`. */
  root: string;
  /** Upper bound of one dpkg-query run. Default 60 s. */
  timeoutMs?: number;
}

/** One line per package: tab-separated, in this order. `${db:Status-Abbrev}` ends with a blank or `R`. */
const FORMAT =
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
  '${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\t${db:Status-Abbrev}\\n';

/**
 * Reads the installed packages of one dpkg root with `dpkg-query --admindir=… --show`: read-only,
 * no lock taken, nothing written. Only packages with files on the host are reported (not those
 * purged or reduced to their config files).
 */
export class DpkgInventory {
  readonly adminDir: string;
  private readonly timeoutMs: number;

  constructor(options: DpkgInventoryOptions) {
    this.adminDir = join(options.root, 'var/lib/dpkg');
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  /** The file dpkg rewrites (by renaming a new one over it) at every change of the database. */
  get statusFile(): string {
    return join(this.adminDir, 'status');
  }

  async read(signal?: AbortSignal): Promise<InventoryRead> {
    try {
      await access(this.statusFile);
    } catch {
      return { available: false, reason: `no dpkg database at ${this.adminDir} (this host reports no packages)` };
    }
    let result: Awaited<ReturnType<typeof runCommand>>;
    try {
      result = await runCommand(['dpkg-query', `--admindir=${this.adminDir}`, '--show', `--showformat=${FORMAT}`], {
        env: { PATH: SYSTEM_PATH, LC_ALL: 'C' },
        timeoutMs: this.timeoutMs,
        // All of it or nothing: a cut list would report packages as removed. 64 MiB is ~600,000 packages.
        output: { keep: 'head', maxBytes: 64 * 1024 * 1024 },
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      return { available: false, reason: `cannot run dpkg-query: ${(err as NodeJS.ErrnoException).code ?? err}` };
    }
    if (result.exitCode !== 0 || result.timedOut || result.aborted) {
      return { available: false, reason: `dpkg-query failed: ${outputTail(result, 3)}`.slice(0, 500) };
    }
    const parsed = parseInventory(result.stdout);
    if (parsed.packages.length > WIRE_LIMITS.inventoryMaxPackages) {
      return {
        available: false,
        reason: `${parsed.packages.length} packages installed: more than the ${WIRE_LIMITS.inventoryMaxPackages} an inventory may hold`,
      };
    }
    return { available: true, ...parsed };
  }
}

/**
 * The records of `dpkg-query --showformat=FORMAT` output. Packages that are not installed (`n`) or
 * only left their config files (`c`) are dropped; a line that is no valid record (a name or version
 * dpkg would not install today, say) is skipped and returned, so that one odd package never stops
 * the whole inventory from being accepted.
 */
export function parseInventory(stdout: string): { packages: InstalledPackage[]; skipped: string[] } {
  const packages: InstalledPackage[] = [];
  const skipped: string[] = [];
  for (const line of stdout.split('\n')) {
    if (line === '') continue;
    const [name, version, architecture, source, sourceVersion, abbrev, ...extra] = line.split('\t');
    const status = (abbrev ?? '').trimEnd();
    if (extra.length === 0 && (status.charAt(1) === 'n' || status.charAt(1) === 'c')) continue;
    const record = InstalledPackageSchema.safeParse({ name, version, architecture, source, sourceVersion, status });
    if (extra.length === 0 && record.success) packages.push(record.data);
    else skipped.push(line.slice(0, 300));
  }
  return { packages, skipped };
}
