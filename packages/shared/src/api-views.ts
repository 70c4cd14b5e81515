import { z } from 'zod';
import { AnalysisRunVerdictSchema, MeasurementVerdictSchema } from './analysis.js';
import { ErrorCode } from './errors.js';
import { HealthCheckResultSchema } from './health-check.js';
import { PatchSummarySchema } from './patch-summary.js';
import { PreconditionOutcomeSchema } from './preconditions.js';
import { PromotionDecisionSchema } from './promotion-views.js';
import { FactsSchema, OrderOutcomeSchema, PackageMoveSchema, RehearsalReportSchema } from './protocol.js';
import { HostRunStateSchema, RolloutRequestSchema, RolloutStateSchema, TargetBriefSchema } from './rollout.js';
import { AfterChangeReportSchema } from './service-restarts.js';
import { SignerRoleSchema, StatementSchema } from './signed-statement.js';
import { LabelsSchema } from './validation.js';

/*
 * What the coordinator's HTTP API under /v1 answers. The coordinator declares these as response
 * schemas, so every answer is checked against them on the way out and the OpenAPI document is
 * generated from them; the CLI reads the inferred types. Objects are strict: a field the
 * coordinator adds without adding it here fails loudly instead of leaking.
 */

/** Every timestamp the coordinator writes: `Date.prototype.toISOString()`, UTC. */
const IsoTimeSchema = z.iso.datetime();
const CountSchema = z.number().int().min(0);

export const ErrorCodeSchema = z.enum(ErrorCode);

/** Every error: `{ error: { code, message, details? } }`; a 400 carries `details.issues`. */
export const ErrorBodySchema = z
  .object({
    error: z
      .object({
        code: ErrorCodeSchema,
        message: z.string(),
        details: z.record(z.string(), z.unknown()).optional(),
      })
      .strict(),
  })
  .strict();
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

export const HealthzSchema = z.object({ ok: z.literal(true), agentsOnline: CountSchema }).strict();
export type Healthz = z.infer<typeof HealthzSchema>;

// ---- caller ---------------------------------------------------------------------------------

/**
 * Who an API token is and what its role may do: `GET /v1/whoami`. The dashboard shows only the
 * buttons `permissions` allows; the server still checks every call.
 */
export const WhoAmISchema = z
  .object({
    name: z.string(),
    role: z.enum(['viewer', 'operator', 'approver', 'admin']),
    permissions: z.array(z.enum(['read', 'write', 'approve', 'sign-revert', 'admin'])),
  })
  .strict();
export type WhoAmI = z.infer<typeof WhoAmISchema>;

/**
 * The coordinator group this coordinator belongs to: `GET /v1/group`. A coordinator on SQLite is
 * alone (`store: sqlite`, no members, no leases). On PostgreSQL: the members with a fresh heartbeat
 * and how many agents each holds, and which member drives which rollout (its lease and fencing token).
 */
export const GroupViewSchema = z
  .object({
    store: z.enum(['sqlite', 'postgres']),
    coordinatorId: z.string().nullable(),
    members: z.array(z.object({ id: z.string(), heartbeatAt: z.string(), agents: z.number().int() }).strict()),
    leases: z.array(
      z.object({ rolloutId: z.string(), holder: z.string(), token: z.number().int(), expiresAt: z.string() }).strict(),
    ),
  })
  .strict();
export type GroupView = z.infer<typeof GroupViewSchema>;

// ---- agents ---------------------------------------------------------------------------------

