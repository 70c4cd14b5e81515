import { join } from 'node:path';
import { outputTail, runCommand } from '../process/command-runner.js';
import { SYSTEM_PATH } from '../process/system-path.js';

/** One instance of a package in the dpkg database (a Multi-Arch package may have several). */
export interface PackageInstance {
  version: string;
  architecture: string;
  /** dpkg's state word: `installed`, `unpacked`, `half-configured`, `config-files`… */
  state: string;
}

export interface InstalledPackagesOptions {
  /** The dpkg root whose database is read: its admindir is `<root>/var/lib/dpkg`. */
  root: string;
  /** Upper bound of one dpkg-query run. Default 30 s. */
  timeoutMs?: number;
}

/**
 * What the dpkg database of one root says of a package, for host preconditions: read-only
 * (`dpkg-query --admindir=… --show`), no lock taken. The package name has passed the Debian name
 * schema, so it holds no glob character dpkg-query would expand.
 */
export class InstalledPackages {
  readonly adminDir: string;
  private readonly timeoutMs: number;

  constructor(options: InstalledPackagesOptions) {
    this.adminDir = join(options.root, 'var/lib/dpkg');
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Every instance dpkg knows of `name` (none: it never heard of it). Throws when dpkg-query cannot answer. */
  async instancesOf(name: string, signal: AbortSignal): Promise<PackageInstance[]> {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
    const format = '${Version}\\t${Architecture}\\t${db:Status-Status}\\n';
    const result = await runCommand(
      ['dpkg-query', `--admindir=${this.adminDir}`, '--show', `--showformat=${format}`, '--', name],
      {
        env: { PATH: SYSTEM_PATH, LC_ALL: 'C' },
        timeoutMs: this.timeoutMs,
        signal,
        output: { keep: 'head', maxBytes: 64 * 1024 },
        killGraceMs: 0,
      },
    );
    if (result.aborted || result.timedOut) throw new Error(`dpkg-query ${result.aborted ? 'aborted' : 'timed out'}`);
    if (result.exitCode !== 0) {
      if (/no packages found matching/i.test(result.stderr)) return [];
      throw new Error(`dpkg-query failed: ${outputTail(result, 3)}`.slice(0, 500));
    }
    return result.stdout
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => {
        const [version = '', architecture = '', state = ''] = line.split('\t');
        return { version, architecture, state };
      });
  }
}
