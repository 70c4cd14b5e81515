import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, FleetError } from '@fleetpatch/shared';
import { type CommandResult, describeExit, outputTail, runCommand } from '../process/command-runner.js';
import { runDetached } from '../process/detached-run.js';

/** Where dpkg and apt run and how; resolved once from `AptDriverOptions`. */
export interface DpkgCommandConfig {
  root: string;
  commandPrefix: readonly string[];
  dpkgOptions: readonly string[];
  aptOptions: readonly string[];
  env: NodeJS.ProcessEnv;
  commandTimeoutMs: number;
}

/** What dpkg knows about one package on the host. */
export type PackageState =
  | { installed: false; configFiles: boolean }
  | {
      installed: true;
      version: string;
      architecture: string;
      /** dpkg's three words, e.g. "install ok installed" or "install reinstreq half-installed". */
      status: string;
      /** True only for "install ok installed": unpacked, configured, no error flag. */
      clean: boolean;
    };

/** One action of an `apt-get --simulate` plan. */
export interface PlannedAction {
  action: 'Inst' | 'Remv' | 'Purg' | 'Conf';
  name: string;
  version: string | undefined;
}

export interface NameVersion {
  name: string;
  version: string;
}

/** One version of a binary package as the apt indexes describe it. */
export interface AptBinaryVersion {
  name: string;
  version: string;
  architecture: string;
  /** The source package it was built from (the `Source:` field, else its own name). */
  source: string;
  /** The source version (`Source: name (version)` for a binNMU and the like, else its own version). */
  sourceVersion: string;
}

export type SimulationResult =
  | { ok: true; actions: PlannedAction[] }
  | { ok: false; versionUnknown: boolean; reason: string };

export type LockProbe = { held: false } | { held: true; detail: string };

export interface DebFields {
  package: string;
  version: string;
  architecture: string;
}

const LOCK_HELD =
  /Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock the administration directory|is locked by another process/i;

/**
 * The dpkg and apt commands the apt driver needs, each one program with an argument list run
 * through `runCommand`: no shell, stdin closed, noninteractive, time-limited.
 */
export class DpkgCommands {
  constructor(private readonly config: DpkgCommandConfig) {}

  private get rootArgs(): string[] {
    const { root } = this.config;
    return root === '/' ? [] : [`--root=${root}`];
  }

  /** dpkg itself: `--root` and its own log when the root is not `/`, then the configured options. */
  private dpkgArgs(): string[] {
    const { root } = this.config;
    const log = root === '/' ? [] : [`--log=${root}/var/log/dpkg.log`];
    return ['dpkg', ...this.rootArgs, ...log, ...this.config.dpkgOptions];
  }

  private aptArgs(program: 'apt-get' | 'apt-config' | 'apt-cache'): string[] {
    const { root } = this.config;
    const status = root === '/' ? [] : ['-o', `Dir::State::status=${root}/var/lib/dpkg/status`];
    return [program, ...status, ...this.config.aptOptions];
  }

  run(
    argv: readonly string[],
    opts: { signal?: AbortSignal; cwd?: string; timeoutMs?: number } = {},
  ): Promise<CommandResult> {
    return this.started(argv, (full) =>
      runCommand(full, {
        env: this.config.env,
        timeoutMs: opts.timeoutMs ?? this.config.commandTimeoutMs,
        ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
      }),
    );
  }

  /** Runs `argv` behind the command prefix; a program that cannot start at all is an internal error. */
  private async started(
    argv: readonly string[],
    start: (full: readonly string[]) => Promise<CommandResult>,
  ): Promise<CommandResult> {
    const full = [...this.config.commandPrefix, ...argv];
    try {
      return await start(full);
    } catch (err) {
      throw new FleetError(
        ErrorCode.internal,
        `could not start ${full[0]}: ${(err as Error).message}`,
        { argv: full },
        { cause: err },
      );
    }
  }

  /**
   * A dpkg run that changes the host. With `runDir` (an order's), it runs detached, its output and
   * exit status in files there, so that it finishes even if the agent dies (see detached-run.ts);
   * without, through `run` (tests of the driver alone).
   */
  private async runChanging(argv: readonly string[], runDir: string | undefined): Promise<CommandResult> {
    if (runDir === undefined) return this.run(argv);
    return this.started(argv, (full) =>
      runDetached(full, runDir, { env: this.config.env, timeoutMs: this.config.commandTimeoutMs }),
    );
  }

