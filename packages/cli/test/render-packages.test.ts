import type { ComplianceReport, HostCompliance, HostPackages, PackageVersions } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import {
  complianceExitCode,
  renderCompliance,
  renderHostPackages,
  renderPackageVersions,
} from '../src/render-packages.js';

const NOW = new Date('2030-01-07T12:00:00Z');
const FIXED = '3.0.15-1~deb12u1';
const OLD = '3.0.14-1~deb12u2';
const ssl = (version: string, architecture = 'amd64', status = 'ii') => ({
  name: 'libssl3',
  architecture,
  version,
  sourceVersion: version,
  status,
});

function host(hostId: string, status: HostCompliance['status'], extra: Partial<HostCompliance> = {}): HostCompliance {
  return {
    hostId,
    status,
    online: true,
    reason: null,
    lastKnown: null,
    inventoryAt: '2030-01-07T11:59:50.000Z',
    ageSeconds: 10,
    installed: [],
    ...extra,
  };
}

function report(hosts: HostCompliance[]): ComplianceReport {
  const counts = { fixed: 0, exposed: 0, not_installed: 0, unknown: 0 };
  for (const h of hosts) counts[h.status] += 1;
  return { source: 'openssl', fixed: FIXED, evaluatedAt: NOW.toISOString(), counts, hosts };
}

describe('renderCompliance', () => {
  it('says the counts, then every host with what it has, how old that is and why it is unknown', () => {
    const text = renderCompliance(
      report([
        host('web-1', 'exposed', {
          installed: [ssl(OLD, 'i386'), ssl(FIXED), { ...ssl(`${FIXED}+b1`), name: 'openssl', sourceVersion: FIXED }],
        }),
        host('web-2', 'unknown', {
          online: false,
          reason: 'offline since 2030-01-07T11:00:00.000Z: its packages may have changed',
          lastKnown: 'not_installed',
          inventoryAt: '2030-01-07T11:00:00.000Z',
        }),
        host('web-3', 'unknown', { reason: 'never connected', inventoryAt: null, ageSeconds: null }),
        host('web-4', 'fixed', { installed: [ssl(FIXED, 'amd64', 'iF')] }),
        host('web-5', 'not_installed'),
      ]),
      NOW,
    );
    expect(text).toBe(
      [
        'openssl < 3.0.15-1~deb12u1: 1 exposed, 2 unknown, 1 fixed, 1 not installed (5 hosts)',
        '',
        'HOST   STATUS         INSTALLED                                                                                                             INVENTORY  WHY',
        'web-1  exposed        libssl3:i386 3.0.14-1~deb12u2, libssl3:amd64 3.0.15-1~deb12u1, openssl 3.0.15-1~deb12u1+b1 (source 3.0.15-1~deb12u1)  10s ago',
        'web-2  unknown        -                                                                                                                     1h ago     offline since 2030-01-07T11:00:00.000Z: its packages may have changed (last known: not installed)',
        'web-3  unknown        -                                                                                                                     -          never connected',
        'web-4  fixed          libssl3 3.0.15-1~deb12u1 [iF]                                                                                         10s ago',
        'web-5  not installed  -                                                                                                                     10s ago',
      ].join('\n'),
    );
  });

  it.each([
    [[host('a', 'exposed'), host('b', 'unknown')], 3],
    [[host('a', 'fixed'), host('b', 'unknown')], 4],
    [[host('a', 'fixed'), host('b', 'not_installed')], 0],
  ] as const)('exit code for %j is %i', (hosts, code) => {
    expect(complianceExitCode(report([...hosts]))).toBe(code);
  });
});

describe('renderPackageVersions', () => {
  it('lists every version with its host count, and over how many hosts', () => {
    const result: PackageVersions = {
      query: { source: 'openssl' },
      versions: [
        { ...ssl(OLD), source: 'openssl', hosts: 3 },
        { ...ssl(FIXED), source: 'openssl', hosts: 7 },
      ],
      hostsWithInventory: 12,
    };
    expect(renderPackageVersions(result)).toBe(
      [
        'NAME     ARCH   VERSION           SOURCE   STATUS  HOSTS',
        'libssl3  amd64  3.0.14-1~deb12u2  openssl  ii      3',
        'libssl3  amd64  3.0.15-1~deb12u1  openssl  ii      7',
        '',
        'source openssl: counted over the 12 hosts with a package inventory',
      ].join('\n'),
    );
    expect(renderPackageVersions({ query: { name: 'nope' }, versions: [], hostsWithInventory: 2 })).toBe(
      'package nope: installed on none of the 2 hosts with a package inventory',
    );
  });
});

describe('renderHostPackages', () => {
  it('says how current the inventory is before listing it', () => {
    const result: HostPackages = {
      hostId: 'web-1',
      online: false,
      inventory: {
        state: 'reported',
        current: false,
        reason: null,
        reportedAt: '2030-01-07T10:00:00.000Z',
        confirmedAt: '2030-01-07T11:00:00.000Z',
        packageCount: 1,
      },
      packages: [{ ...ssl(OLD), source: 'openssl' }],
    };
    expect(renderHostPackages(result, NOW)).toBe(
      [
        'web-1  offline  1 package, confirmed 1h ago (not confirmed on a live connection: may be out of date)',
        '',
        'NAME     ARCH   VERSION           SOURCE   STATUS',
        'libssl3  amd64  3.0.14-1~deb12u2  openssl  ii',
      ].join('\n'),
    );
  });
});
