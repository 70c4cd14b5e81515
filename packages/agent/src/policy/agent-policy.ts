import {
  type Change,
  describePrecondition,
  ErrorCode,
  type FileChange,
  type HealthCheck,
  isNormalizedAbsolutePath,
  type OrderApply,
  type PackageChange,
  type PackageMember,
  type Precondition,
  packageTargetsOf,
  parseMode,
} from '@fleetpatch/shared';
import type { Resolution } from '../drivers/package-set.js';
import { type AllowedCommand, isCommandAllowed } from './allowed-commands.js';
import { AllowedDestinations, DEFAULT_ALLOWED_DESTINATIONS, type ResolveAll } from './allowed-destinations.js';
import { hostPathRefusal } from './host-paths.js';
import { sensitiveRuleFor } from './sensitive-paths.js';

/** What the host's owner allows, from the agent's own configuration; nothing here comes from an order. */
export interface AgentPolicyRules {
  file: {
    /** File changes (and, unless `health.allowedFileRoots` says otherwise, file checks) stay under these. */
    allowedRoots: readonly string[];
    /** Paths that hand out root (see sensitive-paths.ts) allowed anyway, each listed exactly. */
    allowedSensitivePaths: readonly string[];
    /** When set, the owner a file change names must be one of these (names or numeric ids). */
    allowedOwners?: readonly string[] | undefined;
    /** When set, the group a file change names must be one of these (names or numeric ids). */
    allowedGroups?: readonly string[] | undefined;
    /** setuid, setgid and sticky modes are refused unless this is true (and the patch says so too). */
    allowSpecialModes: boolean;
  };
  health: {
    allowedCommands: readonly AllowedCommand[];
    allowedDestinations: AllowedDestinations;
    /** Where `file` checks may look; default the file roots. */
    allowedFileRoots: readonly string[];
  };
  services: {
    /**
     * The systemd units a patch may restart, each named exactly; default none. A restart is a short
     * outage of that service (of sshd: of every new login), so only what the owner listed runs.
     */
    allowedUnits: readonly string[];
  };
  /** Absent when package changes are not enabled. */
  apt?:
    | {
        allowedPackages: readonly string[];
        allowedSourcePackages: readonly string[];
        allowDowngrade: boolean;
      }
    | undefined;
}

/** What the package rules need to know about the host (the apt driver answers, read-only). */
export interface PackageFacts {
  installedVersion(name: string, signal: AbortSignal): Promise<string | undefined>;
  /** The source package `name=version` is built from, per the apt indexes; undefined when apt does not know it. */
  sourcePackageOf(name: string, version: string, signal: AbortSignal): Promise<string | undefined>;
  /** `dpkg --compare-versions a lt b`. */
  isLower(a: string, b: string, signal: AbortSignal): Promise<boolean>;
  /** The set a package change means on this host (a source change resolved to its installed binaries). */
  resolve(change: PackageChange, signal: AbortSignal): Promise<Resolution>;
}

export type PolicyVerdict = { ok: true } | { ok: false; code: typeof ErrorCode.policyDenied; reason: string };

const OK: PolicyVerdict = { ok: true };

function denied(reason: string): PolicyVerdict {
  return { ok: false, code: ErrorCode.policyDenied, reason };
}

export interface AgentPolicyConfig {
  file: {
    allowedRoots: readonly string[];
    allowedSensitivePaths?: readonly string[] | undefined;
    allowedOwners?: readonly string[] | undefined;
    allowedGroups?: readonly string[] | undefined;
    allowSpecialModes?: boolean | undefined;
  };
  health: {
    allowedCommands?: readonly AllowedCommand[] | undefined;
    allowedDestinations?: readonly string[] | undefined;
    allowedFileRoots?: readonly string[] | undefined;
  };
  services?: { allowedUnits?: readonly string[] | undefined } | undefined;
  apt?:
    | {
        allowedPackages?: readonly string[] | undefined;
        allowedSourcePackages?: readonly string[] | undefined;
        allowDowngrade?: boolean | undefined;
      }
    | undefined;
}

