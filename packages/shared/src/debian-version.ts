import { z } from 'zod';

/**
 * Debian package versions exactly as dpkg reads and orders them (lib/dpkg/parsehelp.c `parseversion`
 * and lib/dpkg/version.c `dpkg_version_compare`), so that the coordinator can say "installed ≥ fixed"
 * without asking a host's dpkg. Tested against `dpkg --compare-versions` on generated pairs.
 *
 * `[epoch:]upstream[-revision]`: the epoch is everything before the first colon, the revision
 * everything after the last hyphen. Compared epoch first (as numbers), then upstream, then revision
 * (a missing revision is the empty string), each part alternately as a run of non-digits (character
 * by character: `~` before everything, even the end of the string; then the end; then letters; then
 * other characters) and a run of digits (as a number).
 */
export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/**
 * What dpkg says of a version string. dpkg refuses an `error` everywhere; a `warning` it refuses in a
 * package's control data and status file (so no installed package has one) but `--compare-versions`
 * still compares it. Fleetpatch accepts neither: `parseDebianVersion` and `DpkgVersionSchema` refuse both.
 */
export type DebianVersionCheck =
  | { ok: true; version: DebianVersion }
  | { ok: false; severity: 'error'; reason: string }
  | { ok: false; severity: 'warning'; reason: string; version: DebianVersion };

const INT_MAX = 2_147_483_647;

/** dpkg's `c_isblank`: what it trims around a version (and refuses inside one). */
const isBlank = (c: string): boolean => c === ' ' || c === '\t';
/** What C's `strtol` skips before a number (`isspace` in the C locale). */
const isCSpace = (c: string): boolean => c === ' ' || (c >= '\t' && c <= '\r');
const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';
const isAlpha = (c: string): boolean => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

/** dpkg's `parseversion`, message for message; returns instead of throwing. */
export function checkDebianVersion(text: string): DebianVersionCheck {
  let start = 0;
  let end = text.length;
  while (start < end && isBlank(text.charAt(start))) start++;
  if (start === end) return error('version string is empty');
  while (end > start && isBlank(text.charAt(end - 1))) end--;
  const trimmed = text.slice(start, end);
  // A C string ends at NUL: dpkg never sees what follows one, so nothing may follow.
  if (trimmed.includes('\0')) return error('version string has a NUL character');
  if ([...trimmed].some(isBlank)) return error('version string has embedded spaces');

  let epoch = 0;
  let rest = trimmed;
  const colon = trimmed.indexOf(':');
  if (colon >= 0) {
    const parsed = parseEpoch(trimmed.slice(0, colon));
    if (typeof parsed === 'string') return error(parsed);
    if (colon === trimmed.length - 1) return error('nothing after colon in version number');
    epoch = parsed;
    rest = trimmed.slice(colon + 1);
  }
  const hyphen = rest.lastIndexOf('-');
  const upstream = hyphen >= 0 ? rest.slice(0, hyphen) : rest;
  const revision = hyphen >= 0 ? rest.slice(hyphen + 1) : '';
  if (hyphen >= 0 && revision === '') return error('revision number is empty');
  if (upstream === '') return error('version number is empty');

  const version = { epoch, upstream, revision };
  if (!isDigit(upstream.charAt(0))) return warning('version number does not start with digit', version);
  for (const c of upstream.slice(1)) {
    if (!isDigit(c) && !isAlpha(c) && !'.-+~:'.includes(c))
      return warning('invalid character in version number', version);
  }
  for (const c of revision) {
    if (!isDigit(c) && !isAlpha(c) && !'.+~'.includes(c))
      return warning('invalid character in revision number', version);
  }
  return { ok: true, version };
}

/** The epoch as C's `strtol(…, 10)` reads it, with dpkg's checks; a string is the refusal. */
function parseEpoch(text: string): number | string {
  let i = 0;
  while (i < text.length && isCSpace(text.charAt(i))) i++;
  const negative = text.charAt(i) === '-';
  if (negative || text.charAt(i) === '+') i++;
  const digits = /^[0-9]*/.exec(text.slice(i))?.[0] ?? '';
  if (digits === '') return 'epoch in version is empty';
  if (i + digits.length !== text.length) return 'epoch in version is not number';
  const value = Number(BigInt(digits));
  if (negative && value !== 0) return 'epoch in version is negative';
  if (value > INT_MAX) return 'epoch in version is too big';
  return value;
}

