import { z } from 'zod';
import { AgentPublicKeySchema } from './agent-proof.js';
import { AnalysesSchema } from './analysis.js';
import { canonicalJson } from './canonical-json.js';
import { type Patch, type PatchSpec, PatchSpecSchema } from './patch.js';
import type { RolloutRequest, Target } from './rollout.js';
import {
  type ApplyStatement,
  type RevertStatement,
  type SignedPatch,
  SignedPatchSchema,
  StatementSchema,
  StatementSignatureSchema,
  type StatementTarget,
  signedPatchOf,
  statementDigest,
} from './signed-statement.js';
import { HostIdSchema } from './validation.js';

/*
 * How a rollout is signed (signed-statement.ts says what a statement is): the statements the CLI
 * builds for a rollout, the rules the coordinator checks them by, and the request bodies that carry
 * a signature to it. One definition, so the CLI that signs and the coordinator that checks agree.
 */

/** How long a statement is valid unless its author says otherwise, and the most it may be. */
export const DEFAULT_STATEMENT_VALIDITY_SECONDS = 24 * 3600;
export const MAX_STATEMENT_VALIDITY_SECONDS = 30 * 24 * 3600;

/**
 * Whether an agent can tell by itself that it is in `target`: only `all` and `hostIds` qualify.
 * Labels (the coordinator stores them), reported labels and facts (as the coordinator last saw them)
 * would make the coordinator the judge of who matches, so agents refuse such selectors
 * (agent `signed-order-check.ts`), and the rollout is signed for the host ids it selects instead.
 */
export function isAgentCheckableTarget(target: Target): boolean {
  const { all: _all, hostIds: _hostIds, ...narrowing } = target;
  return Object.values(narrowing).every((value) => value === undefined);
}

/** What the apply statement of a rollout targets: its own selector if agents can check it, else the hosts planned. */
export function applyStatementTarget(target: Target, plannedHostIds: readonly string[]): StatementTarget {
  if (isAgentCheckableTarget(target)) return { kind: 'selector', selector: target };
  return { kind: 'hosts', hostIds: [...new Set(plannedHostIds)].sort() };
}

/** The PatchSpec of a stored patch: what `signedPatchOf` is taken of, by the CLI and the coordinator alike. */
export function patchSpecOf(patch: Patch | PatchSpec): PatchSpec {
  const {
    id: _id,
    createdBy: _createdBy,
    createdAt: _createdAt,
    contentDigest: _contentDigest,
    record: _record,
    ...spec
  } = patch as Patch;
  return PatchSpecSchema.parse(spec);
}

/** Whether the agent sends `revertOnHealthFailure` for this rollout, exactly as the coordinator's order sender does. */
export function revertOnHealthFailureOf(request: Pick<RolloutRequest, 'autoRevert'>): boolean {
  return request.autoRevert !== 'none';
}

/**
 * The first field of the signed patch where `signed` differs from the one derived from `spec`, or
 * undefined when they are the same (compared as canonical JSON, as the agent compares them).
 */
export function signedPatchDifference(spec: PatchSpec, signed: SignedPatch): string | undefined {
  const derived = SignedPatchSchema.parse(signedPatchOf(spec));
  const ours = SignedPatchSchema.parse(signed);
  const keys = new Set([...Object.keys(derived), ...Object.keys(ours)]);
  for (const key of [...keys].sort()) {
    const a = (derived as Record<string, unknown>)[key];
    const b = (ours as Record<string, unknown>)[key];
    if ((a === undefined) !== (b === undefined)) return key;
    if (a !== undefined && canonicalJson(a) !== canonicalJson(b)) return key;
  }
  return undefined;
}

export interface StatementWindow {
  /** The signing time: `notBefore`, and the sequence (its milliseconds since the epoch). */
  now: Date;
  validForSeconds: number;
}

function validity({ now, validForSeconds }: StatementWindow) {
  return {
    notBefore: now.toISOString(),
    expiresAt: new Date(now.getTime() + validForSeconds * 1000).toISOString(),
    sequence: now.getTime(),
  };
}

