import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { packageVersion } from '../src/package-version.js';

describe('packageVersion', () => {
  let work: string | undefined;
  afterEach(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** A package `@x/pkg` 1.2.3 inside a workspace `ws` 9.9.9, with a module at dist/ and one at dist/bin/. */
  function layout(): { module: string; bundled: string } {
    work = mkdtempSync(join(tmpdir(), 'fleetpatch-package-version-'));
    writeFileSync(join(work, 'package.json'), JSON.stringify({ name: 'ws', version: '9.9.9' }));
    const pkg = join(work, 'packages', 'pkg');
    mkdirSync(join(pkg, 'dist', 'bin'), { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: '@x/pkg', version: '1.2.3' }));
    // A stray manifest in between, of another name (as dist/ might hold): walked past.
    writeFileSync(join(pkg, 'dist', 'package.json'), JSON.stringify({ name: 'other', version: '0.0.1' }));
    return {
      module: pathToFileURL(join(pkg, 'dist', 'build-version.js')).href,
      bundled: pathToFileURL(join(pkg, 'dist', 'bin', 'program.js')).href,
    };
  }

  it('finds the nearest package.json of that name, from any depth below it', () => {
    const { module, bundled } = layout();
    expect(packageVersion(module, '@x/pkg')).toBe('1.2.3');
    expect(packageVersion(bundled, '@x/pkg')).toBe('1.2.3');
    expect(packageVersion(bundled, 'ws')).toBe('9.9.9');
  });

  it('names the package and the module when no package.json of that name is above it', () => {
    const { bundled } = layout();
    expect(() => packageVersion(bundled, '@x/missing')).toThrow(/no package\.json of @x\/missing above .*program\.js/);
  });

  it('reads the real packages’ versions from their sources', () => {
    expect(packageVersion(import.meta.url, '@fleetpatch/shared')).toMatch(/^\d+\.\d+\.\d+/);
  });
});
