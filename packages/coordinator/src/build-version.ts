import { packageVersion } from '@fleetpatch/shared';

/** This package's version, for `fleetpatch_build_info` and `--check-config`; read once from package.json. */
export const COORDINATOR_VERSION: string = packageVersion(import.meta.url, '@fleetpatch/coordinator');