  /** `dpkg-query -W`: the installed version and status of `name`, or that it is not installed. */
  async query(name: string, signal: AbortSignal): Promise<PackageState> {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
    const format = '${Package}\\t${Version}\\t${Architecture}\\t${Status}\\n';
    const result = await this.run(['dpkg-query', ...this.rootArgs, '-W', `-f=${format}`, name], { signal });
    throwIfInterrupted(result);
    if (result.exitCode !== 0) {
      if (/no packages found matching/i.test(result.stderr)) return { installed: false, configFiles: false };
      throw commandFailed(ErrorCode.internal, 'dpkg-query', result);
    }
    const rows = result.stdout
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => line.split('\t'));
    if (rows.length > 1) {
      throw new FleetError(ErrorCode.preconditionFailed, `${name} is installed for several architectures`, {
        rows,
      });
    }
    const [, version = '', architecture = '', status = ''] = rows[0] ?? [];
    const state = status.split(' ')[2] ?? 'not-installed';
    if (state === 'not-installed') return { installed: false, configFiles: false };
    if (state === 'config-files') return { installed: false, configFiles: true };
    return { installed: true, version, architecture, status, clean: status === 'install ok installed' };
  }

  /** `dpkg --compare-versions a lt b`: Debian's own ordering, epochs and tildes included. */
  async isLower(a: string, b: string, signal: AbortSignal): Promise<boolean> {
    const result = await this.run(['dpkg', '--compare-versions', a, 'lt', b], { signal });
    throwIfInterrupted(result);
    if (result.exitCode === 0) return true;
    if (result.exitCode === 1) return false;
    throw commandFailed(ErrorCode.internal, 'dpkg --compare-versions', result);
  }

  /** The source package of `name=version` per the apt indexes (`Source:`, else the name); undefined if unknown. */
  async sourcePackageOf(name: string, version: string, signal: AbortSignal): Promise<string | undefined> {
    return (await this.aptVersionsOf(name, signal)).find((v) => v.version === version)?.source;
  }

  /** Whether `program` is an executable on the commands' PATH (dpkg-repack is optional). */
  async hasProgram(program: string): Promise<boolean> {
    for (const dir of (this.config.env.PATH ?? '').split(':')) {
      if (dir === '') continue;
      try {
        await access(join(dir, program), constants.X_OK);
        return true;
      } catch {
        // Not here.
      }
    }
    return false;
  }

  /** `dpkg --audit`: empty when the database is consistent, else dpkg's explanation. */
  async audit(signal: AbortSignal): Promise<string> {
    const result = await this.run([...this.dpkgArgs(), '--audit'], { signal });
    throwIfInterrupted(result);
    // dpkg 1.21 exits 0 even when it reports problems, so the report itself is the verdict.
    const report = result.stdout.trim();
    if (result.exitCode !== 0 && report === '') throw commandFailed(ErrorCode.internal, 'dpkg --audit', result);
    return report;
  }

  /**
   * Takes and releases the dpkg lock (`lock-frontend`, then `lock`) with `apt-get check`, which
   * waits up to `DPkg::Lock::Timeout` seconds for a holder to finish. Nothing is deleted and nothing
   * is installed; the package caches are not even written (`Dir::Cache::pkgcache=`). Any other
   * complaint (broken dependencies, an interrupted dpkg) means the lock was had: the audit reports it.
   */
  async probeLock(timeoutMs: number, signal: AbortSignal): Promise<LockProbe> {
    const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
    const result = await this.run(
      [...this.aptArgs('apt-get'), ...NO_CACHE_FILES, '-o', `DPkg::Lock::Timeout=${seconds}`, '-q', 'check'],
      { signal, timeoutMs: this.config.commandTimeoutMs + seconds * 1000 },
    );
    throwIfInterrupted(result);
    if (result.exitCode !== 0 && LOCK_HELD.test(result.stderr)) {
      return { held: true, detail: outputTail(result, 3) };
    }
    return { held: false };
  }

  /**
   * `apt-get --simulate install a=v1 b=v2 …`: what apt would do to install the whole set at once,
   * changing nothing (no lock is written to, no cache file either).
   */
  async simulateInstall(members: readonly NameVersion[], signal: AbortSignal): Promise<SimulationResult> {
    const result = await this.run(
      [
        ...this.aptArgs('apt-get'),
        ...NO_CACHE_FILES,
        '-q',
        '--simulate',
        '--no-install-recommends',
        '--allow-downgrades',
        'install',
        ...members.map((m) => `${m.name}=${m.version}`),
      ],
      { signal },
    );
    throwIfInterrupted(result);
    if (result.exitCode !== 0) {
      const versionUnknown =
        /Version '.*' for '.*' was not found|Unable to locate package|has no installation candidate/.test(
          result.stderr,
        );
      return { ok: false, versionUnknown, reason: explainAptFailure(result) };
    }
    return { ok: true, actions: parseSimulation(result.stdout) };
  }

  /**
   * Every version of binary package `name` in the apt indexes, with the source package and source
   * version each was built from (`apt-cache show`: read-only). Empty when apt knows no such package.
   */
  async aptVersionsOf(name: string, signal: AbortSignal): Promise<AptBinaryVersion[]> {
    const result = await this.run([...this.aptArgs('apt-cache'), ...NO_CACHE_FILES, 'show', name], { signal });
    throwIfInterrupted(result);
    if (result.exitCode !== 0) return [];
    return parseAptStanzas(result.stdout).filter((v) => v.name === name);
  }

  /**
   * Whether apt could download `name=version` from a configured source: `apt-get download
   * --print-uris` prints where it would fetch it from and fetches nothing.
   */
  async downloadable(name: string, version: string, signal: AbortSignal): Promise<boolean> {
    const result = await this.run(
      [...this.aptArgs('apt-get'), ...NO_CACHE_FILES, '-q', 'download', '--print-uris', `${name}=${version}`],
      { signal },
    );
    throwIfInterrupted(result);
    return result.exitCode === 0 && /^'[^']+' \S+\.deb /m.test(result.stdout);
  }

  /** `apt-get update`; only used when the target version is not in the indexes yet. */
  async updateIndexes(signal: AbortSignal): Promise<void> {
    const result = await this.run([...this.aptArgs('apt-get'), '-q', 'update'], { signal });
    throwIfInterrupted(result);
    if (result.exitCode !== 0) throw commandFailed(ErrorCode.preconditionFailed, 'apt-get update', result);
  }

  /** `apt-get download name=version` into `dir` (the command user must be able to write it). */
  async download(name: string, version: string, dir: string, signal: AbortSignal): Promise<CommandResult> {
    const result = await this.run([...this.aptArgs('apt-get'), '-q', 'download', `${name}=${version}`], {
      signal,
      cwd: dir,
    });
    throwIfInterrupted(result);
    return result;
  }

  /** apt's package cache directory (`Dir::Cache::archives`), as apt resolves it. */
  async archivesDir(signal: AbortSignal): Promise<string | undefined> {
    const result = await this.run([...this.aptArgs('apt-config'), 'shell', 'ARCHIVES', 'Dir::Cache::archives/d'], {
      signal,
    });
    throwIfInterrupted(result);
    const match = /^ARCHIVES='(.*)'$/m.exec(result.stdout);
    return result.exitCode === 0 && match?.[1] ? match[1] : undefined;
  }

  /** `dpkg-deb --field`: the identity a .deb claims. */
  async debFields(file: string, signal: AbortSignal): Promise<DebFields | undefined> {
    const result = await this.run(['dpkg-deb', '--field', file, 'Package', 'Version', 'Architecture'], { signal });
    throwIfInterrupted(result);
    if (result.exitCode !== 0) return undefined;
    const field = (key: string): string | undefined =>
      new RegExp(`^${key}: (.*)$`, 'm').exec(result.stdout)?.[1]?.trim();
    const pkg = field('Package');
    const version = field('Version');
    const architecture = field('Architecture');
    if (!pkg || !version || !architecture) return undefined;
    return { package: pkg, version, architecture };
  }

  /** `dpkg-deb --info file md5sums`: the package's own file checksums, if it ships them. */
  async debMd5sums(file: string, signal: AbortSignal): Promise<string | undefined> {
    const result = await this.run(['dpkg-deb', '--info', file, 'md5sums'], { signal });
    throwIfInterrupted(result);
    return result.exitCode === 0 ? result.stdout : undefined;
  }

  /**
   * `dpkg-repack` rebuilds a .deb from the installed files. Optional (Debian package `dpkg-repack`);
   * `undefined` when it is missing or fails.
   */
  async repack(name: string, dir: string, signal: AbortSignal): Promise<CommandResult | undefined> {
    try {
      const result = await this.run(['dpkg-repack', ...this.rootArgs, name], { signal, cwd: dir });
      throwIfInterrupted(result);
      return result;
    } catch (err) {
      if (err instanceof FleetError && err.code === ErrorCode.internal) return undefined;
      throw err;
    }
  }

  /**
   * `dpkg --install` of every file in one transaction, keeping the admin's config files
   * (`--force-confdef --force-confold`). Not interrupted by the order's signal: a dpkg stopped
   * half-way is exactly the state we avoid.
   */
  install(debFiles: readonly string[], runDir?: string): Promise<CommandResult> {
    return this.runChanging(
      [...this.dpkgArgs(), '--force-confdef', '--force-confold', '--install', ...debFiles],
      runDir,
    );
  }

  /** `dpkg --remove`/`--purge`, also of a package left half-installed (`--force-remove-reinstreq`). */
  remove(names: readonly string[], purge: boolean, runDir?: string): Promise<CommandResult> {
    return this.runChanging(
      [...this.dpkgArgs(), '--force-remove-reinstreq', purge ? '--purge' : '--remove', ...names],
      runDir,
    );
  }

  /** `dpkg --configure --pending`: finishes what an interrupted dpkg left unpacked or half-configured. */
  configurePending(runDir?: string): Promise<CommandResult> {
    return this.runChanging(
      [...this.dpkgArgs(), '--force-confdef', '--force-confold', '--configure', '--pending'],
      runDir,
    );
  }
}