/** The agent's defaults: its standard roots, no sensitive path, no special mode, loopback checks, no command. */
export const DEFAULT_POLICY_CONFIG: AgentPolicyConfig = {
  file: { allowedRoots: ['/etc', '/opt', '/usr/local/etc'] },
  health: {},
};

/**
 * The agent's local policy, checked before an order is journaled and before any of its health
 * checks runs (the baseline included): a stolen coordinator can send anything, and whatever it
 * sends is judged here against what the host's owner wrote in the agent's configuration.
 * One refusal names the rule that refused, so the operator knows which key to change.
 */
export class AgentPolicy {
  readonly rules: AgentPolicyRules;
  private readonly packageFacts: PackageFacts | undefined;
  private readonly rootDir: string | undefined;
  private readonly ownDirectories: readonly string[];

  constructor(
    config: AgentPolicyConfig = DEFAULT_POLICY_CONFIG,
    options: {
      resolveAll?: ResolveAll;
      packageFacts?: PackageFacts;
      /** The directory standing for `/`: when given, file paths are also walked on the host (host-paths.ts). */
      rootDir?: string;
      /**
       * The agent's own directories (its journal and data, apt's staging): refused to every file change
       * and check, whatever the configuration allows — a patch must not rewrite the journal that
       * decides what a restore puts back, nor the .debs dpkg is handed.
       */
      ownDirectories?: readonly string[];
    } = {},
  ) {
    this.packageFacts = options.packageFacts;
    this.rootDir = options.rootDir;
    this.ownDirectories = options.ownDirectories ?? [];
    this.rules = {
      file: {
        allowedRoots: config.file.allowedRoots,
        allowedSensitivePaths: config.file.allowedSensitivePaths ?? [],
        allowedOwners: config.file.allowedOwners,
        allowedGroups: config.file.allowedGroups,
        allowSpecialModes: config.file.allowSpecialModes ?? false,
      },
      health: {
        allowedCommands: config.health.allowedCommands ?? [],
        allowedDestinations: new AllowedDestinations(
          config.health.allowedDestinations ?? DEFAULT_ALLOWED_DESTINATIONS,
          options.resolveAll,
        ),
        allowedFileRoots: config.health.allowedFileRoots ?? config.file.allowedRoots,
      },
      services: { allowedUnits: config.services?.allowedUnits ?? [] },
      apt:
        config.apt === undefined
          ? undefined
          : {
              allowedPackages: config.apt.allowedPackages ?? [],
              allowedSourcePackages: config.apt.allowedSourcePackages ?? [],
              allowDowngrade: config.apt.allowDowngrade ?? false,
            },
    };
  }

  /** The change and every health check of `order`; the first rule broken refuses the whole order. */
  async checkOrder(
    order: Pick<OrderApply, 'change'> & { health?: { checks: readonly HealthCheck[] } | undefined },
    signal: AbortSignal = new AbortController().signal,
  ): Promise<PolicyVerdict> {
    const change = await this.checkChange(order.change, signal);
    if (!change.ok) return change;
    for (const check of order.health?.checks ?? []) {
      const verdict = await this.checkHealthCheck(check);
      if (!verdict.ok) return verdict;
    }
    return OK;
  }

  async checkChange(change: Change, signal: AbortSignal): Promise<PolicyVerdict> {
    const restarts = this.checkRestarts(change);
    if (!restarts.ok) return restarts;
    for (const precondition of change.requires ?? []) {
      const verdict = await this.checkPrecondition(precondition);
      if (!verdict.ok) return verdict;
    }
    switch (change.kind) {
      case 'file': {
        const verdict = this.checkFileChange(change);
        return verdict.ok ? this.checkOnHost(change.path, 'write') : verdict;
      }
      case 'package':
        return this.checkPackageChange(change, signal);
    }
  }