export const AgentViewSchema = z
  .object({
    id: z.string(),
    /** Set by an admin (the join tokens it enrolled with): what `target.labels` match. */
    labels: LabelsSchema,
    /** What the agent says of itself in its hello: only `target.reportedLabels` and `excludeLabels` look at them. */
    reportedLabels: LabelsSchema,
    facts: FactsSchema.nullable(),
    agentVersion: z.string().nullable(),
    lastSeenAt: IsoTimeSchema.nullable(),
    createdAt: IsoTimeSchema,
    /** When the agent last enrolled (null: never, e.g. revoked before it could, or from before enrollment). */
    enrolledAt: IsoTimeSchema.nullable(),
    /** Set once an admin revoked its credential: it cannot connect until it enrolls again with `replace`. */
    revokedAt: IsoTimeSchema.nullable(),
    /**
     * Set once an admin removed the agent (DELETE /v1/agents/:id): its credential is revoked, no
     * target selects it, and `GET /v1/agents` lists it only with `?removed=true`; its history stays.
     */
    removedAt: IsoTimeSchema.nullable().optional(),
    online: z.boolean(),
  })
  .strict();
export type AgentView = z.infer<typeof AgentViewSchema>;

export const AgentListSchema = z.object({ agents: z.array(AgentViewSchema) }).strict();
export type AgentList = z.infer<typeof AgentListSchema>;

/**
 * Whether a host carries the change, as its agent last reported; `"unknown"` while a host that timed
 * out has not answered yet — it may have been stopped halfway (a package half-installed), and only
 * its agent, once back, can say (it restores its snapshot on restart and reports).
 */
export const HostChangedSchema = z.union([z.boolean(), z.literal('unknown')]);
export type HostChanged = z.infer<typeof HostChangedSchema>;

/** One host's part in one rollout, as seen from the host: its history across rollouts. */
export const AgentHostRunSchema = z
  .object({
    rolloutId: z.string(),
    wave: z.number().int().min(0),
    state: HostRunStateSchema,
    changed: HostChangedSchema,
    orderId: z.string().nullable(),
    errorCode: z.string().nullable(),
    reason: z.string().nullable(),
    /** A package change: what it resolved to on this host (see HostView.packages). */
    packages: z.array(PackageMoveSchema).optional(),
  })
  .strict();
export type AgentHostRun = z.infer<typeof AgentHostRunSchema>;

export const AgentDetailSchema = z.object({ agent: AgentViewSchema, hostRuns: z.array(AgentHostRunSchema) }).strict();
export type AgentDetail = z.infer<typeof AgentDetailSchema>;

// ---- patches --------------------------------------------------------------------------------

/** The newest patches as summaries, never their content: the whole patch is `GET /v1/patches/:id`. */
export const PatchListSchema = z.object({ patches: z.array(PatchSummarySchema) }).strict();
export type PatchList = z.infer<typeof PatchListSchema>;

// ---- rollouts -------------------------------------------------------------------------------

export const RolloutRecordSchema = z
  .object({
    id: z.string(),
    patchId: z.string(),
    request: RolloutRequestSchema,
    state: RolloutStateSchema,
    createdBy: z.string(),
    /** 0 until the rollout starts and its target is frozen. */
    hostCount: CountSchema,
    waveCount: CountSchema,
    /** 0-based index of the wave now running (or next to run): wave number `currentWave + 1`, as people count. */
    currentWave: CountSchema.describe('0-based index of the current wave: people call it wave currentWave + 1'),
    /** While baking after a passed wave: when the bake ends. */
    bakeUntil: IsoTimeSchema.nullable(),
    stateReason: z.string().nullable(),
    createdAt: IsoTimeSchema,
    updatedAt: IsoTimeSchema,
    startedAt: IsoTimeSchema.nullable(),
    finishedAt: IsoTimeSchema.nullable(),
  })
  .strict();
export type RolloutRecord = z.infer<typeof RolloutRecordSchema>;

/**
 * A rollout as lists and summaries show it: its record, but its target counts the hosts it names
 * instead of listing them (`TargetBriefSchema`), so that a list or a summary stays small whatever the
 * target. The record whole, its request as written, is `GET /v1/rollouts/:id`.
 */
export const RolloutBriefSchema = RolloutRecordSchema.extend({
  request: RolloutRequestSchema.extend({ target: TargetBriefSchema }),
});
export type RolloutBrief = z.infer<typeof RolloutBriefSchema>;

export const RolloutListSchema = z.object({ rollouts: z.array(RolloutBriefSchema) }).strict();
export type RolloutList = z.infer<typeof RolloutListSchema>;

