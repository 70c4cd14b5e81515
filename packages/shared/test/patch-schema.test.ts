import { describe, expect, it } from 'vitest';
import {
  ChangeSchema,
  FileChangeSchema,
  fileContentBytes,
  isCanonicalBase64,
  MAX_FILE_CONTENT_BYTES,
  PackageChangeSchema,
  PatchSchema,
  PatchSpecSchema,
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

const pkg = (overrides: Record<string, unknown> = {}) => ({
  kind: 'package',
  manager: 'apt',
  name: 'nginx',
  version: '1.24.0-1',
  ...overrides,
});

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
});

describe('ChangeSchema', () => {
  it('tells a file from a package by kind', () => {
    expect(ChangeSchema.parse(file()).kind).toBe('file');
    expect(ChangeSchema.parse(pkg()).kind).toBe('package');
    expect(issues(ChangeSchema, { ...file(), kind: 'service' })).not.toEqual([]);
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
