import { describe, expect, it } from 'vitest';
import {
  checkDebianVersion,
  compareDebianVersions,
  DpkgVersionSchema,
  InvalidDebianVersion,
  parseDebianVersion,
  versionsRelate,
} from '../src/debian-version.js';

// Vectors from dpkg's own test suite (lib/dpkg/t/t-version.c), from Debian Policy 5.6.12, and from
// real security updates. The generated comparison against the real dpkg is in debian-version.dpkg.test.ts.

describe('parsing, as dpkg parses', () => {
  it.each([
    ['0', { epoch: 0, upstream: '0', revision: '' }],
    ['0:0', { epoch: 0, upstream: '0', revision: '' }],
    ['0:0-0', { epoch: 0, upstream: '0', revision: '0' }],
    ['0:0.0-0.0', { epoch: 0, upstream: '0.0', revision: '0.0' }],
    ['1:0', { epoch: 1, upstream: '0', revision: '' }],
    ['5:1', { epoch: 5, upstream: '1', revision: '' }],
    // Several hyphens: the revision is after the last one.
    ['0:0-0-0', { epoch: 0, upstream: '0-0', revision: '0' }],
    ['0:0-0-0-0', { epoch: 0, upstream: '0-0-0', revision: '0' }],
    // Several colons: the epoch is before the first one.
    ['0:0:0-0', { epoch: 0, upstream: '0:0', revision: '0' }],
    ['0:0:0:0-0', { epoch: 0, upstream: '0:0:0', revision: '0' }],
    ['0:0:0-0-0', { epoch: 0, upstream: '0:0-0', revision: '0' }],
    ['0:0-0:0-0', { epoch: 0, upstream: '0-0:0', revision: '0' }],
    // Every character the upstream version and the revision may hold.
    ['0:09azAZ.-+~:-0', { epoch: 0, upstream: '09azAZ.-+~:', revision: '0' }],
    ['0:0-azAZ09.+~', { epoch: 0, upstream: '0', revision: 'azAZ09.+~' }],
    // Blanks around the version are trimmed (and only those).
    ['  \t0:0-1', { epoch: 0, upstream: '0', revision: '1' }],
    ['0:0-1\t  ', { epoch: 0, upstream: '0', revision: '1' }],
    // The epoch is read by strtol: a sign and leading zeros are fine.
    ['+1:1.0', { epoch: 1, upstream: '1.0', revision: '' }],
    ['007:1.0', { epoch: 7, upstream: '1.0', revision: '' }],
    ['2147483647:1', { epoch: 2147483647, upstream: '1', revision: '' }],
    ['3.0.15-1~deb12u1', { epoch: 0, upstream: '3.0.15', revision: '1~deb12u1' }],
    ['1:9.18.28-1~deb12u2', { epoch: 1, upstream: '9.18.28', revision: '1~deb12u2' }],
  ])('%j → %j', (text, parts) => {
    expect(parseDebianVersion(text)).toEqual(parts);
  });

  it.each([
    ['', 'version string is empty'],
    ['  ', 'version string is empty'],
    ['0:', 'nothing after colon in version number'],
    ['0:0 0-1', 'version string has embedded spaces'],
    ['-1:0-1', 'epoch in version is negative'],
    ['999999999999999999999999:0-1', 'epoch in version is too big'],
    ['2147483648:1', 'epoch in version is too big'],
    ['a:0-0', 'epoch in version is empty'],
    ['A:0-0', 'epoch in version is empty'],
    [':1.0', 'epoch in version is empty'],
    ['1.0-a:b', 'epoch in version is not number'],
    ['-0', 'version number is empty'],
    ['0:-0', 'version number is empty'],
    ['1.0-', 'revision number is empty'],
    ['1.0\u00002.0', 'version string has a NUL character'],
  ])('%j is an error: %s', (text, reason) => {
    expect(checkDebianVersion(text)).toEqual({ ok: false, severity: 'error', reason });
    expect(() => parseDebianVersion(text)).toThrow(InvalidDebianVersion);
    expect(() => parseDebianVersion(text)).toThrow(reason);
  });

  it.each([
    ['0:abc3-0', 'version number does not start with digit'],
    ...[..."!#@$%&/|\\<>()[]{};,_=*^'"].map((c) => [`0:0${c}-0`, 'invalid character in version number']),
    ['0:0-0:0', 'invalid character in revision number'],
    ...[..."!#@$%&/|\\<>()[]{}:;,_=*^'"].map((c) => [`0:0-0${c}`, 'invalid character in revision number']),
    ['1.0é', 'invalid character in version number'],
  ])('%j is a warning (dpkg compares it, but installs no package with it): %s', (text, reason) => {
    expect(checkDebianVersion(text)).toMatchObject({ ok: false, severity: 'warning', reason });
    expect(() => parseDebianVersion(text)).toThrow(reason);
  });
});