/**
 * pending: not started; running; baking: passed, waiting out bakeSeconds; passed; failed: the rollout
 * halted in it (its failure budget, an analysis or a rehearsal failed), also once it is reverted;
 * stopped: the rollout was aborted in it, or reverted before it passed.
 */
export const WavePhaseSchema = z.enum(['pending', 'running', 'baking', 'passed', 'failed', 'stopped']);
export type WavePhase = z.infer<typeof WavePhaseSchema>;

/** One check's latest result while a host verifies or bakes, and since when it has held that verdict. */
export const LiveCheckSchema = z
  .object({
    check: z.string(),
    kind: z.string(),
    ok: z.boolean(),
    /** What the check saw at its latest poll ("HTTP 500"). */
    observed: z.string(),
    /** When the agent took that latest poll. */
    at: z.string(),
    /** Since when this check has been passing (ok) or failing (not ok) without a break. */
    since: z.string(),
  })
  .strict();
export type LiveCheck = z.infer<typeof LiveCheckSchema>;

/**
 * A host's health as its agent reports it on every poll while it verifies (after apply) or bakes
 * (after it reported healthy). Held by the coordinator in memory for the host's current order: a
 * retried host starts without one, and after a coordinator restart it is back at the next poll.
 */
export const LiveHealthSchema = z
  .object({
    phase: z.enum(['verifying', 'baking']),
    checks: z.array(LiveCheckSchema),
    /** Polls in a row with a failing check, the latest included; 0 when the latest passed. */
    failingPolls: z.number().int().min(0),
    /** When the coordinator received the latest poll. */
    updatedAt: IsoTimeSchema,
  })
  .strict();
export type LiveHealth = z.infer<typeof LiveHealthSchema>;

export const HostViewSchema = z
  .object({
    hostId: z.string(),
    state: HostRunStateSchema,
    online: z.boolean(),
    /** Whether the host carries the change now, as its agent last reported (see HostChangedSchema). */
    changed: HostChangedSchema,
    orderId: z.string().nullable(),
    errorCode: z.string().nullable(),
    reason: z.string().nullable(),
    /** The health results of the current order's result (null until it reports one; cleared by a retry). */
    health: z.array(HealthCheckResultSchema).nullable(),
    /** The latest poll while verifying or baking, live (absent until the agent reports one for this order). */
    liveHealth: LiveHealthSchema.optional(),
    /** The canary's rehearsed revert, as its agent reported it (null: none was asked for, or none reported). */
    rehearsal: RehearsalReportSchema.nullable(),
    /** What followed the change on the host: units restarted, services still on old libraries, reboot. */
    afterChange: AfterChangeReportSchema.nullable(),
    /**
     * A package change: the packages its apply moved (or would have) on this host as its agent resolved
     * them — from which version to which, and where the prior .deb was kept. Absent until an apply
     * result names them; absent for a host that is not_applicable (it has none of them).
     */
    packages: z.array(PackageMoveSchema).optional(),
  })
  .strict();
export type HostView = z.infer<typeof HostViewSchema>;

export const WaveStatusSchema = z
  .object({
    /** 0-based index (the canary is wave 0 here, "wave 1" to people, as events' `waveNumber` says). */
    wave: CountSchema.describe(
      '0-based index of the wave: people call it wave wave + 1 (events carry it as waveNumber)',
    ),
    phase: WavePhaseSchema,
    hosts: z.array(HostViewSchema),
  })
  .strict();
export type WaveStatus = z.infer<typeof WaveStatusSchema>;

export const ApprovalSchema = z.object({ approver: z.string(), at: IsoTimeSchema }).strict();
export type Approval = z.infer<typeof ApprovalSchema>;

/** One signature of a statement as the coordinator keeps it: none of it is secret. */
export const StatementSignatureViewSchema = z
  .object({
    keyId: z.string(),
    /** Raw ed25519 public key, base64url: lets anyone verify `signature` over the statement. */
    publicKey: z.string(),
    signature: z.string(),
    /** The API token that posted it. */
    signer: z.string(),
    /** What it was posted as: the apply's author or an approver; a revert's first signer, then the others. */
    role: SignerRoleSchema,
    at: IsoTimeSchema,
  })
  .strict();
