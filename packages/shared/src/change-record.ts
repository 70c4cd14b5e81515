import { z } from 'zod';
import { hasControlCharacter } from './validation.js';

/**
 * The change record: what a change advisory board reads before it lets a patch reach production —
 * the evidence it was tested, how it is taken back, how risky it is. Descriptive metadata kept with
 * the patch, never part of the signed statement (the agent does not act on it; see SECURITY.md).
 *
 * Every text is printed in terminals and Markdown exports, so control characters (ANSI escapes
 * included) are refused rather than escaped; multi-line texts may hold newlines and tabs.
 */
const line = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine((text) => !hasControlCharacter(text), 'must not contain control characters (no ANSI escapes, no newlines)');
const text = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine(
      (value) => !hasControlCharacter(value.replace(/[\n\t]/g, ' ')),
      'must not contain control characters other than newline and tab (no ANSI escapes)',
    );

/** One piece of test evidence: a CI run, a test report, a load test. */
export const EvidenceLinkSchema = z
  .object({
    title: line(200),
    url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).max(2000),
  })
  .strict();
export type EvidenceLink = z.infer<typeof EvidenceLinkSchema>;

export const RollbackPlanSchema = z
  .object({
    /** The documented steps, in order, as a person would follow them if the automatic revert could not. */
    steps: z.array(text(2000)).min(1).max(50),
    /**
     * What the revert cannot take back (a data migration, a sent notification, a rotated key): each
     * named, so the board approves the change knowing it. Empty or absent: everything is reversible.
     */
    irreversible: z.array(text(2000)).max(50).optional(),
  })
  .strict();
export type RollbackPlan = z.infer<typeof RollbackPlanSchema>;

export const RISK_LEVELS = ['low', 'medium', 'high'] as const;
export const RiskSchema = z
  .object({
    level: z.enum(RISK_LEVELS),
    /** What could go wrong and for whom: the blast radius in words. */
    impact: text(4000),
  })
  .strict();
export type Risk = z.infer<typeof RiskSchema>;

export const ChangeRecordSchema = z
  .object({
    /** Evidence the change was tested; the rollouts that passed an earlier environment are added by the coordinator. */
    validation: z.array(EvidenceLinkSchema).max(20).optional(),
    rollbackPlan: RollbackPlanSchema.optional(),
    risk: RiskSchema.optional(),
  })
  .strict();
export type ChangeRecord = z.infer<typeof ChangeRecordSchema>;

/** The fields of a record a coordinator may require before a rollout of the patch is approved or started. */
export const CHANGE_RECORD_FIELDS = ['validation', 'rollbackPlan', 'risk'] as const;
export const ChangeRecordFieldSchema = z.enum(CHANGE_RECORD_FIELDS);
export type ChangeRecordField = z.infer<typeof ChangeRecordFieldSchema>;

/** The required fields this record leaves empty (an empty validation list is empty). */
export function missingRecordFields(
  record: ChangeRecord | undefined,
  required: readonly ChangeRecordField[],
): ChangeRecordField[] {
  return required.filter((field) => {
    const value = record?.[field];
    return value === undefined || (Array.isArray(value) && value.length === 0);
  });
}
