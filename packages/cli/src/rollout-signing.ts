import {
  type ApplyStatement,
  analysesOf,
  applyStatementFor,
  canonicalJson,
  DEFAULT_STATEMENT_VALIDITY_SECONDS,
  isAgentCheckableTarget,
  keyIdOf,
  MAX_STATEMENT_VALIDITY_SECONDS,
  type Patch,
  type PatchSpec,
  patchSpecOf,
  type RevertStatement,
  type RolloutRequest,
  type RolloutStatus,
  revertOnHealthFailureOf,
  revertStatementFor,
  revertStatementTarget,
  type Statement,
  type StatementSignatureView,
  type StatementView,
  sameStatementTarget,
  signedPatchDifference,
  signedPatchOf,
  signStatement,
  statementDigest,
  verifyStatementSignature,
} from '@fleetpatch/shared';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { ApiClient } from './api-client.js';
import type { CliContext } from './cli-context.js';
import { parseDuration } from './commands/join-token-commands.js';
import { type KeyEnvironment, openSigningKey, PASSPHRASE_ENV_HELP, type SigningKey } from './commands/key-commands.js';
import { describeStatement } from './render-statement.js';

/*
 * Signing rollouts from the CLI: the statement is built (or, for an approver, re-derived and
 * checked) here, on the signer's machine, from what the coordinator shows, and signed with a key
 * the coordinator never sees. Nothing is signed that this side has not checked itself: a
 * coordinator that shows one patch and asks for a signature over another gets none.
 */

/** Refusing to sign (or a signing step the coordinator cannot follow): exit 1, one line. */
export class SigningRefusedError extends Error {
  override readonly name = 'SigningRefusedError';
}

export interface SigningFlags {
  signKey?: string;
  passphraseEnv?: string;
  /** Seconds; only commands that make a statement take it. */
  validFor?: number;
}

/** "24h", "30m", "7d" or seconds; from a second to 30 days. */
export function parseValidity(value: string): number {
  const seconds = parseDuration(value);
  if (seconds < 1 || seconds > MAX_STATEMENT_VALIDITY_SECONDS) {
    throw new InvalidArgumentError(`must be from 1s to ${MAX_STATEMENT_VALIDITY_SECONDS / 86_400}d`);
  }
  return seconds;
}

/** `--sign-key`, `--passphrase-env` and, for commands that make a statement, `--valid-for`. */
export function addSigningOptions(command: Command, what: string, makesStatement: boolean): Command {
  command
    .option('--sign-key <file>', `sign ${what} with this ed25519 key (fleetpatch key generate)`)
    .option('--passphrase-env <var>', `if the key is encrypted, ${PASSPHRASE_ENV_HELP}`);
  if (makesStatement) {
    // Shown as written (24h), not as the seconds it stands for.
    command.addOption(
      new Option('--valid-for <duration>', 'how long agents accept the statement: 30m, 24h, 7d (at most 30d)')
        .argParser(parseValidity)
        .default(DEFAULT_STATEMENT_VALIDITY_SECONDS, '24h'),
    );
  }
  return command;
}

export function loadKey(flags: SigningFlags, keys: () => KeyEnvironment): Promise<SigningKey> {
  return openSigningKey(flags.signKey, flags.passphraseEnv, keys());
}

function printSummary(ctx: CliContext, heading: string, statement: Statement, key: SigningKey): void {
  ctx.output.err(
    [heading, ...describeStatement(statement, statementDigest(statement)), `  key       ${key.keyId}`].join('\n'),
  );
}

// ---- author -----------------------------------------------------------------------------------

/**
 * Before anything is created: the coordinator's patch, checked against the author's own file when
 * `--patch-file` names one (else the author signs the patch as the coordinator shows it).
 */
export function checkPatchAgainstFile(patch: Patch, local: PatchSpec | undefined, file: string | undefined): PatchSpec {
  const spec = patchSpecOf(patch);
  if (local !== undefined) {
    const differs = signedPatchDifference(local, signedPatchOf(spec));
    if (differs !== undefined) {
      throw new SigningRefusedError(
        `patch ${patch.id} on the coordinator differs from ${file} in ${differs}: refusing to sign (nothing was created)`,
      );
    }
  }
  return spec;
}

/**
 * The author's side of `rollout create --sign-key`, once the draft exists: the statement from the
 * patch and the draft's plan, signed, attached; then submitted unless the author wanted a draft.
 */
