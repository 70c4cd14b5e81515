import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DebianPackageNameSchema,
  DebianVersionSchema,
  type DescribedState,
  ErrorCode,
  FleetError,
  type PackageChange,
  type PackageMember,
  type PackageMove,
} from '@fleetpatch/shared';
import { makeDirectoryDurably } from '../fs/atomic-file.js';
import { DpkgInventory } from '../inventory/dpkg-inventory.js';
import type { PackageFacts } from '../policy/agent-policy.js';
import type { CommandResult } from '../process/command-runner.js';
import { describeExit, outputTail } from '../process/command-runner.js';
import { SYSTEM_PATH } from '../process/system-path.js';
import { conffilesOf, keepLeftovers, restoreLeftovers } from './conffile-leftovers.js';
import {
  CAPTURE_FIXES,
  DebSources,
  debFileName,
  durableCopy,
  findPriorDeb,
  type PackageMemberSnapshot,
  type PackageSnapshot,
  PackageSnapshotSchema,
  priorDebCapturable,
  readSnapshot,
  sha256File,
} from './deb-snapshot.js';
import { DpkgCommands, type PackageState, type PlannedAction, throwIfInterrupted } from './dpkg-commands.js';
import { explainDpkgRun } from './dpkg-failure.js';
import type { Driver, DriverContext, PreflightVerdict } from './driver.js';
import { type Resolution, resolvePackageChange } from './package-set.js';

export type { PackageSnapshot } from './deb-snapshot.js';
export { DebSources, PackageSnapshotSchema };

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

/** Where the apt driver stages the .debs it hands dpkg, unless `apt.stagingDir` says otherwise. */
export const DEFAULT_APT_STAGING_DIR = '/var/cache/fleetpatch/apt';

const DEFAULTS = {
  root: '/',
  stagingDir: DEFAULT_APT_STAGING_DIR,
  lockTimeoutMs: 60_000,
  commandTimeoutMs: 15 * 60_000,
} as const;

/**
 * Changes a set of apt packages to exact versions in one dpkg transaction, with every member's prior
 * .deb captured and verified first, and reverts them as a set (see `PackageChangeSchema` for the
 * three ways a change names its set, a source package among them).
 *
 * Apply downloads the exact .debs (`apt-get download name=version`) and installs them with one
 * `dpkg --install --force-confdef --force-confold a.deb b.deb …`, rather than `apt-get install`:
 * the preflight simulation has already proved apt would touch no package outside the set, and the
 * revert path uses the same dpkg command on the snapshot .debs, so both directions behave alike.
 *
 * Preflight changes nothing on the host: it reads dpkg's database and apt's indexes, takes and
 * releases the dpkg lock once (`apt-get check`), runs `apt-get --simulate` and
 * `apt-get download --print-uris` without writing apt's caches, and looks for dpkg-repack. It never
 * runs `apt-get update`; an apply order may, once, when apt's indexes do not know a target version.
 */
export class AptDriver implements Driver<PackageChange, PackageSnapshot> {
  readonly kind = 'package' as const;
  private readonly commands: DpkgCommands;
  private readonly root: string;
  private readonly stagingDir: string;
  private readonly lockTimeoutMs: number;
  private readonly allowed: ReadonlySet<string> | undefined;
  private readonly inventory: DpkgInventory;