export type StatementSignatureView = z.infer<typeof StatementSignatureViewSchema>;

export const StatementViewSchema = z
  .object({
    /** sha256 hex of the signed bytes (`statementDigest`). */
    digest: z.string(),
    /** A revert statement for one host (`revert-host`); null for the whole rollout. */
    hostId: z.string().nullable(),
    statement: StatementSchema,
    signatures: z.array(StatementSignatureViewSchema),
    createdAt: IsoTimeSchema,
    /** Revert statements: when the revert it allowed was started (null: still collecting signatures). */
    usedAt: IsoTimeSchema.nullable(),
  })
  .strict();
export type StatementView = z.infer<typeof StatementViewSchema>;

/** A signed rollout's statements: what agents will be sent, and who signed it. */
export const RolloutSigningSchema = z
  .object({
    apply: StatementViewSchema,
    /** Revert statements, oldest first; one not used yet is the pending one, collecting signatures. */
    reverts: z.array(StatementViewSchema),
    /** Distinct people who must sign a revert statement before it reverts anything. */
    revertSignaturesNeeded: CountSchema,
  })
  .strict();
export type RolloutSigning = z.infer<typeof RolloutSigningSchema>;

/** One measurement of a metric analysis: the value seen, the threshold it was held to, the verdict. */
export const MeasurementViewSchema = z
  .object({
    at: IsoTimeSchema,
    /** verify: hosts of the wave were still applying; bake: all had finished. */
    phase: z.enum(['verify', 'bake']),
    /** null when nothing could be measured (inconclusive, skipped) or the value was not finite. */
    value: z.number().nullable(),
    baseline: z.number().nullable(),
    threshold: z.number().nullable(),
    verdict: MeasurementVerdictSchema,
    reason: z.string().nullable(),
  })
  .strict();
export type MeasurementView = z.infer<typeof MeasurementViewSchema>;

/** A metric analysis on one wave: its current attempt's counters and latest measurements. */
export const AnalysisRunViewSchema = z
  .object({
    wave: CountSchema,
    name: z.string(),
    attempt: z.number().int().min(1),
    condition: z.string(),
    verdict: AnalysisRunVerdictSchema,
    /** Measurements counted toward `count` (passed, or inconclusive under `ignore`). */
    taken: CountSchema,
    count: CountSchema,
    failed: CountSchema,
    failureLimit: CountSchema,
    inconclusive: CountSchema,
    /** The latest measurements of this attempt (at most 20), oldest first; the audit trail has them all. */
    measurements: z.array(MeasurementViewSchema),
  })
  .strict();
export type AnalysisRunView = z.infer<typeof AnalysisRunViewSchema>;

/** A rollout with every host by wave: what `GET /v1/rollouts/:id` and every verb answer. */
/**
 * Where a rollout stands with its maintenance window: `open` when a wave may start now (inside a
 * window, before its cutoff), with that window's times; otherwise the next window's times.
 */
export const WindowStatusSchema = z
  .object({
    open: z.boolean(),
    opensAt: IsoTimeSchema,
    /** No new wave starts at or after this instant. */
    cutoffAt: IsoTimeSchema,
    closesAt: IsoTimeSchema,
  })
  .strict();
export type WindowStatus = z.infer<typeof WindowStatusSchema>;

