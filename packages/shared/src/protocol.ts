import { z } from 'zod';
import { ChallengeNonceSchema, SignatureSchema } from './agent-proof.js';
import { ErrorCode } from './errors.js';
import { HealthCheckResultSchema, HealthPolicySchema } from './health-check.js';
import {
  InventoryDiffSchema,
  InventoryFullSchema,
  InventoryRequestSchema,
  InventorySummarySchema,
  InventoryUnavailableSchema,
} from './inventory.js';
import { jsonNestsDeeperThan } from './json-depth.js';
import { ChangeSchema, MAX_PACKAGE_SET_MEMBERS } from './patch.js';
import { MAX_PRECONDITIONS, PreconditionOutcomeSchema } from './preconditions.js';
import { ProtocolRangeSchema, ProtocolVersionSchema } from './protocol-version.js';
import { AfterChangeReportSchema } from './service-restarts.js';
import { ApplyStatementSchema, RevertStatementSchema, StatementSignatureSchema } from './signed-statement.js';
import { DebianPackageNameSchema, DebianVersionSchema, LabelsSchema } from './validation.js';
import { WIRE_LIMITS } from './wire-limits.js';

/**
 * The agent ⇄ coordinator wire protocol: JSON text frames over one WebSocket per agent, one
 * discriminated union per direction keyed on `type`. The agent names itself on the HTTP upgrade
 * (`AGENT_ID_HEADER`); the coordinator's first frame is a `challenge`, and the agent's first frame is
 * `hello` carrying the proof (its signature of the challenge) and the protocol versions it speaks;
 * `welcome` names the one the coordinator chose (protocol-version.ts). Nothing else is handled before
 * that proof checks out.
 *
 * How a protocol evolves without cutting off older peers (the must-ignore rule):
 * - A field an older peer may safely ignore can be added without a new version, as an optional
 *   field. Receivers therefore **strip unknown fields** instead of refusing the frame: frames and the
 *   reports inside agent frames are plain (stripping) objects, while every known field stays validated.
 * - A field the receiver must not ignore, and any new message type, needs a new protocol version;
 *   it is sent only to peers that negotiated that version (`*_MESSAGE_SINCE` below).
 * - What tells an agent to act on its host stays `.strict()` — an order's `change` and `health`
 *   policy (patch.ts, health-check.ts): silently dropping a field there would apply something other
 *   than what was approved, so such a frame is refused as before.
 * - A message type the receiver does not know (or that is newer than the negotiated version) is not a
 *   bad frame: it is answered with `unsupported` (protocol 2 and later) and the connection stays.
 *   It still counts against the sender's message rate.
 */

/** Upper bound of one frame in either direction (ws `maxPayload`). */
export const MAX_FRAME_BYTES = WIRE_LIMITS.frameBytes;

/** Order ids name journal directories on agents: a safe, short alphabet only. */
const OrderIdSchema = z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$/, 'order ids are 1-100 of [A-Za-z0-9_.-]');
const IsoTimeSchema = z.string().min(1).max(40);

export const FactsSchema = z.object({
  hostname: z.string().max(255),
  os: z.string().max(100),
  distro: z.string().max(100),
  release: z.string().max(100),
  kernel: z.string().max(200),
  arch: z.string().max(50),
  cpus: z.number().int().min(0),
  memoryBytes: z.number().int().min(0),
});
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
 * Final outcomes. Apply orders end healthy | failed | skipped | revert_failed | cancelled |
 * not_applicable; revert orders end reverted | revert_failed; preflight orders end would_apply |
 * already_applied | would_fail | blocked | not_applicable. `not_applicable` (protocol 4): the change
 * names a source package none of whose binaries is installed on the host — nothing to do, no failure.
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
  'not_applicable',
]);
export type OrderOutcome = z.infer<typeof OrderOutcomeSchema>;