  /** Every unit the change would restart, after apply or after revert, must be listed in services.allowedUnits. */
  checkRestarts(change: Change): PolicyVerdict {
    const units = [...(change.restart?.afterApply ?? []), ...(change.restart?.afterRevert ?? [])];
    const refused = units.filter((unit) => !this.rules.services.allowedUnits.includes(unit));
    if (refused.length === 0) return OK;
    return denied(
      `restarting ${[...new Set(refused)].join(', ')} is not allowed on this agent (services.allowedUnits: ${this.rules.services.allowedUnits.join(', ') || 'none'})`,
    );
  }

  checkFileChange(change: FileChange): PolicyVerdict {
    const { file } = this.rules;
    const path = this.checkPath(change.path, file.allowedRoots, 'file.allowedRoots');
    if (!path.ok) return path;
    if ((parseMode(change.mode) & 0o7000) !== 0 && !file.allowSpecialModes) {
      return denied(
        `mode ${change.mode} of ${change.path} has setuid, setgid or sticky bits, which this agent refuses (file.allowSpecialModes)`,
      );
    }
    if (file.allowedOwners !== undefined && !file.allowedOwners.includes(change.owner)) {
      return denied(`owner ${change.owner} of ${change.path} is not in file.allowedOwners`);
    }
    if (file.allowedGroups !== undefined && !file.allowedGroups.includes(change.group)) {
      return denied(`group ${change.group} of ${change.path} is not in file.allowedGroups`);
    }
    return OK;
  }

  /**
   * Every package of the set must be allowed (by name, or by its source package) and none may go
   * down unless downgrades are allowed. A source change is judged on the binaries it resolves to on
   * this host; one that resolves to none (not applicable, or unknown to apt) moves nothing, so only
   * its source name is judged, and the preflight then says why nothing happens.
   */
  async checkPackageChange(change: PackageChange, signal: AbortSignal): Promise<PolicyVerdict> {
    const { apt } = this.rules;
    if (apt === undefined) return denied('package changes are not enabled on this agent (no apt section)');
    const targets = packageTargetsOf(change);
    let members: readonly PackageMember[];
    if (targets.kind === 'members') members = targets.members;
    else {
      const resolution = await this.packageFacts?.resolve(change, signal);
      if (resolution?.kind === 'set') members = resolution.members;
      else if (apt.allowedSourcePackages.includes(targets.source) || resolution !== undefined) members = [];
      else return denied(`source package ${targets.source} is not in apt.allowedSourcePackages`);
    }
    for (const member of members) {
      const verdict = await this.checkPackageMember(member, signal);
      if (!verdict.ok) return verdict;
    }
    return OK;
  }

  private async checkPackageMember(member: PackageMember, signal: AbortSignal): Promise<PolicyVerdict> {
    const apt = this.rules.apt;
    if (apt === undefined) return denied('package changes are not enabled on this agent (no apt section)');
    const byName = apt.allowedPackages.includes(member.name);
    if (!byName) {
      const source =
        apt.allowedSourcePackages.length > 0
          ? await this.packageFacts?.sourcePackageOf(member.name, member.version, signal)
          : undefined;
      if (source === undefined || !apt.allowedSourcePackages.includes(source)) {
        return denied(
          `package ${member.name} is not in apt.allowedPackages` +
            (apt.allowedSourcePackages.length > 0
              ? ` and its source package (${source ?? 'unknown'}) is not in apt.allowedSourcePackages`
              : ''),
        );
      }
    }
    if (!apt.allowDowngrade && this.packageFacts !== undefined) {
      const installed = await this.packageFacts.installedVersion(member.name, signal);
      if (installed !== undefined && (await this.packageFacts.isLower(member.version, installed, signal))) {
        return denied(
          `${member.name} ${member.version} is lower than the installed ${installed}: downgrades are refused (apt.allowDowngrade)`,
        );
      }
    }
    return OK;
  }

