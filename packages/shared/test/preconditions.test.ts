import { describe, expect, it } from 'vitest';
import { PRECONDITIONS_PROTOCOL, protocolGapOf, protocolNeededFor } from '../src/change-protocol.js';
import { type Change, PatchSpecSchema } from '../src/patch.js';
import {
  describePrecondition,
  isCommandPrecondition,
  isFilePrecondition,
  isPackagePrecondition,
  MAX_PRECONDITION_ARG_CHARS,
  MAX_PRECONDITION_ARGS,
  MAX_PRECONDITIONS,
  PreconditionOutcomeSchema,
  PreconditionSchema,
  PreconditionsSchema,
  parseVersionConstraint,
} from '../src/preconditions.js';
import { type ApplyStatement, SignedPatchSchema, signedPatchOf, statementDigest } from '../src/signed-statement.js';
import { WIRE_LIMITS } from '../src/wire-limits.js';
import { issues } from './support/issues.js';

const SHA = 'a'.repeat(64);

const spec = (requires: unknown, change: Record<string, unknown> = {}) => ({
  title: 'Load the new module',
  problem: 'The app needs module 2.',
  rootCause: 'Module 1 lacks the call.',
  intendedFix: 'Configure module 2.',
  ticket: 'OPS-13',
  change: {
    kind: 'file',
    path: '/etc/app/app.conf',
    content: 'module = 2\n',
    mode: '0644',
    owner: 'root',
    group: 'root',
    requires,
    ...change,
  },
});

describe('a precondition', () => {
  it('is a package (with a version constraint and allowAbsent), a file (with a sha256), or a command', () => {
    for (const ok of [
      { package: 'libfoo' },
      { package: 'libfoo', version: '>= 1.2-3' },
      { package: 'libfoo', version: '<<2:0~rc1', allowAbsent: true },
      { file: '/etc/app/module.conf' },
      { file: '/etc/app/module.conf', sha256: SHA },
      { command: ['/usr/local/bin/app-ready', '--quiet'] },
      { command: ['/usr/local/bin/app-ready'], timeoutMs: 2000 },
    ]) {
      expect(issues(PreconditionSchema, ok)).toEqual([]);
    }
  });

  it('reports its own refusals as custom issues, as every schema here does', () => {
    const codes = (value: unknown) => PreconditionsSchema.safeParse(value).error?.issues.map((i) => i.code);
    expect(codes([{}, { file: '/etc/x', version: '>= 1' }, { package: 'libfoo', version: '> 1' }])).toEqual([
      'custom',
      'custom',
      'custom',
    ]);
  });

  it('is told apart by the key naming its kind', () => {
    const kinds = [{ package: 'libfoo' }, { file: '/etc/x' }, { command: ['/bin/true'] }].map((p) =>
      [isPackagePrecondition(p), isFilePrecondition(p), isCommandPrecondition(p)].map(Number).join(''),
    );
    expect(kinds).toEqual(['100', '010', '001']);
  });

  it('names exactly one kind, and each field goes only with its kind (the 400 names the field)', () => {
    expect(issues(PreconditionSchema, {})).toEqual([': must name exactly one of: package, file or command']);
    expect(issues(PreconditionSchema, { package: 'libfoo', file: '/etc/x' })).toEqual([
      ': must name exactly one of: package, file or command (it names package and file)',
    ]);
    expect(issues(PreconditionSchema, { file: '/etc/x', version: '>= 1' })).toEqual([
      'version: goes only with package',
    ]);
    expect(issues(PreconditionSchema, { package: 'libfoo', sha256: SHA })).toEqual(['sha256: goes only with file']);
    expect(issues(PreconditionSchema, { package: 'libfoo', timeoutMs: 500 })).toEqual([
      'timeoutMs: goes only with command',
    ]);
    expect(issues(PreconditionSchema, { package: 'libfoo', shell: 'rm -rf /' })).toEqual([
      ': Unrecognized key: "shell"',
    ]);
  });

  it('refuses what the agent would refuse to read: a path with .., a relative path, a non-hex sha256', () => {
    expect(issues(PreconditionSchema, { file: '/etc/app/../../root/.ssh/id_rsa' })).toEqual([
      'file: must be an absolute, normalized path (no "..", ".", "//", trailing "/" or control characters)',
    ]);
    expect(issues(PreconditionSchema, { file: 'etc/passwd' })).toHaveLength(1);
    expect(issues(PreconditionSchema, { file: '/etc/x', sha256: 'ABC' })).toEqual([
      'sha256: must be a lower-case hex sha256',
    ]);
    expect(issues(PreconditionSchema, { package: 'libfoo; rm -rf /' })).toEqual([
      'package: must be a Debian package name',
    ]);
  });

  it('is bounded: entries, arguments, argument length, timeout', () => {
    const many = Array.from({ length: MAX_PRECONDITIONS + 1 }, () => ({ package: 'libfoo' }));
    expect(issues(PreconditionsSchema, many)).toEqual([
      `: Too big: expected array to have <=${MAX_PRECONDITIONS} items`,
    ]);
    expect(issues(PreconditionsSchema, [])).toEqual([': Too small: expected array to have >=1 items']);
    const args = Array.from({ length: MAX_PRECONDITION_ARGS + 1 }, () => 'x');
    expect(issues(PreconditionSchema, { command: ['/bin/true', ...args] })).toEqual([
      `command: Too big: expected array to have <=${MAX_PRECONDITION_ARGS} items`,
    ]);
    expect(issues(PreconditionSchema, { command: ['x'.repeat(MAX_PRECONDITION_ARG_CHARS + 1)] })).toEqual([
      `command.0: Too big: expected string to have <=${MAX_PRECONDITION_ARG_CHARS} characters`,
    ]);
    expect(issues(PreconditionSchema, { command: ['/bin/true'], timeoutMs: 3_600_000 })).toHaveLength(1);
  });
});

