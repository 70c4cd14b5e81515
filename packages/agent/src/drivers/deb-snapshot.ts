import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, readdir, readFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  DebianPackageNameSchema,
  DebianVersionSchema,
  MAX_PACKAGE_SET_MEMBERS,
  Sha256Schema,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { z } from 'zod';
import { outputTail } from '../process/command-runner.js';
import { ConffilePathSchema, KeptLeftoverSchema } from './conffile-leftovers.js';
import { durableCopy } from './durable-copy.js';

export { durableCopy };

import type { DpkgCommands } from './dpkg-commands.js';

/** Where a verified prior .deb came from, in the order the driver tries them. */
export const DebSources = ['apt-cache', 'apt-download', 'dpkg-repack'] as const;
export type DebSource = (typeof DebSources)[number];

const PriorSchema = z.discriminatedUnion('installed', [
  z.object({ installed: z.literal(false), configFiles: z.boolean() }).strict(),
  z
    .object({
      installed: z.literal(true),
      version: DebianVersionSchema,
      architecture: z.string().regex(/^[a-z0-9-]+$/),
    })
    .strict(),
]);

const SnapshotDebSchema = z
  .object({
    /** A file name inside the order's snapshot dir, never a path. */
    file: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9+.~%_-]*\.deb$/),
    sha256: Sha256Schema,
    size: z.number().int().nonnegative(),
    source: z.enum(DebSources),
  })
  .strict();

/**
 * The snapshot record of one package of the set. `prior.installed: false` means the package was
 * not installed (then revert removes it; purges it unless it had left config files behind).
 * `deb: null` only for a change marked `revertable: false` or a member the change does not move.
 * `conffileLeftovers` are the `.dpkg-dist`/`.dpkg-old` files next to its conffiles before the
 * change, kept in the snapshot dir (conffile-leftovers.ts): the revert leaves them as they were.
 */
export const PackageMemberSnapshotSchema = z
  .object({
    name: DebianPackageNameSchema,
    /** The version the change installs (resolved on the host for a source change). */
    target: DebianVersionSchema,
    prior: PriorSchema,
    deb: SnapshotDebSchema.nullable(),
    conffiles: z.array(ConffilePathSchema).max(10_000).default([]),
    conffileLeftovers: z.array(KeptLeftoverSchema).max(20_000).default([]),
  })
  .strict();
export type PackageMemberSnapshot = z.infer<typeof PackageMemberSnapshotSchema>;

/**
 * The apt driver's snapshot record, stored by the journal and re-validated by `restore`: the set
 * as resolved on this host (what apply installs and verify checks) and how to take each member
 * back. Format 1 (one package, from agents before package sets) is still read: see `readSnapshot`.
 */
export const PackageSnapshotSchema = z
  .object({
    format: z.literal(2),
    /** The source package and version a source change named; null for an explicit set. */
    source: z.object({ name: DebianPackageNameSchema, version: DebianVersionSchema }).strict().nullable(),
    members: z.array(PackageMemberSnapshotSchema).min(1).max(MAX_PACKAGE_SET_MEMBERS),
    takenAt: z.string(),
  })
  .strict();
export type PackageSnapshot = z.infer<typeof PackageSnapshotSchema>;

/** The record older agents wrote: one package; its target is the change's `version`. */
const PackageSnapshotV1Schema = z
  .object({
    format: z.literal(1),
    name: DebianPackageNameSchema,
    prior: PriorSchema,
    deb: SnapshotDebSchema.nullable(),
    takenAt: z.string(),
  })
  .strict();

/**
 * A journaled snapshot record of either format as a format-2 set, or why it cannot be read.
 * `singleTarget` is the one-package change's version, for a format-1 record.
 */
