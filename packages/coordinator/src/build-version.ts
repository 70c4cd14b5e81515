import { readFileSync } from 'node:fs';

/** This package's version, for `fleetpatch_build_info` and `--check-config`; read once from package.json. */
export const COORDINATOR_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
