import {
  byCodeUnits,
  type Clock,
  type ComplianceQuery,
  type ComplianceReport,
  compareDebianVersions,
  ErrorCode,
  FleetError,
  type HostInventoryStatus,
  type HostPackages,
  type PackagesQuery,
  type PackageVersions,
  packageKey,
} from '@fleetpatch/shared';
import type { Store } from '../store/store.js';
import { complianceReport } from './compliance.js';

/** What the views ask of the live side: the hub's connections and the inventory sync. */
export interface InventoryLiveness {
  isOnline(hostId: string): boolean;
  protocolVersionOf(hostId: string): number | undefined;
  isCurrent(hostId: string): boolean;
}

/** Read-only views of the fleet's package inventory for the API, in the shapes of shared's inventory-views.ts. */
export class InventoryView {
  constructor(
    private readonly store: Store,
    private readonly live: InventoryLiveness,
    private readonly clock: Pick<Clock, 'now'>,
  ) {}

  async versions(query: PackagesQuery): Promise<PackageVersions> {
    const versions = await this.store.inventory.versions(
      query.name !== undefined ? { name: query.name } : { source: query.source as string },
    );
    versions.sort(
      (a, b) =>
        byCodeUnits(a.name, b.name) ||
        byCodeUnits(a.architecture, b.architecture) ||
        compareDebianVersions(a.version, b.version) ||
        byCodeUnits(a.status, b.status),
    );
    return {
      query: query.name !== undefined ? { name: query.name } : { source: query.source as string },
      versions,
      hostsWithInventory: await this.store.inventory.countReported(),
    };
  }

  async hostPackages(hostId: string): Promise<HostPackages> {
    const agent = await this.store.agents.get(hostId);
    if (!agent) throw new FleetError(ErrorCode.notFound, `host ${hostId} is not registered`);
    const record = await this.store.inventory.get(hostId);
    const online = this.live.isOnline(hostId);
    const inventory: HostInventoryStatus = record
      ? {
          state: record.state,
          current: online && this.live.isCurrent(hostId),
          reason: record.reason,
          reportedAt: record.reportedAt,
          confirmedAt: record.confirmedAt,
          packageCount: record.packageCount,
        }
      : { state: 'none', current: false, reason: null, reportedAt: null, confirmedAt: null, packageCount: 0 };
    const packages = await this.store.inventory.packagesOf(hostId);
    packages.sort((a, b) => byCodeUnits(packageKey(a), packageKey(b)));
    return { hostId, online, inventory, packages };
  }

  async compliance(query: ComplianceQuery): Promise<ComplianceReport> {
    const states = await this.store.inventory.hostStates();
    return complianceReport(
      {
        source: query.source,
        fixed: query.fixed,
        hosts: states.map((state) => {
          const online = this.live.isOnline(state.hostId);
          return {
            id: state.hostId,
            revokedAt: state.revokedAt,
            lastSeenAt: state.lastSeenAt,
            online,
            protocolVersion: this.live.protocolVersionOf(state.hostId),
            current: online && this.live.isCurrent(state.hostId),
          };
        }),
        inventories: new Map(
          states.flatMap((state) => (state.inventory ? [[state.hostId, state.inventory] as const] : [])),
        ),
        binaries: await this.store.inventory.binariesOfSource(query.source),
        now: this.clock.now(),
      },
      query.status,
    );
  }
}
