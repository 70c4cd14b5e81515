import { z } from 'zod';
import { ChallengeNonceSchema, SignatureSchema } from './agent-proof.js';
import { ErrorCode } from './errors.js';
import { HealthCheckResultSchema, HealthPolicySchema } from './health-check.js';
import { ChangeSchema } from './patch.js';
import { LabelsSchema } from './validation.js';
import { WIRE_LIMITS } from './wire-limits.js';

/**
 * The agent ⇄ coordinator wire protocol: JSON text frames over one WebSocket per agent, one
 * discriminated union per direction keyed on `type`. The agent names itself on the HTTP upgrade
 * (`AGENT_ID_HEADER`); the coordinator's first frame is a `challenge`, and the agent's first frame is
 * `hello` carrying the proof (its signature of the challenge) and agreeing the protocol version.
 * Nothing else is handled before that proof checks out.
 */
export const PROTOCOL_VERSION = 1;

/** Upper bound of one frame in either direction (ws `maxPayload`). */
export const MAX_FRAME_BYTES = WIRE_LIMITS.frameBytes;

/** Order ids name journal directories on agents: a safe, short alphabet only. */
const OrderIdSchema = z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$/, 'order ids are 1-100 of [A-Za-z0-9_.-]');
const IsoTimeSchema = z.string().min(1).max(40);

export const FactsSchema = z
  .object({
    hostname: z.string().max(255),
    os: z.string().max(100),
    distro: z.string().max(100),
    release: z.string().max(100),
    kernel: z.string().max(200),
    arch: z.string().max(50),
    cpus: z.number().int().min(0),
    memoryBytes: z.number().int().min(0),
  })
  .strict();
export type Facts = z.infer<typeof FactsSchema>;

/** The phases an order moves through in the agent's journal. */
export const ORDER_PHASES = [
  'accepted',
  'baseline',
  'snapshotted',
  'applying',
  'applied',
  'verifying',
  'reverting',
  'done',
] as const;
export const OrderPhaseSchema = z.enum(ORDER_PHASES);
export type OrderPhase = z.infer<typeof OrderPhaseSchema>;

/**
 * Final outcomes. Apply orders end healthy | failed | skipped | revert_failed | cancelled; revert
 * orders end reverted | revert_failed; preflight orders end would_apply | already_applied |
 * would_fail | blocked.
 */
export const OrderOutcomeSchema = z.enum([
  'healthy',
  'failed',
  'skipped',
  'cancelled',
  'reverted',
  'revert_failed',
  'would_apply',
  'already_applied',
  'would_fail',
  'blocked',
]);
export type OrderOutcome = z.infer<typeof OrderOutcomeSchema>;

export const OrderResultBodySchema = z
  .object({
    orderId: OrderIdSchema,
    outcome: OrderOutcomeSchema,
    /** Whether the host now carries the change (false after a self-revert or a refusal). */
    changed: z.boolean(),
    errorCode: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]).optional(),
    reason: z.string().max(WIRE_LIMITS.reasonChars).optional(),
    health: z.array(HealthCheckResultSchema).max(WIRE_LIMITS.resultHealthResults).optional(),
    finishedAt: IsoTimeSchema,
  })
  .strict();
export type OrderResultBody = z.infer<typeof OrderResultBodySchema>;

/** What the agent's journal says about one order, sent in `hello` so the coordinator can reconcile. */
export const OrderReportSchema = z
  .object({
    orderId: OrderIdSchema,
    phase: OrderPhaseSchema,
    result: OrderResultBodySchema.optional(),
  })
  .strict();
export type OrderReport = z.infer<typeof OrderReportSchema>;

// ---- agent → coordinator -------------------------------------------------------------------

export const HelloSchema = z
  .object({
    type: z.literal('hello'),
    protocolVersion: z.number().int().min(1),
    /** ed25519 signature of `connectProofPayload(agentId, challenge.nonce)` with the agent's enrolled key. */
    proof: SignatureSchema,
    agentVersion: z.string().max(50),
    labels: LabelsSchema,
    facts: FactsSchema,
    /** Orders whose result the coordinator has not acknowledged yet, and any order in flight. */
    orders: z.array(OrderReportSchema).max(10_000),
  })
  .strict();

export const HeartbeatSchema = z
  .object({
    type: z.literal('heartbeat'),
    /** The agent's last journal position: lets the coordinator notice it missed a report. */
    journalSeq: z.number().int().min(0),
    sentAt: IsoTimeSchema,
  })
  .strict();

