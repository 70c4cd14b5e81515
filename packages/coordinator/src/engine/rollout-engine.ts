import {
  type ApproveRequest,
  type AttachStatementRequest,
  type ChangeRecordField,
  ErrorCode,
  FleetError,
  type Hello,
  isRevertable,
  type MaintenanceWindow,
  missingRecordFields,
  NOT_REVERTABLE_NOTE,
  type OrderProgress,
  type OrderResultBody,
  type RevertSignatureRequest,
  type RolloutRequest,
  type RolloutState,
  systemClock,
  waveData,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { type MetricQuery, queryPrometheus } from '../analysis/prometheus-query.js';
import type { PromotionConfig } from '../config.js';
import type { HostRunRecord } from '../store/host-run-repository.js';
import { OneAtATime, type SectionGuard } from '../store/one-at-a-time.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import { ROLLOUT_SCOPE } from '../store/statement-repository.js';
import type { Store } from '../store/store.js';
import { AnalysisRunner } from './analysis-runner.js';
import { ClockStepWatch, followClockStep } from './clock-step.js';
import { ConnectedAudit } from './connected-audit.js';
import { expireDeadlines } from './deadline-sweeper.js';
import type {
  AgentChannel,
  CoordinatorCrashPoint,
  EngineClock,
  EngineDeps,
  RolloutDriving,
  WaveGate,
  WindowWatcher,
} from './engine-interfaces.js';
import { SOLE_DRIVER } from './engine-interfaces.js';
import { canaryFitnessOf, planCanaryFirst, resolveFleetTarget } from './fleet-target.js';
import { healthOutlastsHostTimeout } from './health-deadline-fit.js';
import { IN_FLIGHT_HOST_STATES, TERMINAL_HOST_STATES } from './host-run-states.js';
import { transitionHostRun } from './host-run-transition.js';
import { newId } from './ids.js';
import { invalidField } from './invalid-field.js';
import { LiveHealthBoard } from './live-health.js';
import { cancelInFlight, resendInFlight } from './order-sender.js';
import { OwedCancels } from './owed-cancels.js';
import { checkPromotion, environmentOf, promotionRefusal, stageRunsOf } from './promotion-gate.js';
import { ReconnectGrace } from './reconnect-grace.js';
import { recordApart } from './report-isolation.js';
import { type AgentReport, ReportRecorder } from './report-recorder.js';
import { RevertRunner } from './revert-runner.js';
import { RolloutSigning } from './rollout-signing.js';
import { assertVerb, VERB_TRANSITIONS } from './rollout-states.js';
import { isoNow, mustGetRollout, SYSTEM, transitionRollout, WINDOW_PAUSE_REASON } from './rollout-transition.js';
import { unknownHostIds } from './target-resolver.js';
import { WaveAdvancer } from './wave-advancer.js';

/** How long a batch of agent reports that failed to commit waits before it is recorded again. */
const REPORT_RETRY_MS = 1000;
/** How many times one report the store refuses on its own is tried before it is dropped (see `setAside`). */
const REPORT_REFUSALS = 3;
/**
 * Reports are recorded in bursts, one transaction each (group commit): the first report of a burst
 * waits this long for others (unless no company is coming: REPORT_QUIET_MS, `resultsAwaited`). A few
 * milliseconds on a host's answer; under load, one commit and one advance for dozens of hosts instead
 * of one per host, and an order's progress and its result often share a burst (the progress is then
 * not written at all).
 */
const REPORT_BATCH_MS = 5;
/**
 * A report that comes this long after the one before it finds no burst to join (the canary's result,
 * a lone host's): it is recorded at once rather than wait REPORT_BATCH_MS for company that is not coming.
 */
const REPORT_QUIET_MS = 10;

/**
 * When the reports waiting to be recorded will be: not yet asked for; `batching`, after
 * REPORT_BATCH_MS for company (a result that finds no company coming cancels that wait and asks for
 * them `due` instead); `due`, on the next turn or at a failed batch's retry, which nothing hastens.
 */
type ReportFlush = 'none' | 'batching' | 'due';

export type {
  AgentChannel,
  CoordinatorCrashPoint,
  EngineClock,
  WaveGate,
  WindowWatcher,
} from './engine-interfaces.js';

export interface RolloutEngineOptions {
  store: Store;
  channel: AgentChannel;
  log: Logger;
  clock?: EngineClock;
  waveGate?: WaveGate;
  /** Checks a window before a rollout is created with it; throws validation_failed. */
  validateWindow?: (window: MaintenanceWindow) => void;
  windows?: WindowWatcher;
  /**
   * The fewest approvals a rollout may ask for (the coordinator's `minApprovals`): without it one
   * operator could skip four eyes by asking for none. Defaults to 0 so engine tests need no approver.
   */
  minApprovals?: number;
  /** At most one `agent.connected` row per agent per window (see `ConnectedAudit`); default 60 s. */
  connectedAuditWindowMs?: number;
  /** Test-only crash points (see `EngineDeps.checkpoint`). */
  checkpoint?: (name: CoordinatorCrashPoint) => void;
  /** How metric analyses query their server: Prometheus's HTTP API unless a test says otherwise. */
  metricQuery?: MetricQuery;
  /** The coordinator's promotion order (staging before production); absent, no promotion rule. */
  promotion?: PromotionConfig | undefined;
  /** Change record fields a patch must fill before a rollout of it is approved or started (default none). */
  requiredRecordFields?: readonly ChangeRecordField[];
  /** In a coordinator group: which rollouts this coordinator drives (default: all of them). */
  driving?: RolloutDriving;
  /** In a coordinator group: what makes the engine's steps one at a time across the group too. */
  stepGuard?: SectionGuard;
  /**
   * Whether an order sent on this coordinator's sockets still owes its result (`AgentHub.awaitsResults`):
   * while none does, a report has no company coming and is recorded at once. Default: always one does.
   */
  resultsAwaited?: () => boolean;
  /** Told of each agent report dropped after the store refused it REPORT_REFUSALS times (a metric counts them). */
  onReportDropped?: (kind: AgentReport['kind']) => void;
  /**
   * For this long after the engine is made, hosts whose hello it has not recorded are not judged on
   * time (see `ReconnectGrace`): the coordinator's `reconnectGraceSeconds`. Default 0, none.
   */
  reconnectGraceMs?: number;
}

/** An admin's reason to start a rollout the promotion order would refuse. */
export interface StartOptions {
  overridePromotion?: { reason: string };
}

/** How many unknown host ids a refused create names in its message. */
const UNKNOWN_HOSTS_NAMED = 10;

/**
 * The rollout engine: plain TypeScript over the store and an `AgentChannel`.
 *
 * All state lives in SQLite; the engine holds nothing it cannot rebuild, so a coordinator killed at
 * any instruction restarts and carries on. Every transition is one transaction with its event row,
 * and every order is committed (with its id) before it is sent: the agent journals order ids, so a
 * resend after a crash is answered with the recorded result instead of a second apply.
 *
 * This class is the façade: the human verbs live here, and so does the scheduling (reports batched
 * per burst, rollouts marked dirty and advanced on the next turn). The work is done by
 * `ReportRecorder` (agent reports), `WaveAdvancer` (waves, budgets, bakes, windows, dispatch),
 * `RevertRunner` (revert orders and outcome) and `expireDeadlines` (timeouts).
 */
export class RolloutEngine {
  private readonly store: Store;
  private readonly channel: AgentChannel;
  private readonly log: Logger;
  private readonly clock: EngineClock;
  /** Notices a step of the wall clock between ticks (undefined: a clock without a monotonic reading). */
  private readonly clockStep: ClockStepWatch | undefined;
  private readonly windows: WindowWatcher | undefined;
  private readonly validateWindow: (window: MaintenanceWindow) => void;
  private readonly minApprovals: number;
  private readonly promotion: PromotionConfig | undefined;
  private readonly requiredRecordFields: readonly ChangeRecordField[];
  private readonly deps: EngineDeps;
  private readonly reverts: RevertRunner;
  private readonly signing: RolloutSigning;
  private readonly advancer: WaveAdvancer;
  private readonly analyses: AnalysisRunner;
  private readonly recorder: ReportRecorder;
  /** Each order's latest health results while its host verifies or bakes (the status shows them). */
  readonly liveHealth = new LiveHealthBoard();
  /** The engine's steps (verbs, ticks, recording a burst, advancing) run one at a time: see OneAtATime. */
  private readonly steps: OneAtATime;
  private readonly driving: RolloutDriving;
  private readonly dirty = new Set<string>();
  /** The last reason each scheduled start was refused for, so a wait is logged once, not every tick. */
  private readonly startRefusals = new Map<string, string>();
  private reports: AgentReport[] = [];
  /** How often the store has refused each report set aside (see `setAside`). */
  private readonly refusals = new WeakMap<AgentReport, number>();
  private readonly onReportDropped: ((kind: AgentReport['kind']) => void) | undefined;
  private flush: ReportFlush = 'none';
  /** Cancels a `batching` flush's wait, if it has not ended yet (see `later`). */
  private cancelBatch: (() => boolean) | undefined;
  private readonly resultsAwaited: () => boolean;
  /** When the last agent report came, on the engine's clock: see REPORT_QUIET_MS. */
  private lastReportAt = Number.NEGATIVE_INFINITY;
  private advanceScheduled = false;
  private stopped = false;
  /** Flushes and advances scheduled (on the next turn, or a retry timer) that have not run yet. */
  private scheduled = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(options: RolloutEngineOptions) {
    this.store = options.store;
    this.channel = options.channel;
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    this.clockStep = ClockStepWatch.of(this.clock);
    this.windows = options.windows;
    this.validateWindow = options.validateWindow ?? (() => {});
    this.minApprovals = options.minApprovals ?? 0;
    this.promotion = options.promotion;
    this.requiredRecordFields = options.requiredRecordFields ?? [];
    this.steps = new OneAtATime(options.stepGuard);
    this.driving = options.driving ?? SOLE_DRIVER;
    this.resultsAwaited = options.resultsAwaited ?? (() => true);
    this.onReportDropped = options.onReportDropped;
    this.deps = {
      store: this.store,
      channel: this.channel,
      log: this.log,
      clock: this.clock,
      waveGate: options.waveGate ?? (() => true),
      windows: this.windows,
      markDirty: (rolloutId) => this.markDirty(rolloutId),
      isStopped: () => this.stopped,
      drives: (rolloutId) => this.driving.drives(rolloutId),
      grace: options.reconnectGraceMs
        ? new ReconnectGrace(this.clock.now() + options.reconnectGraceMs, (hostId) =>
            this.channel.isOnlineElsewhere ? this.channel.isOnlineElsewhere(hostId) : false,
          )
        : ReconnectGrace.none(),
      owedCancels: new OwedCancels(),
      checkpoint: options.checkpoint,
    };
    this.reverts = new RevertRunner(this.deps);
    this.signing = new RolloutSigning(this.deps);
    this.analyses = new AnalysisRunner(
      this.deps,
      this.reverts,
      options.metricQuery ?? queryPrometheus,
      (work) => this.track(work),
      this.steps,
    );
    this.advancer = new WaveAdvancer(this.deps, this.reverts, this.analyses);
    this.recorder = new ReportRecorder(
      this.deps,
      this.reverts,
      new ConnectedAudit(options.connectedAuditWindowMs ?? 60_000),
      this.liveHealth,
    );
  }

  /**
   * Runs `work` as one of the engine's steps: for work outside the engine that decides on what the
   * engine writes (removing an agent decides on whether a rollout holds it). In a group no member's
   * step — a start taking hosts, an advance dispatching them — runs in between.
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    return this.steps.run(work);
  }

  /** After a restart: re-arms the window watch of every rollout that still has one to honour. */
  async resumeWindows(): Promise<void> {
    return this.steps.run(async () => {
      for (const rollout of await this.store.rollouts.inStates(['scheduled', 'running', 'paused'])) {
        if (rollout.request.window) this.windows?.watch(rollout.id, rollout.request.window);
      }
    });
  }

  /** Something outside (a window opening) says this rollout may be able to move. */
  wake(rolloutId: string): void {
    this.markDirty(rolloutId);
  }

  // ---- verbs ---------------------------------------------------------------------------------

  async create(request: RolloutRequest, actor: string): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      const patch = await this.store.patches.get(request.patchId);
      if (!patch)
        throw new FleetError(ErrorCode.validationFailed, `patch ${request.patchId} does not exist`, {
          path: 'patchId',
        });
      if (request.requiredApprovals < this.minApprovals) {
        throw invalidField(
          'body.requiredApprovals',
          `must be at least ${this.minApprovals} (this coordinator's minApprovals), got ${request.requiredApprovals}`,
        );
      }
      if (request.window) this.validateWindow(request.window);
      const healthTooLong = healthOutlastsHostTimeout(patch, request);
      if (healthTooLong) throw invalidField('body.hostTimeoutSeconds', healthTooLong);
      if (!isRevertable(patch.change) && (request.autoRevert === 'wave' || request.autoRevert === 'rollout')) {
        throw invalidField('body.autoRevert', `must be host or none: patch ${patch.id} is ${NOT_REVERTABLE_NOTE}`);
      }
      const unknown = unknownHostIds(request.target, await this.store.agents.list());
      if (unknown.length > 0) {
        // The message names the first few (a pasted list can miss by thousands); the details name them all.
        const named = unknown.slice(0, UNKNOWN_HOSTS_NAMED).join(', ');
        const more = unknown.length > UNKNOWN_HOSTS_NAMED ? ` and ${unknown.length - UNKNOWN_HOSTS_NAMED} more` : '';
        throw new FleetError(ErrorCode.validationFailed, `unknown host ids: ${named}${more}`, {
          path: 'target.hostIds',
          unknown,
        });
      }
      const id = newId('ro');
      const state: RolloutState = request.draft ? 'draft' : approvalState(request);
      await this.store.transaction(async () => {
        await this.store.rollouts.insert(
          { id, patchId: patch.id, request, state, createdBy: actor },
          isoNow(this.clock),
        );
        await this.store.appendEvent(
          { rolloutId: id, actor, type: 'rollout.created', toState: state, data: { request } },
          isoNow(this.clock),
        );
      });
      // Watched from the start, so the window's opening wakes the rollout (resumeWindows re-arms it after a restart).
      if (request.window) this.windows?.watch(id, request.window);
      return await mustGetRollout(this.store, id);
    });
  }

  /** A draft goes up for approval (or straight to scheduled when it needs none). */
  async submit(id: string, actor: string): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      await this.store.transaction(async () => {
        const rollout = await mustGetRollout(this.store, id);
        assertVerb(id, rollout.state, 'submit');
        await transitionRollout(this.deps, rollout, approvalState(rollout.request), actor, 'submitted');
      });
      return await mustGetRollout(this.store, id);
    });
  }

  /**
   * The author of a draft attaches the apply statement they signed (see `RolloutSigning.attachApply`):
   * from then on the rollout is signed, and every order it sends carries the statement.
   */
  async attachStatement(id: string, request: AttachStatementRequest, actor: string): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      await this.store.transaction(async () => await this.signing.attachApply(id, request, actor));
      return await mustGetRollout(this.store, id);
    });
  }

  /**
   * Approval by someone other than the creator; enough approvals make the rollout startable. A signed
   * rollout's approval carries the approver's signature of its statement, by a key of their own.
   */
  async approve(id: string, actor: string, request?: ApproveRequest): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      await this.store.transaction(async () => {
        const rollout = await mustGetRollout(this.store, id);
        assertVerb(id, rollout.state, 'approve');
        await this.assertRecordComplete(rollout, 'approved');
        if (actor === rollout.createdBy) {
          throw new FleetError(
            ErrorCode.forbidden,
            'four eyes: a rollout cannot be approved by the person who created it',
            {
              rolloutId: id,
              createdBy: rollout.createdBy,
            },
          );
        }
        // The content is the patch's: its author approving a rollout someone else created (an admin
        // may write patches and approve) would be the change's only review.
        const patch = await this.store.patches.get(rollout.patchId);
        if (actor === patch?.createdBy) {
          throw new FleetError(
            ErrorCode.forbidden,
            'four eyes: a rollout cannot be approved by the author of its patch',
            { rolloutId: id, patchId: rollout.patchId, patchCreatedBy: patch.createdBy },
          );
        }
        if (!(await this.store.rollouts.addApproval(id, actor, isoNow(this.clock)))) {
          throw new FleetError(ErrorCode.conflict, `${actor} has already approved this rollout`, { rolloutId: id });
        }
        const keyId = await this.signing.recordApproval(rollout, request, actor);
        await this.store.appendEvent(
          { rolloutId: id, actor, type: 'rollout.approved', ...(keyId ? { data: { keyId } } : {}) },
          isoNow(this.clock),
        );
        if ((await this.store.rollouts.approvals(id)).length >= rollout.request.requiredApprovals) {
          await transitionRollout(this.deps, rollout, 'scheduled', actor, 'approved');
        }
      });
      return await mustGetRollout(this.store, id);
    });
  }

  /**
   * Freezes the target set, assigns waves and starts the first one. Under a promotion order, hosts of
   * a later environment need the earlier one passed by the same content; an admin's `overridePromotion`
   * (checked by the route) starts it anyway, with the reason on the record.
   */
  async start(id: string, actor: string, options: StartOptions = {}): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      await this.store.transaction(async () => {
        const rollout = await mustGetRollout(this.store, id);
        if (rollout.state === 'awaiting_approval') {
          const have = (await this.store.rollouts.approvals(id)).length;
          throw new FleetError(
            ErrorCode.illegalTransition,
            `rollout needs ${rollout.request.requiredApprovals} approval(s), has ${have}`,
            {
              rolloutId: id,
              state: rollout.state,
            },
          );
        }
        assertVerb(id, rollout.state, 'start');
        const { exposedTo } = rollout.request.target;
        const fleet = await resolveFleetTarget(this.store, rollout.request.target);
        const { withoutInventory } = fleet;
        const { hosts, unsigned } = await this.signing.signedHosts(rollout, fleet.hosts);
        if (hosts.length === 0) {
          const why =
            unsigned.length > 0
              ? 'the target selects no host the statement was signed for'
              : exposedTo
                ? `the target selects no hosts: none is exposed to ${exposedTo.source} below ${exposedTo.fixed}${withoutInventory.length > 0 ? ` (${withoutInventory.length} without a package inventory were not judged)` : ''}`
                : 'the target selects no hosts';
          throw new FleetError(ErrorCode.conflict, why, { rolloutId: id, ...(exposedTo ? { withoutInventory } : {}) });
        }
        // A label target signed for the hosts it selected then: hosts that match now but were not signed
        // for would refuse the order (not_in_target), so they get none, and the trail says so.
        if (unsigned.length > 0) {
          this.log.warn(
            { rolloutId: id, unsigned: unsigned.length },
            'hosts not signed for are left out of the rollout',
          );
          await this.store.appendEvent(
            {
              rolloutId: id,
              actor: SYSTEM,
              type: 'rollout.hosts_not_signed',
              data: { count: unsigned.length, hosts: unsigned.slice(0, 100) },
            },
            isoNow(this.clock),
          );
        }
        await this.assertRecordComplete(rollout, 'started');
        await this.checkPromotionOrder(rollout, hosts, actor, options);
        const waves = planCanaryFirst(
          hosts,
          canaryFitnessOf(fleet.agents, (hostId) => this.channel.isOnline(hostId)),
          rollout.request.waves,
        );
        await this.store.hostRuns.insertQueued(
          id,
          waves.flatMap((hostIds, wave) => hostIds.map((hostId, position) => ({ hostId, wave, position }))),
        );
        await this.store.rollouts.freezeTarget(id, hosts.length, waves.length);
        await this.store.rollouts.setWave(id, 0, null, isoNow(this.clock));
        await this.analyses.startWave(rollout, 0);
        await transitionRollout(this.deps, rollout, 'running', actor, null, {
          hostCount: hosts.length,
          waveSizes: waves.map((w) => w.length),
          // Which hosts the inventory could not judge: frozen out with the rest, and on the record.
          ...(exposedTo
            ? {
                exposedTo: {
                  ...exposedTo,
                  withoutInventoryCount: withoutInventory.length,
                  withoutInventory: withoutInventory.slice(0, 100),
                },
              }
            : {}),
        });
        await this.store.appendEvent(
          { rolloutId: id, actor: SYSTEM, type: 'wave.started', data: { ...waveData(0), hosts: waves[0] } },
          isoNow(this.clock),
        );
      });
      this.markDirty(id);
      return await mustGetRollout(this.store, id);
    });
  }

  async pause(id: string, actor: string): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      if (await this.holdWindowPause(id, actor)) {
        this.markDirty(id);
        return await mustGetRollout(this.store, id);
      }
      return await this.verbTransition(id, 'pause', actor, 'paused by operator');
    });
  }

  /**
   * A rollout its maintenance window paused, paused by a person: the pause becomes theirs, so the
   * window's next opening leaves it alone (it resumes only a pause of its own) and only `resume` goes
   * on. Without this the operator who wants nothing to start tonight was refused (it is paused
   * already) and had only abort. Returns false for any other rollout, which `pause` judges as usual.
   */
  private async holdWindowPause(id: string, actor: string): Promise<boolean> {
    return await this.store.transaction(async () => {
      const rollout = await mustGetRollout(this.store, id);
      if (rollout.state !== 'paused' || rollout.stateReason !== WINDOW_PAUSE_REASON) return false;
      const at = isoNow(this.clock);
      // From `paused` only: a window that opened meanwhile (another member's step) resumed it, and then
      // this pause is an ordinary one of a running rollout.
      if (!(await this.store.rollouts.setState(id, 'paused', 'paused by operator', false, at, 'paused'))) return false;
      await this.store.appendEvent(
        {
          rolloutId: id,
          actor,
          type: 'rollout.paused',
          fromState: 'paused',
          toState: 'paused',
          data: { reason: 'paused by operator', was: WINDOW_PAUSE_REASON },
        },
        at,
      );
      return true;
    });
  }

  async resume(id: string, actor: string): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      return await this.verbTransition(id, 'resume', actor, null);
    });
  }

  /** Sticky stop: nothing new is sent, in-flight orders are cancelled; only `retry` restarts. */
  async abort(id: string, actor: string, reason: string | null): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      const rollout = await this.verbTransition(id, 'abort', actor, reason ?? 'aborted by operator');
      await cancelInFlight(this.store, this.channel, id);
      return rollout;
    });
  }

  /**
   * Restarts a halted or aborted rollout: hosts that failed, were skipped or cancelled get a new order,
   * and so does a timed-out host once its earlier order has answered (or its agent's hello showed it
   * never arrived). Before that it may still carry the earlier order's change: requeueing would clear
   * that order id, its late result would be dropped, and a revert would miss the host. It stays
   * timed_out (and counted) until then.
   */
  async retry(id: string, actor: string): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      await this.store.transaction(async () => {
        const rollout = await mustGetRollout(this.store, id);
        assertVerb(id, rollout.state, 'retry');
        // Retry resumes a rollout that ran: its target frozen, its hosts in waves. One aborted before it
        // started has neither (and may never have been approved): "retried", it ran no host and ended
        // succeeded — evidence for a change nobody rolled out. Start means a new rollout, approved anew.
        if (rollout.startedAt === null) {
          throw new FleetError(
            ErrorCode.illegalTransition,
            'cannot retry a rollout that never started (it has no hosts to retry): create a new rollout of the patch',
            { rolloutId: id, state: rollout.state },
          );
        }
        // A revert still out would finish under a running rollout, which could then pass the wave (or
        // succeed) with the host's outcome unknown; the operator retries once the reverts are in.
        const reverting = (await this.store.hostRuns.countInStates(id, ['reverting'])).get('reverting') ?? 0;
        if (reverting > 0) {
          throw new FleetError(
            ErrorCode.illegalTransition,
            `cannot retry while ${reverting} host(s) of this rollout are reverting; retry once their reverts have finished`,
            { rolloutId: id, state: rollout.state, reverting },
          );
        }
        // An abort cancelled the orders in flight: a host still owing that cancel's answer is not a
        // candidate now, and would answer `cancelled` under the running rollout afterwards, never
        // requeued — its wave passes, and the rollout may succeed, without it. Retry once they answered.
        if (rollout.state === 'aborted') {
          const counts = await this.store.hostRuns.countInStates(id, IN_FLIGHT_HOST_STATES);
          const cancelling = IN_FLIGHT_HOST_STATES.reduce((n, s) => n + (counts.get(s) ?? 0), 0);
          if (cancelling > 0) {
            throw new FleetError(
              ErrorCode.illegalTransition,
              `cannot retry while ${cancelling} host(s) of this rollout have not answered the abort's cancel; retry once they have answered (or timed out)`,
              { rolloutId: id, state: rollout.state, inFlight: cancelling },
            );
          }
        }
        const candidates = (
          await this.store.hostRuns.inStates(id, ['failed', 'timed_out', 'skipped', 'cancelled'])
        ).filter((run) => run.wave <= rollout.currentWave && !run.changed);
        const retried: HostRunRecord[] = [];
        const notRequeued: { hostId: string; reason: string }[] = [];
        for (const run of candidates) {
          if (run.state === 'timed_out' && !run.answered) {
            notRequeued.push({
              hostId: run.hostId,
              reason: 'timed out and its earlier order has not answered yet: the host may still carry that change',
            });
          } else retried.push(run);
        }
        // Recorded by the rollout's own event below, which names every requeued host.
        for (const run of retried) await transitionHostRun(this.deps, run, { to: 'queued' }, null);
        // Dispatch only reads the current wave: go back to the earliest wave with a requeued host (else it
        // would stay queued while later waves run), and let a retried wave pass its gate and bake again.
        const wave = Math.min(rollout.currentWave, ...retried.map((r) => r.wave));
        // A retried wave is measured again from scratch: its analyses start a new attempt.
        await this.store.analyses.restartFrom(id, wave, this.clock.now());
        if (retried.length > 0) {
          await this.store.rollouts.setWave(id, wave, null, isoNow(this.clock));
          if (wave < rollout.currentWave)
            await this.store.appendEvent(
              { rolloutId: id, actor: SYSTEM, type: 'wave.started', data: { ...waveData(wave), retry: true } },
              isoNow(this.clock),
            );
        }
        await transitionRollout(this.deps, rollout, 'running', actor, null, {
          requeued: retried.map((r) => r.hostId),
          ...(notRequeued.length > 0 ? { notRequeued } : {}),
        });
      });
      this.markDirty(id);
      return await mustGetRollout(this.store, id);
    });
  }

  /** Ends the current bake now. */
  async promote(id: string, actor: string): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      await this.store.transaction(async () => {
        const rollout = await mustGetRollout(this.store, id);
        // Only while baking, as documented: a paused rollout is resumed first (promote must not be a back door past a pause).
        if (rollout.bakeUntil === null || rollout.state !== 'running') {
          const why =
            rollout.state === 'paused' ? 'it is paused: resume it first' : `it is ${rollout.state}, not baking`;
          throw new FleetError(ErrorCode.illegalTransition, `promote ends a bake; ${why}`, {
            rolloutId: id,
            state: rollout.state,
          });
        }
        await this.store.rollouts.setWave(id, rollout.currentWave, this.clock.now(), isoNow(this.clock));
        await this.store.appendEvent(
          { rolloutId: id, actor, type: 'rollout.promoted', data: waveData(rollout.currentWave) },
          isoNow(this.clock),
        );
      });
      this.markDirty(id);
      return await mustGetRollout(this.store, id);
    });
  }

  /**
   * One call puts every host that applied back to its snapshot; no waves, no gates. A signed rollout
   * reverts only under a revert statement signed by enough people (`signRevert`), used up here.
   */
  async revert(id: string, actor: string): Promise<RolloutRecord> {
    return this.steps.run(async () => {
      await this.store.transaction(async () => {
        const rollout = await mustGetRollout(this.store, id);
        assertVerb(id, rollout.state, 'revert');
        await this.assertRevertable(rollout);
        if (await this.signing.isSigned(id)) await this.signing.useRevertStatement(rollout, ROLLOUT_SCOPE);
        // Asked by a person, a revert tries again every host still changed whose revert failed; the engine
        // never retries one by itself (advanceRevert skips a revert_failed host that has a revert order).
        for (const run of await this.store.hostRuns.inStates(id, ['revert_failed'])) {
          if (run.changed) await this.store.hostRuns.forgetRevertOrder(id, run.hostId);
        }
        await transitionRollout(this.deps, rollout, 'reverting', actor, 'revert requested');
      });
      await cancelInFlight(this.store, this.channel, id);
      this.markDirty(id);
      return await mustGetRollout(this.store, id);
    });
  }

  /** Reverts one host of a rollout, whatever the rollout's state (a signed rollout: under a revert statement for it). */
  async revertHost(id: string, hostId: string, actor: string): Promise<HostRunRecord> {
    return this.steps.run(async () => {
      await this.store.transaction(async () => {
        const rollout = await mustGetRollout(this.store, id);
        const run = await this.store.hostRuns.get(id, hostId);
        if (!run) throw new FleetError(ErrorCode.notFound, `host ${hostId} is not part of rollout ${id}`);
        if (!TERMINAL_HOST_STATES.has(run.state) || run.state === 'reverted' || !run.changed) {
          throw new FleetError(
            ErrorCode.illegalTransition,
            `host ${hostId} is ${run.state}${run.changed ? '' : ' and carries no change'}; nothing to revert`,
            {
              rolloutId: id,
              hostId,
              state: run.state,
            },
          );
        }
        await this.assertRevertable(rollout);
        if (await this.signing.isSigned(id)) await this.signing.useRevertStatement(rollout, { kind: 'host', hostId });
        await this.store.appendEvent(
          { rolloutId: id, hostId, actor, type: 'host.revert_requested' },
          isoNow(this.clock),
        );
        await this.reverts.dispatch(run);
      });
      return (await this.store.hostRuns.get(id, hostId)) as HostRunRecord;
    });
  }

  /** Refused (409, naming the fields) while the patch's change record leaves a required field empty. */
  private async assertRecordComplete(rollout: RolloutRecord, verb: 'approved' | 'started'): Promise<void> {
    if (this.requiredRecordFields.length === 0) return;
    const patch = await this.store.patches.get(rollout.patchId);
    const missing = missingRecordFields(patch?.record, this.requiredRecordFields);
    if (missing.length === 0) return;
    throw new FleetError(
      ErrorCode.conflict,
      `patch ${rollout.patchId}'s change record leaves required field(s) empty: ${missing.join(', ')}; a rollout of it cannot be ${verb} (create the patch again with them)`,
      { rolloutId: rollout.id, patchId: rollout.patchId, missing },
    );
  }

  /**
   * Must run inside start's transaction. Records what the promotion order decided for these hosts;
   * refuses (409) when an earlier environment was not passed, unless an admin overrides with a reason.
   */
  private async checkPromotionOrder(
    rollout: RolloutRecord,
    hostIds: readonly string[],
    actor: string,
    options: StartOptions,
  ): Promise<void> {
    const policy = this.promotion;
    if (!policy) return;
    const patch = await this.store.patches.get(rollout.patchId);
    if (!patch) return;
    const labels = new Map((await this.store.agents.list()).map((agent) => [agent.id, agent.labels]));
    const { decision, blocking } = checkPromotion(
      policy,
      hostIds.map((hostId) => environmentOf(labels.get(hostId) ?? {}, policy)),
      await stageRunsOf(this.store, patch.contentDigest, policy, rollout.id),
      this.clock.now(),
    );
    if (blocking.length > 0) {
      const override = options.overridePromotion;
      if (!override) {
        throw new FleetError(ErrorCode.conflict, promotionRefusal(blocking, patch.contentDigest), {
          rolloutId: rollout.id,
          contentDigest: patch.contentDigest,
          missing: blocking,
        });
      }
      decision.override = { by: actor, at: isoNow(this.clock), reason: override.reason };
      await this.store.appendEvent(
        {
          rolloutId: rollout.id,
          actor,
          type: 'rollout.promotion_overridden',
          data: { reason: override.reason, missing: blocking },
        },
        isoNow(this.clock),
      );
    }
    await this.store.rollouts.setPromotion(rollout.id, decision);
  }

  /** A revert of a patch marked `revertable: false` can only fail on a host without a prior .deb: refused, 409. */
  private async assertRevertable(rollout: RolloutRecord): Promise<void> {
    const patch = await this.store.patches.get(rollout.patchId);
    if (patch && !isRevertable(patch.change)) {
      throw new FleetError(ErrorCode.conflict, `patch ${patch.id} is ${NOT_REVERTABLE_NOTE}`, {
        rolloutId: rollout.id,
        patchId: patch.id,
        revertable: false,
      });
    }
  }

  /**
   * A signature on the revert statement of a signed rollout (or of one host of it). The signature
   * is committed first; once the statement has enough signers the revert starts at once, as if
   * `revert` (or `revertHost`) had been called by the last signer. Returns whether it started.
   */
  async signRevert(id: string, request: RevertSignatureRequest, actor: string): Promise<boolean> {
    return this.steps.run(async () => {
      const ready = await this.store.transaction(async () => {
        // Refused before the signature is kept: a signed revert of a one-way patch could only fail.
        await this.assertRevertable(await mustGetRollout(this.store, id));
        return await this.signing.addRevertSignature(id, request, actor);
      });
      if (!ready) return false;
      if (request.hostId === undefined) await this.revert(id, actor);
      else await this.revertHost(id, request.hostId, actor);
      return true;
    });
  }

  private async verbTransition(
    id: string,
    verb: 'pause' | 'resume' | 'abort',
    actor: string,
    reason: string | null,
  ): Promise<RolloutRecord> {
    await this.store.transaction(async () => {
      const rollout = await mustGetRollout(this.store, id);
      assertVerb(id, rollout.state, verb);
      await transitionRollout(this.deps, rollout, VERB_TRANSITIONS[verb].to, actor, reason);
    });
    this.markDirty(id);
    return await mustGetRollout(this.store, id);
  }

  // ---- agent reports -------------------------------------------------------------------------

  /**
   * An agent (re)connected. Its journal is the truth: results it reports are recorded, and orders
   * we think are in flight but it never mentioned are sent again (it answers known ids from its
   * journal, so a resend never applies twice).
   */
  onAgentHello(agentId: string, hello: Hello): void {
    this.report({ agentId, kind: 'hello', body: hello });
  }

  onOrderProgress(agentId: string, progress: OrderProgress): void {
    this.report({ agentId, kind: 'progress', body: progress });
  }

  /** Results are committed in batches (one transaction per burst); the agent is acked after commit. */
  onOrderResult(agentId: string, result: OrderResultBody): void {
    this.report({ agentId, kind: 'result', body: result });
  }

  // ---- time ----------------------------------------------------------------------------------

  /** Called every second or so: start times, deadlines, bakes, windows. Only rollouts that can move are read. */
  async tick(): Promise<void> {
    return this.steps.run(async () => {
      // Before anything is judged on time: running work follows a step of the wall clock.
      const step = this.clockStep?.step() ?? 0;
      if (step !== 0) {
        try {
          await followClockStep(this.deps, step);
        } catch (err) {
          // Rolled back: the next tick moves the work by this step still.
          this.clockStep?.owe(step);
          throw err;
        }
        this.deps.grace.shift(step);
      }
      // A start time that passed while the coordinator was down waits for its agents to come back: started
      // before, every host would look offline, its canary among them (see ReconnectGrace).
      const startsWait = !this.deps.grace.over(this.clock.now());
      for (const rollout of await this.store.rollouts.inStates(['scheduled'])) {
        const startAt = rollout.request.startAt;
        if (!this.driving.drives(rollout.id) || startsWait) continue;
        if (startAt === undefined || Date.parse(startAt) > this.clock.now()) continue;
        try {
          await this.start(rollout.id, SYSTEM);
          this.startRefusals.delete(rollout.id);
        } catch (err) {
          // Tried again every tick (a promotion soak ends by itself): logged when the reason changes.
          const reason = err instanceof Error ? err.message : String(err);
          if (this.startRefusals.get(rollout.id) !== reason) {
            this.startRefusals.set(rollout.id, reason);
            this.log.warn({ err, rolloutId: rollout.id }, 'scheduled start failed');
          }
        }
      }
      await expireDeadlines(this.deps);
      await this.analyses.tick();
      for (const rollout of await this.store.rollouts.inStates(['running', 'paused', 'reverting']))
        if (this.driving.drives(rollout.id)) this.markDirty(rollout.id);
      await this.advanceDirty();
    });
  }

  /**
   * In a group: this coordinator now drives these rollouts (a first lease, or one taken over from a
   * coordinator that died). Their in-flight orders go again: what the last driver sent may never
   * have reached the agent (an agent answers an order it has from its journal: nothing applies twice).
   */
  async takeOver(rolloutIds: readonly string[]): Promise<void> {
    await this.steps.run(async () => {
      for (const id of rolloutIds) {
        this.log.info({ rolloutId: id }, 'driving this rollout now');
        await resendInFlight(this.deps, id);
        this.markDirty(id);
      }
    });
  }

  stop(): void {
    this.stopped = true;
    this.analyses.stop();
    this.resolveIfIdle();
  }

  /**
   * Resolves once the engine has nothing left to do by itself: no agent report waiting to be
   * recorded, no flush or advance scheduled, and no metric measurement in flight. Each of those may schedule the next (a result frees a
   * slot, the advance dispatches, the order is sent), so this waits for the whole chain; a batch parked
   * after a failed commit holds it until the batch is recorded. A stopped engine is idle.
   * For tests and orderly shutdown; it counts what the engine scheduled, it never waits on a timer.
   */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- scheduling ----------------------------------------------------------------------------

  private report(report: AgentReport): void {
    this.reports.push(report);
    // The engine's clock: a wall clock's jump only moves one report between waiting and not.
    const now = this.clock.now();
    const flowing = now - this.lastReportAt < REPORT_QUIET_MS;
    this.lastReportAt = now;
    // Company comes only while reports flow, and for a result only while another order still owes
    // its own: a wave's last result does not wait out the burst its first one opened. Hellos (a
    // reconnect storm) and progress keep their bursts.
    const batching = flowing && (report.kind !== 'result' || this.resultsAwaited());
    if (this.flush === 'due') return;
    // A burst whose wait is over is on its way (its step queued), and takes this report along.
    if (this.flush === 'batching' && (batching || this.cancelBatch?.() !== true)) return;
    this.flush = batching ? 'batching' : 'due';
    const cancel = this.later(() => this.flushReports(), batching ? REPORT_BATCH_MS : 0);
    this.cancelBatch = batching ? cancel : undefined;
  }

  private async flushReports(): Promise<void> {
    this.flush = 'none';
    this.cancelBatch = undefined;
    if (this.reports.length === 0 || this.stopped) return;
    const batch = this.reports;
    this.reports = [];
    try {
      await this.recorder.record(batch);
    } catch (err) {
      // The batch's transaction rolled back and no ack went out. A report the store refuses for its
      // data must not hold every other agent's behind it: the batch is taken apart around it.
      const apart = await recordApart(batch, err, (reports) => this.recorder.record(reports));
      // What each report not recorded is tried again as: itself, its parts, or nothing (dropped).
      const again = new Map<AgentReport, AgentReport[]>(apart.unrecorded.map((report) => [report, [report]]));
      for (const { report, err: refusal } of apart.refused) again.set(report, this.setAside(report, refusal));
      if (apart.outage)
        // SQLITE_BUSY, a full disk: what is left goes back in front of anything newer and is recorded
        // again shortly (nothing is lost, nor doubled).
        this.log.error(
          { err: apart.outage.err, reports: apart.unrecorded.length },
          'recording agent reports failed; retrying in 1s',
        );
      const retried = batch.flatMap((report) => again.get(report) ?? []);
      if (retried.length > 0) {
        this.reports = [...retried, ...this.reports];
        this.scheduleRetryFlush();
      }
      if (apart.unrecorded.length === batch.length) return;
    }
    await this.advanceDirty();
  }

  /**
   * A report the store refused on its own: logged and tried again with the next retry, up to
   * REPORT_REFUSALS times, then dropped. Dropped is not lost: no ack went out, so the agent keeps
   * it in its journal and reports it again when it next connects (the host run, meanwhile, meets
   * its deadline). A hello is tried again apart from the results it carries, each a report of its
   * own: one refused result must not keep the agent's hello (its presence, facts, the resends and
   * cancels that follow it) from being recorded. Returns what is to be tried again in its place.
   */
  private setAside(report: AgentReport, err: unknown): AgentReport[] {
    if (report.kind === 'hello' && !report.resultsApart && report.body.orders.some((order) => order.result)) {
      this.log.error(
        { err, agentId: report.agentId, kind: report.kind },
        'the store refused an agent hello; it is tried again in 1s apart from the results it carries',
      );
      return helloApartFromResults(report);
    }
    const refusals = (this.refusals.get(report) ?? 0) + 1;
    this.refusals.set(report, refusals);
    const about = {
      err,
      agentId: report.agentId,
      kind: report.kind,
      ...(report.kind === 'hello' ? {} : { orderId: report.body.orderId }),
      refusals,
    };
    if (refusals < REPORT_REFUSALS) {
      this.log.error(
        about,
        "the store refused an agent report; the batch's others are recorded, it is tried again in 1s",
      );
      return [report];
    }
    this.log.error(
      about,
      'the store refused an agent report again; dropped unacknowledged: its agent sends a result again unasked, and any report at its next hello',
    );
    this.onReportDropped?.(report.kind);
    return [];
  }

  private scheduleRetryFlush(): void {
    if (this.flush !== 'none') return;
    this.flush = 'due';
    this.later(() => this.flushReports(), REPORT_RETRY_MS);
  }

  private markDirty(rolloutId: string): void {
    this.dirty.add(rolloutId);
    if (this.advanceScheduled) return;
    this.advanceScheduled = true;
    this.later(() => this.advanceDirty());
  }

  /** Counts asynchronous work (a metric measurement) until it settles: see `whenIdle`. */
  private track(work: Promise<void>): void {
    this.scheduled++;
    void work.finally(() => {
      this.scheduled--;
      this.resolveIfIdle();
    });
  }

  /**
   * Runs `work` as one of the engine's steps on the next turn (or after `delayMs`), counted until it
   * has run: see `whenIdle`. Scheduled from outside any step, so it queues behind the one running.
   * Returns a cancel that drops the work if its wait has not ended, and says whether it did.
   */
  private later(work: () => Promise<void>, delayMs = 0): () => boolean {
    this.scheduled++;
    let waiting = true;
    let timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
    const run = () => {
      waiting = false;
      let started = false;
      this.steps
        .run(async () => {
          started = true;
          await work();
        })
        .catch((err: unknown) => {
          this.log.error({ err }, 'an engine step failed');
          // The step never began (the group's step lock could not be taken: the database is away):
          // the work — a batch of reports, an advance — is still owed, so it is asked for again.
          if (!started && !this.stopped) this.later(work, REPORT_RETRY_MS);
        })
        .finally(() => {
          this.scheduled--;
          this.resolveIfIdle();
        });
    };
    this.steps.outside(() => {
      timer = delayMs === 0 ? setImmediate(run) : setTimeout(run, delayMs).unref();
    });
    return () => {
      if (!waiting) return false;
      waiting = false;
      if (delayMs === 0) clearImmediate(timer as NodeJS.Immediate);
      else clearTimeout(timer as NodeJS.Timeout);
      this.scheduled--;
      this.resolveIfIdle();
      return true;
    };
  }

  private isIdle(): boolean {
    return this.stopped || (this.scheduled === 0 && this.reports.length === 0);
  }

  private resolveIfIdle(): void {
    if (!this.isIdle() || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /**
   * Whether this coordinator may advance the rollout now: alone, always. In a group, when it holds
   * the lease (taking it if the rollout has no live driver: a rollout just started here) and its
   * token is still the lease's; otherwise the driver is woken to do it.
   */
  private async drivesNow(id: string): Promise<boolean> {
    if (this.driving === SOLE_DRIVER) return true;
    if (!this.driving.drives(id)) {
      const taken = await this.driving.acquire([id]);
      if (taken.length > 0) {
        try {
          await this.takeOver(taken);
        } catch (err) {
          this.driving.forget(taken); // not resent: taken anew (and resent) on the next try
          throw err;
        }
      }
    }
    if (this.driving.drives(id) && (await this.driving.confirm(id))) return true;
    this.driving.wakeDriver(id);
    return false;
  }

  private async advanceDirty(): Promise<void> {
    this.advanceScheduled = false;
    if (this.stopped) return;
    const ids = [...this.dirty];
    this.dirty.clear();
    for (const id of ids) {
      try {
        if (!(await this.drivesNow(id))) continue;
        await this.advancer.advance(id);
      } catch (err) {
        this.log.error({ err, rolloutId: id }, 'advancing rollout failed; will retry on the next tick');
      }
    }
  }
}

function approvalState(request: RolloutRequest): RolloutState {
  return request.requiredApprovals > 0 ? 'awaiting_approval' : 'scheduled';
}

/**
 * The hello, its results to be recorded apart (it still lists them: what it says of each order decides
 * the resends and cancels that follow it), then each result as a report of its own.
 */
function helloApartFromResults(report: Extract<AgentReport, { kind: 'hello' }>): AgentReport[] {
  const { agentId, body } = report;
  const results: AgentReport[] = body.orders.flatMap((order) =>
    order.result === undefined ? [] : [{ agentId, kind: 'result' as const, body: order.result }],
  );
  return [{ ...report, resultsApart: true }, ...results];
}
