import { describe, expect, it } from 'vitest';
import {
  ChangeSchema,
  describeChange,
  describePackageChange,
  FileChangeSchema,
  fileContentBytes,
  isCanonicalBase64,
  isRevertable,
  MAX_FILE_CONTENT_BYTES,
  MAX_PACKAGE_SET_MEMBERS,
  NewPatchSchema,
  NOT_REVERTABLE_NOTE,
  PackageChangeSchema,
  PatchSchema,
  PatchSpecSchema,
  packageTargetsOf,
  parseMode,
} from '../src/patch.js';
import { issues } from './support/issues.js';

const file = (overrides: Record<string, unknown> = {}) => ({
  kind: 'file',
  path: '/etc/app.conf',
  content: 'x = 1\n',
  mode: '0644',
  owner: 'root',
  group: 'root',
  ...overrides,
});

const apt = { kind: 'package', manager: 'apt' };

const pkg = (overrides: Record<string, unknown> = {}) => ({ ...apt, name: 'nginx', version: '1.24.0-1', ...overrides });

const packageSet = (packages: Record<string, unknown>[], overrides: Record<string, unknown> = {}) => ({
  ...apt,
  packages,
  ...overrides,
});

const sourcePackage = (overrides: Record<string, unknown> = {}) => ({
  ...apt,
  source: 'openssl',
  version: '3.0.15-1',
  ...overrides,
});

const libssl = { name: 'libssl3', version: '3.0.15-1', expectedPriorVersion: '3.0.14-1' };
const openssl = { name: 'openssl', version: '3.0.15-1', expectedPriorVersion: 'absent' };
const libsslDev = { name: 'libssl-dev', version: '3.0.15-1' };

const spec = (overrides: Record<string, unknown> = {}) => ({
  title: 'Raise the worker limit',
  problem: 'Workers run out under load.',
  rootCause: 'The default limit is 512.',
  intendedFix: 'Set it to 4096.',
  ticket: 'OPS-1',
  change: file(),
  ...overrides,
});

