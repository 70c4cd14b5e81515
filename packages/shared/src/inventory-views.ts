import { z } from 'zod';
import { DpkgVersionSchema } from './debian-version.js';
import { InstalledPackageNameSchema } from './inventory.js';

/*
 * What the coordinator's package inventory API answers (GET /v1/packages, /v1/hosts/:id/packages,
 * /v1/compliance) and the queries it takes; strict like api-views.ts.
 */

const IsoTimeSchema = z.iso.datetime();
const CountSchema = z.number().int().min(0);

// ---- GET /v1/packages?name=…|source=… ----------------------------------------------------------

export const PackagesQuerySchema = z
  .object({
    /** A binary package name: every version of it installed anywhere. */
    name: InstalledPackageNameSchema.optional(),
    /** A source package name: every binary built from it, at every version installed anywhere. */
    source: InstalledPackageNameSchema.optional(),
  })
  .strict()
  .refine((q) => (q.name === undefined) !== (q.source === undefined), {
    message: 'give exactly one of name or source',
    path: ['name'],
  });
export type PackagesQuery = z.infer<typeof PackagesQuerySchema>;

/** One installed package as the API shows it (shared's `InstalledPackage`, fields unchecked on the way out). */
export const PackageViewSchema = z
  .object({
    name: z.string(),
    version: z.string(),
    architecture: z.string(),
    source: z.string(),
    sourceVersion: z.string(),
    status: z.string(),
  })
  .strict();

/** One installed version of one binary package (for one architecture and dpkg status), and on how many hosts. */
export const PackageVersionCountSchema = PackageViewSchema.extend({ hosts: CountSchema }).strict();
export type PackageVersionCount = z.infer<typeof PackageVersionCountSchema>;

export const PackageVersionsSchema = z
  .object({
    query: z.object({ name: z.string().optional(), source: z.string().optional() }).strict(),
    /** Sorted by name, architecture, then version in dpkg's order. Only what some host has installed. */
    versions: z.array(PackageVersionCountSchema),
    /** Hosts whose inventory the counts cover: those that ever reported packages. */
    hostsWithInventory: CountSchema,
  })
  .strict();
export type PackageVersions = z.infer<typeof PackageVersionsSchema>;

// ---- GET /v1/hosts/:id/packages ----------------------------------------------------------------

/**
 * What the coordinator holds of one host's packages. `reported`: an inventory; `unavailable`: the
 * agent said it has none to give (`reason`); `none`: nothing received yet (an agent of protocol 2 or
 * older never sends one). `current` is true only while the agent is online and has confirmed, on
 * this connection, that the copy is what it has now.
 */
export const HostInventoryStatusSchema = z
  .object({
    state: z.enum(['reported', 'unavailable', 'none']),
    current: z.boolean(),
    reason: z.string().nullable(),
    /** When the content last changed. */
    reportedAt: IsoTimeSchema.nullable(),
    /** When the agent last confirmed it (a summary, a diff, a full inventory). */
    confirmedAt: IsoTimeSchema.nullable(),
    packageCount: CountSchema,
  })
  .strict();
export type HostInventoryStatus = z.infer<typeof HostInventoryStatusSchema>;

export const HostPackagesSchema = z
  .object({
    hostId: z.string(),
    online: z.boolean(),
    inventory: HostInventoryStatusSchema,
    /** Sorted by name, then architecture. */
    packages: z.array(PackageViewSchema),
  })
  .strict();
export type HostPackages = z.infer<typeof HostPackagesSchema>;

// ---- GET /v1/compliance?source=…&fixed=… ------------------------------------------------------

/**
 * - `fixed`: every installed binary of the source is at a source version ≥ fixed, fully installed;
 * - `exposed`: at least one is below fixed (whatever the others);
 * - `not_installed`: no binary of the source is installed;
 * - `unknown`: the coordinator cannot say now — no inventory yet, the agent offline or without
 *   dpkg, its inventory being refreshed, or a binary at or above fixed but not fully installed.
 *   `reason` says which, `lastKnown` what the last inventory said.
 */
export const COMPLIANCE_STATUSES = ['fixed', 'exposed', 'not_installed', 'unknown'] as const;
export const ComplianceStatusSchema = z.enum(COMPLIANCE_STATUSES);
export type ComplianceStatus = z.infer<typeof ComplianceStatusSchema>;

export const ComplianceQuerySchema = z
  .object({
    /** The source package an advisory names, e.g. `openssl`. */
    source: InstalledPackageNameSchema,
    /** The source version that fixes it, e.g. `3.0.15-1~deb12u1`. */
    fixed: DpkgVersionSchema,
    /** Only list hosts with this status (the counts still cover every host). */
    status: ComplianceStatusSchema.optional(),
  })
  .strict();
export type ComplianceQuery = z.infer<typeof ComplianceQuerySchema>;

/** One installed binary of the source on one host. */
export const InstalledBinarySchema = z
  .object({
    name: z.string(),
    architecture: z.string(),
    version: z.string(),
    sourceVersion: z.string(),
    status: z.string(),
  })
  .strict();
export type InstalledBinary = z.infer<typeof InstalledBinarySchema>;

export const HostComplianceSchema = z
  .object({
    hostId: z.string(),
    status: ComplianceStatusSchema,
    online: z.boolean(),
    /** Why the status is `unknown` (null otherwise). */
    reason: z.string().nullable(),
    /** For `unknown` with an inventory: what that inventory says. */
    lastKnown: z.enum(['fixed', 'exposed', 'not_installed']).nullable(),
    /** When the inventory the status rests on was last confirmed by the agent; null: none. */
    inventoryAt: IsoTimeSchema.nullable(),
    ageSeconds: z.number().int().min(0).nullable(),
    /** The binaries of the source the inventory lists (for `exposed`: those below fixed come first). */
    installed: z.array(InstalledBinarySchema),
  })
  .strict();
export type HostCompliance = z.infer<typeof HostComplianceSchema>;

export const ComplianceCountsSchema = z
  .object({ fixed: CountSchema, exposed: CountSchema, not_installed: CountSchema, unknown: CountSchema })
  .strict();
export type ComplianceCounts = z.infer<typeof ComplianceCountsSchema>;

export const ComplianceReportSchema = z
  .object({
    source: z.string(),
    fixed: z.string(),
    evaluatedAt: IsoTimeSchema,
    /** Over every registered host, whatever `status` filters. */
    counts: ComplianceCountsSchema,
    /** Sorted: exposed first, then unknown, fixed, not_installed; by host id within each. */
    hosts: z.array(HostComplianceSchema),
  })
  .strict();
export type ComplianceReport = z.infer<typeof ComplianceReportSchema>;

/** Where the compliance view of `source` at `fixed` is: what a rollout targeted at exposed hosts links to. */
export function complianceUrl(source: string, fixed: string): string {
  return `/v1/compliance?source=${encodeURIComponent(source)}&fixed=${encodeURIComponent(fixed)}`;
}
