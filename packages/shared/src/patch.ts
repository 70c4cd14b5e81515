import { z } from 'zod';
import { ChangeRecordSchema } from './change-record.js';
import { HealthPolicySchema } from './health-check.js';
import { PreconditionsSchema } from './preconditions.js';
import { ServiceRestartsSchema } from './service-restarts.js';
import { AbsolutePathSchema, DebianPackageNameSchema, DebianVersionSchema, Sha256Schema } from './validation.js';

/** Upper bound of inline file content, in bytes once decoded. */
export const MAX_FILE_CONTENT_BYTES = 1024 * 1024;

const OwnerSchema = z
  .string()
  .regex(/^(?:[a-z_][a-z0-9_-]{0,31}\$?|\d{1,10})$/, 'must be a user/group name or a numeric id');

/**
 * One managed file. `content` is the whole new file; `expectedPriorSha256` guards against drift:
 * if the host's current file is not what the operator expected, the order is refused.
 */
export const FileChangeSchema = z
  .object({
    kind: z.literal('file'),
    path: AbsolutePathSchema,
    content: z.string(),
    encoding: z.enum(['utf8', 'base64']).default('utf8'),
    mode: z.string().regex(/^0?[0-7]{3,4}$/, 'must be an octal mode such as "0644"'),
    owner: OwnerSchema,
    group: OwnerSchema,
    expectedPriorSha256: z.union([Sha256Schema, z.literal('absent')]).optional(),
    /**
     * Absent means false: a mode with setuid, setgid or sticky bits is refused unless the patch says
     * so out loud — the agent runs as root, so a stray "4755" would be a root shell for anyone.
     */
    allowSpecialModes: z.boolean().optional(),
    /** systemd units to restart after the file is written and after it is taken back. */
    restart: ServiceRestartsSchema.optional(),
    /** What must be true on the host before it changes (preconditions.ts); protocol 5. */
    requires: PreconditionsSchema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.encoding === 'base64' && !isCanonicalBase64(c.content)) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be canonical base64 (A-Z a-z 0-9 + /, padded with =, no whitespace)',
        path: ['content'],
      });
    } else if (fileContentSize(c) > MAX_FILE_CONTENT_BYTES) {
      ctx.addIssue({
        code: 'custom',
        message: `content must be at most ${MAX_FILE_CONTENT_BYTES} bytes`,
        path: ['content'],
      });
    }
    if ((parseMode(c.mode) & SPECIAL_MODE_BITS) !== 0 && c.allowSpecialModes !== true) {
      ctx.addIssue({
        code: 'custom',
        message: 'has setuid, setgid or sticky bits: set allowSpecialModes: true if that is meant',
        path: ['mode'],
      });
    }
  });
export type FileChange = z.infer<typeof FileChangeSchema>;

/** One member of a package set: a binary package at an exact version. */
export const PackageMemberSchema = z
  .object({
    name: DebianPackageNameSchema,
    version: DebianVersionSchema,
    expectedPriorVersion: z.union([DebianVersionSchema, z.literal('absent')]).optional(),
  })
  .strict();
export type PackageMember = z.infer<typeof PackageMemberSchema>;

/** The most packages one change may name; a source package builds a few dozen binaries at most. */
export const MAX_PACKAGE_SET_MEMBERS = 100;

/**
 * apt packages pinned to exact versions, changed together in one dpkg transaction, snapshotted,
 * verified and reverted as a set (all at the old versions or all at the new, never a mix). Named
 * one of three ways:
 * - `name` + `version` (+ `expectedPriorVersion`): one package, the set of one;
 * - `packages: [{name, version, expectedPriorVersion?}]`: an explicit set;
 * - `source` + `version`: the way a security advisory names a fix. Each host changes every binary
 *   package built from `source` that is installed on it, to the version apt knows was built from
 *   that source version (a binNMU's `+b1` included), and nothing else; a host with none of them
 *   answers `not_applicable`.
 */