describe('FileChangeSchema', () => {
  it('takes a whole-file change, utf8 unless it says base64', () => {
    expect(FileChangeSchema.parse(file())).toEqual({ ...file(), encoding: 'utf8' });
    expect(issues(FileChangeSchema, file({ encoding: 'base64', content: 'eCA9IDEK' }))).toEqual([]);
    expect(issues(FileChangeSchema, file({ encoding: 'latin1' }))).toEqual([
      'encoding: Invalid option: expected one of "utf8"|"base64"',
    ]);
  });

  it('refuses an unknown field', () => {
    expect(issues(FileChangeSchema, file({ sudo: true }))).toEqual([': Unrecognized key: "sudo"']);
  });

  it('takes octal modes of three or four digits, with or without a leading 0', () => {
    for (const mode of ['644', '0644', '0600', '755', '0000', '1777']) {
      expect(issues(FileChangeSchema, file({ mode, allowSpecialModes: true })), mode).toEqual([]);
    }
    for (const mode of ['64', '000644', '0648', '0o644', 'rw-r--r--', '', ' 0644', '0644 ']) {
      expect(issues(FileChangeSchema, file({ mode })), mode).toEqual(['mode: must be an octal mode such as "0644"']);
    }
  });

  it('takes user and group names or numeric ids', () => {
    for (const owner of ['root', '_apt', 'www-data', 'user$', 'a1_b-c', '0', '65534', '4294967294', 'a'.repeat(32)]) {
      expect(issues(FileChangeSchema, file({ owner, group: owner })), owner).toEqual([]);
    }
    for (const owner of ['', 'Root', '-x', '1x', 'a'.repeat(33), '12345678901', 'a$b', 'a b', 'root\n', ' root']) {
      expect(issues(FileChangeSchema, file({ owner })), JSON.stringify(owner)).toEqual([
        'owner: must be a user/group name or a numeric id',
      ]);
      expect(issues(FileChangeSchema, file({ group: owner })), JSON.stringify(owner)).toEqual([
        'group: must be a user/group name or a numeric id',
      ]);
    }
  });

  it('takes an expected prior sha256 or "absent", nothing else', () => {
    expect(issues(FileChangeSchema, file({ expectedPriorSha256: 'a'.repeat(64) }))).toEqual([]);
    expect(issues(FileChangeSchema, file({ expectedPriorSha256: 'absent' }))).toEqual([]);
    expect(issues(FileChangeSchema, file({ expectedPriorSha256: 'missing' }))).not.toEqual([]);
  });

  it('refuses setuid, setgid and sticky bits unless allowSpecialModes is true', () => {
    const message = 'mode: has setuid, setgid or sticky bits: set allowSpecialModes: true if that is meant';
    for (const mode of ['4755', '02755', '1777', '07777']) {
      expect(issues(FileChangeSchema, file({ mode })), mode).toEqual([message]);
      expect(issues(FileChangeSchema, file({ mode, allowSpecialModes: false })), mode).toEqual([message]);
      expect(issues(FileChangeSchema, file({ mode, allowSpecialModes: true })), mode).toEqual([]);
    }
    expect(issues(FileChangeSchema, file({ mode: '0777' }))).toEqual([]);
  });

  it('refuses base64 that is not canonical, and says so at the content', () => {
    const message = 'content: must be canonical base64 (A-Z a-z 0-9 + /, padded with =, no whitespace)';
    for (const content of ['eCA9IDEK\n', 'eCA9IDE', 'eCA9 IDEK', 'not base64!', 'eCA9IDEK==']) {
      expect(issues(FileChangeSchema, file({ encoding: 'base64', content })), content).toEqual([message]);
    }
    // The same text is fine as utf8.
    expect(issues(FileChangeSchema, file({ content: 'not base64!' }))).toEqual([]);
  });

  it(`takes content up to ${MAX_FILE_CONTENT_BYTES} bytes once decoded`, () => {
    const message = `content: content must be at most ${MAX_FILE_CONTENT_BYTES} bytes`;
    expect(MAX_FILE_CONTENT_BYTES).toBe(1024 * 1024);
    expect(issues(FileChangeSchema, file({ content: 'a'.repeat(MAX_FILE_CONTENT_BYTES) }))).toEqual([]);
    expect(issues(FileChangeSchema, file({ content: 'a'.repeat(MAX_FILE_CONTENT_BYTES + 1) }))).toEqual([message]);
    // utf8 counts bytes, not characters.
    expect(issues(FileChangeSchema, file({ content: 'é'.repeat(MAX_FILE_CONTENT_BYTES / 2 + 1) }))).toEqual([message]);
    const limit = Buffer.alloc(MAX_FILE_CONTENT_BYTES).toString('base64');
    expect(issues(FileChangeSchema, file({ encoding: 'base64', content: limit }))).toEqual([]);
    const over = Buffer.alloc(MAX_FILE_CONTENT_BYTES + 1).toString('base64');
    expect(issues(FileChangeSchema, file({ encoding: 'base64', content: over }))).toEqual([message]);
  });

  it('reports its own checks as custom issues, as zod reports any refinement', () => {
    const tooBig = file({ content: 'a'.repeat(MAX_FILE_CONTENT_BYTES + 1) });
    for (const value of [file({ encoding: 'base64', content: '!' }), tooBig, file({ mode: '4755' })]) {
      expect(FileChangeSchema.safeParse(value).error?.issues.map((i) => i.code)).toEqual(['custom']);
    }
  });

  it('reports every problem at once', () => {
    expect(issues(FileChangeSchema, file({ encoding: 'base64', content: '!', mode: '4755' }))).toEqual([
      'content: must be canonical base64 (A-Z a-z 0-9 + /, padded with =, no whitespace)',
      'mode: has setuid, setgid or sticky bits: set allowSpecialModes: true if that is meant',
    ]);
  });
});

describe('file content helpers', () => {
  it('decode content as utf8 or base64', () => {
    expect(fileContentBytes({ content: 'héllo', encoding: 'utf8' })).toEqual(Buffer.from('héllo', 'utf8'));
    expect(fileContentBytes({ content: 'AAH/', encoding: 'base64' })).toEqual(Buffer.from([0, 1, 255]));
  });

  it('call base64 canonical only when it re-encodes to itself', () => {
    expect(isCanonicalBase64('')).toBe(true);
    expect(isCanonicalBase64('AAH/')).toBe(true);
    expect(isCanonicalBase64('AAE=')).toBe(true);
    expect(isCanonicalBase64('AAE')).toBe(false);
    expect(isCanonicalBase64('AAF=')).toBe(false);
    expect(isCanonicalBase64('AA E=')).toBe(false);
  });

  it('read modes as octal', () => {
    expect(parseMode('0644')).toBe(0o644);
    expect(parseMode('4755')).toBe(0o4755);
  });
});