/** A value of a described state: what a driver says a file or package is (`describe`). */
const StateValueSchema = z.union([z.string().max(200), z.number(), z.boolean()]);
export const DescribedStateSchema = z.record(z.string().max(200), StateValueSchema);
export type DescribedState = z.infer<typeof DescribedStateSchema>;

/**
 * How a rehearsed revert went (`order.apply` with `rehearseRevert`): the host applied, was healthy,
 * restored its snapshot, and was compared with what it held before the apply (`prior` against
 * `restored`: a file's bytes, mode and owner; a package's version and status) and checked healthy
 * again. `ok` only when nothing differs and health passed; then it applied again.
 */
export const RehearsalReportSchema = z.object({
  ok: z.boolean(),
  prior: DescribedStateSchema,
  /** Absent when the revert itself failed. */
  restored: DescribedStateSchema.optional(),
  /** What differs between prior and restored, one line each (`mode: 0640 → 0666`). */
  differences: z.array(z.string().max(300)).max(20),
  /** Whether the host was healthy again on its prior state. */
  healthyAfterRevert: z.boolean().optional(),
  reason: z.string().max(WIRE_LIMITS.reasonChars).optional(),
});
export type RehearsalReport = z.infer<typeof RehearsalReportSchema>;
/**
 * One package of a package change as resolved on the host: from which version (null: not installed)
 * to which, and where the snapshot of the prior version came from (`dpkg-repack`: rebuilt from the
 * installed files, see the agent's README; `none`: not captured, the change is not revertable).
 */
export const PackageMoveSchema = z.object({
  name: DebianPackageNameSchema,
  from: DebianVersionSchema.nullable(),
  to: DebianVersionSchema,
  snapshot: z.enum(['apt-cache', 'apt-download', 'dpkg-repack', 'not-installed', 'none']).optional(),
});
export type PackageMove = z.infer<typeof PackageMoveSchema>;

export const OrderResultBodySchema = z.object({
  orderId: OrderIdSchema,
  outcome: OrderOutcomeSchema,
  /** Whether the host now carries the change (false after a self-revert or a refusal). */
  changed: z.boolean(),
  errorCode: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]).optional(),
  reason: z.string().max(WIRE_LIMITS.reasonChars).optional(),
  health: z.array(HealthCheckResultSchema).max(WIRE_LIMITS.resultHealthResults).optional(),
  /** Present when the order asked for a rehearsed revert. */
  rehearsal: RehearsalReportSchema.optional(),
  /** A dry run of a change with host preconditions: how each one went (protocol 5). */
  preconditions: z.array(PreconditionOutcomeSchema).max(MAX_PRECONDITIONS).optional(),
  /** After a change (or its revert) on the host: units restarted, processes on old libraries, reboot. */
  afterChange: AfterChangeReportSchema.optional(),
  /** Package changes: the set as resolved on this host (preflight and apply; protocol 4, optional). */
  packages: z.array(PackageMoveSchema).max(MAX_PACKAGE_SET_MEMBERS).optional(),
  finishedAt: IsoTimeSchema,
});
export type OrderResultBody = z.infer<typeof OrderResultBodySchema>;

/** What the agent's journal says about one order, sent in `hello` so the coordinator can reconcile. */
export const OrderReportSchema = z.object({
  orderId: OrderIdSchema,
  phase: OrderPhaseSchema,
  result: OrderResultBodySchema.optional(),
});
export type OrderReport = z.infer<typeof OrderReportSchema>;

// ---- agent → coordinator -------------------------------------------------------------------

