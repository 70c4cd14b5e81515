import { z } from 'zod';
import { AnalysesSchema } from './analysis.js';
import { DpkgVersionSchema } from './debian-version.js';
import { InstalledPackageNameSchema } from './inventory.js';
import { HostIdSchema, LabelsSchema } from './validation.js';

/** A percent of a whole: above 100 % it can never be reached (a budget that never halts). */
const PercentSchema = z
  .string()
  .regex(/^\d{1,3}(?:\.\d+)?%$/, 'must be a percentage such as "10%"')
  .refine((p) => Number.parseFloat(p) <= 100, 'a percentage must be at most 100%');

/** One entry of Ansible's `serial` grammar: a host count, or a percent of the frozen target set. */
export const WaveStepSchema = z.union([
  z.number().int().min(1).max(1_000_000),
  PercentSchema.refine((p) => Number.parseFloat(p) > 0, 'a percentage must be above 0%'),
]);
export type WaveStep = z.infer<typeof WaveStepSchema>;

/** Failures tolerated: a count, or a percent of the whole rollout. `0` halts on the first failure. */
export const FailureBudgetSchema = z.union([z.number().int().min(0).max(1_000_000), PercentSchema]);
export type FailureBudget = z.infer<typeof FailureBudgetSchema>;

/** The selectors of a target, apart from the rules that bind them together (see `TargetSchema`). */
const TARGET_FIELDS = {
  all: z.boolean().optional(),
  hostIds: z.array(HostIdSchema).min(1).max(100_000).optional(),
  labels: LabelsSchema.optional(),
  reportedLabels: LabelsSchema.optional(),
  excludeLabels: LabelsSchema.optional(),
  facts: z
    .object({
      os: z.string().max(100).optional(),
      distro: z.string().max(100).optional(),
      arch: z.string().max(50).optional(),
    })
    .strict()
    .optional(),
  exposedTo: z.object({ source: InstalledPackageNameSchema, fixed: DpkgVersionSchema }).strict().optional(),
};

/**
 * Who receives the patch. At least one selector is required: "every host" must be said out loud
 * with `all: true`.
 *
 * `labels` (all-of) match the labels an admin fixed at enrollment (the join token's), never what
 * the agent reports: a host must not be able to put itself into a target. `reportedLabels` (all-of)
 * opt in to what the agent reports — the host says so, nothing more — and so may only narrow a
 * target that `hostIds` or `labels` already bound; on their own (or with only `all` or `facts`,
 * which the host reports too) they would let any host select itself. `excludeLabels` (any-of)
 * remove a host when its admin labels or its reported labels match: excluding can only shrink a
 * target, so the host's own word is enough to keep it out. `facts` are all-of.
 *
 * `exposedTo` selects the hosts whose package inventory has a binary of `source` at a source version
 * below `fixed` (see GET /v1/compliance), online or not; with other selectors it narrows them. It is
 * resolved when the rollout starts and frozen with the rest. Like `facts`, an inventory is what the
 * host reports of itself; hosts with no inventory are not selected (the start event names them).
 */
export const TargetSchema = z
  .object(TARGET_FIELDS)
  .strict()
  .refine(
    (t) =>
      t.all === true ||
      t.hostIds !== undefined ||
      t.labels !== undefined ||
      t.facts !== undefined ||
      t.exposedTo !== undefined,
    { message: 'name the hosts: hostIds, labels, facts, exposedTo, or all: true' },
  )
  // `labels: {}` matches every host: "every host" is said with `all: true`, never by an empty selector.
  .refine((t) => t.labels === undefined || Object.keys(t.labels).length > 0 || t.all === true, {
    message: 'an empty label selector selects every host: name at least one label, or say all: true',
    path: ['labels'],
  })
  // `labels: {}` matches every host, so it bounds nothing.
  .refine((t) => t.reportedLabels === undefined || t.hostIds !== undefined || Object.keys(t.labels ?? {}).length > 0, {
    message: 'reportedLabels only narrow a target: name the hosts by hostIds or labels too',
    path: ['reportedLabels'],
  });
export type Target = z.infer<typeof TargetSchema>;

const { hostIds: _listedHosts, ...TARGET_FIELDS_BUT_HOST_IDS } = TARGET_FIELDS;

/**
 * A target as lists and summaries show it: hosts it names are counted (`hostIdCount`), not listed. A
 * pasted list of 10,000 hosts is ~140 KB, which every poll of a list or of a summary would carry
 * again; the whole request is in `GET /v1/rollouts/:id`.
 */
export const TargetBriefSchema = z
  .object({ ...TARGET_FIELDS_BUT_HOST_IDS, hostIdCount: z.number().int().min(1).optional() })
  .strict();
export type TargetBrief = z.infer<typeof TargetBriefSchema>;

export function targetBriefOf(target: Target): TargetBrief {
  const { hostIds, ...rest } = target;
  return hostIds === undefined ? rest : { ...rest, hostIdCount: hostIds.length };
}

export const OfflinePolicySchema = z
  .object({
    /** skip: mark offline hosts skipped; wait: wait until the delivery deadline; fail: count them as failures. */
    mode: z.enum(['skip', 'wait', 'fail']).default('wait'),
    deliveryDeadlineSeconds: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 3600)
      .default(300),
  })
  .strict();
export type OfflinePolicy = z.infer<typeof OfflinePolicySchema>;