/** Simulations and lock probes must not write apt's binary caches: a dry run changes nothing. */
const NO_CACHE_FILES = ['-o', 'Dir::Cache::pkgcache=', '-o', 'Dir::Cache::srcpkgcache='];

export function parseSimulation(stdout: string): PlannedAction[] {
  const actions: PlannedAction[] = [];
  for (const line of stdout.split('\n')) {
    const match = /^(Inst|Remv|Purg|Conf) (\S+)(?: \[([^\]]+)\])?(?: \((\S+))?/.exec(line);
    if (!match) continue;
    const action = match[1] as PlannedAction['action'];
    const name = (match[2] ?? '').replace(/:\S+$/, '');
    // For Inst and Conf the new version is in parentheses; for Remv/Purg the old one in brackets.
    const version = action === 'Remv' || action === 'Purg' ? match[3] : match[4];
    actions.push({ action, name, version });
  }
  return actions;
}

/** The stanzas of `apt-cache show` output: one per version apt knows, in the order apt prints them. */
export function parseAptStanzas(stdout: string): AptBinaryVersion[] {
  const versions: AptBinaryVersion[] = [];
  for (const stanza of stdout.split(/\n\s*\n/)) {
    const field = (key: string): string | undefined => new RegExp(`^${key}: *(.*)$`, 'm').exec(stanza)?.[1]?.trim();
    const name = field('Package');
    const version = field('Version');
    if (!name || !version) continue;
    const source = /^([a-z0-9][a-z0-9+.-]+)(?: \(([^)\s]+)\))?$/.exec(field('Source') ?? '');
    versions.push({
      name,
      version,
      architecture: field('Architecture') ?? '',
      source: source?.[1] ?? name,
      sourceVersion: source?.[2] ?? version,
    });
  }
  return versions;
}

function explainAptFailure(result: CommandResult): string {
  const lines = `${result.stdout}\n${result.stderr}`.split('\n');
  const useful = lines.filter((l) => /^E: |^ \S+ : |unmet dependencies|Conflicts|Breaks|Depends/.test(l));
  return (useful.length > 0 ? useful.join('\n') : outputTail(result, 8)).trim();
}

export function commandFailed(code: ErrorCode, what: string, result: CommandResult): FleetError {
  return new FleetError(code, `${what} ${describeExit(result)}`, {
    argv: result.argv,
    exitCode: result.exitCode,
    signal: result.signal,
    output: outputTail(result),
  });
}

/** A cancelled or timed-out read-only command ends the whole step with that code. */
export function throwIfInterrupted(result: CommandResult): void {
  if (result.aborted) throw new FleetError(ErrorCode.cancelled, `${result.argv.join(' ')} was cancelled`);
  if (result.timedOut) throw new FleetError(ErrorCode.timedOut, `${result.argv.join(' ')} timed out`);
}
