/**
 * `realPathOf`: where a path really is, symlinks resolved, existing or not — what the agent's own
 * directories are guarded by (own-directories.test.ts runs a whole agent on a symlinked staging path).
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { realPathOf } from '../src/fs/real-path.js';

let base: string;
beforeEach(() => {
  // realpath'd: tmpdir() may itself lie behind a symlink.
  base = realpathSync(mkdtempSync(join(tmpdir(), 'real-path-')));
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

it('is the path itself for a real, existing directory', () => {
  mkdirSync(join(base, 'data'));
  expect(realPathOf(join(base, 'data'))).toBe(join(base, 'data'));
});

it('resolves a symlink on the way to an existing directory', () => {
  mkdirSync(join(base, 'real', 'data'), { recursive: true });
  symlinkSync(join(base, 'real'), join(base, 'link'));
  expect(realPathOf(join(base, 'link', 'data'))).toBe(join(base, 'real', 'data'));
});

it('keeps the missing part as written below the real path of the nearest existing ancestor', () => {
  mkdirSync(join(base, 'real'));
  symlinkSync(join(base, 'real'), join(base, 'link'));
  expect(realPathOf(join(base, 'link', 'cache', 'apt'))).toBe(join(base, 'real', 'cache', 'apt'));
});

it('counts a dangling symlink as missing: its parent is resolved, its name kept', () => {
  mkdirSync(join(base, 'real'));
  symlinkSync(join(base, 'real'), join(base, 'link'));
  symlinkSync(join(base, 'nowhere'), join(base, 'real', 'dangling'));
  expect(realPathOf(join(base, 'link', 'dangling', 'apt'))).toBe(join(base, 'real', 'dangling', 'apt'));
});

it('is the path as written when nothing of it exists but the root', () => {
  expect(realPathOf('/fleetpatch-no-such-dir/a/b')).toBe('/fleetpatch-no-such-dir/a/b');
});