export function readSnapshot(
  raw: unknown,
  singleTarget: { name: string; version: string } | undefined,
): { ok: true; snapshot: PackageSnapshot } | { ok: false; reason: string } {
  const current = PackageSnapshotSchema.safeParse(raw);
  if (current.success) return { ok: true, snapshot: current.data };
  const old = PackageSnapshotV1Schema.safeParse(raw);
  if (!old.success) return { ok: false, reason: `snapshot record is invalid: ${z.prettifyError(current.error)}` };
  if (singleTarget === undefined || singleTarget.name !== old.data.name) {
    return { ok: false, reason: `snapshot is of ${old.data.name}, not of this change` };
  }
  const { name, prior, deb, takenAt } = old.data;
  return {
    ok: true,
    snapshot: {
      format: 2,
      source: null,
      members: [{ name, target: singleTarget.version, prior, deb, conffiles: [], conffileLeftovers: [] }],
      takenAt,
    },
  };
}

export interface DebIdentity {
  name: string;
  version: string;
  architecture: string;
}

/** The file name apt gives a .deb: `name_version_arch.deb`, with the epoch colon as `%3a`. */
export function debFileName(id: DebIdentity): string {
  return `${id.name}_${id.version.replaceAll(':', '%3a')}_${id.architecture}.deb`;
}