export const OrderProgressSchema = z
  .object({
    type: z.literal('order.progress'),
    orderId: OrderIdSchema,
    phase: OrderPhaseSchema,
    message: z.string().max(WIRE_LIMITS.progressMessageChars).optional(),
    health: z.array(HealthCheckResultSchema).max(WIRE_LIMITS.progressHealthResults).optional(),
  })
  .strict();

export const OrderResultSchema = OrderResultBodySchema.extend({ type: z.literal('order.result') }).strict();

export const FactsUpdateSchema = z.object({ type: z.literal('facts'), facts: FactsSchema }).strict();

export const AgentMessageSchema = z.discriminatedUnion('type', [
  HelloSchema,
  HeartbeatSchema,
  OrderProgressSchema,
  OrderResultSchema,
  FactsUpdateSchema,
]);
export type AgentMessage = z.infer<typeof AgentMessageSchema>;
export type Hello = z.infer<typeof HelloSchema>;
export type OrderResult = z.infer<typeof OrderResultSchema>;
export type OrderProgress = z.infer<typeof OrderProgressSchema>;

// ---- coordinator → agent -------------------------------------------------------------------

/** Sent first on every connection: a fresh nonce the agent signs in its `hello`. */
export const ChallengeSchema = z.object({ type: z.literal('challenge'), nonce: ChallengeNonceSchema }).strict();

export const WelcomeSchema = z
  .object({
    type: z.literal('welcome'),
    protocolVersion: z.number().int().min(1),
    agentId: z.string(),
    heartbeatIntervalMs: z.number().int().min(100),
  })
  .strict();

export const OrderApplySchema = z
  .object({
    type: z.literal('order.apply'),
    orderId: OrderIdSchema,
    rolloutId: z.string().max(100),
    patchId: z.string().max(100),
    change: ChangeSchema,
    health: HealthPolicySchema,
    /** Fail baseline-unhealthy hosts instead of skipping them. */
    failIfUnhealthyBefore: z.boolean().default(false),
    /**
     * Whether a host whose health fails after apply restores its snapshot by itself (the rollout's
     * autoRevert is not `none`). A change that fails to apply or verify is always undone.
     */
    revertOnHealthFailure: z.boolean().default(true),
    /** After reporting healthy, keep watching health this long; a failure then reverts and reports again. */
    bakeSeconds: z
      .number()
      .min(0)
      .max(7 * 24 * 3600)
      .default(0),
  })
  .strict();

export const OrderRevertSchema = z
  .object({
    type: z.literal('order.revert'),
    orderId: OrderIdSchema,
    /** The apply order whose snapshot is restored. */
    revertsOrderId: OrderIdSchema,
  })
  .strict();

export const OrderPreflightSchema = z
  .object({
    type: z.literal('order.preflight'),
    orderId: OrderIdSchema,
    change: ChangeSchema,
  })
  .strict();

/**
 * The host's wave has passed and bakes now: keep watching this order's health for `seconds` more
 * (from now). A failure during the bake reverts the host and reports it failed.
 */
export const OrderWatchSchema = z
  .object({
    type: z.literal('order.watch'),
    orderId: OrderIdSchema,
    seconds: z
      .number()
      .min(0)
      .max(7 * 24 * 3600),
  })
  .strict();

export const OrderCancelSchema = z.object({ type: z.literal('order.cancel'), orderId: OrderIdSchema }).strict();

/**
 * The coordinator has durably recorded this result; the agent may stop re-reporting it. `finishedAt`
 * names which result (an order can report twice: healthy, then failed during bake), so a late ack
 * of the first does not silence the second.
 */
export const OrderAckSchema = z
  .object({ type: z.literal('order.ack'), orderId: OrderIdSchema, finishedAt: IsoTimeSchema.optional() })
  .strict();

export const CoordinatorMessageSchema = z.discriminatedUnion('type', [
  ChallengeSchema,
  WelcomeSchema,
  OrderApplySchema,
  OrderRevertSchema,
  OrderPreflightSchema,
  OrderWatchSchema,
  OrderCancelSchema,
  OrderAckSchema,
]);
export type CoordinatorMessage = z.infer<typeof CoordinatorMessageSchema>;
export type OrderApply = z.infer<typeof OrderApplySchema>;
export type OrderRevert = z.infer<typeof OrderRevertSchema>;
export type OrderPreflight = z.infer<typeof OrderPreflightSchema>;

/** Parses one text frame; returns the zod issues instead of throwing so callers choose the close code. */
export function parseFrame<T>(
  schema: z.ZodType<T>,
  raw: string,
): { ok: true; message: T } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, error: 'frame is not JSON' };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) return { ok: false, error: z.prettifyError(parsed.error) };
  return { ok: true, message: parsed.data };
}