export const HelloSchema = z
  .object({
    type: z.literal('hello'),
    /** Protocol 1: the one version the agent speaks. Newer agents send `protocolVersions` instead. */
    protocolVersion: ProtocolVersionSchema.optional(),
    /** Protocol 2 and later: every version from min to max the agent accepts. */
    protocolVersions: ProtocolRangeSchema.optional(),
    /** ed25519 signature of `connectProofPayload(agentId, challenge.nonce)` with the agent's enrolled key. */
    proof: SignatureSchema,
    agentVersion: z.string().max(50),
    labels: LabelsSchema,
    facts: FactsSchema,
    /** Orders whose result the coordinator has not acknowledged yet, and any order in flight. */
    orders: z.array(OrderReportSchema).max(10_000),
  })
  .refine((hello) => hello.protocolVersion !== undefined || hello.protocolVersions !== undefined, {
    message: 'name the protocol versions the agent speaks (protocolVersions)',
    path: ['protocolVersions'],
  });

/** Protocol 7: agents of this version or newer beat with a WebSocket ping instead of a `heartbeat` message. */
export const HEARTBEAT_PING_PROTOCOL = 7;

/** The data of a heartbeat ping (protocol 7): the agent's journal position in decimal, as the `heartbeat` message carries it. */
export function heartbeatPingData(journalSeq: number): string {
  return String(journalSeq);
}

/** Protocol 6 and older: the application heartbeat (protocol 7 beats with a ping, see HEARTBEAT_PING_PROTOCOL). */
export const HeartbeatSchema = z.object({
  type: z.literal('heartbeat'),
  /** The agent's last journal position: lets the coordinator notice it missed a report. */
  journalSeq: z.number().int().min(0),
  sentAt: IsoTimeSchema,
});

export const OrderProgressSchema = z.object({
  type: z.literal('order.progress'),
  orderId: OrderIdSchema,
  phase: OrderPhaseSchema,
  message: z.string().max(WIRE_LIMITS.progressMessageChars).optional(),
  health: z.array(HealthCheckResultSchema).max(WIRE_LIMITS.progressHealthResults).optional(),
  /**
   * With `health` while verifying or baking: polls in a row that had a failing check, this one
   * included (0 when it passed). Protocol 5; optional, so older agents' progress reads as before.
   */
  failingPolls: z.number().int().min(0).max(1_000_000).optional(),
});

export const OrderResultSchema = OrderResultBodySchema.extend({ type: z.literal('order.result') });

export const FactsUpdateSchema = z.object({ type: z.literal('facts'), facts: FactsSchema });

/** A message `type`: short, so an `unsupported` reply never echoes more than this. */
const FrameTypeSchema = z.string().min(1).max(100);

/**
 * Protocol 2, either direction: "I do not know message type `inReplyTo`" (or not in the version
 * agreed on this connection). The receiver of a message it cannot handle answers with this instead
 * of closing the connection; the sender logs it and carries on. Never answered itself.
 */
export const UnsupportedSchema = z.object({
  type: z.literal('unsupported'),
  inReplyTo: FrameTypeSchema,
  reason: z.string().max(200).optional(),
});
export type Unsupported = z.infer<typeof UnsupportedSchema>;

export const AgentMessageSchema = z.discriminatedUnion('type', [
  HelloSchema,
  HeartbeatSchema,
  OrderProgressSchema,
  OrderResultSchema,
  FactsUpdateSchema,
  UnsupportedSchema,
  // Protocol 3: the package inventory (inventory.ts).
  InventorySummarySchema,
  InventoryFullSchema,
  InventoryDiffSchema,
  InventoryUnavailableSchema,
]);
export type AgentMessage = z.infer<typeof AgentMessageSchema>;

/** The protocol version that introduced each agent message: none is sent to, or taken from, an older peer. */
export const AGENT_MESSAGE_SINCE = {
  hello: 1,
  heartbeat: 1,
  'order.progress': 1,
  'order.result': 1,
  facts: 1,
  unsupported: 2,
  'inventory.summary': 3,
  'inventory.full': 3,
  'inventory.diff': 3,
  'inventory.unavailable': 3,
} as const satisfies Record<AgentMessage['type'], number>;
export type Hello = z.infer<typeof HelloSchema>;
export type OrderResult = z.infer<typeof OrderResultSchema>;
export type OrderProgress = z.infer<typeof OrderProgressSchema>;