export async function sha256File(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/**
 * Checks that `file` is the .deb of exactly `id`: its control fields name the same package,
 * version and architecture, and, when the installed package has a md5sums list, the .deb ships the
 * same one (so a same-version rebuild with other contents is refused).
 */
export async function verifyDeb(
  commands: DpkgCommands,
  file: string,
  id: DebIdentity,
  installedMd5sums: string | undefined,
  signal: AbortSignal,
): Promise<string | undefined> {
  const fields = await commands.debFields(file, signal);
  if (!fields) return 'dpkg-deb cannot read it';
  if (fields.package !== id.name || fields.version !== id.version || fields.architecture !== id.architecture) {
    return `it is ${fields.package} ${fields.version} (${fields.architecture}), not ${id.name} ${id.version} (${id.architecture})`;
  }
  if (installedMd5sums !== undefined) {
    const shipped = await commands.debMd5sums(file, signal);
    if (shipped !== undefined && normalizeMd5sums(shipped) !== normalizeMd5sums(installedMd5sums)) {
      return 'its md5sums differ from the installed package';
    }
  }
  return undefined;
}

function normalizeMd5sums(text: string): string {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .sort()
    .join('\n');
}

/** The installed package's md5sums list from dpkg's info dir, if dpkg keeps one. */
export async function readInstalledMd5sums(root: string, id: DebIdentity): Promise<string | undefined> {
  const info = join(root, 'var/lib/dpkg/info');
  for (const candidate of [`${id.name}:${id.architecture}.md5sums`, `${id.name}.md5sums`]) {
    try {
      return await readFile(join(info, candidate), 'utf8');
    } catch {
      // Not under this name.
    }
  }
  return undefined;
}

export interface CaptureContext {
  commands: DpkgCommands;
  root: string;
  /** Directory the command user can write, for apt-get download and dpkg-repack. */
  stagingDir: string;
  signal: AbortSignal;
  log: Logger;
}

export interface CapturedDeb {
  file: string;
  source: DebSource;
}

/**
 * Finds a .deb of exactly `id` and verifies it: apt's package cache first, then `apt-get download`,
 * then `dpkg-repack` when it is installed. Returns the verified file (in the cache or in the
 * staging dir) and every reason a source was passed over, for the `snapshot_failed` details.
 */
export async function findPriorDeb(
  ctx: CaptureContext,
  id: DebIdentity,
): Promise<{ found: CapturedDeb | undefined; attempts: string[] }> {
  const attempts: string[] = [];
  const md5sums = await readInstalledMd5sums(ctx.root, id);
  const name = debFileName(id);

  const archives = await ctx.commands.archivesDir(ctx.signal);
  if (archives) {
    const cached = join(archives, name);
    if (await exists(cached)) {
      const problem = await verifyDeb(ctx.commands, cached, id, md5sums, ctx.signal);
      if (!problem) return { found: { file: cached, source: 'apt-cache' }, attempts };
      attempts.push(`apt-cache ${cached}: ${problem}`);
    } else {
      attempts.push(`apt-cache: no ${name}`);
    }
  } else {
    attempts.push('apt-cache: apt-config does not name Dir::Cache::archives');
  }

  const staged = join(ctx.stagingDir, name);
  await rm(staged, { force: true });
  const download = await ctx.commands.download(id.name, id.version, ctx.stagingDir, ctx.signal);
  if (download.exitCode === 0) {
    const problem = await verifyDeb(ctx.commands, staged, id, md5sums, ctx.signal);
    if (!problem) return { found: { file: staged, source: 'apt-download' }, attempts };
    attempts.push(`apt-get download: ${problem}`);
    await rm(staged, { force: true });
  } else {
    attempts.push(`apt-get download: ${outputTail(download, 3)}`);
  }

  if (!(await ctx.commands.hasProgram('dpkg-repack'))) {
    attempts.push('dpkg-repack: not installed');
    return { found: undefined, attempts };
  }
  const before = new Set(await readdir(ctx.stagingDir));
  const repack = await ctx.commands.repack(id.name, ctx.stagingDir, ctx.signal);
  if (repack?.exitCode === 0) {
    const created = (await readdir(ctx.stagingDir)).filter((f) => f.endsWith('.deb') && !before.has(f));
    for (const file of created) {
      const path = join(ctx.stagingDir, file);
      // A repacked .deb is rebuilt from the files on disk, so its md5sums are not compared.
      const problem = await verifyDeb(ctx.commands, path, id, undefined, ctx.signal);
      if (!problem) return { found: { file: path, source: 'dpkg-repack' }, attempts };
      attempts.push(`dpkg-repack ${basename(path)}: ${problem}`);
      await rm(path, { force: true });
    }
    if (created.length === 0) attempts.push('dpkg-repack: produced no .deb');
  } else {
    attempts.push(`dpkg-repack: ${repack ? outputTail(repack, 2) : 'could not be started'}`);
  }
  return { found: undefined, attempts };
}

/** What a person can do when no prior .deb can be captured; said by preflight and by snapshot_failed. */
export const CAPTURE_FIXES =
  "install dpkg-repack on the host (apt-get install dpkg-repack), put the installed version's .deb in apt's cache " +
  '(Dir::Cache::archives), or set revertable: false in the patch to change it with no way back';

/**
 * Whether `findPriorDeb` would find a .deb of `id`, checked without writing anything: a verified
 * file in apt's cache, a version apt can download (`--print-uris` fetches nothing), or dpkg-repack
 * on the PATH. Preflight asks this so that an order it passes does not then fail its snapshot.
 */
export async function priorDebCapturable(
  ctx: Omit<CaptureContext, 'stagingDir'>,
  id: DebIdentity,
): Promise<{ ok: true; via: DebSource } | { ok: false; attempts: string[] }> {
  const attempts: string[] = [];
  const archives = await ctx.commands.archivesDir(ctx.signal);
  const cached = archives ? join(archives, debFileName(id)) : undefined;
  if (cached !== undefined && (await exists(cached))) {
    const md5sums = await readInstalledMd5sums(ctx.root, id);
    const problem = await verifyDeb(ctx.commands, cached, id, md5sums, ctx.signal);
    if (!problem) return { ok: true, via: 'apt-cache' };
    attempts.push(`apt-cache ${cached}: ${problem}`);
  } else {
    attempts.push(`apt-cache: no ${debFileName(id)}`);
  }
  if (await ctx.commands.downloadable(id.name, id.version, ctx.signal)) return { ok: true, via: 'apt-download' };
  attempts.push(`apt-get download: no configured source has ${id.name} ${id.version}`);
  if (await ctx.commands.hasProgram('dpkg-repack')) return { ok: true, via: 'dpkg-repack' };
  attempts.push('dpkg-repack: not installed');
  return { ok: false, attempts };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