export async function signNewRollout(
  ctx: CliContext,
  api: ApiClient,
  created: RolloutStatus,
  spec: PatchSpec,
  key: SigningKey,
  { validFor, submit }: { validFor: number; submit: boolean },
): Promise<RolloutStatus> {
  const { rollout } = created;
  const planned = isAgentCheckableTarget(rollout.request.target)
    ? []
    : (await api.rolloutPlan(rollout.id)).waves.flatMap((wave) => wave.hosts);
  if (!isAgentCheckableTarget(rollout.request.target) && planned.length === 0) {
    throw new SigningRefusedError(
      `rollout ${rollout.id}'s target selects no host now: nothing to sign for (it stays a draft)`,
    );
  }
  const statement = applyStatementFor(spec, rollout.request, planned, { now: ctx.now(), validForSeconds: validFor });
  printSummary(ctx, `signing rollout ${rollout.id} as its author`, statement, key);
  const signed = await api.attachStatement(rollout.id, {
    statement,
    signature: signStatement(key.privateKey, statement),
    publicKey: key.publicKey,
  });
  return submit ? api.rolloutVerb(rollout.id, 'submit') : signed;
}

// ---- approver ---------------------------------------------------------------------------------

/**
 * `rollout approve --sign-key`: the statement the coordinator asks to be signed, checked against the
 * patch and the rollout it shows (re-derived here) and against the author's signature, then signed.
 */
export async function approveSigned(
  ctx: CliContext,
  api: ApiClient,
  id: string,
  key: SigningKey,
  reason: string | undefined,
): Promise<RolloutStatus> {
  const status = await api.rolloutStatus(id);
  const statement = checkedApplyStatement(status, await api.getPatch(status.rollout.patchId));
  printSummary(ctx, `approving rollout ${id}: signing its statement as an approver`, statement, key);
  return api.approveSigned(id, {
    signature: signStatement(key.privateKey, statement),
    publicKey: key.publicKey,
    ...(reason ? { reason } : {}),
  });
}

/** The rollout's apply statement, once it is shown to sign exactly what the coordinator says the rollout is. */
function checkedApplyStatement(status: RolloutStatus, patch: Patch): ApplyStatement {
  const { rollout, signing } = status;
  if (signing === null) {
    throw new SigningRefusedError(`rollout ${rollout.id} is not signed: approve it without --sign-key`);
  }
  const statement = signing.apply.statement;
  if (statement.kind !== 'apply' || statementDigest(statement) !== signing.apply.digest) {
    throw new SigningRefusedError(
      `the coordinator shows a statement for ${rollout.id} that is not its apply statement`,
    );
  }
  const differs = signedPatchDifference(patchSpecOf(patch), statement.patch);
  if (differs !== undefined) {
    throw new SigningRefusedError(
      `the statement's patch.${differs} is not patch ${patch.id} as the coordinator shows it: refusing to sign something else than what is shown`,
    );
  }
  checkRolloutPlan(rollout.request, statement);
  verifySignatures(signing.apply, statement);
  if (!signing.apply.signatures.some((s) => s.role === 'author')) {
    throw new SigningRefusedError(`rollout ${rollout.id}'s statement carries no author's signature`);
  }
  return statement;
}

function checkRolloutPlan(request: RolloutRequest, statement: ApplyStatement): void {
  if (statement.revertOnHealthFailure !== revertOnHealthFailureOf(request)) {
    throw new SigningRefusedError(
      `the statement's revertOnHealthFailure is ${statement.revertOnHealthFailure}, the rollout's autoRevert ${request.autoRevert}: refusing to sign`,
    );
  }
  if (
    isAgentCheckableTarget(request.target) &&
    !sameStatementTarget(statement.target, { kind: 'selector', selector: request.target })
  ) {
    throw new SigningRefusedError("the statement's target is not the rollout's: refusing to sign");
  }
  if (canonicalJson(statement.analyses ?? null) !== canonicalJson(analysesOf(request).analyses ?? null)) {
    throw new SigningRefusedError("the statement's analyses are not the rollout's: refusing to sign");
  }
  if ((statement.rehearseRevert === true) !== request.rehearseRevert) {
    throw new SigningRefusedError(
      `the statement ${statement.rehearseRevert ? 'allows' : 'does not allow'} a rehearsed revert, the rollout ${request.rehearseRevert ? 'asks for one' : 'does not'}: refusing to sign`,
    );
  }
}

/** Every signature shown must verify with the public key shown beside it (whose id it bears). */
function verifySignatures(view: StatementView, statement: Statement): void {
  const bad = view.signatures.filter((s: StatementSignatureView) => {
    return keyIdOf(s.publicKey) !== s.keyId || !verifyStatementSignature(s.publicKey, statement, s.signature);
  });
  if (bad.length > 0) {
    throw new SigningRefusedError(
      `the signature of ${bad.map((s) => `${s.signer} (key ${s.keyId})`).join(', ')} does not verify: refusing to sign`,
    );
  }
}