export const PackageChangeSchema = z
  .object({
    kind: z.literal('package'),
    manager: z.literal('apt'),
    name: DebianPackageNameSchema.optional(),
    version: DebianVersionSchema.optional(),
    expectedPriorVersion: z.union([DebianVersionSchema, z.literal('absent')]).optional(),
    packages: z.array(PackageMemberSchema).min(1).max(MAX_PACKAGE_SET_MEMBERS).optional(),
    /** A source package name (same alphabet as binary package names). */
    source: DebianPackageNameSchema.optional(),
    /** Set false only to allow a change whose prior .deb cannot be captured (then it cannot revert). */
    revertable: z.boolean().default(true),
    /**
     * systemd units to restart after the package is in and after it is taken back: a library fix
     * does nothing until the services that loaded the old library restart.
     */
    restart: ServiceRestartsSchema.optional(),
    /** What must be true on the host before it changes (preconditions.ts); protocol 5. */
    requires: PreconditionsSchema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', message, path: [path] });
    const forms = (['name', 'packages', 'source'] as const).filter((form) => c[form] !== undefined);
    if (forms.length !== 1) {
      // Reported at the form given beside the first (where the change went wrong), or at name for none.
      issue(
        forms[1] ?? 'name',
        'name exactly one of: name (one package), packages (a set) or source (every installed binary of a source package)',
      );
      return;
    }
    if (c.packages !== undefined) {
      if (c.version !== undefined) issue('version', 'a set names each version in packages[], not a common version');
      if (c.expectedPriorVersion !== undefined) {
        issue('expectedPriorVersion', 'a set names expectedPriorVersion per member in packages[]');
      }
      const seen = new Set<string>();
      c.packages.forEach((member, i) => {
        if (seen.has(member.name)) {
          ctx.addIssue({ code: 'custom', message: `${member.name} is named twice`, path: ['packages', i, 'name'] });
        }
        seen.add(member.name);
      });
      return;
    }
    if (c.version === undefined) issue('version', 'is required with name or source');
    if (c.source !== undefined && c.expectedPriorVersion !== undefined) {
      issue('expectedPriorVersion', 'not with source: the installed versions vary by host (use packages to pin them)');
    }
  });
export type PackageChange = z.infer<typeof PackageChangeSchema>;
export type PackageChangeInput = z.input<typeof PackageChangeSchema>;

/** What a package change names: explicit members (the one-package form is a set of one), or a source package. */
export type PackageTargets =
  | { kind: 'members'; members: PackageMember[] }
  | { kind: 'source'; source: string; version: string };

/** The targets of a parsed package change (its schema guarantees exactly one form). */
export function packageTargetsOf(change: PackageChange): PackageTargets {
  if (change.packages !== undefined) return { kind: 'members', members: change.packages };
  // Stryker disable next-line StringLiteral: the schema requires a version with a source; this narrows the type
  if (change.source !== undefined) return { kind: 'source', source: change.source, version: change.version ?? '' };
  // Stryker disable next-line StringLiteral: the one-package form has both once parsed; this narrows the type
  const member: PackageMember = { name: change.name ?? '', version: change.version ?? '' };
  if (change.expectedPriorVersion !== undefined) member.expectedPriorVersion = change.expectedPriorVersion;
  return { kind: 'members', members: [member] };
}

/** One line for people: `apt openssl=3.0.15-1`, `apt {libfoo=1.2, foo-bin=1.2}`, `apt source openssl=3.0.15-1`. */
export function describePackageChange(change: PackageChange): string {
  const targets = packageTargetsOf(change);
  if (targets.kind === 'source') return `apt source ${targets.source}=${targets.version} (its installed binaries)`;
  const member = (m: PackageMember) =>
    `${m.name}=${m.version}${m.expectedPriorVersion ? ` (expects prior ${m.expectedPriorVersion})` : ''}`;
  const [only] = targets.members;
  // Stryker disable next-line ConditionalExpression: a list of one has its first member; this narrows the type
  if (only !== undefined && targets.members.length === 1) return `apt ${member(only)}`;
  return `apt {${targets.members.map(member).join(', ')}}`;
}

export const ChangeSchema = z.discriminatedUnion('kind', [FileChangeSchema, PackageChangeSchema]);
export type Change = z.infer<typeof ChangeSchema>;