describe('PackageChangeSchema', () => {
  it('takes an apt package pinned to an exact version, revertable unless it says otherwise', () => {
    expect(PackageChangeSchema.parse(pkg())).toEqual({ ...pkg(), revertable: true });
    expect(PackageChangeSchema.parse(pkg({ revertable: false })).revertable).toBe(false);
    expect(issues(PackageChangeSchema, pkg({ expectedPriorVersion: '1.22.1-9' }))).toEqual([]);
    expect(issues(PackageChangeSchema, pkg({ expectedPriorVersion: 'absent' }))).toEqual([]);
  });

  it('refuses another manager, a bad name or version, and unknown fields', () => {
    expect(issues(PackageChangeSchema, pkg({ manager: 'yum' }))).toEqual(['manager: Invalid input: expected "apt"']);
    expect(issues(PackageChangeSchema, pkg({ name: 'Nginx' }))).toEqual(['name: must be a Debian package name']);
    expect(issues(PackageChangeSchema, pkg({ version: 'latest' }))).toEqual([
      'version: must be a Debian version ([epoch:]upstream[-revision])',
    ]);
    expect(issues(PackageChangeSchema, pkg({ expectedPriorVersion: 'none' }))).not.toEqual([]);
    expect(issues(PackageChangeSchema, pkg({ force: true }))).toEqual([': Unrecognized key: "force"']);
  });

  it('takes a set of packages, each at its own version and with its own expected prior version', () => {
    const set = packageSet([libssl, openssl, libsslDev]);
    expect(PackageChangeSchema.parse(set)).toEqual({ ...set, revertable: true });
  });

  it(`takes a set of 1 to ${MAX_PACKAGE_SET_MEMBERS} packages`, () => {
    expect(MAX_PACKAGE_SET_MEMBERS).toBe(100);
    const members = Array.from({ length: MAX_PACKAGE_SET_MEMBERS + 1 }, (_, i) => ({
      name: `lib${i}`,
      version: '1.0-1',
    }));
    expect(issues(PackageChangeSchema, packageSet(members.slice(0, 1)))).toEqual([]);
    expect(issues(PackageChangeSchema, packageSet(members.slice(0, MAX_PACKAGE_SET_MEMBERS)))).toEqual([]);
    expect(issues(PackageChangeSchema, packageSet(members))).toEqual([
      'packages: Too big: expected array to have <=100 items',
    ]);
    expect(issues(PackageChangeSchema, packageSet([]))).toEqual([
      'packages: Too small: expected array to have >=1 items',
    ]);
  });

  it('takes a source package at a version', () => {
    expect(PackageChangeSchema.parse(sourcePackage())).toEqual({ ...sourcePackage(), revertable: true });
  });

  it('wants exactly one of name, packages or source: says so at the second one given, or at name for none', () => {
    const message =
      'name exactly one of: name (one package), packages (a set) or source (every installed binary of a source package)';
    expect(issues(PackageChangeSchema, { ...apt, version: '1.0-1' })).toEqual([`name: ${message}`]);
    expect(issues(PackageChangeSchema, packageSet([libssl], { source: 'openssl' }))).toEqual([`source: ${message}`]);
    expect(issues(PackageChangeSchema, pkg({ packages: [libssl] }))).toEqual([`packages: ${message}`]);
    expect(issues(PackageChangeSchema, pkg({ source: 'openssl' }))).toEqual([`source: ${message}`]);
    expect(issues(PackageChangeSchema, pkg({ packages: [libssl], source: 'openssl' }))).toEqual([
      `packages: ${message}`,
    ]);
  });

  it('leaves the versions of a set to its members', () => {
    expect(
      issues(PackageChangeSchema, packageSet([libssl], { version: '3.0.15-1', expectedPriorVersion: 'absent' })),
    ).toEqual([
      'version: a set names each version in packages[], not a common version',
      'expectedPriorVersion: a set names expectedPriorVersion per member in packages[]',
    ]);
  });

  it('refuses a package that a set names twice, where it is named again', () => {
    expect(issues(PackageChangeSchema, packageSet([libssl, openssl, { ...libssl, version: '3.0.16-1' }]))).toEqual([
      'packages.2.name: libssl3 is named twice',
    ]);
  });

  it('wants a version with a name or a source, and no expected prior version with a source', () => {
    expect(issues(PackageChangeSchema, { ...apt, name: 'nginx' })).toEqual([
      'version: is required with name or source',
    ]);
    expect(issues(PackageChangeSchema, { ...apt, source: 'openssl' })).toEqual([
      'version: is required with name or source',
    ]);
    expect(issues(PackageChangeSchema, sourcePackage({ expectedPriorVersion: '3.0.14-1' }))).toEqual([
      'expectedPriorVersion: not with source: the installed versions vary by host (use packages to pin them)',
    ]);
  });

  it('reports its own checks as custom issues, as zod reports any refinement', () => {
    for (const value of [{ ...apt }, packageSet([libssl, libssl]), sourcePackage({ expectedPriorVersion: 'absent' })]) {
      expect(PackageChangeSchema.safeParse(value).error?.issues.map((i) => i.code)).toEqual(['custom']);
    }
  });
});