  constructor(options: AptDriverOptions = {}) {
    this.root = options.root ?? DEFAULTS.root;
    this.stagingDir = options.stagingDir ?? DEFAULTS.stagingDir;
    this.lockTimeoutMs = options.lockTimeoutMs ?? DEFAULTS.lockTimeoutMs;
    this.allowed = options.allowedPackages ? new Set(options.allowedPackages) : undefined;
    this.inventory = new DpkgInventory({ root: this.root });
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
        PATH: SYSTEM_PATH,
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

  /** Read-only answers for the agent policy (downgrades, source packages, sets); see policy/agent-policy.ts. */
  get packageFacts(): PackageFacts {
    return {
      installedVersion: async (name, signal) => {
        const state = await this.commands.query(name, signal);
        return state.installed ? state.version : undefined;
      },
      sourcePackageOf: (name, version, signal) => this.commands.sourcePackageOf(name, version, signal),
      isLower: (a, b, signal) => this.commands.isLower(a, b, signal),
      resolve: (change, signal) => this.resolve(change, signal),
    };
  }

  /** The set a change means on this host (read-only; see package-set.ts). */
  resolve(change: PackageChange, signal: AbortSignal): Promise<Resolution> {
    return resolvePackageChange(
      change,
      { inventory: this.inventory, aptVersionsOf: (name, s) => this.commands.aptVersionsOf(name, s) },
      signal,
    );
  }

  async preflight(change: PackageChange, ctx: DriverContext): Promise<PreflightVerdict> {
    const first = await this.check(change, ctx);
    if (!first.indexesMayBeStale || ctx.mayRefreshIndexes !== true) return first.verdict;
    ctx.log.info('a target version is not in the apt indexes; apt-get update (an apply order may, a preflight never)');
    await this.commands.updateIndexes(ctx.signal);
    return (await this.check(change, ctx)).verdict;
  }

  /** The preflight itself: read-only, see the class comment for exactly what it touches. */
  private async check(
    change: PackageChange,
    ctx: DriverContext,
  ): Promise<{ verdict: PreflightVerdict; indexesMayBeStale: boolean }> {
    const done = (verdict: PreflightVerdict, indexesMayBeStale = false) => ({ verdict, indexesMayBeStale });
    const resolution = await this.resolve(change, ctx.signal);
    if (resolution.kind === 'not_applicable') return done({ outcome: 'not_applicable', detail: resolution.reason });
    if (resolution.kind === 'unresolvable') {
      return done({ outcome: 'would_fail', code: ErrorCode.preconditionFailed, detail: resolution.reason }, true);
    }
    const { members } = resolution;
    try {
      this.checkPolicy(members);
    } catch (err) {
      if (err instanceof FleetError) return done({ outcome: 'would_fail', code: err.code, detail: err.message });
      throw err;
    }
    const lockWaitMs = Math.min(this.lockTimeoutMs, ctx.lockWaitMs ?? Number.POSITIVE_INFINITY);
    const lock = await this.commands.probeLock(lockWaitMs, ctx.signal);
    if (lock.held) {
      return done({ outcome: 'blocked', detail: `dpkg lock not free within ${lockWaitMs} ms: ${lock.detail}` });
    }
    const audit = await this.commands.audit(ctx.signal);
    if (audit !== '') {
      return done({ outcome: 'would_fail', code: ErrorCode.preconditionFailed, detail: `dpkg --audit: ${audit}` });
    }

    const states = await this.statesOf(members, ctx.signal);
    const packages = members.map((m, i) => moveOf(m, states[i]));
    const refuse = (detail: string, code: ErrorCode = ErrorCode.preconditionFailed, stale = false) =>
      done({ outcome: 'would_fail', code, detail, packages }, stale);
    for (const [i, member] of members.entries()) {
      const state = states[i] as PackageState;
      // A member already at its target is not drift: a host that has the fix is done.
      if (isExactly(state, member.version)) continue;
      const drift = priorDrift(member, state);
      if (drift) return refuse(drift);
      if (state.installed && !state.clean) {
        return refuse(`${member.name} is "${state.status}", not "install ok installed" (held or broken)`);
      }
    }
    const pending = members.filter((m, i) => !isExactly(states[i] as PackageState, m.version));
    if (pending.length === 0) {
      return done({ outcome: 'already_applied', detail: `${describeSet(members)} installed`, packages });
    }

    const simulation = await this.commands.simulateInstall(pending, ctx.signal);
    if (!simulation.ok) {
      const hint = simulation.versionUnknown
        ? " (is it in this host's apt sources, and are its indexes up to date? run apt-get update; a preflight does not)"
        : '';
      return refuse(`apt cannot install ${describeSet(pending)}: ${simulation.reason}${hint}`, undefined, true);
    }
    const refusal = simulationRefusal(simulation.actions, members, pending);
    if (refusal) return refuse(refusal);

    if (change.revertable) {
      const uncapturable: string[] = [];
      for (const [i, member] of members.entries()) {
        const state = states[i] as PackageState;
        if (!state.installed || state.version === member.version) continue;
        const id = { name: member.name, version: state.version, architecture: state.architecture };
        const capture = await priorDebCapturable(
          { commands: this.commands, root: this.root, signal: ctx.signal, log: ctx.log },
          id,
        );
        if (!capture.ok) uncapturable.push(`${member.name} ${state.version} (${capture.attempts.join('; ')})`);
      }
      if (uncapturable.length > 0) {
        return refuse(
          `no .deb of the installed version to revert to can be captured for ${uncapturable.join(', ')}: ${CAPTURE_FIXES}`,
          ErrorCode.snapshotFailed,
        );
      }
    }
    const moving = packages.filter((p) => p.from !== p.to);
    return done({
      outcome: 'would_apply',
      detail: moving.map((p) => `${p.name}: ${p.from ?? 'not installed'} → ${p.to}`).join(', '),
      packages,
    });
  }

  async snapshot(change: PackageChange, dir: string, ctx: DriverContext): Promise<PackageSnapshot> {
    const resolution = await this.resolve(change, ctx.signal);
    if (resolution.kind !== 'set') {
      throw new FleetError(ErrorCode.snapshotFailed, `the package set changed since preflight: ${resolution.reason}`);
    }
    this.checkPolicy(resolution.members);
    const takenAt = new Date().toISOString();
    const members: PackageMemberSnapshot[] = [];
    for (const member of resolution.members) {
      const keptSoFar = members.reduce((n, m) => n + m.conffileLeftovers.length, 0);
      members.push(await this.snapshotMember(member, change.revertable, dir, keptSoFar, ctx));
    }
    return { format: 2, source: resolution.source, members, takenAt };
  }

  /** Captures one member's prior state: its .deb (verified) and the leftovers next to its conffiles. */
  private async snapshotMember(
    member: PackageMember,
    revertable: boolean,
    dir: string,
    leftoversBefore: number,
    ctx: DriverContext,
  ): Promise<PackageMemberSnapshot> {
    const state = await this.commands.query(member.name, ctx.signal);
    const base = { name: member.name, target: member.version };
    if (!state.installed) {
      return {
        ...base,
        prior: { installed: false, configFiles: state.configFiles },
        deb: null,
        conffiles: [],
        conffileLeftovers: [],
      };
    }
    if (!state.clean) {
      throw new FleetError(
        ErrorCode.snapshotFailed,
        `${member.name} is "${state.status}"; no clean prior state to keep`,
      );
    }
    const conffiles = await conffilesOf(this.root, member.name, state.architecture);
    // Durable in its parent before anything is kept in it (see Driver.snapshot).
    await makeDirectoryDurably(dir, 0o700);
    const kept = {
      ...base,
      prior: { installed: true as const, version: state.version, architecture: state.architecture },
      conffiles,
      conffileLeftovers: await keepLeftovers(this.root, conffiles, dir, leftoversBefore),
    };
    // Not moved by this change: it stays as it is, and so does its way back.
    if (state.version === member.version) return { ...kept, deb: null };

    const id = { name: member.name, version: state.version, architecture: state.architecture };
    await this.ensureStagingDir();
    const { found, attempts } = await findPriorDeb(
      { commands: this.commands, root: this.root, stagingDir: this.stagingDir, signal: ctx.signal, log: ctx.log },
      id,
    );
    if (!found) {
      if (!revertable) {
        ctx.log.warn({ pkg: member.name, version: state.version, attempts }, 'no prior .deb; change is not revertable');
        return { ...kept, deb: null };
      }
      throw new FleetError(
        ErrorCode.snapshotFailed,
        `no verifiable .deb of ${member.name} ${state.version} to go back to; tried: ${attempts.join('; ')}. To fix: ${CAPTURE_FIXES}`,
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
        `cannot store the prior .deb of ${member.name}: ${(err as Error).message}`,
        undefined,
        { cause: err },
      );
    } finally {
      if (found.source !== 'apt-cache') await rm(found.file, { force: true });
    }
    const { sha256, size } = await sha256File(target);
    ctx.log.info({ pkg: member.name, version: state.version, source: found.source, sha256 }, 'prior .deb captured');
    return { ...kept, deb: { file, sha256, size, source: found.source } };
  }

  async apply(change: PackageChange, ctx: DriverContext, snapshot?: PackageSnapshot): Promise<void> {
    const members = await this.targetsOf(change, snapshot, ErrorCode.applyFailed, ctx.signal);
    this.checkPolicy(members);
    await this.requireLock(ErrorCode.blocked, ctx);
    const states = await this.statesOf(members, ctx.signal);
    const pending = members.filter((m, i) => !isExactly(states[i] as PackageState, m.version));
    if (pending.length === 0 && (await this.commands.audit(ctx.signal)) === '') return;

    await this.ensureStagingDir();
    const debs: string[] = [];
    let result: CommandResult;
    try {
      for (const member of pending) debs.push(await this.downloadTarget(member, ctx));
      if (ctx.signal.aborted) throw new FleetError(ErrorCode.cancelled, 'cancelled before dpkg ran');
      ctx.log.info({ packages: describeSet(pending) }, 'dpkg --install (one transaction)');
      result = await this.commands.install(debs, ctx.runDir);
    } finally {
      await Promise.all(debs.map((deb) => rm(deb, { force: true })));
    }
    await this.requireAllInstalled(members, ErrorCode.applyFailed, result, ctx.signal);
  }

  async verify(change: PackageChange, ctx: DriverContext, snapshot?: PackageSnapshot): Promise<void> {
    const members = await this.targetsOf(change, snapshot, ErrorCode.verifyFailed, ctx.signal);
    await this.requireAllInstalled(members, ErrorCode.verifyFailed, undefined, ctx.signal);
  }

  /** What the snapshot says the set is, for a result: each member from where to where, and its way back. */
  describeSnapshot(raw: unknown, change: PackageChange): { packages: PackageMove[] } | undefined {
    const read = readSnapshot(raw, singleTarget(change));
    if (!read.ok) return undefined;
    return {
      packages: read.snapshot.members.map((m) => ({
        name: m.name,
        from: m.prior.installed ? m.prior.version : null,
        to: m.target,
        snapshot: m.deb ? m.deb.source : m.prior.installed ? 'none' : 'not-installed',
      })),
    };
  }

  /**
   * What a rehearsed revert must bring back: each member's installed version, architecture and dpkg
   * status (or that it was not installed), keyed `<package>.<field>`. A source change is described by
   * the binaries it resolves to on this host now.
   */
  async describe(change: PackageChange, ctx: DriverContext): Promise<DescribedState> {
    const resolution = await this.resolve(change, ctx.signal);
    const names = resolution.kind === 'set' ? resolution.members.map((m) => m.name) : [];
    const described: DescribedState = {};
    for (const name of names) {
      const state = await this.commands.query(name, ctx.signal);
      described[`${name}.installed`] = state.installed;
      if (state.installed) {
        described[`${name}.version`] = state.version;
        described[`${name}.architecture`] = state.architecture;
        described[`${name}.status`] = state.status;
      }
    }
    return described;
  }

  /**
   * A member installed above the version this order put there has moved on since (a later change,
   * unattended-upgrades, an admin): putting back its prior .deb would take it below what the host
   * runs now — past a newer fix, perhaps. Refused (`revert_failed`, nothing changed). Only members away
   * from their prior are judged: the half-way states a failed apply or revert leaves (some members at
   * their target, some back at their prior — above the target for a downgrade patch — half-installed)
   * restore as ever.
   */
  private async refuseIfMovedPast(
    members: PackageSnapshot['members'],
    states: readonly PackageState[],
    signal: AbortSignal,
  ): Promise<void> {
    const movedOn: string[] = [];
    for (const [i, member] of members.entries()) {
      const state = states[i];
      if (state?.installed !== true || state.version === member.target) continue;
      if (isAtPrior(member, state)) continue;
      if (await this.commands.isLower(member.target, state.version, signal))
        movedOn.push(`${member.name} is at ${state.version}, above the ${member.target} this order installed`);
    }
    if (movedOn.length > 0)
      throw new FleetError(
        ErrorCode.revertFailed,
        `moved on since this order: ${movedOn.join('; ')}; restoring its prior .deb would downgrade it, so nothing was changed`,
      );
  }

  /**
   * Goes back to the snapshot, the whole set at once: reinstalls every member's prior .deb in one
   * dpkg run (downgrades, config files kept), then removes the members that were not installed.
   * Works from half-installed or half-configured packages (a failed maintainer script, a killed
   * dpkg): the reinstall replaces whatever is there; if the audit is still not clean, one
   * `dpkg --configure --pending` follows. Then every member must be at its prior state exactly,
   * else `revert_failed`; nothing is retried. Last, the `.dpkg-dist`/`.dpkg-old` files dpkg wrote
   * next to the members' conffiles are removed, so the conffiles are as they were before.
   */
  async restore(change: PackageChange, raw: PackageSnapshot, dir: string, ctx: DriverContext): Promise<void> {
    const read = readSnapshot(raw, singleTarget(change));
    if (!read.ok) throw new FleetError(ErrorCode.revertFailed, read.reason);
    const snap = read.snapshot;
    await this.requireLock(ErrorCode.revertFailed, ctx);
    const results: CommandResult[] = [];
    if (!(await this.allAtPrior(snap.members, ctx.signal))) {
      const states = await this.statesOf(snap.members, ctx.signal);
      const away = snap.members.filter((m, i) => !isAtPrior(m, states[i] as PackageState));
      await this.refuseIfMovedPast(snap.members, states, ctx.signal);
      const reinstall = away.filter((m) => m.prior.installed);
      const notRevertable = reinstall.filter((m) => m.deb === null).map((m) => m.name);
      if (notRevertable.length > 0) {
        throw new FleetError(
          ErrorCode.revertFailed,
          `${notRevertable.join(', ')} changed without a prior .deb (not revertable)`,
        );
      }
      if (reinstall.length > 0) results.push(await this.reinstallPriors(reinstall, dir, ctx));
      for (const purge of [false, true]) {
        const remove = away.filter((m) => !m.prior.installed && m.prior.configFiles !== purge).map((m) => m.name);
        if (remove.length === 0) continue;
        ctx.log.info({ packages: remove, purge }, 'removing packages that were not installed before');
        results.push(await this.commands.remove(remove, purge, ctx.runDir));
      }
      if ((await this.commands.audit(ctx.signal)) !== '') {
        ctx.log.warn('audit not clean after revert; dpkg --configure --pending');
        results.push(await this.commands.configurePending(ctx.runDir));
      }
      if (!(await this.allAtPrior(snap.members, ctx.signal))) {
        const after = await this.statesOf(snap.members, ctx.signal);
        const wrong = snap.members
          .map((m, i) => ({ m, state: after[i] as PackageState }))
          .filter(({ m, state }) => !isAtPrior(m, state))
          .map(({ m, state }) => `${m.name} is ${describeState(state)}, was ${describePrior(m)}`);
        const last = results.at(-1);
        const dpkg = last ? explainDpkgRun(last) : undefined;
        const what = wrong.length > 0 ? wrong.join('; ') : `dpkg --audit is not clean`;
        throw new FleetError(
          ErrorCode.revertFailed,
          `not back at the prior state: ${what}${dpkg ? ` (${dpkg.summary})\n${dpkg.output}` : ''}`,
          {
            audit: await this.commands.audit(ctx.signal),
            commands: results.map((r) => ({ argv: r.argv, exit: describeExit(r), output: outputTail(r) })),
          },
        );
      }
    }
    for (const member of snap.members) {
      const changed = await restoreLeftovers(this.root, member.conffiles, member.conffileLeftovers, dir);
      if (changed.removed.length + changed.restored.length > 0) {
        ctx.log.info({ pkg: member.name, ...changed }, 'conffile leftovers put back as they were before the change');
      }
    }
  }

  /** One `dpkg --install` of the members' snapshot .debs, each staged and checked against its sha256 first. */
  private async reinstallPriors(
    members: readonly PackageMemberSnapshot[],
    dir: string,
    ctx: DriverContext,
  ): Promise<CommandResult> {
    await this.ensureStagingDir();
    const staged: string[] = [];
    try {
      for (const member of members) {
        if (!member.deb) continue;
        const path = join(this.stagingDir, member.deb.file);
        staged.push(path);
        await durableCopy(join(dir, member.deb.file), path);
        const { sha256 } = await sha256File(path);
        if (sha256 !== member.deb.sha256) {
          throw new FleetError(
            ErrorCode.revertFailed,
            `snapshot .deb of ${member.name} does not match its recorded sha256`,
            { expected: member.deb.sha256, actual: sha256 },
          );
        }
      }
      ctx.log.info({ packages: members.map((m) => m.name) }, 'reinstalling the prior .debs (one transaction)');
      return await this.commands.install(staged, ctx.runDir);
    } catch (err) {
      if (err instanceof FleetError) throw err;
      throw new FleetError(
        ErrorCode.revertFailed,
        `cannot stage the snapshot .debs: ${(err as Error).message}`,
        undefined,
        { cause: err },
      );
    } finally {
      await Promise.all(staged.map((path) => rm(path, { force: true })));
    }
  }

  /**
   * After a crash: deletes leftover .deb files from the staging dir and, when dpkg was interrupted
   * (a non-empty `updates/` journal, or `dpkg --audit` not clean), runs `dpkg --configure --pending`
   * once so dpkg's own state is consistent again. It does not choose versions: whether to keep or
   * revert the change is the executor's decision (restore). A dpkg that still fails is logged, not
   * thrown; restore then reports it.
   */
  async cleanup(_change: PackageChange, ctx: DriverContext): Promise<void> {
    await this.removeStaged('');
    const interrupted = await this.hasPendingJournal();
    const audit = await this.commands.audit(ctx.signal);
    if (!interrupted && audit === '') return;
    const lock = await this.commands.probeLock(this.lockTimeoutMs, ctx.signal);
    if (lock.held) {
      ctx.log.warn({ detail: lock.detail }, 'dpkg is busy; leaving its state to its holder');
      return;
    }
    ctx.log.warn({ interrupted, audit }, 'dpkg was interrupted; dpkg --configure --pending');
    const result = await this.commands.configurePending();
    if (result.exitCode !== 0) ctx.log.warn({ output: outputTail(result) }, 'dpkg --configure --pending failed');
  }

  /**
   * The set apply and verify act on: the one recorded by the snapshot when there is one (so a
   * source change installs exactly what was snapshotted), else resolved now.
   */
  private async targetsOf(
    change: PackageChange,
    snapshot: PackageSnapshot | undefined,
    code: ErrorCode,
    signal: AbortSignal,
  ): Promise<PackageMember[]> {
    if (snapshot !== undefined) {
      const read = readSnapshot(snapshot, singleTarget(change));
      if (!read.ok) throw new FleetError(code, read.reason);
      return read.snapshot.members.map((m) => ({ name: m.name, version: m.target }));
    }
    const resolution = await this.resolve(change, signal);
    if (resolution.kind !== 'set') throw new FleetError(code, resolution.reason);
    return resolution.members;
  }

  private checkPolicy(members: readonly PackageMember[]): void {
    for (const member of members) {
      if (!DebianPackageNameSchema.safeParse(member.name).success) {
        throw new FleetError(ErrorCode.policyDenied, `not a Debian package name: ${JSON.stringify(member.name)}`);
      }
      for (const version of [member.version, member.expectedPriorVersion]) {
        if (version === undefined || version === 'absent') continue;
        if (!DebianVersionSchema.safeParse(version).success) {
          throw new FleetError(ErrorCode.policyDenied, `not a Debian version: ${JSON.stringify(version)}`);
        }
      }
      if (this.allowed && !this.allowed.has(member.name)) {
        throw new FleetError(ErrorCode.policyDenied, `package ${member.name} is not in this agent's allowed packages`);
      }
    }
  }

  private async requireLock(code: ErrorCode, ctx: DriverContext): Promise<void> {
    const lock = await this.commands.probeLock(this.lockTimeoutMs, ctx.signal);
    if (lock.held) {
      throw new FleetError(code, `dpkg lock not free within ${this.lockTimeoutMs} ms`, { detail: lock.detail });
    }
  }

  private async statesOf(members: readonly { name: string }[], signal: AbortSignal): Promise<PackageState[]> {
    const states: PackageState[] = [];
    for (const member of members) states.push(await this.commands.query(member.name, signal));
    return states;
  }

  private async allAtPrior(members: readonly PackageMemberSnapshot[], signal: AbortSignal): Promise<boolean> {
    const states = await this.statesOf(members, signal);
    return (
      members.every((m, i) => isAtPrior(m, states[i] as PackageState)) && (await this.commands.audit(signal)) === ''
    );
  }

  /** Every member cleanly at its target and dpkg's audit clean, else `code` with what dpkg said. */
  private async requireAllInstalled(
    members: readonly PackageMember[],
    code: ErrorCode,
    result: CommandResult | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const states = await this.statesOf(members, signal);
    const audit = await this.commands.audit(signal);
    const wrong = members.filter((m, i) => !isExactly(states[i] as PackageState, m.version));
    if (wrong.length === 0 && audit === '') return;
    const what =
      wrong.length > 0
        ? `not cleanly at the new version: ${wrong.map((m) => `${m.name} is ${describeState(states[members.indexOf(m)])}, not ${m.version}`).join('; ')}`
        : `dpkg --audit is not clean: ${audit}`;
    const dpkg = result ? explainDpkgRun(result) : undefined;
    throw new FleetError(code, dpkg ? `${dpkg.summary}; ${what}\n${dpkg.output}` : what, {
      states,
      audit,
      ...(result ? { output: outputTail(result) } : {}),
    });
  }

  /** `apt-get download` of one exact target into the staging dir, verified by its control fields. */
  private async downloadTarget(member: PackageMember, ctx: DriverContext): Promise<string> {
    const prefix = `${member.name}_${member.version.replaceAll(':', '%3a')}_`;
    await this.removeStaged(prefix);
    const result = await this.commands.download(member.name, member.version, this.stagingDir, ctx.signal);
    throwIfInterrupted(result);
    const file = (await readdir(this.stagingDir)).find((f) => f.startsWith(prefix) && f.endsWith('.deb'));
    if (result.exitCode !== 0 || file === undefined) {
      throw new FleetError(
        ErrorCode.applyFailed,
        `cannot download ${member.name}=${member.version}: ${outputTail(result, 3)}`,
        {
          output: outputTail(result),
        },
      );
    }
    const path = join(this.stagingDir, file);
    const fields = await this.commands.debFields(path, ctx.signal);
    if (fields?.package !== member.name || fields.version !== member.version) {
      await rm(path, { force: true });
      throw new FleetError(ErrorCode.applyFailed, `downloaded ${file} is not ${member.name} ${member.version}`, {
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

/** The one-package change's name and version: what a format-1 snapshot record is read against. */
function singleTarget(change: PackageChange): { name: string; version: string } | undefined {
  return change.name !== undefined && change.version !== undefined
    ? { name: change.name, version: change.version }
    : undefined;
}

function isExactly(state: PackageState, version: string): boolean {
  return state.installed && state.clean && state.version === version;
}

function isAtPrior(member: PackageMemberSnapshot, state: PackageState): boolean {
  return member.prior.installed
    ? state.installed && state.clean && state.version === member.prior.version
    : !state.installed && state.configFiles === member.prior.configFiles;
}

function moveOf(member: PackageMember, state: PackageState | undefined): PackageMove {
  return { name: member.name, from: state?.installed ? state.version : null, to: member.version };
}

function describeSet(members: readonly PackageMember[]): string {
  return members.map((m) => `${m.name}=${m.version}`).join(' ');
}

function describeState(state: PackageState | undefined): string {
  if (state === undefined) return 'unknown';
  if (!state.installed) return state.configFiles ? 'removed (config files left)' : 'not installed';
  return state.clean ? state.version : `${state.version} "${state.status}"`;
}

function describePrior(member: PackageMemberSnapshot): string {
  if (member.prior.installed) return member.prior.version;
  return member.prior.configFiles ? 'removed (config files left)' : 'not installed';
}

/**
 * Why apt's plan for the set is refused, if it is: anything done to a package outside the set
 * (installed, removed, upgraded, configured), a member removed, or a pending member not installed
 * at its exact version.
 */
export function simulationRefusal(
  actions: readonly PlannedAction[],
  members: readonly PackageMember[],
  pending: readonly PackageMember[],
): string | undefined {
  const inSet = new Set(members.map((m) => m.name));
  const describe = (a: PlannedAction) => `${VERBS[a.action]} ${a.name}${a.version ? ` ${a.version}` : ''}`;
  // apt plans `Inst x` then `Conf x`: one package, one change, named once.
  const outside = actions.filter(
    (a) =>
      !inSet.has(a.name) && (a.action !== 'Conf' || !actions.some((b) => b.name === a.name && b.action !== 'Conf')),
  );
  if (outside.length > 0) {
    return `apt would also change packages outside the set: ${outside.map(describe).join(', ')}; add them to the set (packages) or fix their dependencies first`;
  }
  const removed = actions.filter((a) => a.action === 'Remv' || a.action === 'Purg');
  if (removed.length > 0) return `apt would remove members of the set: ${removed.map(describe).join(', ')}`;
  const missing = pending.filter(
    (m) => !actions.some((a) => a.action === 'Inst' && a.name === m.name && a.version === m.version),
  );
  if (missing.length > 0) return `apt does not plan to install ${describeSet(missing)}`;
  return undefined;
}

const VERBS: Readonly<Record<PlannedAction['action'], string>> = {
  Inst: 'install',
  Remv: 'remove',
  Purg: 'purge',
  Conf: 'configure',
};

/** Why the installed state is not what the operator expected before the change, if it is not. */
function priorDrift(member: PackageMember, state: PackageState): string | undefined {
  const expected = member.expectedPriorVersion;
  if (expected === undefined) return undefined;
  if (expected === 'absent') {
    return state.installed ? `expected ${member.name} absent, found ${state.version} installed` : undefined;
  }
  if (!state.installed) return `expected ${member.name} ${expected}, found it not installed`;
  if (state.version !== expected) return `expected ${member.name} ${expected}, found ${state.version}`;
  return undefined;
}
