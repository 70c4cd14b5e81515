import { describe, expect, it } from 'vitest';
import { DpkgCommands } from '../src/drivers/dpkg-commands.js';

// The downgrade rule uses dpkg's own ordering: epochs, tildes and revisions as Debian means them.
const dpkg = new DpkgCommands({
  root: '/',
  commandPrefix: [],
  dpkgOptions: [],
  aptOptions: [],
  commandTimeoutMs: 10_000,
  env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
});
const live = new AbortController().signal;

describe('dpkg --compare-versions through the process runner', () => {
  it.each([
    ['1.0', '2.0', true],
    ['2.0', '1.0', false],
    ['1.0', '1.0', false],
    ['1.0~rc1', '1.0', true],
    ['9.9', '1:0.1', true],
    ['1.0-10', '1.0-9', false],
    ['1.0-1+deb12u1', '1.0-1+deb12u2', true],
  ])('%s lt %s is %s', async (a, b, lower) => {
    expect(await dpkg.isLower(a, b, live)).toBe(lower);
  });
});
