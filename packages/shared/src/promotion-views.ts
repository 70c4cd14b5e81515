import { z } from 'zod';
import { ChangeRecordFieldSchema, EvidenceLinkSchema, RiskSchema, RollbackPlanSchema } from './change-record.js';
import { RolloutStateSchema } from './rollout.js';

const IsoTimeSchema = z.iso.datetime();
const CountSchema = z.number().int().min(0);

/** A rollout of the same content that passed the environment before: what let a later one start. */
export const PromotionEvidenceSchema = z
  .object({ rolloutId: z.string(), patchId: z.string(), finishedAt: IsoTimeSchema })
  .strict();
export type PromotionEvidence = z.infer<typeof PromotionEvidenceSchema>;

/** One environment a rollout reaches that has one before it, and whether that one was passed. */
export const PromotionRequirementSchema = z
  .object({
    /** The environment the rollout's hosts are in. */
    env: z.string(),
    /** The environment the same content must have passed first. */
    needs: z.string(),
    /** The succeeded, soaked, unreverted rollout that passed it; null when none did. */
    passedBy: PromotionEvidenceSchema.nullable(),
    /** Why it is not passed (no rollout, still soaking, reverted since); null when passed. */
    missing: z.string().nullable(),
    /** While soaking: minutes left before the newest succeeded rollout counts. */
    minutesLeft: z.number().min(0).optional(),
  })
  .strict();
export type PromotionRequirement = z.infer<typeof PromotionRequirementSchema>;

/**
 * What `start` decided under the coordinator's promotion order, kept with the rollout: the
 * environments its hosts were in then, what each needed, and an admin's override when there was one.
 */
export const PromotionDecisionSchema = z
  .object({
    label: z.string(),
    order: z.array(z.string()),
    minSoakMinutes: z.number().min(0),
    /** Hosts per environment at start; hosts without the label are counted under `unlabeled`. */
    environments: z.array(z.object({ env: z.string(), hosts: CountSchema }).strict()),
    /** Hosts without the label, or with a value not in the order: held to the last environment's rule. */
    unlabeled: CountSchema,
    requirements: z.array(PromotionRequirementSchema),
    override: z.object({ by: z.string(), at: IsoTimeSchema, reason: z.string() }).strict().nullable(),
  })
  .strict();
export type PromotionDecision = z.infer<typeof PromotionDecisionSchema>;

/** One rollout on a patch's path: its state, and whether it was taken back after it finished. */
export const PatchHistoryRolloutSchema = z
  .object({
    rolloutId: z.string(),
    /** Another patch id when the rollout was of another patch with the same content digest. */
    patchId: z.string(),
    state: RolloutStateSchema,
    hostCount: CountSchema,
    startedAt: IsoTimeSchema.nullable(),
    finishedAt: IsoTimeSchema.nullable(),
    /**
     * The rollout or any of its hosts was reverted (automatically or by a person, during the rollout
     * or after it). The promotion rule is stricter about time and looser about hosts: a succeeded
     * rollout stops counting once anything of it is reverted after it finished.
     */
    reverted: z.boolean(),
    /** Started by an admin's override of the promotion order. */
    overridden: z.boolean(),
  })
  .strict();
export type PatchHistoryRollout = z.infer<typeof PatchHistoryRolloutSchema>;

/** `GET /v1/patches/:id/history`: the path of a patch's content through the environments. */
export const PatchHistorySchema = z
  .object({
    patchId: z.string(),
    contentDigest: z.string(),
    /** The label environments are read from (the promotion order's, else "env"). */
    label: z.string(),
    /** The coordinator's promotion order; null without one. */
    order: z.array(z.string()).nullable(),
    /** Started rollouts in promotion order, then any other environment seen; `env: null` holds hosts without the label. */
    environments: z
      .array(z.object({ env: z.string().nullable(), rollouts: z.array(PatchHistoryRolloutSchema) }).strict())
      .max(1000),
  })
  .strict();
export type PatchHistory = z.infer<typeof PatchHistorySchema>;

/** What would take the change back by itself: a health check, a metric analysis, the revert scope. */
export const RollbackTriggerSchema = z
  .object({
    source: z.enum(['health', 'analysis', 'autoRevert']),
    /** The rollout that declares it (analyses and revert scope are per rollout); absent for the patch's own checks. */
    rolloutId: z.string().optional(),
    description: z.string(),
  })
  .strict();
export type RollbackTrigger = z.infer<typeof RollbackTriggerSchema>;

/** `GET /v1/patches/:id/record`: the change request as a change advisory board reads it. */
export const ChangeRecordViewSchema = z
  .object({
    patch: z
      .object({
        id: z.string(),
        title: z.string(),
        ticket: z.string(),
        createdBy: z.string(),
        createdAt: z.string(),
        contentDigest: z.string(),
        problem: z.string(),
        rootCause: z.string(),
        intendedFix: z.string(),
        change: z.string(),
        /** The host preconditions, one line each: a host that fails one is refused, nothing changed. */
        requires: z.array(z.string()),
        revertable: z.boolean(),
      })
      .strict(),
    /** The evidence the author linked. */
    validation: z.array(EvidenceLinkSchema),
    /** Rollouts of the same content that succeeded with nothing of them reverted: linked by the coordinator. */
    validatedBy: z.array(PatchHistoryRolloutSchema.extend({ environments: z.array(z.string()) }).strict()),
    rollbackPlan: RollbackPlanSchema.nullable(),
    risk: RiskSchema.nullable(),
    rollbackTriggers: z.array(RollbackTriggerSchema),
    /** Fields this coordinator requires that the record leaves empty: no rollout of it is approved or started. */
    missing: z.array(ChangeRecordFieldSchema),
  })
  .strict();
export type ChangeRecordView = z.infer<typeof ChangeRecordViewSchema>;