export const RolloutStatusSchema = z
  .object({
    rollout: RolloutRecordSchema,
    approvals: z.array(ApprovalSchema),
    /** The signed statements of a signed rollout; null for an unsigned one. */
    signing: RolloutSigningSchema.nullable(),
    failures: CountSchema,
    toleratedFailures: CountSchema,
    /** "halts on the 1st failure" */
    haltsOn: z.string(),
    counts: z.partialRecord(HostRunStateSchema, CountSchema),
    waves: z.array(WaveStatusSchema),
    /** The metric analyses measured so far, by wave (none for a rollout without analyses). */
    analyses: z.array(AnalysisRunViewSchema),
    /**
     * For a rollout targeted `exposedTo`: the compliance view of that source and fixed version
     * (`url`, under the same API), to see hosts go from exposed to fixed.
     */
    compliance: z.object({ source: z.string(), fixed: z.string(), url: z.string() }).strict().optional(),
    /** What `start` decided under the coordinator's promotion order (absent: none applied, or not started). */
    promotion: PromotionDecisionSchema.optional(),
    /** The maintenance window a rollout that has one waits for or runs in; absent once it is over. */
    window: WindowStatusSchema.optional(),
    /**
     * What a person should not miss, one sentence each: a rollout that succeeded with hosts reverted
     * by hand (they do not carry the patch). Absent when there is nothing to say.
     */
    warnings: z.array(z.string()).optional(),
  })
  .strict();
export type RolloutStatus = z.infer<typeof RolloutStatusSchema>;

/** One wave of a rollout summary: its size and its hosts counted by state, no host list. */
export const WaveSummarySchema = z
  .object({
    wave: CountSchema,
    phase: WavePhaseSchema,
    hostCount: CountSchema,
    counts: z.partialRecord(HostRunStateSchema, CountSchema),
  })
  .strict();
export type WaveSummary = z.infer<typeof WaveSummarySchema>;

/** A failed host as a summary names it: which, where, and why (the reason cut to 200 characters). */
export const FailedHostSchema = z
  .object({
    hostId: z.string(),
    wave: CountSchema,
    state: HostRunStateSchema,
    errorCode: z.string().nullable(),
    reason: z.string().nullable(),
  })
  .strict();
export type FailedHost = z.infer<typeof FailedHostSchema>;

/** A host still verifying whose latest health poll has a failing check, as a summary names it. */
export const FailingHostSchema = z
  .object({
    hostId: z.string(),
    wave: CountSchema,
    state: HostRunStateSchema,
    /** Polls in a row with a failing check, the latest included. */
    failingPolls: CountSchema,
    /** The failing checks of the latest poll, the first 3 (what each saw cut to 200 characters). */
    checks: z.array(LiveCheckSchema),
    /** Failing checks beyond those listed; absent when none (and from older coordinators). */
    moreChecks: CountSchema.optional(),
  })
  .strict();
export type FailingHost = z.infer<typeof FailingHostSchema>;

/**
 * `GET /v1/rollouts/:id/summary`: a rollout's counts per wave and state and its first failures —
 * the same size at 10 hosts or 10,000 (no host list; page through `/hosts` for that). It carries
 * what `rollout status --watch` shows of a large rollout, so a watch never reads every host.
 */
export const RolloutSummarySchema = z
  .object({
    rollout: RolloutBriefSchema,
    failures: CountSchema,
    toleratedFailures: CountSchema,
    haltsOn: z.string(),
    counts: z.partialRecord(HostRunStateSchema, CountSchema),
    waves: z.array(WaveSummarySchema),
    /** The first failures counted against the budget (at most 10, by wave and position); `failures` has them all. */
    failedHosts: z.array(FailedHostSchema),
    /** The first hosts still verifying with a failing health check (at most 10); absent from older coordinators. */
    failingHosts: z.array(FailingHostSchema).optional(),
    /** The metric analyses measured so far, each with its latest measurement only; absent from older coordinators. */
    analyses: z.array(AnalysisRunViewSchema).optional(),
    /** As in the full status: the maintenance window, and what a person should not miss. */
    window: WindowStatusSchema.optional(),
    warnings: z.array(z.string()).optional(),
  })
  .strict();
export type RolloutSummary = z.infer<typeof RolloutSummarySchema>;

/** `GET /v1/rollouts/:id/hosts`: one page of a rollout's hosts, by wave and position. */
export const RolloutHostPageSchema = z
  .object({
    hosts: z.array(HostViewSchema.extend({ wave: CountSchema }).strict()),
    /** The cursor for the next page (pass it as `cursor`), or null when this page is the last. */
    next: z.string().nullable(),
  })
  .strict();
