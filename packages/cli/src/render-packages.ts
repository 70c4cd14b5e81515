import type {
  ComplianceReport,
  HostCompliance,
  HostPackages,
  InstalledBinary,
  PackageVersions,
} from '@fleetpatch/shared';
import { ExitCode } from './cli-errors.js';
import { formatAge, plural, renderTable } from './render-table.js';
import { oneLine } from './terminal-text.js';

/**
 * openssl < 3.0.15-1~deb12u1: 1 exposed, 1 unknown, 1 fixed, 0 not installed (3 hosts)
 *
 * HOST   STATUS   INSTALLED                  INVENTORY  WHY
 * web-1  exposed  libssl3 3.0.14-1~deb12u2, openssl 3.0.15-1~deb12u1  4s ago
 */
export function renderCompliance(report: ComplianceReport, now: Date = new Date()): string {
  const { counts } = report;
  const total = counts.fixed + counts.exposed + counts.unknown + counts.not_installed;
  const head =
    oneLine`${report.source} < ${report.fixed}: ${counts.exposed} exposed, ${counts.unknown} unknown, ` +
    oneLine`${counts.fixed} fixed, ${counts.not_installed} not installed (${plural(total, 'host')})`;
  if (report.hosts.length === 0) return `${head}\n  no host to list`;
  const table = renderTable(
    ['host', 'status', 'installed', 'inventory', 'why'],
    report.hosts.map((host) => [
      host.hostId,
      host.status === 'not_installed' ? 'not installed' : host.status,
      formatInstalled(host.installed),
      host.inventoryAt ? formatAge(host.inventoryAt, now) : '-',
      why(host),
    ]),
  );
  return `${head}\n\n${table}`;
}

/** `compliance`'s exit code: 3 when a host is exposed, 4 when none is but some are unknown, else 0. */
export function complianceExitCode(report: ComplianceReport): ExitCode {
  if (report.counts.exposed > 0) return ExitCode.exposed;
  if (report.counts.unknown > 0) return ExitCode.unknown;
  return ExitCode.ok;
}

function why(host: HostCompliance): string {
  if (host.status !== 'unknown') return '';
  const last = host.lastKnown ? ` (last known: ${host.lastKnown.replace('_', ' ')})` : '';
  return `${host.reason ?? 'unknown'}${last}`;
}

/** "libssl3 3.0.14-1~deb12u2, openssl 3.0.14-1~deb12u2"; the architecture only where a name repeats. */
function formatInstalled(binaries: readonly InstalledBinary[]): string {
  if (binaries.length === 0) return '-';
  const repeated = new Set(
    binaries.filter((b, i) => binaries.findIndex((o) => o.name === b.name) !== i).map((b) => b.name),
  );
  return binaries
    .map((b) => {
      const name = repeated.has(b.name) ? `${b.name}:${b.architecture}` : b.name;
      const source = b.sourceVersion === b.version ? '' : ` (source ${b.sourceVersion})`;
      const state = b.status === 'ii' ? '' : ` [${b.status}]`;
      return `${name} ${b.version}${source}${state}`;
    })
    .join(', ');
}

/** NAME ARCH VERSION SOURCE STATUS HOSTS, then how many hosts the counts cover. */
export function renderPackageVersions(result: PackageVersions): string {
  const what =
    result.query.name !== undefined ? oneLine`package ${result.query.name}` : oneLine`source ${result.query.source}`;
  const basis = oneLine`${plural(result.hostsWithInventory, 'host')} with a package inventory`;
  if (result.versions.length === 0) return `${what}: installed on none of the ${basis}`;
  const table = renderTable(
    ['name', 'arch', 'version', 'source', 'status', 'hosts'],
    result.versions.map((v) => [
      v.name,
      v.architecture,
      v.version,
      v.sourceVersion === v.version ? v.source : `${v.source} ${v.sourceVersion}`,
      v.status,
      String(v.hosts),
    ]),
  );
  return `${table}\n\n${what}: counted over the ${basis}`;
}

/** One host's inventory: where it stands, then every package. */
export function renderHostPackages(result: HostPackages, now: Date = new Date()): string {
  const { inventory } = result;
  const online = result.online ? 'online' : 'offline';
  let state: string;
  switch (inventory.state) {
    case 'none':
      state = 'no inventory received';
      break;
    case 'unavailable':
      // The agent's own words on why it has none.
      state = oneLine`reports no packages: ${inventory.reason ?? 'no reason given'}`;
      break;
    case 'reported':
      state =
        oneLine`${plural(inventory.packageCount, 'package')}, confirmed ${formatAge(inventory.confirmedAt, now)}` +
        `${inventory.current ? '' : ' (not confirmed on a live connection: may be out of date)'}`;
      break;
  }
  const head = oneLine`${result.hostId}  ${online}  ${state}`;
  if (result.packages.length === 0) return head;
  const table = renderTable(
    ['name', 'arch', 'version', 'source', 'status'],
    result.packages.map((p) => [
      p.name,
      p.architecture,
      p.version,
      p.sourceVersion === p.version ? p.source : `${p.source} ${p.sourceVersion}`,
      p.status,
    ]),
  );
  return `${head}\n\n${table}`;
}
