import { createHash } from 'node:crypto';
import { z } from 'zod';
import { DpkgVersionSchema } from './debian-version.js';
import { WIRE_LIMITS } from './wire-limits.js';

/**
 * A host's package inventory: what dpkg says is installed, reported by its agent (protocol 3) and
 * stored by the coordinator for the package and compliance views.
 *
 * How an agent keeps the coordinator's copy current, on one connection:
 * 1. after `welcome` it sends `inventory.summary` (the digest and count of what it has, at `seq`);
 * 2. the coordinator compares the digest with the one it stored: equal, the copy is current;
 *    different (or none stored), it answers `inventory.request`;
 * 3. the agent then sends `inventory.full`, in parts of at most `inventoryPackagesPerFrame`;
 * 4. after every change it notices (its own orders, any dpkg run: it watches the status file) it
 *    sends `inventory.diff` at the next `seq`, or a full one when the change is too big for a frame.
 * A diff whose `seq` does not follow the last one the coordinator applied, or after which the stored
 * copy no longer has the diff's digest, is not applied: the coordinator asks for a full inventory.
 * An agent with no dpkg database sends `inventory.unavailable` instead.
 */

/** dpkg's package names as it stores them: lower case, starting with a letter or digit (`_` is deprecated, not refused). */
export const InstalledPackageNameSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9][a-z0-9+._-]*$/, 'must be a Debian package name (lower-case letters, digits, + . - _)');

/** dpkg architectures: `amd64`, `arm64`, `all`, `musl-linux-amd64`, … */
export const ArchitectureSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'must be a dpkg architecture');

/**
 * `${db:Status-Abbrev}` without its trailing blank: the wanted state (u, i, h, r, p), the package
 * state and `R` when dpkg flags it reinstall-required. Only packages with files on the host are
 * reported: not `n` (not installed) nor `c` (only config files left).
 */
export const PackageStatusSchema = z
  .string()
  .regex(/^[uihrp][HUFWti]R?$/, 'must be a dpkg status abbreviation of an installed package, e.g. "ii"');

export const InstalledPackageSchema = z.object({
  name: InstalledPackageNameSchema,
  version: DpkgVersionSchema,
  architecture: ArchitectureSchema,
  /** The source package it was built from (`${source:Package}`: its own name when it says none). */
  source: InstalledPackageNameSchema,
  /** The source version (`${source:Version}`): a binNMU's binary `1.0-1+b1` comes from source `1.0-1`. */
  sourceVersion: DpkgVersionSchema,
  status: PackageStatusSchema,
});
export type InstalledPackage = z.infer<typeof InstalledPackageSchema>;

/** What names one installed package in a host's inventory: dpkg holds one of each per architecture. */
export const PackageKeySchema = z.object({ name: InstalledPackageNameSchema, architecture: ArchitectureSchema });
export type PackageKey = z.infer<typeof PackageKeySchema>;

export function packageKey(p: PackageKey): string {
  return `${p.name}:${p.architecture}`;
}

/** A dpkg state reads "settled" when the package is fully installed: `i` and no reinstall flag. */
export function isSettled(status: string): boolean {
  return status.charAt(1) === 'i' && status.charAt(2) !== 'R';
}

const STATE_WORDS: Readonly<Record<string, string>> = {
  H: 'half-installed',
  U: 'unpacked but not configured',
  F: 'half-configured',
  W: 'awaiting triggers',
  t: 'with triggers pending',
  i: 'installed',
};

/** "half-configured (iF)", "installed, reinstall required (iiR)": a status in words, for people. */
export function describePackageStatus(status: string): string {
  const words = STATE_WORDS[status.charAt(1)] ?? 'in an unknown state';
  return `${words}${status.charAt(2) === 'R' ? ', reinstall required' : ''} (${status})`;
}

/**
 * sha256 over the inventory in a canonical form (sorted by name and architecture, one tab-separated
 * line each): equal digests, equal inventories. The agent sends it, the coordinator recomputes it from
 * what it stored, so a lost or misapplied diff shows.
 */
export function inventoryDigest(packages: readonly InstalledPackage[]): string {
  const lines = packages.map(
    (p) => `${p.name}\t${p.architecture}\t${p.version}\t${p.source}\t${p.sourceVersion}\t${p.status}\n`,
  );
  lines.sort();
  const hash = createHash('sha256');
  for (const line of lines) hash.update(line);
  return hash.digest('hex');
}

const SeqSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const DigestSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex sha256');
const CountSchema = z.number().int().min(0).max(WIRE_LIMITS.inventoryMaxPackages);

/** Agent → coordinator, protocol 3: the digest of what the agent has now, sent after every welcome. */
export const InventorySummarySchema = z.object({
  type: z.literal('inventory.summary'),
  seq: SeqSchema,
  digest: DigestSchema,
  count: CountSchema,
});

/**
 * Agent → coordinator, protocol 3: the whole inventory, in `parts` frames numbered from 0, all with
 * the same `seq`, `digest` and `count`. The coordinator replaces its copy once the last part is in.
 */
export const InventoryFullSchema = z
  .object({
    type: z.literal('inventory.full'),
    seq: SeqSchema,
    part: z
      .number()
      .int()
      .min(0)
      .max(WIRE_LIMITS.inventoryParts - 1),
    parts: z.number().int().min(1).max(WIRE_LIMITS.inventoryParts),
    digest: DigestSchema,
    count: CountSchema,
    packages: z.array(InstalledPackageSchema).max(WIRE_LIMITS.inventoryPackagesPerFrame),
  })
  .refine((m) => m.part < m.parts, { message: 'part must be below parts', path: ['part'] });

/** Agent → coordinator, protocol 3: what changed since `seq - 1`, and the digest of the result. */
export const InventoryDiffSchema = z.object({
  type: z.literal('inventory.diff'),
  seq: SeqSchema,
  digest: DigestSchema,
  count: CountSchema,
  /** Installed, or at another version or status, since the last report. */
  changed: z.array(InstalledPackageSchema).max(WIRE_LIMITS.inventoryPackagesPerFrame),
  /** No longer installed. */
  removed: z.array(PackageKeySchema).max(WIRE_LIMITS.inventoryPackagesPerFrame),
});

/** Agent → coordinator, protocol 3: this agent reports no packages (no dpkg database, or it cannot be read). */
export const InventoryUnavailableSchema = z.object({
  type: z.literal('inventory.unavailable'),
  seq: SeqSchema,
  reason: z.string().max(500),
});

/** Coordinator → agent, protocol 3: send the whole inventory (`inventory.full`) at the next `seq`. */
export const InventoryRequestSchema = z.object({
  type: z.literal('inventory.request'),
  reason: z.string().max(200).optional(),
});

export type InventorySummary = z.infer<typeof InventorySummarySchema>;
export type InventoryFull = z.infer<typeof InventoryFullSchema>;
export type InventoryDiff = z.infer<typeof InventoryDiffSchema>;
export type InventoryUnavailable = z.infer<typeof InventoryUnavailableSchema>;
export type InventoryRequest = z.infer<typeof InventoryRequestSchema>;
/** Every inventory message an agent sends. */
export type InventoryReport = InventorySummary | InventoryFull | InventoryDiff | InventoryUnavailable;