  /**
   * A host precondition probes no more than a health check may: a file one looks only where a file
   * check may (`health.allowedFileRoots`, no sensitive path, no symlinked parent), a command one runs
   * only an argv `health.allowedCommands` allows exactly. A package one reads the dpkg database, which
   * the agent reports anyway (its inventory).
   */
  async checkPrecondition(precondition: Precondition): Promise<PolicyVerdict> {
    const refused = (verdict: PolicyVerdict): PolicyVerdict =>
      verdict.ok ? verdict : denied(`precondition ${describePrecondition(precondition)}: ${verdict.reason}`);
    if (precondition.file !== undefined) {
      const verdict = this.checkPath(precondition.file, this.rules.health.allowedFileRoots, 'health.allowedFileRoots');
      return refused(verdict.ok ? await this.checkOnHost(precondition.file, 'read') : verdict);
    }
    if (
      precondition.command !== undefined &&
      !isCommandAllowed(precondition.command, this.rules.health.allowedCommands)
    ) {
      return refused(
        denied(
          `${JSON.stringify(precondition.command)} is not allowed on this agent: health.allowedCommands lists the full argvs a command check or precondition may run`,
        ),
      );
    }
    return OK;
  }

  async checkHealthCheck(check: HealthCheck): Promise<PolicyVerdict> {
    const { health } = this.rules;
    switch (check.kind) {
      case 'command':
        return isCommandAllowed(check.argv, health.allowedCommands)
          ? OK
          : denied(
              `command health check ${JSON.stringify(check.argv)} is not allowed on this agent: ` +
                'health.allowedCommands lists full argvs (a program path alone allows it only without arguments)',
            );
      case 'http': {
        const url = new URL(check.url);
        const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
        return this.checkDestination(url.hostname, port, 'http');
      }
      case 'tcp':
        return this.checkDestination(check.host, check.port, 'tcp');
      case 'file': {
        const verdict = this.checkPath(check.path, health.allowedFileRoots, 'health.allowedFileRoots');
        return verdict.ok ? this.checkOnHost(check.path, 'read') : verdict;
      }
      case 'systemd':
      case 'process':
      case 'metric':
        return OK;
    }
  }

  /** Name first (pure), then, for a name, where it resolves now: every connection is checked again at use. */
  private async checkDestination(host: string, port: number, kind: string): Promise<PolicyVerdict> {
    const destinations = this.rules.health.allowedDestinations;
    const refusal = destinations.refusalFor(host, port);
    if (refusal !== undefined) return denied(`${kind} health check: ${refusal} (health.allowedDestinations)`);
    try {
      await destinations.addressFor(host, port);
    } catch (err) {
      return denied(`${kind} health check: ${(err as Error).message} (health.allowedDestinations)`);
    }
    return OK;
  }

  /** Where `path` leads on this host (no symlinked parent, …), when the policy knows the host's root. */
  private async checkOnHost(path: string, use: 'write' | 'read'): Promise<PolicyVerdict> {
    if (this.rootDir === undefined) return OK;
    const refusal = await hostPathRefusal(this.rootDir, path, use);
    return refusal === undefined ? OK : denied(refusal);
  }

  /** Absolute, normalized, under a root, and not a path that hands out root unless listed exactly. */
  checkPath(path: string, roots: readonly string[], rootsKey: string): PolicyVerdict {
    if (!isNormalizedAbsolutePath(path)) return denied(`path ${JSON.stringify(path)} is not absolute and normalized`);
    if (!roots.some((root) => root === '/' || path === root || path.startsWith(`${root}/`))) {
      return denied(`path ${path} is outside the allowed roots (${roots.join(', ') || 'none'}; ${rootsKey})`);
    }
    const own = this.ownDirectories.find((dir) => path === dir || path.startsWith(`${dir}/`));
    if (own !== undefined) return denied(`path ${path} is under ${own}, the agent's own data: no patch may change it`);
    const sensitive = sensitiveRuleFor(path);
    if (sensitive !== undefined && !this.rules.file.allowedSensitivePaths.includes(path)) {
      return denied(
        `path ${path} is under ${sensitive}, which can hand out root: list it exactly in file.allowedSensitivePaths to allow it`,
      );
    }
    return OK;
  }
}
