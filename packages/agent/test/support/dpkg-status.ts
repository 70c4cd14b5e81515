import { spawnSync } from 'node:child_process';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requirement } from '../../../../test/support/requirements.js';

/** Tests that read a status file with the real dpkg-query need it on the machine. */
export const dpkgQuery = requirement(
  'dpkg-query',
  spawnSync('dpkg-query', ['--version'], { stdio: 'ignore' }).status === 0
    ? { available: true }
    : { available: false, reason: 'dpkg-query is not installed' },
);

/**
 * A dpkg status file written by hand, as dpkg writes it (a stanza per package), for tests that read a
 * database with the real dpkg-query but need no package installed: openssl's binaries at a
 * vulnerable version, one of them for two architectures, a binNMU, a package left half-configured and
 * one removed down to its config files.
 */
export interface StatusStanza {
  name: string;
  version: string;
  architecture: string;
  /** `Source:` as dpkg writes it: `openssl`, or `bash (5.2.15-2)` when the binary's version differs. */
  source?: string;
  /** Default `install ok installed`. */
  status?: string;
  multiArch?: 'same' | 'foreign';
}

export const VULNERABLE_OPENSSL: readonly StatusStanza[] = [
  { name: 'openssl', version: '3.0.14-1~deb12u2', architecture: 'amd64' },
  { name: 'libssl3', version: '3.0.14-1~deb12u2', architecture: 'amd64', source: 'openssl', multiArch: 'same' },
  { name: 'libssl3', version: '3.0.14-1~deb12u2', architecture: 'i386', source: 'openssl', multiArch: 'same' },
  { name: 'bash', version: '5.2.15-2+b7', architecture: 'amd64', source: 'bash (5.2.15-2)' },
  { name: 'tzdata', version: '2024a-0+deb12u1', architecture: 'all' },
  { name: 'curl', version: '7.88.1-10+deb12u7', architecture: 'amd64', status: 'install ok half-configured' },
  { name: 'oldpkg', version: '1.0-1', architecture: 'amd64', status: 'deinstall ok config-files' },
];

export function statusFileText(stanzas: readonly StatusStanza[]): string {
  return stanzas
    .map((s) =>
      [
        `Package: ${s.name}`,
        `Status: ${s.status ?? 'install ok installed'}`,
        'Priority: optional',
        'Section: misc',
        'Installed-Size: 100',
        'Maintainer: fleetpatch tests <tests@fleetpatch.invalid>',
        `Architecture: ${s.architecture}`,
        ...(s.multiArch ? [`Multi-Arch: ${s.multiArch}`] : []),
        ...(s.source ? [`Source: ${s.source}`] : []),
        `Version: ${s.version}`,
        `Description: ${s.name} for fleetpatch tests`,
        ' A stanza written by hand, as dpkg writes them.',
        '',
      ].join('\n'),
    )
    .join('\n');
}

/** Creates `<root>/var/lib/dpkg/status` holding `stanzas`. */
export async function writeStatusFile(root: string, stanzas: readonly StatusStanza[]): Promise<void> {
  await mkdir(join(root, 'var/lib/dpkg/updates'), { recursive: true });
  await writeFile(join(root, 'var/lib/dpkg/status'), statusFileText(stanzas));
}

/** Replaces the status file the way dpkg does: a new file renamed over the old one. */
export async function replaceStatusFile(root: string, stanzas: readonly StatusStanza[]): Promise<void> {
  const dir = join(root, 'var/lib/dpkg');
  await writeFile(join(dir, 'status-new'), statusFileText(stanzas));
  await rename(join(dir, 'status-new'), join(dir, 'status'));
}
