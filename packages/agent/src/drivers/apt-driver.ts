import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DebianPackageNameSchema,
  DebianVersionSchema,
  type DescribedState,
  ErrorCode,
  FleetError,
  type PackageChange,
} from '@fleetpatch/shared';
import type { PackageFacts } from '../policy/agent-policy.js';
import type { CommandResult } from '../process/command-runner.js';
import { describeExit, outputTail } from '../process/command-runner.js';
import {
  DebSources,
  debFileName,
  durableCopy,
  findPriorDeb,
  type PackageSnapshot,
  PackageSnapshotSchema,
  sha256File,
} from './deb-snapshot.js';
import { DpkgCommands, type PackageState, throwIfInterrupted } from './dpkg-commands.js';
import type { Driver, DriverContext, PreflightVerdict } from './driver.js';

export type { PackageSnapshot } from './deb-snapshot.js';
export { DebSources, PackageSnapshotSchema };

/** PATH for dpkg: it refuses to run without ldconfig and start-stop-daemon on it. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * How the apt driver reaches dpkg and apt. Production uses the defaults: root `/`, the real `dpkg`
 * and `apt-get`, no prefix. Tests point it at a throwaway root and a local apt repository, and run
 * every command unprivileged (see `packages/agent/test/support/deb-fixtures.ts`).
 */
export interface AptDriverOptions {
  /**
   * The filesystem root dpkg manages. Default `/`. Any other value adds `--root=<root>` and
   * `--log=<root>/var/log/dpkg.log` to dpkg and dpkg-query, and
   * `-o Dir::State::status=<root>/var/lib/dpkg/status` to apt (so apt locks and reads that root's
   * database). With `--force-script-chrootless`, maintainer scripts then run against the real `/`
   * with `$DPKG_ROOT` set, which is why such a root must only be used unprivileged (see
   * `commandPrefix`); the constructor refuses that combination for a root agent without a prefix.
   */
  root?: string;
  /**
   * Program and arguments put before every command, e.g.
   * `['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--', 'fakeroot', '--']`.
   * Default `[]`.
   */
  commandPrefix?: readonly string[];
  /** Extra options for every `dpkg` call, e.g. `['--force-not-root', '--force-script-chrootless']`. Default `[]`. */
  dpkgOptions?: readonly string[];
  /**
   * Extra arguments for every `apt-get` and `apt-config` call, typically `-o Key=value` pairs that
   * point apt at another root, sources list or cache. Default `[]` (the host's apt configuration).
   */
  aptOptions?: readonly string[];
  /** When given, only these package names may be changed; anything else is `policy_denied`. */
  allowedPackages?: readonly string[];
  /**
   * Scratch directory for .deb files handed to dpkg, `apt-get download` and `dpkg-repack`; created
   * if missing, and it must be writable by the user the commands run as (the prefix's user).
   * Snapshots are copied out of it into the order's snapshot dir. Default `/var/cache/fleetpatch/apt`.
   */
  stagingDir?: string;
  /** How long to wait for the dpkg lock before a preflight says `blocked` (or apply/restore fail). Default 60 s. */
  lockTimeoutMs?: number;
  /** Upper bound for any one command, dpkg included. Default 15 min. */
  commandTimeoutMs?: number;
  /**
   * Extra environment for the commands, on top of a fixed minimal one (PATH, LC_ALL=C,
   * DEBIAN_FRONTEND=noninteractive, …); tests set HOME to somewhere the command user can read.
   */
  env?: Readonly<Record<string, string>>;
}

const DEFAULTS = {
  root: '/',
  stagingDir: '/var/cache/fleetpatch/apt',
  lockTimeoutMs: 60_000,
  commandTimeoutMs: 15 * 60_000,
} as const;

/**
 * Changes one apt package to one exact version, with the prior .deb captured and verified first.
 *
 * Apply downloads the exact .deb (`apt-get download name=version`) and installs it with
 * `dpkg --install --force-confdef --force-confold`, rather than `apt-get install`: the preflight
 * simulation has already proved apt would touch no other package, and the revert path uses the
 * same dpkg command on the snapshot .deb, so both directions behave alike.
 */
export class AptDriver implements Driver<PackageChange, PackageSnapshot> {
  readonly kind = 'package' as const;
  private readonly commands: DpkgCommands;
  private readonly root: string;
  private readonly stagingDir: string;
  private readonly lockTimeoutMs: number;
  private readonly allowed: ReadonlySet<string> | undefined;

