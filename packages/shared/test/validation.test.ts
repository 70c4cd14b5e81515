import { describe, expect, it } from 'vitest';
import {
  AbsolutePathSchema,
  DebianPackageNameSchema,
  DebianVersionSchema,
  escapeControlCharacters,
  HostIdSchema,
  hasControlCharacter,
  isNormalizedAbsolutePath,
  LabelsSchema,
  MAX_LABELS,
  Sha256Schema,
} from '../src/validation.js';
import { issues } from './support/issues.js';

const SHA = 'a'.repeat(64);

describe('Sha256Schema', () => {
  it('takes exactly 64 lower-case hex digits', () => {
    expect(issues(Sha256Schema, '0123456789abcdef'.repeat(4))).toEqual([]);
    for (const bad of [SHA.slice(1), `${SHA}a`, SHA.toUpperCase(), `${SHA.slice(1)}g`, ` ${SHA}`, `${SHA}\n`, '']) {
      expect(issues(Sha256Schema, bad), bad).toEqual([': must be a lower-case hex sha256']);
    }
  });
});

describe('hasControlCharacter', () => {
  it('finds C0 controls, DEL and C1 controls anywhere, and nothing else', () => {
    for (const unit of [0x00, 0x0a, 0x1f, 0x7f, 0x80, 0x9f]) {
      const c = String.fromCharCode(unit);
      expect(hasControlCharacter(c), `U+${unit.toString(16)}`).toBe(true);
      expect(hasControlCharacter(`/etc/${c}x`), `U+${unit.toString(16)} inside`).toBe(true);
      expect(hasControlCharacter(`/etc/x${c}`), `U+${unit.toString(16)} last`).toBe(true);
    }
    for (const unit of [0x20, 0x7e, 0xa0, 0xe9, 0x2028]) {
      expect(hasControlCharacter(`/etc/${String.fromCharCode(unit)}`), `U+${unit.toString(16)}`).toBe(false);
    }
    expect(hasControlCharacter('')).toBe(false);
  });
});

describe('escapeControlCharacters', () => {
  it('shows every control character as \\uXXXX and leaves the rest of the text as it was', () => {
    expect(escapeControlCharacters('\x1b]0;owned\x07title\x1b[2J')).toBe('\\u001b]0;owned\\u0007title\\u001b[2J');
    expect(escapeControlCharacters('a\u009bb\x7fc\x00')).toBe('a\\u009bb\\u007fc\\u0000');
    expect(escapeControlCharacters('plain text, é ü ✓')).toBe('plain text, é ü ✓');
    expect(escapeControlCharacters('')).toBe('');
  });

  it('spares only the characters it is told to keep', () => {
    expect(escapeControlCharacters('one\ntwo\tthree\r', ['\n', '\t'])).toBe('one\ntwo\tthree\\u000d');
    expect(escapeControlCharacters('one\ntwo')).toBe('one\\u000atwo');
  });
});

describe('absolute, normalized paths', () => {
  it('takes absolute paths without empty, "." or ".." segments', () => {
    for (const good of ['/a', '/etc/app.conf', '/etc/..hidden', '/etc/a..b', '/etc/.x', '/a/b/c/d', '/é/ü']) {
      expect(isNormalizedAbsolutePath(good), good).toBe(true);
      expect(issues(AbsolutePathSchema, good), good).toEqual([]);
    }
  });

  it('refuses relative, trailing-slash, doubled-slash, dot and dot-dot paths, and control characters', () => {
    const message = ': must be an absolute, normalized path (no "..", ".", "//", trailing "/" or control characters)';
    for (const bad of [
      'etc/x',
      'x/',
      '/etc/',
      '//etc',
      '/etc//x',
      '/./etc',
      '/etc/.',
      '/etc/..',
      '/etc/../x',
      '/..',
      '/etc/x\n',
      '/etc/\0x',
      '/etc/\u0085x',
    ]) {
      expect(isNormalizedAbsolutePath(bad), JSON.stringify(bad)).toBe(false);
      expect(issues(AbsolutePathSchema, bad), JSON.stringify(bad)).toContain(message);
    }
  });

  it('refuses / itself: a file is never the root directory', () => {
    expect(isNormalizedAbsolutePath('/')).toBe(false);
    expect(issues(AbsolutePathSchema, '/')).toContain(': Too small: expected string to have >=2 characters');
  });

  it('takes paths up to 4096 characters', () => {
    const longest = `/${'a'.repeat(4095)}`;
    expect(issues(AbsolutePathSchema, longest)).toEqual([]);
    expect(issues(AbsolutePathSchema, `${longest}b`)).toEqual([': Too big: expected string to have <=4096 characters']);
  });
});

