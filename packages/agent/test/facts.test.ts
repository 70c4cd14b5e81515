import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { arch, availableParallelism, hostname, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { collectFacts, readOsRelease } from '../src/facts.js';

/** The os-release files these tests write, in one directory removed when the file is done. */
const scratch = mkdtempSync(join(tmpdir(), 'os-release-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const osRelease = (text: string) => {
  const file = join(mkdtempSync(join(scratch, 'case-')), 'os-release');
  writeFileSync(file, text);
  return file;
};

describe('facts', () => {
  it("reads the distro and release from os-release(5), the rest from this machine's kernel", () => {
    const file = osRelease(
      'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
    );
    expect(collectFacts(file)).toEqual({
      hostname: hostname(),
      os: 'linux',
      distro: 'Debian GNU/Linux',
      release: '12',
      kernel: release(),
      arch: arch(),
      cpus: availableParallelism(),
      memoryBytes: totalmem(),
    });
  });

  it('unquotes single- and double-quoted values, keeps bare ones, and skips comments and junk', () => {
    const file = osRelease(
      '# a comment\nNAME=\'Ubuntu\'\nVERSION_ID=22.04\nVERSION="22.04 \\"LTS\\""\nnot a line\n lower=case\n',
    );
    expect(readOsRelease(file)).toEqual({ NAME: 'Ubuntu', VERSION_ID: '22.04', VERSION: '22.04 "LTS"' });
  });

  it('a host without os-release is "unknown", not a failed start', () => {
    const facts = collectFacts('/nonexistent/os-release');
    expect(facts).toMatchObject({ distro: 'unknown', release: 'unknown' });
  });
});