describe('ordering, as dpkg orders', () => {
  it.each([
    // t-version.c: equality across representations, then each part decides.
    ['0:0-0', '0:0-0', 0],
    ['0:0-00', '0:00-0', 0],
    ['1:2-3', '1:2-3', 0],
    ['0:0-0', '1:0-0', -1],
    // (t-version.c compares the parts "a" and "b" unparsed; as strings they need a leading digit.)
    ['0:0a-0', '0:0b-0', -1],
    ['0:0-a', '0:0-b', -1],
    ['0:1-1', '0:2-1', -1],
    ['0:1-1', '0:1-2', -1],
    // A missing epoch is 0, a missing revision the empty string.
    ['1.0', '0:1.0', 0],
    ['1.0', '1.0-0', 0],
    ['1.0-', '1.0', NaN],
    // Tilde sorts before everything, even the end of the string.
    ['1.0~rc1', '1.0', -1],
    ['1.0~~', '1.0~~a', -1],
    ['1.0~~a', '1.0~', -1],
    ['1.0~', '1.0', -1],
    ['1.0', '1.0a', -1],
    // Letters before non-letters.
    ['1.0a', '1.0+', -1],
    ['1.0Z', '1.0a', -1],
    ['1.0a', '1.0.', -1],
    ['1.0+', '1.0.', -1],
    // Digit runs compare as numbers, however long.
    ['1.10', '1.9', 1],
    ['1.0010', '1.10', 0],
    ['1.18446744073709551616', '1.18446744073709551615', 1],
    ['9.9', '1:0.1', -1],
    ['1.0-10', '1.0-9', 1],
    // Real security updates: the fixed version is above the vulnerable one and below the next release.
    ['3.0.14-1~deb12u2', '3.0.15-1~deb12u1', -1],
    ['3.0.15-1~deb12u1', '3.0.15-1', -1],
    ['1.0-1+deb12u1', '1.0-1+deb12u2', -1],
    ['3.0.15-1~deb12u1', '3.0.15-1~deb12u1+b1', -1],
  ])('%s vs %s: %d', (a, b, expected) => {
    if (Number.isNaN(expected)) {
      expect(() => compareDebianVersions(a, b)).toThrow(InvalidDebianVersion);
      return;
    }
    expect(compareDebianVersions(a, b)).toBe(expected);
    expect(compareDebianVersions(b, a)).toBe(expected === 0 ? 0 : -expected);
  });

  it('relates as dpkg --compare-versions does', () => {
    expect(versionsRelate('1.0', 'lt', '1.1')).toBe(true);
    expect(versionsRelate('1.0', 'le', '1.00')).toBe(true);
    expect(versionsRelate('1.0', 'eq', '0:1.0')).toBe(true);
    expect(versionsRelate('1.0', 'ne', '1.0-1')).toBe(true);
    expect(versionsRelate('1.0', 'ne', '1.0-0')).toBe(false);
    expect(versionsRelate('1:0', 'ge', '9')).toBe(true);
    expect(versionsRelate('1.0', 'gt', '1.0~')).toBe(true);
    expect(versionsRelate('1.0', 'gt', '1.0')).toBe(false);
  });
});

describe('DpkgVersionSchema', () => {
  it('takes what dpkg takes without complaint', () => {
    expect(DpkgVersionSchema.parse('1:3.0.15-1~deb12u1+b1')).toBe('1:3.0.15-1~deb12u1+b1');
  });

  it.each([
    ['', /Debian version/],
    [' 1.0', /without blanks/],
    ['1.0_1', /invalid character in version number/],
    ['x1.0', /does not start with digit/],
    ['1.0-', /revision number is empty/],
    ['1'.repeat(257), /256/],
  ])('refuses %j, saying why', (text, why) => {
    const parsed = DpkgVersionSchema.safeParse(text);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.message).toMatch(why);
  });
});