describe('packageTargetsOf', () => {
  const targetsOf = (value: Record<string, unknown>) => packageTargetsOf(PackageChangeSchema.parse(value));

  it('makes one package a set of one, with the prior version it expects only when it names one', () => {
    expect(targetsOf(pkg())).toStrictEqual({ kind: 'members', members: [{ name: 'nginx', version: '1.24.0-1' }] });
    expect(targetsOf(pkg({ expectedPriorVersion: '1.22.1-9' }))).toStrictEqual({
      kind: 'members',
      members: [{ name: 'nginx', version: '1.24.0-1', expectedPriorVersion: '1.22.1-9' }],
    });
  });

  it('names the members of a set as the set names them', () => {
    expect(targetsOf(packageSet([libssl, openssl]))).toStrictEqual({ kind: 'members', members: [libssl, openssl] });
  });

  it('names a source package at its version', () => {
    expect(targetsOf(sourcePackage())).toStrictEqual({ kind: 'source', source: 'openssl', version: '3.0.15-1' });
  });
});

describe('describePackageChange', () => {
  const describeParsed = (value: Record<string, unknown>) => describePackageChange(PackageChangeSchema.parse(value));

  it('writes one package, or a set of one, as apt name=version with the prior version it expects', () => {
    expect(describeParsed(pkg())).toBe('apt nginx=1.24.0-1');
    expect(describeParsed(pkg({ expectedPriorVersion: '1.22.1-9' }))).toBe(
      'apt nginx=1.24.0-1 (expects prior 1.22.1-9)',
    );
    expect(describeParsed(packageSet([libssl]))).toBe('apt libssl3=3.0.15-1 (expects prior 3.0.14-1)');
  });

  it('writes a larger set in braces', () => {
    expect(describeParsed(packageSet([libssl, openssl, libsslDev]))).toBe(
      'apt {libssl3=3.0.15-1 (expects prior 3.0.14-1), openssl=3.0.15-1 (expects prior absent), libssl-dev=3.0.15-1}',
    );
  });

  it('writes a source package as the installed binaries of it', () => {
    expect(describeParsed(sourcePackage())).toBe('apt source openssl=3.0.15-1 (its installed binaries)');
  });
});

describe('ChangeSchema', () => {
  it('tells a file from a package by kind', () => {
    expect(ChangeSchema.parse(file()).kind).toBe('file');
    expect(ChangeSchema.parse(pkg()).kind).toBe('package');
    expect(issues(ChangeSchema, { ...file(), kind: 'service' })).not.toEqual([]);
  });
});

describe('isRevertable', () => {
  it('is true of a file change, and of a package change unless it says revertable: false', () => {
    expect(isRevertable(ChangeSchema.parse(file()))).toBe(true);
    expect(isRevertable(ChangeSchema.parse(pkg()))).toBe(true);
    expect(isRevertable(ChangeSchema.parse(pkg({ revertable: false })))).toBe(false);
  });

  it('comes with a note that says how to undo a change fleetpatch will not revert', () => {
    expect(NOT_REVERTABLE_NOTE).toContain('fleetpatch will not revert it');
    expect(NOT_REVERTABLE_NOTE).toContain('to undo it, roll out a new patch');
  });
});