describe('a version constraint', () => {
  it("takes dpkg's five relations, with or without a blank before the version", () => {
    expect(parseVersionConstraint('>= 1.2-3')).toEqual({ operator: '>=', relation: 'ge', version: '1.2-3' });
    expect(parseVersionConstraint('<<2:1.0~rc1')).toEqual({ operator: '<<', relation: 'lt', version: '2:1.0~rc1' });
    expect(parseVersionConstraint('= 1.0')).toMatchObject({ relation: 'eq' });
    expect(parseVersionConstraint('<= 1.0')).toMatchObject({ relation: 'le' });
    expect(parseVersionConstraint('>> 1.0')).toMatchObject({ relation: 'gt' });
  });

  it("refuses dpkg's obsolete < and >, which mean <= and >= to dpkg and < and > to most readers", () => {
    expect(parseVersionConstraint('< 2.0')).toBe(
      '"<" is refused: dpkg reads it as "<=", not as a strict comparison; write "<<" (strictly) or "<=" (or equal)',
    );
    expect(issues(PreconditionSchema, { package: 'libfoo', version: '> 1.0' })).toEqual([
      'version: ">" is refused: dpkg reads it as ">=", not as a strict comparison; write ">>" (strictly) or ">=" (or equal)',
    ]);
  });

  it('ignores blanks around it, refuses a newline inside it, and bounds its length', () => {
    expect(parseVersionConstraint('  >= 1.0\t')).toMatchObject({ relation: 'ge', version: '1.0' });
    expect(parseVersionConstraint('>= 1.0\n<< 0')).toMatch(/^must be an operator/);
    const longest = `>= ${'1'.repeat(256)}`;
    expect(issues(PreconditionSchema, { package: 'libfoo', version: longest })).toEqual([]);
    expect(parseVersionConstraint(`>= ${'1'.repeat(257)}`)).toBe('the version is longer than 256 characters');
    expect(issues(PreconditionSchema, { package: 'libfoo', version: `>= ${'1'.repeat(300)}` })).toEqual([
      'version: Too big: expected string to have <=266 characters',
    ]);
  });

  it('refuses what is no constraint or no Debian version, saying why as dpkg would', () => {
    expect(parseVersionConstraint('1.2')).toMatch(/^must be an operator/);
    expect(parseVersionConstraint('>=')).toBe('needs a Debian version after ">="');
    expect(parseVersionConstraint('>= 1.0 2')).toBe(
      '"1.0 2" is not a Debian version: version string has embedded spaces',
    );
    expect(parseVersionConstraint('>= a:1')).toBe('"a:1" is not a Debian version: epoch in version is empty');
    expect(parseVersionConstraint('>= 1.0-')).toBe('"1.0-" is not a Debian version: revision number is empty');
    expect(parseVersionConstraint('!= 1.0')).toMatch(/^must be an operator/);
  });
});

