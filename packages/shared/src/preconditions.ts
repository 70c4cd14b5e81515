import { z } from 'zod';
import { checkDebianVersion, MAX_DEBIAN_VERSION_CHARS, type VersionRelation } from './debian-version.js';
import { AbsolutePathSchema, DebianPackageNameSchema, Sha256Schema } from './validation.js';
import { WIRE_LIMITS } from './wire-limits.js';

/**
 * Host preconditions: what must be true on a host before a change touches it (`change.requires`).
 * Each entry is exactly one of:
 * - `{ package, version?, allowAbsent? }`: a Debian package installed (dpkg state `installed`), at a
 *   version satisfying `version` when given (dpkg's relations, compared as dpkg compares). A package
 *   that is not installed fails, unless `allowAbsent: true` ("if it is installed, it must be…");
 * - `{ file, sha256? }`: a regular file at that path (no symlink), with exactly those bytes when
 *   `sha256` is given. The agent looks only where its policy lets a file health check look;
 * - `{ command: [argv…], timeoutMs? }`: a program that exits 0. Run without a shell, with a timeout and
 *   its output cut short, and only when the agent's `health.allowedCommands` allows that exact argv.
 *
 * The agent checks them at preflight and again at apply, before its snapshot; one that does not hold
 * ends the order `precondition_failed` with nothing changed. They travel inside the change, so they
 * are signed with it, and an agent too old to know them refuses the change (see change-protocol.ts).
 */

/** At most this many preconditions per change. */
export const MAX_PRECONDITIONS = 16;
/** Arguments of a command precondition, and the length of each. */
export const MAX_PRECONDITION_ARGS = 32;
export const MAX_PRECONDITION_ARG_CHARS = 1024;
/** A command precondition is a probe, not a job: a minute at most. */
export const MAX_PRECONDITION_TIMEOUT_MS = 60_000;

/** dpkg's relations in a Depends field, and what `dpkg --compare-versions` calls them. */
const RELATIONS: Record<string, VersionRelation> = { '<<': 'lt', '<=': 'le', '=': 'eq', '>=': 'ge', '>>': 'gt' };

export interface VersionConstraint {
  /** As written in the constraint: `<<`, `<=`, `=`, `>=` or `>>`. */
  operator: string;
  relation: VersionRelation;
  version: string;
}

/**
 * Reads `">= 1.2-3"` (blanks between the operator and the version are optional, as in a Depends
 * field). Returns the constraint, or why it is not one. dpkg's obsolete `<` and `>` are refused: dpkg
 * reads them as `<=` and `>=`, where most people reading them see strict comparisons.
 */
export function parseVersionConstraint(text: string): VersionConstraint | string {
  // `$` as well as `.`: a newline matches neither, so nothing after one is silently dropped.
  const match = /^(<<|<=|>=|>>|=|<|>)\s*(\S.*)?$/.exec(text.trim());
  if (match === null) return 'must be an operator (<<, <=, =, >=, >>) and a Debian version, e.g. ">= 1.2-3"';
  // Stryker disable next-line StringLiteral: the pattern's first group always matches; this narrows the type
  const [, operator = '', version = ''] = match;
  if (operator === '<' || operator === '>') {
    return `"${operator}" is refused: dpkg reads it as "${operator}=", not as a strict comparison; write "${operator}${operator}" (strictly) or "${operator}=" (or equal)`;
  }
  const relation = RELATIONS[operator];
  // Stryker disable next-line ConditionalExpression: unreachable, the pattern names only these operators; this narrows the type
  if (relation === undefined || version === '') return `needs a Debian version after "${operator}"`;
  if (version.length > MAX_DEBIAN_VERSION_CHARS) {
    return `the version is longer than ${MAX_DEBIAN_VERSION_CHARS} characters`;
  }
  const check = checkDebianVersion(version);
  if (!check.ok) return `${JSON.stringify(version)} is not a Debian version: ${check.reason}`;
  return { operator, relation, version };
}

