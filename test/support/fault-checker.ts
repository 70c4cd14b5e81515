import type { EventPage, HostRunState, HostView, RolloutStatus } from '@fleetpatch/shared';
import type { DpkgRoot } from '../../packages/agent/test/support/deb-fixtures.js';
import { type ApiClient, waitFor } from '../../scripts/lib/local-fleet.mjs';
import { hostsOf, type JournalFileEntry, jsonLines, readJournal } from './fleet-harness.js';

/**
 * The checker of a fault scenario (Jepsen's, in spirit): once the fleet is quiet, it reads three
 * independent accounts of every host of a rollout — the host's real state (the file, or the package
 * in the host's dpkg database), the agent's journal in its
 * data dir, and the coordinator's view (status and audit trail) — and counts every order the
 * coordinator dispatched: applied at most once, ended somewhere, and all three accounts agreeing.
 */

/**
 * Where a host's order rests: nothing more happens to it unless a human acts. Written out here on
 * purpose, not imported from the coordinator (host-run-states.ts): the checker must not share the
 * code it checks.
 */
const RESTING: ReadonlySet<HostRunState> = new Set([
  'healthy',
  'failed',
  'timed_out',
  'skipped',
  'not_applicable',
  'cancelled',
  'reverted',
  'revert_failed',
]);

export interface Verdict {
  /** Apply orders the coordinator sent (an order id per host and attempt). */
  orders: number;
  /** Orders started exactly once by their agent (journal count and driver log lines). */
  appliedOnce: number;
  /** Orders dispatched that never came to rest, in the journal or in the coordinator's view. */
  lost: number;
  /** Orders started more than once, or whose result the coordinator counted more than once. */
  doubled: number;
  /** Every disagreement, in words: empty when the invariants hold. */
  problems: string[];
}

/** A rollout of a file change: the host carries it when the file holds `changedContent`. */
export interface FileExpectation {
  rolloutId: string;
  /** The file content that means "this host carries the rollout's change". */
  changedContent: string;
  /** The file the rollout changes, if not the fleet's own (`FaultFleetOptions.path`). */
  path?: string;
}

/**
 * A rollout of a package change: the host carries it when dpkg, in the host's own root, has the
 * package installed cleanly (`ii`, `dpkg --audit` empty) at `version`; at `priorVersion` it does not.
 * Anything else — half-installed, another version — is a problem on its own.
 */
export interface PackageExpectation {
  rolloutId: string;
  package: {
    name: string;
    version: string;
    priorVersion: string;
    /** Host `id`'s throwaway dpkg root. */
    rootOf(hostId: string): DpkgRoot;
  };
}

export type RolloutExpectation = FileExpectation | PackageExpectation;

/**
 * What the checker reads of a fleet: a fault fleet (one coordinator, hosts in namespaces) or a
 * coordinator group fleet (several coordinators on PostgreSQL); `api` is the coordinator it asks.
 */
export interface CheckedFleet {
  readonly api: ApiClient;
  readonly hostIds: readonly string[];
  dataOf(id: string): string;
  readFileAt(id: string, path?: string): Promise<string | null>;
  agentLogs(): string[];
  waitOnline(ids: readonly string[], timeoutMs: number): Promise<unknown>;
  /** The rollout as each coordinator sees it (a group has several): every one must tell the same story. */
  statusEverywhere?(rolloutId: string): Promise<RolloutStatus[]>;
}

/**
 * What the checker reads of one kind of change: the driver's log lines that change (or find changed)
 * the target — one per apply run — and whether the host carries the change now, from the host itself.
 */
interface ChangeProbe {
  applyLines: ReadonlySet<string>;
  /** True or false, or a string saying why the host is in neither state. */
  carries(hostId: string): Promise<boolean | string>;
}

