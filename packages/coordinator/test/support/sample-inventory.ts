import type { InstalledPackage } from '@fleetpatch/shared';

/**
 * One installed package for inventory tests: `binary("libssl3", "3.0.14-1~deb12u2", { source: "openssl" })`.
 * The source version is the binary's unless said (a binNMU's differs), the status `ii` unless said.
 */
export function binary(
  name: string,
  version: string,
  options: { source?: string; sourceVersion?: string; architecture?: string; status?: string } = {},
): InstalledPackage {
  return {
    name,
    version,
    architecture: options.architecture ?? 'amd64',
    source: options.source ?? name,
    sourceVersion: options.sourceVersion ?? version,
    status: options.status ?? 'ii',
  };
}

export const VULNERABLE = '3.0.14-1~deb12u2';
export const FIXED = '3.0.15-1~deb12u1';

/** openssl and libssl3 at `version`, plus two unrelated packages. */
export function opensslHost(version: string): InstalledPackage[] {
  return [
    binary('openssl', version),
    binary('libssl3', version, { source: 'openssl' }),
    binary('bash', '5.2.15-2+b7', { sourceVersion: '5.2.15-2' }),
    binary('tzdata', '2024a-0+deb12u1', { architecture: 'all' }),
  ];
}
