import { z } from 'zod';

/** Lower-case hex sha256. */
export const Sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex sha256');

/**
 * C0 controls, DEL and C1 controls. In a path they are never meant: a newline splits log lines and
 * audit rows, NUL truncates the path the kernel sees, and C1 bytes mislead terminals.
 */
export function hasControlCharacter(text: string): boolean {
  // Stryker disable next-line EqualityOperator: one step past the end reads NaN, which matches no range
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit <= 0x1f || (unit >= 0x7f && unit <= 0x9f)) return true;
  }
  return false;
}

/**
 * An absolute, normalized POSIX path: starts with `/`, no empty, `.` or `..` segments, no trailing
 * slash, no control character (NUL and newline included). Normalization is a refusal, never a
 * rewrite: what the operator wrote is what runs.
 */
export const AbsolutePathSchema = z
  .string()
  .min(2)
  .max(4096)
  .refine(
    isNormalizedAbsolutePath,
    'must be an absolute, normalized path (no "..", ".", "//", trailing "/" or control characters)',
  );

export function isNormalizedAbsolutePath(path: string): boolean {
  // Stryker disable next-line ConditionalExpression: "/" alone also fails below, as one empty segment
  if (!path.startsWith('/') || path.length < 2 || hasControlCharacter(path)) return false;
  return path
    .slice(1)
    .split('/')
    .every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

/** Debian package name (Debian Policy 5.6.1). */
export const DebianPackageNameSchema = z
  .string()
  .max(128)
  .regex(/^[a-z0-9][a-z0-9+.-]+$/, 'must be a Debian package name');

/** Debian version: [epoch:]upstream[-revision] (Debian Policy 5.6.12). */
export const DebianVersionSchema = z
  .string()
  .max(128)
  .regex(/^(?:\d+:)?[0-9][A-Za-z0-9.+~-]*$/, 'must be a Debian version ([epoch:]upstream[-revision])')
  .refine((v) => !v.endsWith('-'), 'must be a Debian version ([epoch:]upstream[-revision])');

/** Label keys and values: short, printable, selector-safe. */
/** Labels steer targeting; a host needs a handful, not thousands. */
export const MAX_LABELS = 64;

export const LabelsSchema = z
  .record(
    z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/, 'label keys are 1-63 of [A-Za-z0-9._/-]'),
    z.string().max(128),
  )
  .refine((labels) => Object.keys(labels).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);

export const HostIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'host ids are 1-128 of [A-Za-z0-9._-]');

/**
 * Text from people or agents, made safe to print: every control character (an ANSI escape's ESC
 * included) shown as `\uXXXX`, so nothing printed can move the cursor or recolour a terminal.
 * `keep` spares the characters a multi-line text is allowed (newline, tab).
 */
// Stryker disable next-line ArrayDeclaration: a default holding a longer string keeps nothing either (each match is one character)
export function escapeControlCharacters(text: string, keep: readonly string[] = []): string {
  return text.replace(/\p{Cc}/gu, (c) =>
    keep.includes(c) ? c : `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`,
  );
}