  constructor(options: AptDriverOptions = {}) {
    this.root = options.root ?? DEFAULTS.root;
    this.stagingDir = options.stagingDir ?? DEFAULTS.stagingDir;
    this.lockTimeoutMs = options.lockTimeoutMs ?? DEFAULTS.lockTimeoutMs;
    this.allowed = options.allowedPackages ? new Set(options.allowedPackages) : undefined;
    const commandPrefix = options.commandPrefix ?? [];
    const dpkgOptions = options.dpkgOptions ?? [];
    if (
      this.root !== '/' &&
      dpkgOptions.includes('--force-script-chrootless') &&
      commandPrefix.length === 0 &&
      process.getuid?.() === 0
    ) {
      throw new Error(
        'AptDriver: --force-script-chrootless with a non-/ root as root would run maintainer scripts against the real /; set a commandPrefix that drops privileges',
      );
    }
    this.commands = new DpkgCommands({
      root: this.root,
      commandPrefix,
      dpkgOptions,
      aptOptions: options.aptOptions ?? [],
      commandTimeoutMs: options.commandTimeoutMs ?? DEFAULTS.commandTimeoutMs,
      env: {
        PATH: DEFAULT_PATH,
        LC_ALL: 'C',
        LANG: 'C',
        DEBIAN_FRONTEND: 'noninteractive',
        DEBCONF_NONINTERACTIVE_SEEN: 'true',
        APT_LISTCHANGES_FRONTEND: 'none',
        NEEDRESTART_MODE: 'l',
        ...options.env,
      },
    });
  }

  /** Read-only answers for the agent policy (downgrades, source packages); see policy/agent-policy.ts. */
  get packageFacts(): PackageFacts {
    return {
      installedVersion: async (name, signal) => {
        const state = await this.commands.query(name, signal);
        return state.installed ? state.version : undefined;
      },
      sourcePackageOf: (name, version, signal) => this.commands.sourcePackageOf(name, version, signal),
      isLower: (a, b, signal) => this.commands.isLower(a, b, signal),
    };
  }

  async preflight(change: PackageChange, ctx: DriverContext): Promise<PreflightVerdict> {
    try {
      this.checkPolicy(change);
    } catch (err) {
      if (err instanceof FleetError) return { outcome: 'would_fail', code: err.code, detail: err.message };
      throw err;
    }
    const lock = await this.commands.probeLock(this.lockTimeoutMs, ctx.signal);
    if (lock.held) {
      return { outcome: 'blocked', detail: `dpkg lock not free within ${this.lockTimeoutMs} ms: ${lock.detail}` };
    }
    const audit = await this.commands.audit(ctx.signal);
    if (audit !== '') {
      return { outcome: 'would_fail', code: ErrorCode.preconditionFailed, detail: `dpkg --audit: ${audit}` };
    }

    const state = await this.commands.query(change.name, ctx.signal);
    if (state.installed && state.clean && state.version === change.version) {
      return { outcome: 'already_applied', detail: `${change.name} ${change.version} is installed` };
    }
    const drift = priorDrift(change, state);
    if (drift) return { outcome: 'would_fail', code: ErrorCode.preconditionFailed, detail: drift };
    if (state.installed && !state.clean) {
      return {
        outcome: 'would_fail',
        code: ErrorCode.preconditionFailed,
        detail: `${change.name} is "${state.status}", not "install ok installed" (held or broken)`,
      };
    }

    let simulation = await this.commands.simulateInstall(change.name, change.version, ctx.signal);
    if (!simulation.ok && simulation.versionUnknown) {
      ctx.log.info({ pkg: change.name, version: change.version }, 'version not in apt indexes; running apt-get update');
      await this.commands.updateIndexes(ctx.signal);
      simulation = await this.commands.simulateInstall(change.name, change.version, ctx.signal);
    }
    if (!simulation.ok) {
      return {
        outcome: 'would_fail',
        code: ErrorCode.preconditionFailed,
        detail: `apt cannot install ${change.name}=${change.version}: ${simulation.reason}`,
      };
    }
    const others = simulation.actions.filter((a) => a.name !== change.name);
    if (others.length > 0) {
      const list = others.map((a) => `${a.action} ${a.name}${a.version ? ` ${a.version}` : ''}`).join(', ');
      return {
        outcome: 'would_fail',
        code: ErrorCode.preconditionFailed,
        detail: `installing ${change.name}=${change.version} would also change other packages: ${list}`,
      };
    }
    const target = simulation.actions.find((a) => a.action === 'Inst' && a.version === change.version);
    if (!target) {
      return {
        outcome: 'would_fail',
        code: ErrorCode.preconditionFailed,
        detail: `apt does not plan to install ${change.name} ${change.version}`,
      };
    }
    const from = state.installed ? state.version : 'not installed';
    return { outcome: 'would_apply', detail: `${change.name}: ${from} → ${change.version}` };
  }