// ---- coordinator → agent -------------------------------------------------------------------

/** The longest heartbeat interval a coordinator may set (its `heartbeatIntervalMs`) and an agent accepts. */
export const MAX_HEARTBEAT_INTERVAL_MS = 600_000;

/** Sent first on every connection: a fresh nonce the agent signs in its `hello`. */
export const ChallengeSchema = z.object({ type: z.literal('challenge'), nonce: ChallengeNonceSchema });

export const WelcomeSchema = z.object({
  type: z.literal('welcome'),
  /** The version the coordinator chose: the highest both sides speak. Everything after it is in that version. */
  protocolVersion: ProtocolVersionSchema,
  agentId: z.string(),
  /** At most what a coordinator's configuration allows: a larger one (2^31) would be a 1 ms timer to Node. */
  heartbeatIntervalMs: z.number().int().min(100).max(MAX_HEARTBEAT_INTERVAL_MS),
});

/** Signatures one signed order may carry: enough for any policy (`requiredSignatures` ≤ 10), bounded. */
export const MAX_STATEMENT_SIGNATURES = 16;

/**
 * What people signed for an order (signed-statement.ts), forwarded untouched by the coordinator.
 * Optional, so a coordinator that does not produce it keeps working with agents that do not require
 * it; an agent with `signing` configured refuses every order without it, in every protocol version.
 */
const signedBy = <S extends z.ZodType>(statement: S) =>
  z.object({ statement, signatures: z.array(StatementSignatureSchema).max(MAX_STATEMENT_SIGNATURES) }).strict();

export const OrderApplySchema = z.object({
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
  /**
   * Rehearse the revert on this host: once healthy, restore the snapshot, check the host is exactly
   * at its prior state and healthy, then apply again (see `RehearsalReportSchema`). A signed order
   * asks for it only under a statement that says `rehearseRevert: true`.
   */
  rehearseRevert: z.boolean().optional(),
  /** The signed statement of this order (its patch must match `change`, `health` and the prose) and its signatures. */
  signed: signedBy(ApplyStatementSchema).optional(),
});

export const OrderRevertSchema = z.object({
  type: z.literal('order.revert'),
  orderId: OrderIdSchema,
  /** The apply order whose snapshot is restored. */
  revertsOrderId: OrderIdSchema,
  /** A signed revert statement naming the apply statement of `revertsOrderId` by its digest. */
  signed: signedBy(RevertStatementSchema).optional(),
});

export const OrderPreflightSchema = z.object({
  type: z.literal('order.preflight'),
  orderId: OrderIdSchema,
  change: ChangeSchema,
  /**
   * How long the coordinator waits for this answer. The agent bounds its own waits (the dpkg lock)
   * to answer well within it — `blocked`, naming the lock's holder, rather than a silent `no_answer`.
   * Optional: an older agent ignores it and waits as its own configuration says.
   */
  answerWithinMs: z.number().int().min(1).max(600_000).optional(),
  /**
   * Whether the rollout's orders will carry a signed statement. An agent that requires signed orders
   * answers `would_fail` when they will not, as its apply would be refused. Optional: an older
   * coordinator does not say, and an older agent drops it.
   */
  signed: z.boolean().optional(),
  /**
   * The patch's health checks, run once as the apply's baseline runs them: a host unhealthy before
   * the patch, which the apply would skip (or fail, `failIfUnhealthyBefore`), answers `would_fail`.
   * Optional: an older coordinator does not send them.
   */
  health: HealthPolicySchema.optional(),
  failIfUnhealthyBefore: z.boolean().optional(),
});

/**
 * The host's wave has passed and bakes now: keep watching this order's health for `seconds` more
 * (from now). A failure during the bake reverts the host and reports it failed.
 */
export const OrderWatchSchema = z.object({
  type: z.literal('order.watch'),
  orderId: OrderIdSchema,
  seconds: z
    .number()
    .min(0)
    .max(7 * 24 * 3600),
});