export const AutoRevertScopeSchema = z.enum(['none', 'host', 'wave', 'rollout']);
export type AutoRevertScope = z.infer<typeof AutoRevertScopeSchema>;

export const MaintenanceWindowSchema = z
  .object({
    /** node-cron expression for when a window opens ("0 2 * * *" = 02:00 daily). */
    cron: z.string().min(9).max(200),
    timezone: z.string().min(1).max(100).default('UTC'),
    durationMinutes: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 60),
    /** No new wave starts this many minutes before the window closes. */
    cutoffMinutes: z
      .number()
      .int()
      .min(0)
      .max(24 * 60)
      .default(0),
  })
  .strict();
export type MaintenanceWindow = z.infer<typeof MaintenanceWindowSchema>;

export const RolloutRequestSchema = z
  .object({
    patchId: z.string().min(1).max(100),
    target: TargetSchema,
    waves: z.array(WaveStepSchema).min(1).max(100).default([1, '10%', '50%', '100%']),
    /** Hosts of one wave in flight at once (a sliding window). */
    maxParallel: z.number().int().min(1).max(10_000).default(10),
    maxFailures: FailureBudgetSchema.default(0),
    maxFailuresPerWave: FailureBudgetSchema.optional(),
    bakeSeconds: z
      .number()
      .min(0)
      .max(7 * 24 * 3600)
      .default(0),
    /**
     * A host that has not reported a final result this long after its order reached it is timed_out
     * (an order waiting for an offline host has `offline.deliveryDeadlineSeconds` instead). The
     * coordinator refuses a rollout whose patch's health deadline plus one poll does not fit in it.
     */
    hostTimeoutSeconds: z
      .number()
      .min(1)
      .max(24 * 3600)
      .default(600),
    offline: OfflinePolicySchema.default({ mode: 'wait', deliveryDeadlineSeconds: 300 }),
    /**
     * What goes back when things fail. none: a host whose health fails is left changed for a human
     * to inspect; host: it restores its own snapshot (always, even cut off from the coordinator);
     * wave: on halt, also revert the halted wave's healthy hosts; rollout: on halt, revert every host.
     */
    autoRevert: AutoRevertScopeSchema.default('host'),
    /** A host already unhealthy before the patch is skipped; set true to count it as a failure. */
    failUnhealthyBefore: z.boolean().default(false),
    /**
     * A host that reports healthy but still runs services on deleted or replaced libraries (its
     * after-change report's `staleUnits`): `report` it (default), or count it as a `fail`ure.
     */
    staleServices: z.enum(['report', 'fail']).default('report'),
    /** Parallelism of a whole-rollout revert, which skips canaries and gates. */
    revertParallel: z.number().int().min(1).max(10_000).default(50),
    requiredApprovals: z.number().int().min(0).max(10).default(1),
    /** Create as a draft: plan and dry-run it, then `submit` it for approval. */
    draft: z.boolean().default(false),
    window: MaintenanceWindowSchema.optional(),
    startAt: z.iso.datetime({ offset: true }).optional(),
    /**
     * Metric gates the coordinator evaluates against Prometheus during each wave's verify and bake
     * (analysis.ts): a failed one fails the wave; one that cannot be measured follows its `inconclusive` policy.
     */
    analyses: AnalysesSchema.default([]),
    /**
     * Rehearse the revert on the canary wave (the first): each of its hosts applies, passes health,
     * reverts, is checked to be exactly at its prior state and healthy, then applies again. A
     * rehearsal that fails halts the rollout before any other host changes. Off unless asked for:
     * it doubles the canary's changes, and a signed rollout must say so in its statement.
     */
    rehearseRevert: z.boolean().default(false),
  })
  .strict();
export type RolloutRequest = z.infer<typeof RolloutRequestSchema>;
export type RolloutRequestInput = z.input<typeof RolloutRequestSchema>;

export const ROLLOUT_STATES = [
  'draft',
  'awaiting_approval',
  'scheduled',
  'running',
  'paused',
  'succeeded',
  'halted',
  'aborted',
  'reverting',
  'reverted',
  'revert_failed',
] as const;
export const RolloutStateSchema = z.enum(ROLLOUT_STATES);
export type RolloutState = z.infer<typeof RolloutStateSchema>;

/** States after which nothing more happens unless a human acts. */
export const FINAL_ROLLOUT_STATES: ReadonlySet<RolloutState> = new Set([
  'succeeded',
  'halted',
  'aborted',
  'reverted',
  'revert_failed',
]);

/** Where the apply of a rollout comes to rest (a revert may follow). */
export const APPLY_END_STATES: readonly RolloutState[] = ['succeeded', 'halted', 'aborted'];

/** Where a revert of a rollout comes to rest. */
export const REVERT_END_STATES: readonly RolloutState[] = ['reverted', 'revert_failed'];

export const HOST_RUN_STATES = [
  'queued',
  'dispatched',
  'delivered',
  'snapshotted',
  'applying',
  'verifying',
  'healthy',
  'failed',
  'timed_out',
  'skipped',
  /** A source change none of whose binaries is installed on the host: nothing to do, not a failure. */
  'not_applicable',
  'cancelled',
  'reverting',
  'reverted',
  'revert_failed',
] as const;
export const HostRunStateSchema = z.enum(HOST_RUN_STATES);
export type HostRunState = z.infer<typeof HostRunStateSchema>;
