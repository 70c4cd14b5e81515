import { compareDebianVersions, type PackageChange, type PackageMember, packageTargetsOf } from '@fleetpatch/shared';
import type { DpkgInventory } from '../inventory/dpkg-inventory.js';
import type { AptBinaryVersion } from './dpkg-commands.js';

/** What a package change means on this host: the packages it moves, all together. */
export type Resolution =
  | {
      kind: 'set';
      members: PackageMember[];
      /** The source package and version a source change named; null for an explicit set. */
      source: { name: string; version: string } | null;
    }
  /** A source change none of whose binaries is installed here: nothing to do. */
  | { kind: 'not_applicable'; reason: string }
  /** A source change apt cannot map to exact binary versions (say why, and what would help). */
  | { kind: 'unresolvable'; reason: string };

/** What resolution reads; both read-only (dpkg's database, apt's indexes). */
export interface ResolutionSources {
  inventory: Pick<DpkgInventory, 'read'>;
  aptVersionsOf(name: string, signal: AbortSignal): Promise<AptBinaryVersion[]>;
}

/**
 * Resolves a package change on this host. An explicit set (the one-package form included) is
 * itself. A source change `{source, version}` becomes every binary package installed here whose
 * source package is `source` (per dpkg's database), each at the version apt's indexes say was
 * built from `source` at `version` — which can differ from the source version (a binNMU's `+b1`);
 * when several were (two binNMUs), the highest. A binary apt knows no such version of fails the
 * whole resolution: moving the others without it would leave the source half-fixed.
 */
export async function resolvePackageChange(
  change: PackageChange,
  sources: ResolutionSources,
  signal: AbortSignal,
): Promise<Resolution> {
  const targets = packageTargetsOf(change);
  if (targets.kind === 'members') return { kind: 'set', members: targets.members, source: null };

  const read = await sources.inventory.read(signal);
  if (!read.available) return { kind: 'unresolvable', reason: `cannot read the installed packages: ${read.reason}` };
  const installed = read.packages.filter((p) => p.source === targets.source);
  if (installed.length === 0) {
    return {
      kind: 'not_applicable',
      reason: `no binary package of source ${targets.source} is installed on this host`,
    };
  }
  const members: PackageMember[] = [];
  const missing: string[] = [];
  for (const name of [...new Set(installed.map((p) => p.name))].sort()) {
    const built = (await sources.aptVersionsOf(name, signal)).filter(
      (v) => v.source === targets.source && v.sourceVersion === targets.version,
    );
    const best = built.sort((a, b) => compareDebianVersions(b.version, a.version))[0];
    if (best === undefined) missing.push(name);
    else members.push({ name, version: best.version });
  }
  if (missing.length > 0) {
    return {
      kind: 'unresolvable',
      reason:
        `apt knows no version of ${missing.join(', ')} built from ${targets.source} ${targets.version} ` +
        "(is the fixed version in this host's apt sources, and its indexes up to date? run apt-get update; fleetpatch's preflight does not)",
    };
  }
  return { kind: 'set', members, source: { name: targets.source, version: targets.version } };
}