export const OrderCancelSchema = z.object({ type: z.literal('order.cancel'), orderId: OrderIdSchema });

/**
 * The coordinator has durably recorded this result; the agent may stop re-reporting it. `finishedAt`
 * names which result (an order can report twice: healthy, then failed during bake), so a late ack
 * of the first does not silence the second.
 */
export const OrderAckSchema = z.object({
  type: z.literal('order.ack'),
  orderId: OrderIdSchema,
  finishedAt: IsoTimeSchema.optional(),
});

export const CoordinatorMessageSchema = z.discriminatedUnion('type', [
  ChallengeSchema,
  WelcomeSchema,
  OrderApplySchema,
  OrderRevertSchema,
  OrderPreflightSchema,
  OrderWatchSchema,
  OrderCancelSchema,
  OrderAckSchema,
  UnsupportedSchema,
  InventoryRequestSchema,
]);
export type CoordinatorMessage = z.infer<typeof CoordinatorMessageSchema>;

/** The protocol version that introduced each coordinator message (see AGENT_MESSAGE_SINCE). */
export const COORDINATOR_MESSAGE_SINCE = {
  challenge: 1,
  welcome: 1,
  'order.apply': 1,
  'order.revert': 1,
  'order.preflight': 1,
  'order.watch': 1,
  'order.cancel': 1,
  'order.ack': 1,
  unsupported: 2,
  'inventory.request': 3,
} as const satisfies Record<CoordinatorMessage['type'], number>;
export type OrderApply = z.infer<typeof OrderApplySchema>;
export type OrderRevert = z.infer<typeof OrderRevertSchema>;
export type OrderPreflight = z.infer<typeof OrderPreflightSchema>;

/**
 * One incoming text frame: a message of the agreed version, a message type the receiver does not
 * know in that version (answer `unsupported`, keep the connection), or a frame that is not valid
 * (close with 4400).
 */
export type IncomingFrame<T> =
  | { kind: 'message'; message: T }
  | { kind: 'unknown'; type: string }
  | { kind: 'invalid'; error: string };

const FrameEnvelopeSchema = z.object({ type: FrameTypeSchema });

/**
 * How deep a frame's JSON may nest: a signed statement may nest 64 levels (MAX_CANONICAL_JSON_DEPTH)
 * inside an order a few levels deep, and nothing the protocol describes comes near. Deeper text is
 * refused before it is parsed (see `jsonNestsDeeperThan`).
 */
export const MAX_FRAME_DEPTH = 128;

/**
 * Parses one text frame against `schema`, speaking protocol `version`: a type missing from `since`,
 * or introduced after `version`, is `unknown` rather than invalid. Returns instead of throwing so
 * callers choose the answer.
 */
export function readFrame<T extends { type: string }>(
  schema: z.ZodType<T>,
  since: Readonly<Record<T['type'], number>>,
  version: number,
  raw: string,
): IncomingFrame<T> {
  if (jsonNestsDeeperThan(raw, MAX_FRAME_DEPTH)) {
    return { kind: 'invalid', error: `frame nests deeper than ${MAX_FRAME_DEPTH} levels` };
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { kind: 'invalid', error: 'frame is not JSON' };
  }
  const envelope = FrameEnvelopeSchema.safeParse(json);
  if (!envelope.success) return { kind: 'invalid', error: z.prettifyError(envelope.error) };
  const { type } = envelope.data;
  // Own keys only: a frame typed "constructor" or "__proto__" is unknown, not Object.prototype's.
  const introduced: number | undefined = Object.hasOwn(since, type) ? since[type as T['type']] : undefined;
  if (introduced === undefined || introduced > version) return { kind: 'unknown', type };
  const parsed = schema.safeParse(json);
  if (!parsed.success) return { kind: 'invalid', error: z.prettifyError(parsed.error) };
  return { kind: 'message', message: parsed.data };
}