function probeOf(fleet: CheckedFleet, expectation: RolloutExpectation): ChangeProbe {
  if ('changedContent' in expectation) {
    return {
      applyLines: new Set(['file apply: replaced', 'file apply: already in place']),
      carries: async (hostId) => (await fleet.readFileAt(hostId, expectation.path)) === expectation.changedContent,
    };
  }
  const { name, version, priorVersion, rootOf } = expectation.package;
  return {
    // The apt driver logs it right before the one dpkg run that changes the host; a target already
    // installed logs nothing and changes nothing.
    applyLines: new Set(['dpkg --install (one transaction)']),
    async carries(hostId) {
      const root = rootOf(hostId);
      const [query, audit] = await Promise.all([root.query(name), root.audit()]);
      if (audit !== '') return `dpkg --audit is not clean: ${audit}`;
      if (query?.status !== 'ii') return `${name} is ${JSON.stringify(query)}, not installed cleanly`;
      if (query.version === version) return true;
      if (query.version === priorVersion) return false;
      return `${name} is at ${query.version}, neither ${priorVersion} nor ${version}`;
    },
  };
}

/** How often each order id was applied according to the driver's log lines of every agent process. */
function applyRunsInLogs(fleet: CheckedFleet, applyLines: ReadonlySet<string>): Map<string, number> {
  const runs = new Map<string, number>();
  for (const line of jsonLines(fleet.agentLogs())) {
    if (typeof line.msg !== 'string' || !applyLines.has(line.msg) || typeof line.orderId !== 'string') continue;
    runs.set(line.orderId, (runs.get(line.orderId) ?? 0) + 1);
  }
  return runs;
}

/** Results the coordinator took from the agent for one host (each order answers once; late ones apart). */
function countedResults(events: EventPage['events'], hostId: string): { results: number; late: number } {
  const mine = events.filter((e) => e.hostId === hostId && e.actor === hostId);
  // Not results: progress, health, a late result (counted apart), and the security event a refused
  // order adds beside its result (a signed order refused as expired, say).
  const observations = new Set(['host.progress', 'host.health', 'host.late_result', 'security.order_refused']);
  return {
    results: mine.filter((e) => !observations.has(e.type)).length,
    late: mine.filter((e) => e.type === 'host.late_result').length,
  };
}

/** Whether the journal says the host carries the order's change: its apply entry, or its revert's. */
function journalCarries(entries: readonly JournalFileEntry[], orderId: string): boolean | undefined {
  const apply = entries.find((e) => e.orderId === orderId && e.kind === 'apply');
  if (!apply) return undefined;
  const revert = entries.find((e) => e.kind === 'revert' && e.revertsOrderId === orderId && e.phase === 'done');
  if (revert) return revert.result?.outcome !== 'reverted';
  return apply.changed;
}

/**
 * Checks one rollout once the fleet is quiet: every agent online, every journal entry of it done and
 * acknowledged (waited for, with a deadline), then the three accounts compared host by host.
 */
