import {
  byCodeUnits,
  COMPLIANCE_STATUSES,
  type ComplianceCounts,
  type ComplianceReport,
  type ComplianceStatus,
  compareParsed,
  type DebianVersion,
  describePackageStatus,
  type HostCompliance,
  type InstalledBinary,
  isSettled,
  parseDebianVersion,
} from '@fleetpatch/shared';
import type { HostInventoryRecord } from '../store/inventory-repository.js';

/** What a host's installed binaries of one source say, against the fixed source version. */
export type BinaryVerdict =
  | { status: 'not_installed' | 'exposed' | 'fixed' }
  /** At or above fixed, but not fully installed: the fix may not be in place. */
  | { status: 'unsettled'; reason: string };

/**
 * Compares source versions (not binary versions: a binNMU's `+b1` is the binary's, the fix is the
 * source's), each distinct version once however many hosts have it.
 */
export class FixedVersionCheck {
  private readonly fixed: DebianVersion;
  private readonly below = new Map<string, boolean>();

  constructor(fixed: string) {
    this.fixed = parseDebianVersion(fixed);
  }

  isBelow(sourceVersion: string): boolean {
    let answer = this.below.get(sourceVersion);
    if (answer === undefined) {
      answer = compareParsed(parseDebianVersion(sourceVersion), this.fixed) < 0;
      this.below.set(sourceVersion, answer);
    }
    return answer;
  }

  /**
   * Exposed when any binary is below fixed, whatever the others (several binaries of one source at
   * different versions are possible, and one old library is enough); fixed only when every one is
   * at or above fixed and fully installed.
   */
  verdict(binaries: readonly InstalledBinary[]): BinaryVerdict {
    if (binaries.length === 0) return { status: 'not_installed' };
    if (binaries.some((b) => this.isBelow(b.sourceVersion))) return { status: 'exposed' };
    const unsettled = binaries.find((b) => !isSettled(b.status));
    if (unsettled) {
      return {
        status: 'unsettled',
        reason: `${unsettled.name}:${unsettled.architecture} ${unsettled.version} is ${describePackageStatus(unsettled.status)}`,
      };
    }
    return { status: 'fixed' };
  }

  /** Binaries below fixed first, then by name and architecture. */
  sortForDisplay(binaries: readonly InstalledBinary[]): InstalledBinary[] {
    if (binaries.length < 2) return [...binaries];
    return [...binaries].sort(
      (a, b) =>
        Number(this.isBelow(b.sourceVersion)) - Number(this.isBelow(a.sourceVersion)) ||
        byCodeUnits(a.name, b.name) ||
        byCodeUnits(a.architecture, b.architecture),
    );
  }
}

/**
 * Hosts whose stored inventory has a binary of the source below `fixed`, online or not: what a
 * rollout targeted `exposedTo` selects (its offline policy decides what becomes of those away).
 */
export function exposedHostIds(binaries: ReadonlyMap<string, readonly InstalledBinary[]>, fixed: string): Set<string> {
  const check = new FixedVersionCheck(fixed);
  const exposed = new Set<string>();
  for (const [hostId, installed] of binaries) {
    if (check.verdict(installed).status === 'exposed') exposed.add(hostId);
  }
  return exposed;
}

/** What compliance needs to know of one registered host beyond its inventory. */
export interface ComplianceHost {
  id: string;
  revokedAt: string | null;
  lastSeenAt: string | null;
  online: boolean;
  /** The agreed protocol of its live connection (undefined when offline). */
  protocolVersion: number | undefined;
  /** Its stored inventory is confirmed on its live connection. */
  current: boolean;
}

export interface ComplianceInput {
  source: string;
  fixed: string;
  hosts: readonly ComplianceHost[];
  inventories: ReadonlyMap<string, HostInventoryRecord>;
  /** The installed binaries of the source, by host id. */
  binaries: ReadonlyMap<string, readonly InstalledBinary[]>;
  now: number;
}

/** Exposed first: what needs doing; then what cannot be judged. */
const LISTING_ORDER: Readonly<Record<ComplianceStatus, number>> = {
  exposed: 0,
  unknown: 1,
  fixed: 2,
  not_installed: 3,
};

/** Protocol that brought the inventory: an agent below it has none to send. */
const INVENTORY_PROTOCOL = 3;

/**
 * Every registered host labelled against `fixed`, never a guess: a host is `fixed`, `exposed` or
 * `not_installed` only when its agent is online and its stored inventory is confirmed current;
 * otherwise it is `unknown`, with the reason and, where an inventory exists, what it last said.
 * The counts cover every host; `list` (a status) keeps the listing to those hosts.
 */
export function complianceReport(input: ComplianceInput, list?: ComplianceStatus): ComplianceReport {
  const check = new FixedVersionCheck(input.fixed);
  const counts = Object.fromEntries(COMPLIANCE_STATUSES.map((s) => [s, 0])) as ComplianceCounts;
  const hosts: HostCompliance[] = [];
  for (const host of input.hosts) {
    const inventory = input.inventories.get(host.id);
    const binaries = input.binaries.get(host.id) ?? [];
    const judged = judge(host, inventory, check.verdict(binaries));
    counts[judged.status] += 1;
    if (list !== undefined && judged.status !== list) continue;
    hosts.push({
      hostId: host.id,
      ...judged,
      online: host.online,
      inventoryAt: inventory?.confirmedAt ?? null,
      ageSeconds: inventory ? Math.max(0, Math.floor((input.now - Date.parse(inventory.confirmedAt)) / 1000)) : null,
      installed: check.sortForDisplay(binaries),
    });
  }
  hosts.sort((a, b) => LISTING_ORDER[a.status] - LISTING_ORDER[b.status] || byCodeUnits(a.hostId, b.hostId));
  return {
    source: input.source,
    fixed: input.fixed,
    evaluatedAt: new Date(input.now).toISOString(),
    counts,
    hosts,
  };
}

type Judgement = Pick<HostCompliance, 'status' | 'reason' | 'lastKnown'>;

/** One host's status, in the order the reasons for `unknown` take precedence. */
function judge(host: ComplianceHost, inventory: HostInventoryRecord | undefined, verdict: BinaryVerdict): Judgement {
  const lastKnown = inventory?.state === 'reported' && verdict.status !== 'unsettled' ? verdict.status : null;
  const unknown = (reason: string, known: Judgement['lastKnown'] = lastKnown): Judgement => ({
    status: 'unknown',
    reason,
    lastKnown: known,
  });
  if (host.revokedAt !== null) return unknown(`the host's credential was revoked at ${host.revokedAt}`);
  if (!inventory) {
    if (!host.online) {
      return unknown(
        host.lastSeenAt ? `offline since ${host.lastSeenAt}; no inventory received` : 'never connected',
        null,
      );
    }
    if (host.protocolVersion !== undefined && host.protocolVersion < INVENTORY_PROTOCOL) {
      return unknown(
        `its agent speaks protocol ${host.protocolVersion}, which reports no packages: upgrade the agent`,
        null,
      );
    }
    return unknown('no inventory received yet', null);
  }
  if (inventory.state === 'unavailable') return unknown(`the agent reports no packages: ${inventory.reason}`, null);
  if (!host.online)
    return unknown(`offline since ${host.lastSeenAt ?? 'an unknown time'}: its packages may have changed`);
  if (!host.current) return unknown('its inventory is being refreshed: the stored one is not confirmed yet');
  if (verdict.status === 'unsettled') return unknown(verdict.reason, null);
  return { status: verdict.status, reason: null, lastKnown: null };
}