  async snapshot(change: PackageChange, dir: string, ctx: DriverContext): Promise<PackageSnapshot> {
    this.checkPolicy(change);
    const takenAt = new Date().toISOString();
    const state = await this.commands.query(change.name, ctx.signal);
    if (!state.installed) {
      return {
        format: 1,
        name: change.name,
        prior: { installed: false, configFiles: state.configFiles },
        deb: null,
        takenAt,
      };
    }
    if (!state.clean) {
      throw new FleetError(
        ErrorCode.snapshotFailed,
        `${change.name} is "${state.status}"; no clean prior state to keep`,
      );
    }
    const id = { name: change.name, version: state.version, architecture: state.architecture };
    const prior = { installed: true as const, version: state.version, architecture: state.architecture };
    await this.ensureStagingDir();
    const { found, attempts } = await findPriorDeb(
      { commands: this.commands, root: this.root, stagingDir: this.stagingDir, signal: ctx.signal, log: ctx.log },
      id,
    );
    if (!found) {
      if (!change.revertable) {
        ctx.log.warn({ pkg: change.name, version: state.version, attempts }, 'no prior .deb; change is not revertable');
        return { format: 1, name: change.name, prior, deb: null, takenAt };
      }
      throw new FleetError(
        ErrorCode.snapshotFailed,
        `no verifiable .deb of ${change.name} ${state.version} to go back to`,
        { attempts },
      );
    }
    const file = debFileName(id);
    const target = join(dir, file);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await durableCopy(found.file, target);
    } catch (err) {
      throw new FleetError(
        ErrorCode.snapshotFailed,
        `cannot store the prior .deb: ${(err as Error).message}`,
        undefined,
        {
          cause: err,
        },
      );
    } finally {
      if (found.source !== 'apt-cache') await rm(found.file, { force: true });
    }
    const { sha256, size } = await sha256File(target);
    ctx.log.info({ pkg: change.name, version: state.version, source: found.source, sha256 }, 'prior .deb captured');
    return { format: 1, name: change.name, prior, deb: { file, sha256, size, source: found.source }, takenAt };
  }

  async apply(change: PackageChange, ctx: DriverContext): Promise<void> {
    this.checkPolicy(change);
    await this.requireLock(ErrorCode.blocked, ctx);
    if (await this.isInstalledExactly(change.name, change.version, ctx.signal)) return;

    await this.ensureStagingDir();
    const deb = await this.downloadTarget(change, ctx);
    if (ctx.signal.aborted) {
      await rm(deb, { force: true });
      throw new FleetError(ErrorCode.cancelled, 'cancelled before dpkg ran');
    }
    ctx.log.info({ pkg: change.name, version: change.version }, 'dpkg --install');
    let result: CommandResult;
    try {
      result = await this.commands.install(deb);
    } finally {
      await rm(deb, { force: true });
    }
    await this.requireInstalled(change.name, change.version, ErrorCode.applyFailed, result, ctx.signal);
  }

  async verify(change: PackageChange, ctx: DriverContext): Promise<void> {
    await this.requireInstalled(change.name, change.version, ErrorCode.verifyFailed, undefined, ctx.signal);
  }

  async describe(change: PackageChange, ctx: DriverContext): Promise<DescribedState> {
    const state = await this.commands.query(change.name, ctx.signal);
    if (!state.installed) return { installed: false, configFiles: state.configFiles };
    return { installed: true, version: state.version, architecture: state.architecture, status: state.status };
  }

  /**
   * Goes back to the snapshot: reinstalls the prior .deb (a downgrade, config files kept), or removes
   * a package that was not installed. Works from a half-installed or half-configured package (a
   * failed maintainer script, a killed dpkg): dpkg replays its own journal and the reinstall
   * replaces whatever is there; if the audit is still not clean, one `dpkg --configure --pending`
   * follows. Then the prior state must hold exactly, else `revert_failed`; nothing is retried.
   */
  async restore(change: PackageChange, raw: PackageSnapshot, dir: string, ctx: DriverContext): Promise<void> {
    const parsed = PackageSnapshotSchema.safeParse(raw);
    if (!parsed.success) {
      throw new FleetError(ErrorCode.revertFailed, 'snapshot record is invalid', { issues: parsed.error.issues });
    }
    const snap = parsed.data;
    if (snap.name !== change.name) {
      throw new FleetError(ErrorCode.revertFailed, `snapshot is of ${snap.name}, not ${change.name}`);
    }
    await this.requireLock(ErrorCode.revertFailed, ctx);
    if (await this.isAtPrior(snap, ctx.signal)) return;

    const results: CommandResult[] = [];
    if (!snap.prior.installed) {
      const purge = !snap.prior.configFiles;
      ctx.log.info({ pkg: snap.name, purge }, 'removing package that was not installed before');
      results.push(await this.commands.remove(snap.name, purge));
    } else {
      if (!snap.deb) {
        throw new FleetError(ErrorCode.revertFailed, `${snap.name} was changed without a prior .deb (not revertable)`);
      }
      await this.ensureStagingDir();
      const staged = join(this.stagingDir, snap.deb.file);
      try {
        await durableCopy(join(dir, snap.deb.file), staged);
        const { sha256 } = await sha256File(staged);
        if (sha256 !== snap.deb.sha256) {
          throw new FleetError(ErrorCode.revertFailed, 'snapshot .deb does not match its recorded sha256', {
            expected: snap.deb.sha256,
            actual: sha256,
          });
        }
        ctx.log.info({ pkg: snap.name, version: snap.prior.version }, 'reinstalling prior .deb');
        results.push(await this.commands.install(staged));
      } catch (err) {
        if (err instanceof FleetError) throw err;
        throw new FleetError(
          ErrorCode.revertFailed,
          `cannot stage the snapshot .deb: ${(err as Error).message}`,
          undefined,
          {
            cause: err,
          },
        );
      } finally {
        await rm(staged, { force: true });
      }
    }
    if ((await this.commands.audit(ctx.signal)) !== '') {
      ctx.log.warn({ pkg: snap.name }, 'audit not clean after revert; dpkg --configure --pending');
      results.push(await this.commands.configurePending());
    }
    if (await this.isAtPrior(snap, ctx.signal)) return;

    const state = await this.commands.query(snap.name, ctx.signal);
    throw new FleetError(ErrorCode.revertFailed, `${snap.name} is not back at its prior state`, {
      prior: snap.prior,
      state,
      audit: await this.commands.audit(ctx.signal),
      commands: results.map((r) => ({ argv: r.argv, exit: describeExit(r), output: outputTail(r) })),
    });
  }

  /**
   * After a crash: deletes this package's leftover .deb files from the staging dir and, when dpkg
   * was interrupted (a non-empty `updates/` journal, or `dpkg --audit` not clean), runs
   * `dpkg --configure --pending` once so dpkg's own state is consistent again. It does not choose a
   * version: whether to keep or revert the change is the executor's decision (restore). A dpkg that
   * still fails is logged, not thrown; restore then reports it.
   */
  async cleanup(change: PackageChange, ctx: DriverContext): Promise<void> {
    await this.removeStaged(`${change.name}_`);
    const interrupted = await this.hasPendingJournal();
    const audit = await this.commands.audit(ctx.signal);
    if (!interrupted && audit === '') return;
    const lock = await this.commands.probeLock(this.lockTimeoutMs, ctx.signal);
    if (lock.held) {
      ctx.log.warn({ pkg: change.name, detail: lock.detail }, 'dpkg is busy; leaving its state to its holder');
      return;
    }
    ctx.log.warn({ pkg: change.name, interrupted, audit }, 'dpkg was interrupted; dpkg --configure --pending');
    const result = await this.commands.configurePending();
    if (result.exitCode !== 0) {
      ctx.log.warn({ pkg: change.name, output: outputTail(result) }, 'dpkg --configure --pending failed');
    }
  }

  private checkPolicy(change: PackageChange): void {
    if (!DebianPackageNameSchema.safeParse(change.name).success) {
      throw new FleetError(ErrorCode.policyDenied, `not a Debian package name: ${JSON.stringify(change.name)}`);
    }
    for (const version of [change.version, change.expectedPriorVersion]) {
      if (version === undefined || version === 'absent') continue;
      if (!DebianVersionSchema.safeParse(version).success) {
        throw new FleetError(ErrorCode.policyDenied, `not a Debian version: ${JSON.stringify(version)}`);
      }
    }
    if (this.allowed && !this.allowed.has(change.name)) {
      throw new FleetError(ErrorCode.policyDenied, `package ${change.name} is not in this agent's allowed packages`);
    }
  }

  private async requireLock(code: ErrorCode, ctx: DriverContext): Promise<void> {
    const lock = await this.commands.probeLock(this.lockTimeoutMs, ctx.signal);
    if (lock.held) {
      throw new FleetError(code, `dpkg lock not free within ${this.lockTimeoutMs} ms`, { detail: lock.detail });
    }
  }

  private async isInstalledExactly(name: string, version: string, signal: AbortSignal): Promise<boolean> {
    const state = await this.commands.query(name, signal);
    return state.installed && state.clean && state.version === version && (await this.commands.audit(signal)) === '';
  }

  private async isAtPrior(snap: PackageSnapshot, signal: AbortSignal): Promise<boolean> {
    const state = await this.commands.query(snap.name, signal);
    const matches = snap.prior.installed
      ? state.installed && state.clean && state.version === snap.prior.version
      : !state.installed && state.configFiles === snap.prior.configFiles;
    return matches && (await this.commands.audit(signal)) === '';
  }

  private async requireInstalled(
    name: string,
    version: string,
    code: ErrorCode,
    result: CommandResult | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const state = await this.commands.query(name, signal);
    const audit = await this.commands.audit(signal);
    if (state.installed && state.clean && state.version === version && audit === '') return;
    const why = result && result.exitCode !== 0 ? `dpkg ${describeExit(result)}` : 'dpkg finished';
    throw new FleetError(code, `${why}, but ${name} is not cleanly installed at ${version}`, {
      state,
      audit,
      ...(result ? { output: outputTail(result) } : {}),
    });
  }

  /** `apt-get download` of the exact target into the staging dir, verified by its control fields. */
  private async downloadTarget(change: PackageChange, ctx: DriverContext): Promise<string> {
    const prefix = `${change.name}_${change.version.replaceAll(':', '%3a')}_`;
    await this.removeStaged(prefix);
    let result = await this.commands.download(change.name, change.version, this.stagingDir, ctx.signal);
    if (result.exitCode !== 0 && /not found|Unable to locate|Can't find a source/i.test(result.stderr)) {
      await this.commands.updateIndexes(ctx.signal);
      result = await this.commands.download(change.name, change.version, this.stagingDir, ctx.signal);
    }
    throwIfInterrupted(result);
    const file = (await readdir(this.stagingDir)).find((f) => f.startsWith(prefix) && f.endsWith('.deb'));
    if (result.exitCode !== 0 || file === undefined) {
      throw new FleetError(ErrorCode.applyFailed, `cannot download ${change.name}=${change.version}`, {
        output: outputTail(result),
      });
    }
    const path = join(this.stagingDir, file);
    const fields = await this.commands.debFields(path, ctx.signal);
    if (fields?.package !== change.name || fields.version !== change.version) {
      await rm(path, { force: true });
      throw new FleetError(ErrorCode.applyFailed, `downloaded ${file} is not ${change.name} ${change.version}`, {
        fields,
      });
    }
    return path;
  }

  private async ensureStagingDir(): Promise<void> {
    await mkdir(this.stagingDir, { recursive: true, mode: 0o755 });
  }

  private async removeStaged(prefix: string): Promise<void> {
    let files: string[];
    try {
      files = await readdir(this.stagingDir);
    } catch {
      return;
    }
    await Promise.all(
      files
        .filter((f) => f.startsWith(prefix) && f.endsWith('.deb'))
        .map((f) => rm(join(this.stagingDir, f), { force: true })),
    );
  }

  private async hasPendingJournal(): Promise<boolean> {
    try {
      return (await readdir(join(this.root, 'var/lib/dpkg/updates'))).some((f) => /^\d+$/.test(f));
    } catch {
      return false;
    }
  }
}

/** Why the installed state is not what the operator expected before the change, if it is not. */
function priorDrift(change: PackageChange, state: PackageState): string | undefined {
  const expected = change.expectedPriorVersion;
  if (expected === undefined) return undefined;
  if (expected === 'absent') {
    return state.installed ? `expected ${change.name} absent, found ${state.version} installed` : undefined;
  }
  if (!state.installed) return `expected ${change.name} ${expected}, found it not installed`;
  if (state.version !== expected) return `expected ${change.name} ${expected}, found ${state.version}`;
  return undefined;
}
