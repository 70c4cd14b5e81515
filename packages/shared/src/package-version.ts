import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The version of package `name`, read from the nearest `package.json` of that name above the module
 * at `moduleUrl`. Found by walking up rather than by a fixed `../package.json`: the same code runs
 * from `dist/<module>.js` and from the bundled binary in `dist/bin/` (scripts/bundle.mjs), one
 * directory deeper.
 */
export function packageVersion(moduleUrl: string, name: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  for (;;) {
    const manifest = readManifest(`${dir}/package.json`);
    if (manifest?.name === name && typeof manifest.version === 'string') return manifest.version;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json of ${name} above ${fileURLToPath(moduleUrl)}`);
    dir = parent;
  }
}

function readManifest(path: string): { name?: unknown; version?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as { name?: unknown; version?: unknown };
  } catch {
    return undefined;
  }
}