describe('requires in a patch', () => {
  it('rides in the change, of either kind, and its errors name the field from the top', () => {
    expect(issues(PatchSpecSchema, spec([{ package: 'libfoo', version: '>= 1.2-3' }]))).toEqual([]);
    expect(
      issues(PatchSpecSchema, {
        ...spec(undefined),
        change: { kind: 'package', manager: 'apt', name: 'app', version: '2.0-1', requires: [{ file: '/etc/x' }] },
      }),
    ).toEqual([]);
    expect(issues(PatchSpecSchema, spec([{ package: 'libfoo' }, { package: 'libfoo', version: '< 2' }]))).toEqual([
      'change.requires.1.version: "<" is refused: dpkg reads it as "<=", not as a strict comparison; write "<<" (strictly) or "<=" (or equal)',
    ]);
  });

  it('is signed: the signed patch carries it, and a statement that differs in it has another digest', () => {
    const requires = [
      { package: 'libfoo', version: '>= 1.2-3' },
      { file: '/etc/app/module.conf', sha256: SHA },
    ];
    const signed = signedPatchOf(PatchSpecSchema.parse(spec(requires)));
    expect(signed.change).toMatchObject({ requires });
    expect(SignedPatchSchema.parse(signed).change).toMatchObject({ requires });
    const statement = (patch: unknown): ApplyStatement =>
      ({
        kind: 'apply',
        statementVersion: 1,
        patch,
        revertOnHealthFailure: true,
        target: { kind: 'hosts', hostIds: ['web-1'] },
        notBefore: '2026-01-01T00:00:00Z',
        expiresAt: '2026-01-02T00:00:00Z',
        sequence: 1,
      }) as ApplyStatement;
    const weaker = signedPatchOf(PatchSpecSchema.parse(spec([{ package: 'libfoo', version: '>= 1.0' }, requires[1]])));
    expect(statementDigest(statement(weaker))).not.toBe(statementDigest(statement(signed)));
  });

  it('needs protocol 5: an older agent is sent none (its strict change schema would refuse it, never ignore it)', () => {
    const change = PatchSpecSchema.parse(spec([{ command: ['/usr/local/bin/app-ready'] }])).change as Change;
    expect(protocolNeededFor({ change })).toBe(PRECONDITIONS_PROTOCOL);
    expect(protocolGapOf({ change }, 4)).toBe(
      'its agent speaks protocol 4; a change with host preconditions (requires) needs protocol 5: upgrade the agent (an older one cannot read the order)',
    );
    expect(protocolGapOf({ change }, PRECONDITIONS_PROTOCOL)).toBeUndefined();
  });

  it('reads as one line per precondition', () => {
    expect(describePrecondition({ package: 'libfoo', version: '>= 1.2-3' })).toBe('package libfoo >= 1.2-3');
    expect(describePrecondition({ package: 'libbar', version: '<< 2', allowAbsent: true })).toBe(
      'package libbar << 2 (or not installed)',
    );
    expect(describePrecondition({ package: 'libfoo' })).toBe('package libfoo installed');
    expect(describePrecondition({ package: 'libfoo', version: ' >= 1 ' })).toBe('package libfoo >= 1');
    expect(describePrecondition({ file: '/etc/app/m.conf', sha256: SHA })).toBe(
      'file /etc/app/m.conf sha256 aaaaaaaaaaaa…',
    );
    expect(describePrecondition({ file: '/etc/app/m.conf' })).toBe('file /etc/app/m.conf exists');
    expect(describePrecondition({ command: ['/usr/bin/app', '--check', 'a b'] })).toBe(
      'command /usr/bin/app --check "a b"',
    );
  });
});

describe('a precondition outcome, as an agent reports it', () => {
  const outcome = { precondition: 'package libfoo >= 1.2-3', ok: false, observed: 'libfoo:amd64 1.0-1 installed' };

  it('is kept whole when it parses', () => {
    expect(PreconditionOutcomeSchema.parse(outcome)).toEqual(outcome);
    const longest = 'x'.repeat(WIRE_LIMITS.observedChars);
    expect(issues(PreconditionOutcomeSchema, { ...outcome, precondition: longest, observed: longest })).toEqual([]);
  });

  it('refuses a description or an observation longer than the wire limit, naming the field', () => {
    const tooLong = 'x'.repeat(WIRE_LIMITS.observedChars + 1);
    expect(
      issues(PreconditionOutcomeSchema, { ...outcome, precondition: tooLong }).map((i) => i.split(':')[0]),
    ).toEqual(['precondition']);
    expect(issues(PreconditionOutcomeSchema, { ...outcome, observed: tooLong }).map((i) => i.split(':')[0])).toEqual([
      'observed',
    ]);
  });
});