/** The apply statement the author of a rollout signs (the CLI builds it from what the coordinator shows). */
export function applyStatementFor(
  patch: PatchSpec,
  request: Pick<RolloutRequest, 'target' | 'autoRevert'> & {
    analyses?: RolloutRequest['analyses'] | undefined;
    rehearseRevert?: boolean | undefined;
  },
  plannedHostIds: readonly string[],
  window: StatementWindow,
): ApplyStatement {
  return {
    kind: 'apply',
    statementVersion: 1,
    patch: SignedPatchSchema.parse(signedPatchOf(patch)),
    revertOnHealthFailure: revertOnHealthFailureOf(request),
    ...analysesOf(request),
    ...(request.rehearseRevert === true ? { rehearseRevert: true as const } : {}),
    target: applyStatementTarget(request.target, plannedHostIds),
    ...validity(window),
  };
}

/** The `analyses` field of a rollout's apply statement: present only when it has analyses. */
export function analysesOf(request: { analyses?: RolloutRequest['analyses'] | undefined }): {
  analyses?: RolloutRequest['analyses'];
} {
  const analyses = request.analyses ?? [];
  return analyses.length > 0 ? { analyses: AnalysesSchema.parse(analyses) } : {};
}

/**
 * A revert statement taking back `apply`: for the apply's whole target, or for one host of it.
 * Its sequence is the signing time too, so it is above the apply's and the agent records it.
 */
export function revertStatementFor(
  apply: ApplyStatement,
  hostId: string | null,
  window: StatementWindow,
): RevertStatement {
  return {
    kind: 'revert',
    statementVersion: 1,
    revertsStatementDigest: statementDigest(apply),
    target: revertStatementTarget(apply, hostId),
    ...validity(window),
  };
}

/** What a revert statement must target: the apply statement's target, or exactly the one host it reverts. */
export function revertStatementTarget(apply: ApplyStatement, hostId: string | null): StatementTarget {
  return hostId === null ? apply.target : { kind: 'hosts', hostIds: [hostId] };
}

/**
 * Distinct people (keys and API tokens) who must sign a revert statement before a signed rollout
 * reverts: as many as it took to start it — the author and `requiredApprovals` approvers — and two
 * whenever anyone approved it, so undoing an approved fix is never one person's decision.
 */
export function revertSignaturesNeeded(requiredApprovals: number, approvals: number): number {
  return Math.max(1 + requiredApprovals, approvals > 0 ? 2 : 1);
}

/** Two targets are the same when their canonical JSON is. */
export function sameStatementTarget(a: StatementTarget, b: StatementTarget): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

// ---- request bodies ----------------------------------------------------------------------------

const signedBy = {
  /** `{keyId, signature}` over the statement's canonical bytes. */
  signature: StatementSignatureSchema,
  /** The raw ed25519 public key (base64url) the signature verifies with; its `keyIdOf` is `signature.keyId`. */
  publicKey: AgentPublicKeySchema,
};

/** `POST /v1/rollouts/:id/statement`: the author's apply statement for a draft, signed. */
export const AttachStatementRequestSchema = z.object({ statement: StatementSchema, ...signedBy }).strict();
export type AttachStatementRequest = z.infer<typeof AttachStatementRequestSchema>;

/**
 * `POST /v1/rollouts/:id/revert-statement`: a signature on a revert statement. The first signer's
 * statement becomes the pending one; later signers sign that same statement. Without `hostId` it
 * reverts the whole rollout; with it, that one host (`rollout revert-host`).
 */
export const RevertSignatureRequestSchema = z
  .object({ statement: StatementSchema, ...signedBy, hostId: HostIdSchema.optional() })
  .strict();
export type RevertSignatureRequest = z.infer<typeof RevertSignatureRequestSchema>;

/** `POST /v1/rollouts/:id/approve`: a reason, and for a signed rollout the approver's signature of its statement. */
export const ApproveRequestSchema = z
  .object({
    reason: z.string().max(2000).optional(),
    signature: StatementSignatureSchema.optional(),
    publicKey: AgentPublicKeySchema.optional(),
  })
  .strict()
  .refine((body) => (body.signature === undefined) === (body.publicKey === undefined), {
    message: 'give signature and publicKey together',
    path: ['publicKey'],
  });
export type ApproveRequest = z.infer<typeof ApproveRequestSchema>;
