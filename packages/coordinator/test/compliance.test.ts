/**
 * Compliance labels, one host situation at a time: fixed, exposed and not_installed only on an
 * inventory confirmed current by an online agent, compared by source version; `unknown` with its
 * reason, its age and what the last inventory said in every other case.
 */
import type { InstalledBinary, InstalledPackage } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { type ComplianceHost, complianceReport, FixedVersionCheck } from '../src/inventory/compliance.js';
import type { HostInventoryRecord } from '../src/store/inventory-repository.js';
import { binary, FIXED, VULNERABLE } from './support/sample-inventory.js';

const NOW = Date.parse('2030-01-07T12:00:00Z');
const HOUR_AGO = new Date(NOW - 3600_000).toISOString();

interface Situation {
  host?: Partial<ComplianceHost>;
  /** undefined: no inventory stored; [] : an inventory without the source. */
  packages?: InstalledPackage[];
  inventory?: Partial<HostInventoryRecord>;
}

const ssl = (version: string, options: Parameters<typeof binary>[2] = {}) =>
  binary('libssl3', version, { source: 'openssl', ...options });

const SITUATIONS: Record<string, Situation> = {
  fixed: { packages: [binary('openssl', FIXED), ssl(FIXED)] },
  // One binary left behind is enough.
  mixed: { packages: [binary('openssl', FIXED), ssl(VULNERABLE)] },
  // A binNMU of the fixed source is fixed: the source version is what is compared...
  binnmu: { packages: [ssl(`${FIXED}+b1`, { sourceVersion: FIXED })] },
  // ...and a binary whose own version looks fixed, built from an older source, is not.
  'old-source': { packages: [ssl(FIXED, { sourceVersion: VULNERABLE })] },
  multiarch: { packages: [ssl(FIXED), ssl(VULNERABLE, { architecture: 'i386' })] },
  'not-installed': { packages: [binary('bash', '5.2.15-2')] },
  'half-configured-fixed': { packages: [ssl(FIXED, { status: 'iF' })] },
  'unpacked-vulnerable': { packages: [ssl(VULNERABLE, { status: 'iU' })] },
  offline: { host: { online: false, current: false, protocolVersion: undefined }, packages: [ssl(FIXED)] },
  refreshing: { host: { current: false }, packages: [ssl(VULNERABLE)] },
  'never-connected': { host: { online: false, current: false, lastSeenAt: null, protocolVersion: undefined } },
  'protocol-2': { host: { current: false, protocolVersion: 2 } },
  'just-connected': { host: { current: false } },
  'no-dpkg': { inventory: { state: 'unavailable', reason: 'no dpkg database at /var/lib/dpkg', digest: null } },
  revoked: { host: { revokedAt: HOUR_AGO, online: false, current: false }, packages: [ssl(VULNERABLE)] },
};

function report() {
  const hosts: ComplianceHost[] = [];
  const inventories = new Map<string, HostInventoryRecord>();
  const binaries = new Map<string, InstalledBinary[]>();
  for (const [id, situation] of Object.entries(SITUATIONS)) {
    hosts.push({
      id,
      revokedAt: null,
      lastSeenAt: HOUR_AGO,
      online: true,
      protocolVersion: 3,
      current: true,
      ...situation.host,
    });
    if (situation.packages || situation.inventory) {
      const packages = situation.packages ?? [];
      inventories.set(id, {
        hostId: id,
        state: 'reported',
        reason: null,
        digest: 'd'.repeat(64),
        packageCount: packages.length,
        reportedAt: HOUR_AGO,
        confirmedAt: HOUR_AGO,
        ...situation.inventory,
      });
      const ofSource = packages
        .filter((p) => p.source === 'openssl')
        .map(({ name, architecture, version, sourceVersion, status }) => ({
          name,
          architecture,
          version,
          sourceVersion,
          status,
        }));
      if (ofSource.length > 0) binaries.set(id, ofSource);
    }
  }
  return complianceReport({ source: 'openssl', fixed: FIXED, hosts, inventories, binaries, now: NOW });
}

describe('complianceReport', () => {
  const result = report();
  const host = (id: string) => {
    const found = result.hosts.find((h) => h.hostId === id);
    if (!found) throw new Error(`no host ${id}`);
    return found;
  };

  it.each([
    ['fixed', 'fixed'],
    ['binnmu', 'fixed'],
    ['mixed', 'exposed'],
    ['old-source', 'exposed'],
    ['multiarch', 'exposed'],
    ['unpacked-vulnerable', 'exposed'],
    ['not-installed', 'not_installed'],
  ])('%s is %s', (id, status) => {
    expect(host(id)).toMatchObject({ status, reason: null, lastKnown: null, online: true });
  });

  it('lists the binaries below fixed first, with their versions', () => {
    expect(host('mixed').installed.map((b) => `${b.name} ${b.sourceVersion}`)).toEqual([
      `libssl3 ${VULNERABLE}`,
      `openssl ${FIXED}`,
    ]);
  });

  it.each([
    ['half-configured-fixed', /libssl3:amd64 3\.0\.15-1~deb12u1 is half-configured \(iF\)/, null],
    ['offline', /^offline since 2030-01-07T11:00:00\.000Z/, 'fixed'],
    ['refreshing', /being refreshed/, 'exposed'],
    ['never-connected', /^never connected$/, null],
    ['protocol-2', /protocol 2, which reports no packages: upgrade the agent/, null],
    ['just-connected', /^no inventory received yet$/, null],
    ['no-dpkg', /reports no packages: no dpkg database at \/var\/lib\/dpkg/, null],
    ['revoked', /credential was revoked/, 'exposed'],
  ])('%s is unknown: %s, last known %s', (id, reason, lastKnown) => {
    const h = host(id);
    expect(h.status).toBe('unknown');
    expect(h.reason).toMatch(reason);
    expect(h.lastKnown).toBe(lastKnown);
  });

  it('gives the age of the inventory a status rests on', () => {
    expect(host('offline')).toMatchObject({ inventoryAt: HOUR_AGO, ageSeconds: 3600 });
    expect(host('never-connected')).toMatchObject({ inventoryAt: null, ageSeconds: null });
  });

  it('counts every host once, and lists exposed first, then unknown, fixed, not installed', () => {
    expect(result.counts).toEqual({ fixed: 2, exposed: 4, not_installed: 1, unknown: 8 });
    const order = result.hosts.map((h) => h.status);
    expect(order).toEqual([...order].sort((a, b) => rank(a) - rank(b)));
    expect(result.evaluatedAt).toBe(new Date(NOW).toISOString());
  });
});

function rank(status: string): number {
  return ['exposed', 'unknown', 'fixed', 'not_installed'].indexOf(status);
}

describe('FixedVersionCheck', () => {
  it('compares source versions the dpkg way', () => {
    const check = new FixedVersionCheck('1:2.0-1');
    expect(check.isBelow('2.0-1')).toBe(true); // no epoch is epoch 0
    expect(check.isBelow('1:2.0-1~rc1')).toBe(true);
    expect(check.isBelow('1:2.0-1')).toBe(false);
    expect(check.isBelow('1:2.0-1+deb12u1')).toBe(false);
  });
});