describe('describeChange', () => {
  it('writes a file change as its path, mode and owners, with the first 12 digits of the digest it expects', () => {
    expect(describeChange(ChangeSchema.parse(file({ owner: 'www-data', group: 'adm' })))).toBe(
      'file /etc/app.conf (mode 0644, www-data:adm)',
    );
    expect(describeChange(ChangeSchema.parse(file({ expectedPriorSha256: '0123456789abcdef'.repeat(4) })))).toBe(
      'file /etc/app.conf (mode 0644, root:root, expects prior 0123456789ab)',
    );
  });

  it('writes a package change as describePackageChange does, and says when it is not revertable', () => {
    expect(describeChange(PackageChangeSchema.parse(sourcePackage()))).toBe(
      'apt source openssl=3.0.15-1 (its installed binaries)',
    );
    expect(describeChange(PackageChangeSchema.parse(pkg({ revertable: false })))).toBe(
      'apt nginx=1.24.0-1, NOT revertable',
    );
  });
});

describe('PatchSpecSchema', () => {
  it('takes the single-patch discipline, with health defaulting to no checks', () => {
    expect(PatchSpecSchema.parse(spec())).toEqual({
      ...spec(),
      change: { ...file(), encoding: 'utf8' },
      health: { checks: [], intervalSeconds: 2, minHealthySeconds: 0, healthyDeadlineSeconds: 60 },
    });
  });

  it('trims prose and refuses it empty or blank', () => {
    expect(PatchSpecSchema.parse(spec({ title: '  Fix  ', ticket: ' OPS-1 ' }))).toMatchObject({
      title: 'Fix',
      ticket: 'OPS-1',
    });
    for (const field of ['title', 'problem', 'rootCause', 'intendedFix', 'ticket']) {
      expect(issues(PatchSpecSchema, spec({ [field]: '   ' })), field).toEqual([
        `${field}: Too small: expected string to have >=1 characters`,
      ]);
      const without: Record<string, unknown> = spec();
      delete without[field];
      expect(issues(PatchSpecSchema, without), field).toEqual([
        `${field}: Invalid input: expected string, received undefined`,
      ]);
    }
  });

  it('bounds titles and tickets at 200 characters and prose at 10 000', () => {
    for (const field of ['title', 'ticket']) {
      expect(issues(PatchSpecSchema, spec({ [field]: 'x'.repeat(200) })), field).toEqual([]);
      expect(issues(PatchSpecSchema, spec({ [field]: 'x'.repeat(201) })), field).toEqual([
        `${field}: Too big: expected string to have <=200 characters`,
      ]);
    }
    for (const field of ['problem', 'rootCause', 'intendedFix']) {
      expect(issues(PatchSpecSchema, spec({ [field]: 'x'.repeat(10_000) })), field).toEqual([]);
      expect(issues(PatchSpecSchema, spec({ [field]: 'x'.repeat(10_001) })), field).toEqual([
        `${field}: Too big: expected string to have <=10000 characters`,
      ]);
    }
  });

  it('refuses unknown fields and a bad change, naming where', () => {
    expect(issues(PatchSpecSchema, spec({ id: 'pat_1' }))).toEqual([': Unrecognized key: "id"']);
    expect(issues(PatchSpecSchema, spec({ change: file({ path: '/etc/../x' }) }))).toEqual([
      'change.path: must be an absolute, normalized path (no "..", ".", "//", trailing "/" or control characters)',
    ]);
  });

  it('is what a stored patch is, plus its id, author and time', () => {
    const stored = {
      ...spec(),
      id: 'pat_1',
      createdBy: 'alice',
      createdAt: '2026-01-01T00:00:00.000Z',
      contentDigest: 'd'.repeat(64),
    };
    expect(PatchSchema.parse(stored)).toMatchObject({ id: 'pat_1', createdBy: 'alice' });
    expect(issues(PatchSchema, spec())).toEqual([
      'id: Invalid input: expected string, received undefined',
      'createdBy: Invalid input: expected string, received undefined',
      'createdAt: Invalid input: expected string, received undefined',
      'contentDigest: Invalid input: expected string, received undefined',
    ]);
  });
});

describe('NewPatchSchema', () => {
  it('is a spec with its change record beside it, which the spec itself does not take', () => {
    const record = { risk: { level: 'low', impact: 'Workers restart one at a time.' } };
    expect(NewPatchSchema.parse(spec({ record })).record).toEqual(record);
    expect(issues(PatchSpecSchema, spec({ record }))).toEqual([': Unrecognized key: "record"']);
  });
});