export async function checkRollout(fleet: CheckedFleet, expectation: RolloutExpectation): Promise<Verdict> {
  const { api } = fleet;
  const { rolloutId } = expectation;
  await fleet.waitOnline(fleet.hostIds, 60_000);
  const journals = new Map<string, JournalFileEntry[]>();
  // Quiet: every order of this rollout in every journal finished and acknowledged by the coordinator.
  await waitFor(
    `every journal entry of rollout ${rolloutId} done and acknowledged`,
    async () => {
      for (const id of fleet.hostIds) journals.set(id, await readJournal(fleet.dataOf(id)));
      return [...journals.values()].flat().every((e) => e.phase === 'done' && e.acked);
    },
    { timeoutMs: 60_000 },
  );
  const status = await api.get<RolloutStatus>(`/v1/rollouts/${rolloutId}`);
  const { events } = await api.get<EventPage>(`/v1/rollouts/${rolloutId}/events?limit=1000`);
  // Every coordinator of a group tells the same story as the one asked.
  const disagreements = await viewsDisagreeing(fleet, status);
  const probe = probeOf(fleet, expectation);
  const logRuns = applyRunsInLogs(fleet, probe.applyLines);
  const verdict: Verdict = { orders: 0, appliedOnce: 0, lost: 0, doubled: 0, problems: disagreements };
  const dispatchedTo = new Map<string, number>();
  const revertsTo = new Map<string, number>();
  for (const e of events) {
    if (e.type === 'host.dispatched' && e.hostId) dispatchedTo.set(e.hostId, (dispatchedTo.get(e.hostId) ?? 0) + 1);
    if (e.type === 'host.reverting' && e.hostId) revertsTo.set(e.hostId, (revertsTo.get(e.hostId) ?? 0) + 1);
  }

  for (const view of hostsOf(status)) {
    const hostId = view.hostId;
    const problem = (what: string) => verdict.problems.push(`${hostId}: ${what}`);
    const entries = journals.get(hostId) ?? [];
    const applies = entries.filter((e) => e.kind === 'apply' && e.order?.rolloutId === rolloutId);
    const dispatches = dispatchedTo.get(hostId) ?? 0;
    verdict.orders += dispatches;
    if (view.state === 'queued') {
      if (applies.length > 0) problem(`queued in the coordinator, yet its journal holds ${applies.length} order(s)`);
      continue;
    }
    // Nothing lost: the order came to rest in the coordinator's view, and every journaled one on the host.
    if (!RESTING.has(view.state)) {
      verdict.lost += 1;
      problem(`still ${view.state} in the coordinator's view`);
    }
    // Nothing doubled: each order started once (journal count, driver log lines), answered once.
    for (const entry of applies) {
      const runs = logRuns.get(entry.orderId) ?? 0;
      if (entry.executions > 1 || runs > 1) {
        verdict.doubled += 1;
        problem(`order ${entry.orderId} started ${entry.executions} time(s), applied ${runs} time(s) in the logs`);
      } else verdict.appliedOnce += 1;
      // The log evidence is there where it must be: a change the journal holds was applied in the logs.
      if (entry.changed && runs === 0) problem(`order ${entry.orderId} changed the host without an apply in the logs`);
    }
    // Each apply and each revert order answers once; a late answer is recorded once per order.
    const { results, late } = countedResults(events, hostId);
    const answerable = dispatches + (revertsTo.get(hostId) ?? 0);
    if (results > answerable || late > answerable) {
      verdict.doubled += 1;
      problem(`${results} result(s) and ${late} late result(s) counted for ${answerable} order(s)`);
    }
    if (applies.length > dispatches) problem(`${applies.length} orders in its journal, ${dispatches} dispatched`);
    // The three accounts agree on what the host carries now.
    const hostCarries = await probe.carries(hostId);
    if (typeof hostCarries === 'string') {
      problem(`the host is in neither state: ${hostCarries}`);
      continue;
    }
    const journal = view.orderId === null ? undefined : journalCarries(entries, view.orderId);
    const coordinator = view.changed;
    if (view.orderId !== null && journal === undefined && hostCarries) {
      problem(`the host carries the change but the journal has no order ${view.orderId}`);
    }
    if (journal !== undefined && journal !== hostCarries)
      problem(`journal says changed=${journal}, the host says ${hostCarries}`);
    if (coordinator !== hostCarries) {
      problem(`coordinator says changed=${String(coordinator)}, the host says ${hostCarries} (state ${view.state})`);
    }
  }
  return verdict;
}

/**
 * Where another coordinator's view of the rollout differs from `status` (the one asked): its state,
 * or a host's state, order or `changed`. Empty with one coordinator, or when the group agrees.
 */
async function viewsDisagreeing(fleet: CheckedFleet, status: RolloutStatus): Promise<string[]> {
  const views = (await fleet.statusEverywhere?.(status.rollout.id)) ?? [];
  const story = (view: RolloutStatus) => [
    `rollout ${view.rollout.state}`,
    ...hostsOf(view)
      .map((h) => `${h.hostId} ${h.state} order ${h.orderId} changed=${String(h.changed)}`)
      .sort(),
  ];
  const expected = story(status);
  return views.flatMap((view, i) => {
    const differs = story(view).filter((line, k) => line !== expected[k]);
    return differs.length === 0
      ? []
      : [`coordinator ${i + 1} of ${views.length} sees otherwise: ${differs.join('; ')}`];
  });
}

/** One verdict for several rollouts of a scenario: the counts added up, the problems side by side. */
export function sumVerdicts(verdicts: readonly Verdict[]): Verdict {
  return {
    orders: verdicts.reduce((n, v) => n + v.orders, 0),
    appliedOnce: verdicts.reduce((n, v) => n + v.appliedOnce, 0),
    lost: verdicts.reduce((n, v) => n + v.lost, 0),
    doubled: verdicts.reduce((n, v) => n + v.doubled, 0),
    problems: verdicts.flatMap((v) => v.problems),
  };
}

/** The hosts of a status in a given state. */
export function hostsIn(status: RolloutStatus, ...states: HostRunState[]): HostView[] {
  return hostsOf(status).filter((h) => states.includes(h.state));
}