describe('DebianPackageNameSchema', () => {
  it('takes Debian package names (Policy 5.6.1): lower case, digits, + . -, two characters at least', () => {
    for (const good of ['ab', 'nginx', 'libc6', 'g++', 'python3.11', 'lib-foo', '0ad', 'a'.repeat(128)]) {
      expect(issues(DebianPackageNameSchema, good), good).toEqual([]);
    }
    for (const bad of ['a', 'Nginx', '-lib', '+x', '.x', 'lib_foo', 'lib foo', 'nginx\n', ' nginx', 'ngiNx']) {
      expect(issues(DebianPackageNameSchema, bad), bad).toEqual([': must be a Debian package name']);
    }
  });

  it('refuses names over 128 characters', () => {
    expect(issues(DebianPackageNameSchema, 'a'.repeat(129))).toEqual([
      ': Too big: expected string to have <=128 characters',
    ]);
  });
});

describe('DebianVersionSchema', () => {
  it('takes [epoch:]upstream[-revision] (Policy 5.6.12)', () => {
    for (const good of ['1', '1.2.3', '1:2.0', '12:1.0-1', '2.0~rc1-3+deb12u1', '1.0+dfsg-1ubuntu0.1', '1-2-3']) {
      expect(issues(DebianVersionSchema, good), good).toEqual([]);
    }
  });

  it('refuses a version that does not start with a digit, has a bad epoch, odd characters or ends in "-"', () => {
    const message = ': must be a Debian version ([epoch:]upstream[-revision])';
    for (const bad of ['', 'a1.0', ':1.0', 'x:1.0', '1:', '1:a', '1.0 ', '1.0_1', '1.0-', '1:2:3', ' 1.0']) {
      expect(issues(DebianVersionSchema, bad), JSON.stringify(bad)).toContain(message);
    }
  });

  it('refuses versions over 128 characters', () => {
    expect(issues(DebianVersionSchema, '1'.repeat(128))).toEqual([]);
    expect(issues(DebianVersionSchema, '1'.repeat(129))).toEqual([
      ': Too big: expected string to have <=128 characters',
    ]);
  });
});

describe('LabelsSchema', () => {
  it('takes selector-safe keys of 1 to 63 characters and values up to 128', () => {
    const labels = { env: 'prod', 'team.io/owner': 'ops', A9: '', [`k${'x'.repeat(62)}`]: 'v'.repeat(128) };
    expect(issues(LabelsSchema, labels)).toEqual([]);
  });

  it('refuses odd keys and long values', () => {
    const message = 'label keys are 1-63 of [A-Za-z0-9._/-]';
    for (const key of ['', '-env', '.env', '/env', 'env var', 'env=x', `k${'x'.repeat(63)}`, 'ümlaut']) {
      expect(issues(LabelsSchema, { [key]: 'x' }), key).toEqual([`${key}: ${message}`]);
    }
    expect(issues(LabelsSchema, { env: 'v'.repeat(129) })).toEqual([
      'env: Too big: expected string to have <=128 characters',
    ]);
  });

  it(`takes at most ${MAX_LABELS} labels`, () => {
    const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    expect(MAX_LABELS).toBe(64);
    expect(issues(LabelsSchema, many(64))).toEqual([]);
    expect(issues(LabelsSchema, many(65))).toEqual([': at most 64 labels']);
  });
});

describe('HostIdSchema', () => {
  it('takes 1 to 128 of [A-Za-z0-9._-], starting with a letter or digit', () => {
    for (const good of ['h', 'web-01', 'db_2.example.com', 'A', `h${'x'.repeat(127)}`]) {
      expect(issues(HostIdSchema, good), good).toEqual([]);
    }
    for (const bad of ['', '-web', '.web', '_web', 'web 1', 'web/1', 'web\n', `h${'x'.repeat(128)}`]) {
      expect(issues(HostIdSchema, bad), JSON.stringify(bad)).toEqual([': host ids are 1-128 of [A-Za-z0-9._-]']);
    }
  });
});