// ---- revert -----------------------------------------------------------------------------------

export interface RevertSigningOutcome {
  status: RolloutStatus;
  /** Distinct signers it has now, and needs. */
  signatures: number;
  needed: number;
  /** Whether the revert started. */
  started: boolean;
}

/**
 * `rollout revert --sign-key` (or `revert-host`): signs the pending revert statement of the rollout
 * (or host) if there is one — checked to take back this rollout's apply statement — or makes a new
 * one. The coordinator starts the revert once enough people signed it.
 */
export async function signRevert(
  ctx: CliContext,
  api: ApiClient,
  id: string,
  hostId: string | null,
  key: SigningKey,
  validFor: number,
): Promise<RevertSigningOutcome> {
  const status = await api.rolloutStatus(id);
  const { signing } = status;
  if (signing === null) {
    throw new SigningRefusedError(`rollout ${id} is not signed: revert it without --sign-key`);
  }
  const apply = signing.apply.statement;
  if (apply.kind !== 'apply' || statementDigest(apply) !== signing.apply.digest) {
    throw new SigningRefusedError(`the coordinator shows a statement for ${id} that is not its apply statement`);
  }
  const now = ctx.now();
  const pending = signing.reverts
    .filter((r) => r.usedAt === null && r.hostId === hostId && Date.parse(r.statement.expiresAt) > now.getTime())
    .at(-1);
  let statement: RevertStatement;
  if (pending !== undefined) {
    statement = checkedRevertStatement(pending, apply, hostId);
    if (pending.signatures.some((s) => s.keyId === key.keyId)) {
      return waitOrStart(api, status, pending, hostId, signing.revertSignaturesNeeded);
    }
  } else {
    statement = revertStatementFor(apply, hostId, { now, validForSeconds: validFor });
  }
  const what = hostId === null ? `rollout ${id}` : `host ${hostId} of rollout ${id}`;
  printSummary(
    ctx,
    `${pending ? 'co-signing the pending' : 'signing a new'} revert statement for ${what}`,
    statement,
    key,
  );
  const after = await api.signRevert(id, {
    statement,
    signature: signStatement(key.privateKey, statement),
    publicKey: key.publicKey,
    ...(hostId !== null ? { hostId } : {}),
  });
  const digest = statementDigest(statement);
  const view = after.signing?.reverts.find((r) => r.digest === digest);
  const needed = after.signing?.revertSignaturesNeeded ?? 0;
  return { status: after, signatures: view?.signatures.length ?? 0, needed, started: view?.usedAt != null };
}

/** A pending revert statement is signed only if it takes back this rollout's apply statement, where it should. */
function checkedRevertStatement(pending: StatementView, apply: ApplyStatement, hostId: string | null): RevertStatement {
  const statement = pending.statement;
  if (
    statement.kind !== 'revert' ||
    statementDigest(statement) !== pending.digest ||
    statement.revertsStatementDigest !== statementDigest(apply) ||
    !sameStatementTarget(statement.target, revertStatementTarget(apply, hostId))
  ) {
    throw new SigningRefusedError(
      `the pending revert statement ${pending.digest.slice(0, 16)} does not take back this rollout's statement: refusing to sign`,
    );
  }
  verifySignatures(pending, statement);
  return statement;
}

/** This key signed the pending statement already: start the revert if it has enough signers, else say who is awaited. */
async function waitOrStart(
  api: ApiClient,
  status: RolloutStatus,
  pending: StatementView,
  hostId: string | null,
  needed: number,
): Promise<RevertSigningOutcome> {
  const signatures = pending.signatures.length;
  if (signatures < needed) return { status, signatures, needed, started: false };
  const id = status.rollout.id;
  const after = hostId === null ? await api.rolloutVerb(id, 'revert') : await api.revertHost(id, hostId);
  return { status: after, signatures, needed, started: true };
}

/** "signed 1 of 2; a second person runs the same command" — or that the revert started. */
export function describeRevertSigning(outcome: RevertSigningOutcome): string {
  const { signatures, needed } = outcome;
  if (outcome.started) return `signed ${signatures} of ${needed}: the revert has started`;
  const missing = needed - signatures;
  const who =
    missing > 1 ? `${missing} more people run` : signatures === 1 ? 'a second person runs' : 'one more person runs';
  return `signed ${signatures} of ${needed}; ${who} the same command`;
}
