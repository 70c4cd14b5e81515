import {
  type AnalysisRunView,
  assignWaves,
  complianceUrl,
  describeHaltPoint,
  ErrorCode,
  type FailingHost,
  FINAL_ROLLOUT_STATES,
  FleetError,
  type HostRunState,
  type HostView,
  isRevertable,
  type LiveHealth,
  protocolGapOf,
  type RolloutBrief,
  type RolloutHostPage,
  type RolloutPlan,
  type RolloutRecord as RolloutRecordView,
  type RolloutSigning,
  type RolloutStatus,
  type RolloutSummary,
  resolveWaveSizes,
  revertSignaturesNeeded,
  type StatementView,
  targetBriefOf,
  toleratedFailures,
  type WavePhase,
  type WindowStatus,
} from '@fleetpatch/shared';
import { currentWindow, nextWindowStart, occurrenceAt } from '../schedule/maintenance-window.js';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import type { StatementRecord } from '../store/statement-repository.js';
import type { Store } from '../store/store.js';
import { resolveFleetTarget } from './fleet-target.js';
import { reportedChange, TERMINAL_HOST_STATES } from './host-run-states.js';

/** Read-only views of rollouts for the API and CLI, in the shapes of shared's api-views.ts. */
export class RolloutView {
  constructor(
    private readonly store: Store,
    private readonly isOnline: (hostId: string) => boolean,
    private readonly protocolVersionOf: (hostId: string) => number | undefined = () => undefined,
    private readonly liveHealthOf: (orderId: string | null) => LiveHealth | undefined = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** The newest `limit` rollouts, newest first, each as a brief (its target's hosts counted, not listed). */
  async list(limit: number): Promise<RolloutBrief[]> {
    return (await this.store.rollouts.list(limit)).map(briefOf);
  }

  async plan(id: string): Promise<RolloutPlan> {
    const rollout = await this.mustGet(id);
    const frozen = rollout.hostCount > 0;
    let waves: string[][];
    let withoutInventory: string[] = [];
    if (frozen) {
      waves = Array.from({ length: rollout.waveCount }, () => []);
      for (const run of await this.store.hostRuns.forRollout(id)) waves[run.wave]?.push(run.hostId);
    } else {
      const target = await resolveFleetTarget(this.store, rollout.request.target);
      waves = assignWaves(target.hosts, rollout.request.waves);
      withoutInventory = target.withoutInventory;
    }
    const { exposedTo } = rollout.request.target;
    const hostCount = waves.reduce((n, w) => n + w.length, 0);
    const incompatible = await this.incompatibleHosts(rollout, waves.flat());
    const tolerated = toleratedFailures(rollout.request.maxFailures, hostCount);
    return {
      rolloutId: id,
      frozen,
      hostCount,
      waveSizes: frozen ? waves.map((w) => w.length) : resolveWaveSizes(hostCount, rollout.request.waves),
      waves: waves.map((hosts, wave) => ({ wave, hosts })),
      toleratedFailures: tolerated,
      haltsOn: describeHaltPoint(tolerated),
      revertable: await this.patchIsRevertable(rollout),
      ...(exposedTo && !frozen ? { exposedTo: { ...exposedTo, withoutInventory } } : {}),
      ...(incompatible.length > 0 ? { incompatible } : {}),
    };
  }

  /** Hosts whose connected agent speaks a protocol too old for the patch's change (offline ones are not known). */
  private async incompatibleHosts(
    rollout: RolloutRecord,
    hostIds: readonly string[],
  ): Promise<{ hostId: string; reason: string }[]> {
    const patch = await this.store.patches.get(rollout.patchId);
    if (!patch) return [];
    return hostIds.flatMap((hostId) => {
      const reason = protocolGapOf(patch, this.protocolVersionOf(hostId));
      return reason === undefined ? [] : [{ hostId, reason }];
    });
  }

  async status(id: string): Promise<RolloutStatus> {
    const rollout = await this.mustGet(id);
    const runs = await this.store.hostRuns.forRollout(id);
    const counts: RolloutStatus['counts'] = {};
    const waves: RolloutStatus['waves'] = Array.from({ length: rollout.waveCount }, (_, wave) => ({
      wave,
      phase: 'pending',
      hosts: [],
    }));
    for (const run of runs) {
      counts[run.state] = (counts[run.state] ?? 0) + 1;
      waves[run.wave]?.hosts.push(this.hostView(run));
    }
    const haltedBefore = await this.haltedBefore(rollout);
    for (const wave of waves) {
      const ran = wave.hosts.length > 0 && wave.hosts.every((h) => TERMINAL_HOST_STATES.has(h.state));
      wave.phase = wavePhase(rollout, wave.wave, ran, () => haltedBefore);
    }
    const tolerated = toleratedFailures(rollout.request.maxFailures, rollout.hostCount);
    const approvals = await this.store.rollouts.approvals(id);
    return {
      rollout: toView(rollout),
      approvals,
      signing: await this.signing(rollout, approvals.length),
      failures: runs.filter((r) => r.countedFailure).length,
      toleratedFailures: tolerated,
      haltsOn: describeHaltPoint(tolerated),
      counts,
      waves,
      analyses: await this.analyses(rollout),
      ...(rollout.request.target.exposedTo ? { compliance: complianceLink(rollout.request.target.exposedTo) } : {}),
      ...optional('promotion', await this.store.rollouts.promotion(rollout.id)),
      ...optional('window', this.windowStatus(rollout)),
      ...optional('warnings', succeededWarnings(rollout, counts, runs)),
    };
  }

  /**
   * The window a wave may start in now, or else the next one (a window past its cutoff lets no wave
   * start: the next one counts). None for a rollout without a window, or one that is over.
   */
  private windowStatus(rollout: RolloutRecord): WindowStatus | undefined {
    const { window } = rollout.request;
    if (window === undefined || FINAL_ROLLOUT_STATES.has(rollout.state)) return undefined;
    const now = this.now();
    const current = currentWindow(window, now);
    const open = current !== null && now < current.cutoffAt;
    const occurrence = open ? current : occurrenceAt(window, nextWindowStart(window, now));
    const iso = (at: number) => new Date(at).toISOString();
    return {
      open,
      opensAt: iso(occurrence.opensAt),
      cutoffAt: iso(occurrence.cutoffAt),
      closesAt: iso(occurrence.closesAt),
    };
  }

  /** Whether the rollout's apply ended halted (a revert followed): its wave then failed, whatever the revert did. */
  /** Whether the rollout's apply halted before it was reverted: read (from the trail) only when it matters. */
  private async haltedBefore(rollout: RolloutRecord): Promise<boolean> {
    if (rollout.state !== 'reverting' && rollout.state !== 'reverted') return false;
    return (await this.store.applyEndOf(rollout.id)) === 'halted';
  }

  /**
   * Counts per wave and state and the first failures, from an index alone (no host row read but the
   * failures', the verifying ones' while some verify, and a succeeded rollout's failed ones): the same
   * few hundred bytes at 10 hosts or 10,000.
   */
  async summary(id: string): Promise<RolloutSummary> {
    const rollout = await this.mustGet(id);
    const counts: RolloutSummary['counts'] = {};
    const waves: RolloutSummary['waves'] = Array.from({ length: rollout.waveCount }, (_, wave) => ({
      wave,
      phase: 'pending',
      hostCount: 0,
      counts: {},
    }));
    const finished = new Map<number, number>();
    for (const { wave, state, n } of await this.store.hostRuns.countByWaveAndState(id)) {
      counts[state] = (counts[state] ?? 0) + n;
      const summary = waves[wave];
      if (!summary) continue;
      summary.hostCount += n;
      summary.counts[state] = n;
      if (TERMINAL_HOST_STATES.has(state)) finished.set(wave, (finished.get(wave) ?? 0) + n);
    }
    const haltedBefore = await this.haltedBefore(rollout);
    for (const wave of waves) {
      const ran = wave.hostCount > 0 && finished.get(wave.wave) === wave.hostCount;
      wave.phase = wavePhase(rollout, wave.wave, ran, () => haltedBefore);
    }
    const tolerated = toleratedFailures(rollout.request.maxFailures, rollout.hostCount);
    return {
      rollout: briefOf(rollout),
      failures: await this.store.hostRuns.failures(id),
      toleratedFailures: tolerated,
      haltsOn: describeHaltPoint(tolerated),
      counts,
      waves,
      failedHosts: (await this.store.hostRuns.firstFailures(id, SUMMARY_FAILED_HOSTS)).map((run) => ({
        hostId: run.hostId,
        wave: run.wave,
        state: run.state,
        errorCode: run.errorCode,
        reason: run.reason === null ? null : run.reason.slice(0, SUMMARY_REASON_CHARS),
      })),
      failingHosts: counts.verifying ? await this.failingHosts(rollout) : [],
      analyses: await this.analyses(rollout, 1),
      ...optional('window', this.windowStatus(rollout)),
      // Only a succeeded rollout warns, of hosts that failed after their wave passed: few, read by state.
      ...optional(
        'warnings',
        rollout.state === 'succeeded'
          ? succeededWarnings(rollout, counts, await this.store.hostRuns.inStates(id, ['failed', 'revert_failed']))
          : undefined,
      ),
    };
  }

  /**
   * The first hosts of the current wave still verifying whose latest health poll fails a check, with
   * those checks. It reads the wave's verifying hosts in order of position (at most FAILING_SCAN:
   * in-flight hosts, bounded by the rollout's maxParallel) and looks each one's order up on the live
   * board, in memory.
   */
  private async failingHosts(rollout: RolloutRecord): Promise<FailingHost[]> {
    const verifying = await this.store.hostRuns.inWaveAndState(
      rollout.id,
      rollout.currentWave,
      'verifying',
      FAILING_SCAN,
    );
    const failing: FailingHost[] = [];
    for (const run of verifying) {
      const live = this.liveHealthOf(run.orderId);
      const checks = live?.checks.filter((check) => !check.ok) ?? [];
      if (!live || checks.length === 0) continue;
      failing.push({
        hostId: run.hostId,
        wave: run.wave,
        state: run.state,
        failingPolls: live.failingPolls,
        checks: checks
          .slice(0, SUMMARY_CHECKS_PER_HOST)
          .map((check) => ({ ...check, observed: check.observed.slice(0, SUMMARY_REASON_CHARS) })),
        ...(checks.length > SUMMARY_CHECKS_PER_HOST ? { moreChecks: checks.length - SUMMARY_CHECKS_PER_HOST } : {}),
      });
      if (failing.length === SUMMARY_FAILED_HOSTS) break;
    }
    return failing;
  }

  /** One page of a rollout's hosts by wave and position, optionally only one state or wave. */
  async hostPage(id: string, query: HostPageQuery): Promise<RolloutHostPage> {
    await this.mustGet(id);
    const runs = await this.store.hostRuns.page(id, {
      state: query.state,
      wave: query.wave,
      after: query.cursor === undefined ? undefined : parseHostCursor(query.cursor),
      limit: query.limit,
    });
    const last = runs.at(-1);
    return {
      hosts: runs.map((run) => ({ wave: run.wave, ...this.hostView(run) })),
      next: runs.length === query.limit && last ? `${last.wave}.${last.position}` : null,
    };
  }

  private hostView(run: HostRunRecord): HostView {
    const liveHealth = this.liveHealthOf(run.orderId);
    return {
      hostId: run.hostId,
      state: run.state,
      online: this.isOnline(run.hostId),
      changed: reportedChange(run),
      orderId: run.orderId,
      errorCode: run.errorCode,
      reason: run.reason,
      health: run.health,
      ...(liveHealth ? { liveHealth } : {}),
      rehearsal: run.rehearsal,
      afterChange: run.afterChange,
      ...(run.packages ? { packages: run.packages } : {}),
    };
  }

  /** Each analysis run of the rollout, with its latest `measurements` (20 in the full status, 1 in a summary). */
  private async analyses(rollout: RolloutRecord, measurements = 20): Promise<AnalysisRunView[]> {
    const declared = new Map(rollout.request.analyses.map((a) => [a.name, a]));
    const runs = await this.store.analyses.forRollout(rollout.id);
    return Promise.all(
      runs.map(async (run) => {
        const analysis = declared.get(run.name);
        return {
          wave: run.wave,
          name: run.name,
          attempt: run.attempt,
          condition: analysis?.condition ?? '',
          verdict: run.verdict,
          taken: run.taken,
          count: analysis?.count ?? 0,
          failed: run.failed,
          failureLimit: analysis?.failureLimit ?? 0,
          inconclusive: run.inconclusive,
          measurements: (await this.store.analyses.latest(run, measurements)).map(
            ({ at, phase, value, baseline, threshold, verdict, reason }) => ({
              at,
              phase,
              value,
              baseline,
              threshold,
              verdict,
              reason,
            }),
          ),
        };
      }),
    );
  }

  /** A signed rollout's statements with their signatures; null for an unsigned rollout. */
  private async signing(rollout: RolloutRecord, approvals: number): Promise<RolloutSigning | null> {
    const { statements } = this.store;
    const apply = await statements.apply(rollout.id);
    if (apply === undefined) return null;
    const view = async (record: StatementRecord): Promise<StatementView> => ({
      digest: record.digest,
      hostId: record.scope.kind === 'host' ? record.scope.hostId : null,
      statement: record.statement,
      signatures: (await statements.signatures(record.digest)).map(({ digest: _digest, ...signature }) => signature),
      createdAt: record.createdAt,
      usedAt: record.usedAt,
    });
    return {
      apply: await view(apply),
      reverts: await Promise.all((await statements.reverts(rollout.id)).map(view)),
      revertSignaturesNeeded: revertSignaturesNeeded(rollout.request.requiredApprovals, approvals),
    };
  }

  /** Throws not-found for an unknown rollout; O(1), unlike `status`, which reads every host. */
  async assertExists(id: string): Promise<void> {
    await this.mustGet(id);
  }

  /** False when the rollout's patch is marked `revertable: false` (a missing patch counts as revertable: nothing to warn of). */
  private async patchIsRevertable(rollout: RolloutRecord): Promise<boolean> {
    const patch = await this.store.patches.get(rollout.patchId);
    return patch ? isRevertable(patch.change) : true;
  }

  private async mustGet(id: string): Promise<RolloutRecord> {
    const rollout = await this.store.rollouts.get(id);
    if (!rollout) throw new FleetError(ErrorCode.notFound, `rollout ${id} does not exist`);
    return rollout;
  }
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return value === undefined ? {} : ({ [key]: value } as { [P in K]?: V });
}

/** Where to see whether the fix took: the compliance view of the rollout's `exposedTo`. */
function complianceLink(exposedTo: { source: string; fixed: string }): NonNullable<RolloutStatus['compliance']> {
  return { ...exposedTo, url: complianceUrl(exposedTo.source, exposedTo.fixed) };
}

/** The stored rollout as the API shows it: `bakeUntil` becomes an ISO time. */
function toView(rollout: RolloutRecord): RolloutRecordView {
  return { ...rollout, bakeUntil: rollout.bakeUntil === null ? null : new Date(rollout.bakeUntil).toISOString() };
}

/** A rollout as lists and summaries show it (`RolloutBriefSchema`). */
function briefOf(rollout: RolloutRecord): RolloutBrief {
  const view = toView(rollout);
  return { ...view, request: { ...view.request, target: targetBriefOf(view.request.target) } };
}

/** How many failed (and failing) hosts a summary names, and how much of each one's reason. */
const SUMMARY_FAILED_HOSTS = 10;
const SUMMARY_REASON_CHARS = 200;
/** A failing host's checks listed in the summary (a patch may have 32): its size must not grow with them. */
const SUMMARY_CHECKS_PER_HOST = 3;
/** The verifying hosts a summary looks through for failing health checks, at most. */
const FAILING_SCAN = 1000;

/** What one page of `RolloutView.hostPage` holds: the route's query, already validated. */
export interface HostPageQuery {
  state?: HostRunState | undefined;
  wave?: number | undefined;
  /** The `next` of the previous page: `<wave>.<position>`. */
  cursor?: string | undefined;
  limit: number;
}

/** The cursor format the route's schema admits: two non-negative integers. */
export const HOST_CURSOR_PATTERN = /^\d{1,9}\.\d{1,9}$/;

function parseHostCursor(cursor: string): { wave: number; position: number } {
  const [wave, position] = cursor.split('.').map(Number);
  return { wave: wave ?? 0, position: position ?? 0 };
}

/** A wave's phase: a retry can take the rollout back to an earlier wave, and later waves that already ran stay passed. */
function wavePhase(rollout: RolloutRecord, wave: number, ran: boolean, haltedBefore: () => boolean): WavePhase {
  if (wave < rollout.currentWave || (wave > rollout.currentWave && ran)) return 'passed';
  if (wave === rollout.currentWave) return currentWavePhase(rollout, ran, haltedBefore);
  return 'pending';
}

/**
 * The phase of the wave the rollout is at, from the rollout's state. A halt fails the wave it
 * happens in; `haltedBefore` (read only for a reverting or reverted rollout) keeps it failed after.
 */
function currentWavePhase(rollout: RolloutRecord, ran: boolean, haltedBefore: () => boolean): WavePhase {
  switch (rollout.state) {
    case 'draft':
    case 'awaiting_approval':
    case 'scheduled':
      return 'pending';
    case 'running':
    case 'paused':
      return rollout.bakeUntil !== null && ran ? 'baking' : 'running';
    case 'succeeded':
      return 'passed';
    case 'halted':
      return 'failed';
    case 'aborted':
      return 'stopped';
    case 'reverting':
    case 'reverted':
    case 'revert_failed':
      if (haltedBefore()) return 'failed';
      // The wave passed if it had reached its bake before the revert; else it was cut short.
      return rollout.bakeUntil !== null && ran ? 'passed' : 'stopped';
  }
}

/**
 * What a `succeeded` rollout's status must not let anyone read as "every host carries the patch":
 * hosts reverted by hand since, and hosts whose bake watch failed after it had succeeded (a race with
 * the cancel that ends the watches: failed, not counted against the budget — see ReportRecorder).
 */
function succeededWarnings(
  rollout: RolloutRecord,
  counts: RolloutStatus['counts'],
  /** The rollout's host runs: all of them, or at least every failed and revert_failed one. */
  runs: readonly HostRunRecord[],
): string[] | undefined {
  if (rollout.state !== 'succeeded') return undefined;
  const warnings: string[] = [];
  const revertedByHand = counts.reverted ?? 0;
  if (revertedByHand > 0)
    warnings.push(`succeeded, but ${revertedByHand} host(s) were reverted by hand and do not carry the patch`);
  const failedAfter = runs
    .filter((run) => (run.state === 'failed' || run.state === 'revert_failed') && !run.countedFailure)
    .map((run) => run.hostId);
  if (failedAfter.length > 0) {
    const shown = failedAfter.slice(0, 10).join(', ') + (failedAfter.length > 10 ? ', …' : '');
    warnings.push(
      `succeeded, but ${failedAfter.length} host(s) failed their bake watch after it ended (not counted against the failure budget): ${shown}`,
    );
  }
  return warnings.length > 0 ? warnings : undefined;
}