/**
 * Whether fleetpatch takes the change back. A package change marked `revertable: false` may leave a
 * host with no prior .deb to restore, so the coordinator refuses to revert it (and the views say so).
 */
export function isRevertable(change: Change): boolean {
  return change.kind !== 'package' || change.revertable;
}

/** What `describeChange` reads: a whole change, or a patch list's summary of one (no file content). */
export type DescribedChange =
  | Pick<FileChange, 'kind' | 'path' | 'mode' | 'owner' | 'group' | 'expectedPriorSha256'>
  | PackageChange;

/** One line for people: what the change does to a host. */
export function describeChange(change: DescribedChange): string {
  switch (change.kind) {
    case 'file': {
      const prior = change.expectedPriorSha256 ? `, expects prior ${change.expectedPriorSha256.slice(0, 12)}` : '';
      return `file ${change.path} (mode ${change.mode}, ${change.owner}:${change.group}${prior})`;
    }
    case 'package':
      return `${describePackageChange(change)}${change.revertable ? '' : ', NOT revertable'}`;
  }
}

/** Said wherever a non-revertable patch shows: plan, preflight, patch show, a refused revert. */
export const NOT_REVERTABLE_NOTE =
  'marked "revertable": false — fleetpatch will not revert it (a host may hold no prior .deb to go back to); to undo it, roll out a new patch';

export function fileContentBytes(change: { content: string; encoding: 'utf8' | 'base64' }): Buffer {
  // Stryker disable next-line StringLiteral: Buffer.from decodes as UTF-8 when no encoding is named
  return Buffer.from(change.content, change.encoding === 'base64' ? 'base64' : 'utf8');
}

/**
 * The bytes `fileContentBytes` would make, counted without making them: a check of every parsed
 * patch and order, where the content can be a megabyte. Exact for utf8 and for canonical base64.
 */
function fileContentSize(change: { content: string; encoding: 'utf8' | 'base64' }): number {
  // Stryker disable next-line StringLiteral: byteLength counts UTF-8 when no encoding is named
  return Buffer.byteLength(change.content, change.encoding === 'base64' ? 'base64' : 'utf8');
}

/** setuid, setgid and sticky. */
const SPECIAL_MODE_BITS = 0o7000;

/**
 * Node's base64 decoder skips what it does not understand, so garbage decodes to some bytes; only a
 * string that re-encodes to itself says exactly the bytes the operator meant.
 */
export function isCanonicalBase64(text: string): boolean {
  return Buffer.from(text, 'base64').toString('base64') === text;
}

export function parseMode(mode: string): number {
  return Number.parseInt(mode, 8);
}

const Prose = z.string().trim().min(1).max(10_000);

/** What an operator submits: the single-patch discipline in one object. */
export const PatchSpecSchema = z
  .object({
    title: z.string().trim().min(1).max(200),
    problem: Prose,
    rootCause: Prose,
    intendedFix: Prose,
    ticket: z.string().trim().min(1).max(200),
    change: ChangeSchema,
    health: HealthPolicySchema.default({
      checks: [],
      intervalSeconds: 2,
      minHealthySeconds: 0,
      healthyDeadlineSeconds: 60,
    }),
  })
  .strict();
export type PatchSpec = z.infer<typeof PatchSpecSchema>;
export type PatchSpecInput = z.input<typeof PatchSpecSchema>;

/**
 * What `POST /v1/patches` takes: the spec and, beside it, the change record (evidence, rollback
 * plan, risk). The record is kept with the patch but is not part of what agents execute or what
 * statements sign (`signedPatchOf` takes the spec alone).
 */
export const NewPatchSchema = PatchSpecSchema.extend({ record: ChangeRecordSchema.optional() });
export type NewPatch = z.infer<typeof NewPatchSchema>;
export type NewPatchInput = z.input<typeof NewPatchSchema>;

export const PatchSchema = NewPatchSchema.extend({
  id: z.string(),
  createdBy: z.string(),
  createdAt: z.string(),
  /**
   * sha256 of what the agent executes (the change, file content by its digest, and the health
   * policy): two patches with the same content digest are the same change, whatever their prose.
   */
  contentDigest: z.string(),
});
export type Patch = z.infer<typeof PatchSchema>;