const VersionConstraintSchema = z
  .string()
  .max(MAX_DEBIAN_VERSION_CHARS + 10, { abort: true })
  .superRefine((text, ctx) => {
    const parsed = parseVersionConstraint(text);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  });

/**
 * One precondition: one flat object rather than a union of three, so that a mistake is reported
 * against the field that is wrong (`requires.0.version: …`), never as "matches none of three shapes".
 */
export const PreconditionSchema = z
  .object({
    /** A Debian package that must be installed. */
    package: DebianPackageNameSchema.optional(),
    /** With `package`: dpkg's relation and a version, e.g. `">= 1.2-3"`; absent: any installed version. */
    version: VersionConstraintSchema.optional(),
    /** With `package`: a package that is not installed passes (the constraint binds an installed one only). */
    allowAbsent: z.boolean().optional(),
    /** A regular file that must exist at this path. */
    file: AbsolutePathSchema.optional(),
    /** With `file`: the sha256 of its bytes; absent: any content. */
    sha256: Sha256Schema.optional(),
    /** A program (full argv, no shell) that must exit 0. */
    command: z.array(z.string().min(1).max(MAX_PRECONDITION_ARG_CHARS)).min(1).max(MAX_PRECONDITION_ARGS).optional(),
    /** With `command`: how long it may run. Default 5 s. */
    timeoutMs: z.number().int().min(100).max(MAX_PRECONDITION_TIMEOUT_MS).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    const kinds = (['package', 'file', 'command'] as const).filter((key) => p[key] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: `must name exactly one of: package, file or command${kinds.length === 0 ? '' : ` (it names ${kinds.join(' and ')})`}`,
      });
      return;
    }
    const only: Record<string, string> = {
      version: 'package',
      allowAbsent: 'package',
      sha256: 'file',
      timeoutMs: 'command',
    };
    for (const [field, kind] of Object.entries(only)) {
      if (p[field as keyof typeof p] !== undefined && p[kind as keyof typeof p] === undefined) {
        ctx.addIssue({ code: 'custom', message: `goes only with ${kind}`, path: [field] });
      }
    }
  });
export type Precondition = z.infer<typeof PreconditionSchema>;

export const PreconditionsSchema = z.array(PreconditionSchema).min(1).max(MAX_PRECONDITIONS);

export type PackagePrecondition = Precondition & { package: string };
export type FilePrecondition = Precondition & { file: string };
export type CommandPrecondition = Precondition & { command: string[] };

/**
 * How one precondition went on a host, as an agent reports it in a dry run's answer (optional in a
 * result: a coordinator that does not know it ignores it, and the reason says the same in words).
 */
export const PreconditionOutcomeSchema = z.object({
  /** `describePrecondition` of what was required. */
  precondition: z.string().max(WIRE_LIMITS.observedChars),
  ok: z.boolean(),
  /** What the host showed: `libfoo:amd64 1.0-1 installed, needs >= 1.2-3`, `exit 1; stderr: …`. */
  observed: z.string().max(WIRE_LIMITS.observedChars),
});
export type PreconditionOutcome = z.infer<typeof PreconditionOutcomeSchema>;

export function isPackagePrecondition(p: Precondition): p is PackagePrecondition {
  return p.package !== undefined;
}
export function isFilePrecondition(p: Precondition): p is FilePrecondition {
  return p.file !== undefined;
}
export function isCommandPrecondition(p: Precondition): p is CommandPrecondition {
  return p.command !== undefined;
}

/** One line for people: `package libfoo >= 1.2-3`, `file /etc/app.conf sha256 3f2a…`, `command /usr/bin/app --check`. */
export function describePrecondition(p: Precondition): string {
  if (isPackagePrecondition(p)) {
    const version = p.version === undefined ? ' installed' : ` ${p.version.trim()}`;
    return `package ${p.package}${version}${p.allowAbsent === true ? ' (or not installed)' : ''}`;
  }
  if (isCommandPrecondition(p)) {
    return `command ${p.command.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg))).join(' ')}`;
  }
  return `file ${p.file}${p.sha256 === undefined ? ' exists' : ` sha256 ${p.sha256.slice(0, 12)}…`}`;
}