export type RolloutHostPage = z.infer<typeof RolloutHostPageSchema>;

export const RolloutPlanSchema = z
  .object({
    rolloutId: z.string(),
    /** Whether the host list is frozen (rollout started) or resolved from the fleet as it is now. */
    frozen: z.boolean(),
    hostCount: CountSchema,
    waveSizes: z.array(CountSchema),
    waves: z.array(z.object({ wave: CountSchema, hosts: z.array(z.string()) }).strict()),
    toleratedFailures: CountSchema,
    haltsOn: z.string(),
    /** False when the patch is marked `revertable: false`: the coordinator refuses to revert it. */
    revertable: z.boolean(),
    /**
     * Before start, for a target with `exposedTo`: the hosts its other selectors pick that have no
     * package inventory, and so are not selected (start records them in its event).
     */
    exposedTo: z
      .object({ source: z.string(), fixed: z.string(), withoutInventory: z.array(z.string()) })
      .strict()
      .optional(),
    /**
     * Hosts of the plan whose connected agent speaks a protocol too old for the patch's change: they
     * are sent no order; started, the rollout fails each with this reason (upgrade the agent first).
     * Offline hosts are not judged: their protocol is known when they say hello.
     */
    incompatible: z.array(z.object({ hostId: z.string(), reason: z.string() }).strict()).optional(),
  })
  .strict();
export type RolloutPlan = z.infer<typeof RolloutPlanSchema>;

/**
 * An agent's answer to a dry run; offline / no_answer when it could not say; incompatible when the
 * coordinator did not ask, because the agent speaks a protocol too old for the change (`protocolGapOf`).
 */
export const PreflightOutcomeSchema = z.union([OrderOutcomeSchema, z.enum(['offline', 'no_answer', 'incompatible'])]);
export type PreflightOutcome = z.infer<typeof PreflightOutcomeSchema>;

export const PreflightAnswerSchema = z
  .object({
    hostId: z.string(),
    outcome: PreflightOutcomeSchema,
    reason: z.string().nullable(),
    errorCode: z.string().nullable(),
    /** A package change: the set as the host resolved it (name, installed version, target version). */
    packages: z.array(PackageMoveSchema).optional(),
    /** A change with host preconditions: how each one went on the host. */
    preconditions: z.array(PreconditionOutcomeSchema).optional(),
    /**
     * A host unhealthy before the patch (`health_failed`): each of the patch's health checks as it ran
     * there, the failing ones with what they saw. Absent when the checks passed or were not run.
     */
    health: z.array(HealthCheckResultSchema).optional(),
  })
  .strict();
export type PreflightAnswer = z.infer<typeof PreflightAnswerSchema>;

export const PreflightResultSchema = z
  .object({
    rolloutId: z.string(),
    /** False when the patch is marked `revertable: false`: the coordinator refuses to revert it. */
    revertable: z.boolean(),
    summary: z.partialRecord(PreflightOutcomeSchema, CountSchema),
    results: z.array(PreflightAnswerSchema),
  })
  .strict();
export type PreflightResult = z.infer<typeof PreflightResultSchema>;

// ---- audit trail ----------------------------------------------------------------------------

export const EventRecordSchema = z
  .object({
    seq: z.number().int().min(1),
    rolloutId: z.string().nullable(),
    hostId: z.string().nullable(),
    actor: z.string(),
    type: z.string(),
    fromState: z.string().nullable(),
    toState: z.string().nullable(),
    data: z.record(z.string(), z.unknown()).nullable(),
    at: IsoTimeSchema,
  })
  .strict();
export type EventRecord = z.infer<typeof EventRecordSchema>;

/** `next` is the `after` cursor of the following page, or null on the last one. */
export const EventPageSchema = z
  .object({ events: z.array(EventRecordSchema), next: z.number().int().min(1).nullable() })
  .strict();
export type EventPage = z.infer<typeof EventPageSchema>;