function error(reason: string): DebianVersionCheck {
  return { ok: false, severity: 'error', reason };
}

function warning(reason: string, version: DebianVersion): DebianVersionCheck {
  return { ok: false, severity: 'warning', reason, version };
}

/** Thrown for a string that is not a valid Debian version; the message says why, as dpkg would. */
export class InvalidDebianVersion extends Error {
  override readonly name = 'InvalidDebianVersion';
  constructor(
    readonly text: string,
    readonly reason: string,
  ) {
    super(`${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)} is not a Debian version: ${reason}`);
  }
}

/** The parts of a version dpkg accepts without complaint; throws `InvalidDebianVersion` otherwise. */
export function parseDebianVersion(text: string): DebianVersion {
  const check = checkDebianVersion(text);
  if (!check.ok) throw new InvalidDebianVersion(text, check.reason);
  return check.version;
}

/**
 * dpkg's order: negative when `a` sorts before `b`, 0 when equal (`1.0` = `0:1.0` = `1.00`),
 * positive after. Strings are parsed first and must be valid (`InvalidDebianVersion` otherwise).
 */
export function compareDebianVersions(a: string | DebianVersion, b: string | DebianVersion): number {
  return compareParsed(
    typeof a === 'string' ? parseDebianVersion(a) : a,
    typeof b === 'string' ? parseDebianVersion(b) : b,
  );
}

/** `dpkg_version_compare` on parsed versions; -1, 0 or 1. */
export function compareParsed(a: DebianVersion, b: DebianVersion): number {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch ? 1 : -1;
  return Math.sign(verrevcmp(a.upstream, b.upstream) || verrevcmp(a.revision, b.revision));
}

/** Where a character sorts in a non-digit run: `~` first, then the end (and digits), letters, the rest. */
function order(text: string, i: number): number {
  const c = text.charAt(i);
  if (c === '' || isDigit(c)) return 0;
  if (isAlpha(c)) return c.charCodeAt(0);
  if (c === '~') return -1;
  return c.charCodeAt(0) + 256;
}

/** dpkg's `verrevcmp`: alternate non-digit runs (by `order`) and digit runs (as numbers, any length). */
function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a.charAt(i))) || (j < b.length && !isDigit(b.charAt(j)))) {
      const diff = order(a, i) - order(b, j);
      if (diff !== 0) return diff;
      i++;
      j++;
    }
    while (a.charAt(i) === '0') i++;
    while (b.charAt(j) === '0') j++;
    let firstDiff = 0;
    while (isDigit(a.charAt(i)) && isDigit(b.charAt(j))) {
      if (firstDiff === 0) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a.charAt(i))) return 1;
    if (isDigit(b.charAt(j))) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

/** `dpkg --compare-versions` relations (the current ones; not the obsolete `<` and `>`). */
export const VERSION_RELATIONS = ['lt', 'le', 'eq', 'ne', 'ge', 'gt'] as const;
export type VersionRelation = (typeof VERSION_RELATIONS)[number];

/** Whether `a <relation> b` holds, as `dpkg --compare-versions a relation b` would exit 0. */
export function versionsRelate(
  a: string | DebianVersion,
  relation: VersionRelation,
  b: string | DebianVersion,
): boolean {
  const cmp = compareDebianVersions(a, b);
  switch (relation) {
    case 'lt':
      return cmp < 0;
    case 'le':
      return cmp <= 0;
    case 'eq':
      return cmp === 0;
    case 'ne':
      return cmp !== 0;
    case 'ge':
      return cmp >= 0;
    case 'gt':
      return cmp > 0;
  }
}

/** Longest version the API and the wire take: dpkg has no limit, real versions stay far below. */
export const MAX_DEBIAN_VERSION_CHARS = 256;

/**
 * A version dpkg accepts without error or warning, as typed (blanks around it are refused here,
 * though dpkg would trim them: a version in a query or a frame has none). The issue names dpkg's reason.
 */
export const DpkgVersionSchema = z
  .string()
  .min(1, 'must be a Debian version ([epoch:]upstream[-revision])')
  .max(MAX_DEBIAN_VERSION_CHARS)
  .superRefine((text, ctx) => {
    if (text.trim() !== text) {
      ctx.addIssue({ code: 'custom', message: 'must be a Debian version without blanks around it' });
      return;
    }
    const check = checkDebianVersion(text);
    if (!check.ok) ctx.addIssue({ code: 'custom', message: `not a Debian version: ${check.reason}` });
  });
