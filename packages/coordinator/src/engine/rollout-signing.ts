import {
  type ApplyStatement,
  type ApproveRequest,
  type AttachStatementRequest,
  analysesOf,
  canonicalJson,
  ErrorCode,
  FleetError,
  isAgentCheckableTarget,
  keyIdOf,
  type OrderApply,
  type OrderRevert,
  patchSpecOf,
  type RevertSignatureRequest,
  revertOnHealthFailureOf,
  revertSignaturesNeeded,
  revertStatementTarget,
  type SignerRole,
  type Statement,
  type StatementSignature,
  type StatementTarget,
  sameStatementTarget,
  signedPatchDifference,
  statementDigest,
  verifyStatementSignature,
} from '@fleetpatch/shared';
import type { RolloutRecord } from '../store/rollout-repository.js';
import { ROLLOUT_SCOPE, type StatementRecord, type StatementScope } from '../store/statement-repository.js';
import type { Store } from '../store/store.js';
import type { EngineDeps } from './engine-interfaces.js';
import { resolveFleetTarget } from './fleet-target.js';
import { invalidField } from './invalid-field.js';
import { isoNow, mustGetRollout } from './rollout-transition.js';

/*
 * Signed rollouts, the coordinator's side: it stores what people signed and forwards it with the
 * orders; agents verify it. The coordinator checks signatures too, but only so that people learn at
 * once when something is wrong (a statement that is not the rollout's, a key that signed twice) —
 * it is trusted by no agent, so none of these checks is what keeps the fleet safe.
 */

/** Whether a rollout was signed: then every order it sends carries its statement, and reverts need one too. */
export async function isSignedRollout(store: Store, rolloutId: string): Promise<boolean> {
  return (await store.statements.apply(rolloutId)) !== undefined;
}

/** What an `order.apply` of this rollout carries: its apply statement and every signature of it. */
export async function signedApplyOf(store: Store, rolloutId: string): Promise<OrderApply['signed']> {
  const apply = await store.statements.apply(rolloutId);
  if (apply === undefined) return undefined;
  return (await signedAs(store, apply, 'apply')) as OrderApply['signed'];
}

/**
 * What an `order.revert` to this host carries: the revert statement its latest revert was started
 * under (the rollout's, or the host's own). Undefined for an unsigned rollout; a signed rollout
 * with none throws, so no revert is ever sent that the agent would refuse as unsigned.
 */
export async function signedRevertOf(store: Store, rolloutId: string, hostId: string): Promise<OrderRevert['signed']> {
  if (!(await isSignedRollout(store, rolloutId))) return undefined;
  const revert = await store.statements.revertCovering(rolloutId, hostId);
  if (revert === undefined) {
    throw new FleetError(
      ErrorCode.conflict,
      `rollout ${rolloutId} is signed and no signed revert statement covers ${hostId}: fleetpatch rollout revert ${rolloutId} --sign-key <pem>`,
      { rolloutId, hostId },
    );
  }
  return (await signedAs(store, revert, 'revert')) as OrderRevert['signed'];
}

async function signedAs(
  store: Store,
  record: StatementRecord,
  kind: Statement['kind'],
): Promise<{ statement: Statement; signatures: StatementSignature[] }> {
  if (record.statement.kind !== kind) throw new Error(`statement ${record.digest} is not an ${kind} statement`);
  return await store.statements.signed(record);
}

const short = (digest: string) => digest.slice(0, 16);

function scopeWords(rolloutId: string, scope: StatementScope): { of: string; command: string } {
  return scope.kind === 'rollout'
    ? { of: `rollout ${rolloutId}`, command: `fleetpatch rollout revert ${rolloutId} --sign-key <pem>` }
    : {
        of: `host ${scope.hostId} of rollout ${rolloutId}`,
        command: `fleetpatch rollout revert-host ${rolloutId} ${scope.hostId} --sign-key <pem>`,
      };
}

/** The human side of signed rollouts: attaching the author's statement, approvals, revert statements. */
export class RolloutSigning {
  constructor(private readonly deps: Pick<EngineDeps, 'store' | 'clock'>) {}

  async isSigned(rolloutId: string): Promise<boolean> {
    return await isSignedRollout(this.deps.store, rolloutId);
  }

  /**
   * The author attaches the apply statement they signed to their draft (replacing an earlier one).
   * Must run inside a transaction. Refused, storing nothing, unless it signs exactly what this
   * rollout will send: its patch, its revert plan, its target.
   */
  async attachApply(rolloutId: string, request: AttachStatementRequest, actor: string): Promise<string> {
    const { store, clock } = this.deps;
    const rollout = await mustGetRollout(store, rolloutId);
    if (rollout.state !== 'draft') {
      throw new FleetError(
        ErrorCode.illegalTransition,
        `a statement is attached to a draft only; rollout ${rolloutId} is ${rollout.state} (create a new rollout to sign it)`,
        { rolloutId, state: rollout.state },
      );
    }
    if (rollout.createdBy !== actor) {
      throw new FleetError(
        ErrorCode.forbidden,
        `only the rollout's creator (${rollout.createdBy}) signs it as author; approvers sign with rollout approve`,
        { rolloutId, createdBy: rollout.createdBy },
      );
    }
    const { statement } = request;
    if (statement.kind !== 'apply') {
      throw invalidField(
        'body.statement.kind',
        'must be "apply": a rollout is signed with its apply statement (revert statements go to /revert-statement)',
      );
    }
    await this.checkSignedPatch(rollout, statement);
    await this.checkApplyTarget(rollout, statement.target);
    const digest = this.checkSignature(statement, request, 'body.');
    // `start` refuses an expired statement: a rollout timed to start after its statement expires
    // would stay scheduled for ever, its start refused at every tick.
    const { startAt } = rollout.request;
    if (startAt !== undefined && Date.parse(startAt) >= Date.parse(statement.expiresAt)) {
      throw invalidField(
        'body.statement.expiresAt',
        `${statement.expiresAt} is not after the rollout's startAt (${startAt}): it could never start; sign a statement valid until after it starts (--valid-for)`,
      );
    }
    const taken = await store.statements.get(digest);
    if (taken !== undefined) {
      throw new FleetError(
        ErrorCode.conflict,
        `this statement is attached to rollout ${taken.rolloutId} already: sign a new one for this rollout`,
        { rolloutId, digest },
      );
    }
    const previous = await store.statements.apply(rolloutId);
    if (previous !== undefined) await store.statements.delete(previous.digest);
    const at = isoNow(clock);
    await store.statements.insert({ digest, rolloutId, scope: ROLLOUT_SCOPE, statement, createdAt: at });
    await this.addSignature(digest, request, actor, 'author', at);
    await store.appendEvent(
      {
        rolloutId,
        actor,
        type: 'rollout.signed',
        data: {
          digest,
          keyId: request.signature.keyId,
          sequence: statement.sequence,
          expiresAt: statement.expiresAt,
          ...(previous ? { replaces: previous.digest } : {}),
        },
      },
      at,
    );
    return digest;
  }

  /**
   * Must run inside the approval's transaction, after the token-name checks. A signed rollout is
   * approved only with a signature of its statement by a key that has not signed it yet (four eyes
   * by key as well as by token); an unsigned rollout takes no signature. Returns the key id, if any.
   */
  async recordApproval(
    rollout: RolloutRecord,
    request: ApproveRequest | undefined,
    actor: string,
  ): Promise<string | undefined> {
    const { store, clock } = this.deps;
    const apply = await store.statements.apply(rollout.id);
    const signature = request?.signature;
    const publicKey = request?.publicKey;
    if (apply === undefined) {
      if (signature !== undefined) {
        throw new FleetError(
          ErrorCode.conflict,
          `rollout ${rollout.id} is not signed: approve it without --sign-key (there is no statement to sign)`,
          { rolloutId: rollout.id },
        );
      }
      return undefined;
    }
    if (signature === undefined || publicKey === undefined) {
      throw new FleetError(
        ErrorCode.conflict,
        `rollout ${rollout.id} is signed: approve with --sign-key, signing its statement ${short(apply.digest)} (fleetpatch rollout approve ${rollout.id} --sign-key <pem>)`,
        { rolloutId: rollout.id, digest: apply.digest },
      );
    }
    this.checkSignature(apply.statement, { signature, publicKey }, 'body.', apply.digest);
    const signatures = await store.statements.signatures(apply.digest);
    const sameKey = signatures.find((s) => s.keyId === signature.keyId || s.publicKey === publicKey);
    if (sameKey?.role === 'author') {
      throw new FleetError(
        ErrorCode.forbidden,
        `four eyes: key ${signature.keyId} is the author's key; an approver signs with a key of their own`,
        { rolloutId: rollout.id, keyId: signature.keyId },
      );
    }
    if (sameKey !== undefined) {
      throw new FleetError(
        ErrorCode.conflict,
        `key ${signature.keyId} has approved this rollout already (as ${sameKey.signer}); another approver signs with their own key`,
        { rolloutId: rollout.id, keyId: signature.keyId },
      );
    }
    await this.addSignature(apply.digest, { signature, publicKey }, actor, 'approver', isoNow(clock));
    return signature.keyId;
  }

  /**
   * Must run inside a transaction. Adds a signature to the pending revert statement of the rollout
   * (or of one host), creating it from the first signer's statement. Four eyes: each signer a
   * different key and a different API token. Returns whether it now has enough signers to revert.
   */
  async addRevertSignature(rolloutId: string, request: RevertSignatureRequest, actor: string): Promise<boolean> {
    const { store, clock } = this.deps;
    const rollout = await mustGetRollout(store, rolloutId);
    const apply = await this.applyOf(rollout);
    const hostId = request.hostId ?? null;
    const scope: StatementScope = hostId === null ? ROLLOUT_SCOPE : { kind: 'host', hostId };
    if (hostId !== null && (await store.hostRuns.get(rolloutId, hostId)) === undefined) {
      throw new FleetError(ErrorCode.notFound, `host ${hostId} is not part of rollout ${rolloutId}`, {
        rolloutId,
        hostId,
      });
    }
    const { statement } = request;
    if (statement.kind !== 'revert') {
      throw invalidField('body.statement.kind', 'must be "revert": this endpoint collects revert statements');
    }
    if (statement.revertsStatementDigest !== apply.digest) {
      throw invalidField(
        'body.statement.revertsStatementDigest',
        `must be ${apply.digest}, the digest of this rollout's apply statement`,
      );
    }
    if (!sameStatementTarget(statement.target, revertStatementTarget(apply.statement as ApplyStatement, hostId))) {
      throw invalidField(
        'body.statement.target',
        hostId === null
          ? "must be the apply statement's target (a revert of the whole rollout)"
          : `must be {"kind": "hosts", "hostIds": ["${hostId}"]} (a revert of that host)`,
      );
    }
    const digest = this.checkSignature(statement, request, 'body.');
    const needed = await this.revertSignaturesNeeded(rollout);
    const pending = await this.livePending(rolloutId, scope);
    const words = scopeWords(rolloutId, scope);
    const at = isoNow(clock);
    let role: SignerRole = 'author';
    if (pending !== undefined && pending.digest !== digest) {
      const have = (await store.statements.signatures(pending.digest)).length;
      throw new FleetError(
        ErrorCode.conflict,
        `revert statement ${short(pending.digest)} for ${words.of} is pending with ${have} of ${needed} signatures: sign that one (${words.command} fetches it)`,
        { rolloutId, pendingDigest: pending.digest, signatures: have, needed },
      );
    }
    if (pending === undefined) {
      if ((await store.statements.get(digest)) !== undefined) {
        throw new FleetError(
          ErrorCode.conflict,
          `revert statement ${short(digest)} was used already: sign a new one (${words.command})`,
          { rolloutId, digest },
        );
      }
      await store.statements.insert({ digest, rolloutId, scope, statement, createdAt: at });
    } else {
      role = 'approver';
      for (const signed of await store.statements.signatures(digest)) {
        if (signed.keyId === request.signature.keyId || signed.publicKey === request.publicKey) {
          throw new FleetError(
            ErrorCode.conflict,
            `key ${request.signature.keyId} has signed this revert statement already: a second person signs it with their own key`,
            { rolloutId, digest, keyId: request.signature.keyId },
          );
        }
        if (signed.signer === actor) {
          throw new FleetError(
            ErrorCode.forbidden,
            `four eyes: ${actor} has signed this revert statement already; a second person signs it`,
            { rolloutId, digest },
          );
        }
      }
    }
    await this.addSignature(digest, request, actor, role, at);
    const have = (await store.statements.signatures(digest)).length;
    await store.appendEvent(
      {
        rolloutId,
        ...(hostId !== null ? { hostId } : {}),
        actor,
        type: 'revert.signed',
        data: { digest, keyId: request.signature.keyId, signatures: have, needed },
      },
      at,
    );
    return have >= needed;
  }

  /**
   * Must run inside the revert's transaction, for a signed rollout: the pending revert statement of
   * this scope, signed by enough people, is used now (later signatures go to a new one). Otherwise
   * the revert is refused, saying how many more signatures it needs.
   */
  async useRevertStatement(rollout: RolloutRecord, scope: StatementScope): Promise<void> {
    const { store, clock } = this.deps;
    const needed = await this.revertSignaturesNeeded(rollout);
    const pending = await this.livePending(rollout.id, scope);
    const words = scopeWords(rollout.id, scope);
    const have = pending === undefined ? 0 : (await store.statements.signatures(pending.digest)).length;
    if (pending === undefined || have < needed) {
      throw new FleetError(
        ErrorCode.conflict,
        pending === undefined
          ? `rollout ${rollout.id} is signed: reverting ${words.of} needs a revert statement signed by ${needed} ${needed === 1 ? 'person' : 'people'} (${words.command})`
          : `revert statement ${short(pending.digest)} has ${have} of ${needed} signatures: ${needed - have} more ${needed - have === 1 ? 'person' : 'people'} must run ${words.command}`,
        { rolloutId: rollout.id, signatures: have, needed, ...(pending ? { digest: pending.digest } : {}) },
      );
    }
    await store.statements.markUsed(pending.digest, isoNow(clock));
  }

  async revertSignaturesNeeded(rollout: RolloutRecord): Promise<number> {
    return revertSignaturesNeeded(
      rollout.request.requiredApprovals,
      (await this.deps.store.rollouts.approvals(rollout.id)).length,
    );
  }

  /**
   * For `start`: the hosts a signed rollout may order — all of `hosts` for a selector statement
   * (agents check it themselves), else those the statement names. Refuses an expired statement, and
   * one not valid yet.
   */
  async signedHosts(
    rollout: RolloutRecord,
    hosts: readonly string[],
  ): Promise<{ hosts: string[]; unsigned: string[] }> {
    const apply = await this.deps.store.statements.apply(rollout.id);
    if (apply === undefined) return { hosts: [...hosts], unsigned: [] };
    if (Date.parse(apply.statement.expiresAt) <= this.deps.clock.now()) {
      throw new FleetError(
        ErrorCode.conflict,
        `rollout ${rollout.id}'s signed statement expired at ${apply.statement.expiresAt}: agents would refuse it; create and sign a new rollout`,
        { rolloutId: rollout.id, expiresAt: apply.statement.expiresAt },
      );
    }
    // Not valid yet (its signer's clock ran ahead): agents on right clocks would refuse every order as
    // not yet valid, each a counted failure. A scheduled start tries again at each tick until it is.
    if (Date.parse(apply.statement.notBefore) > this.deps.clock.now()) {
      throw new FleetError(
        ErrorCode.conflict,
        `rollout ${rollout.id}'s signed statement is not valid before ${apply.statement.notBefore} (its signer's clock ahead of this coordinator's?): agents would refuse it until then`,
        { rolloutId: rollout.id, notBefore: apply.statement.notBefore },
      );
    }
    const target = apply.statement.target;
    if (target.kind === 'selector') return { hosts: [...hosts], unsigned: [] };
    const signed = new Set(target.hostIds);
    return { hosts: hosts.filter((h) => signed.has(h)), unsigned: hosts.filter((h) => !signed.has(h)) };
  }

  private async applyOf(rollout: RolloutRecord): Promise<StatementRecord> {
    const apply = await this.deps.store.statements.apply(rollout.id);
    if (apply === undefined) {
      throw new FleetError(
        ErrorCode.conflict,
        `rollout ${rollout.id} is not signed: revert it without --sign-key (there is no statement to take back)`,
        { rolloutId: rollout.id },
      );
    }
    return apply;
  }

  /** The pending revert statement of a scope, unless it has expired (then a new one may be started). */
  private async livePending(rolloutId: string, scope: StatementScope): Promise<StatementRecord | undefined> {
    const pending = await this.deps.store.statements.pendingRevert(rolloutId, scope);
    if (pending === undefined || Date.parse(pending.statement.expiresAt) <= this.deps.clock.now()) return undefined;
    return pending;
  }

  private async checkSignedPatch(rollout: RolloutRecord, statement: ApplyStatement): Promise<void> {
    const patch = await this.deps.store.patches.get(rollout.patchId);
    if (patch === undefined) throw new FleetError(ErrorCode.internal, `patch ${rollout.patchId} is missing`);
    const differs = signedPatchDifference(patchSpecOf(patch), statement.patch);
    if (differs !== undefined) {
      throw invalidField(
        `body.statement.patch.${differs}`,
        `differs from patch ${patch.id}: the statement must sign exactly the rollout's patch (signedPatchOf its spec)`,
      );
    }
    const expected = revertOnHealthFailureOf(rollout.request);
    if (statement.revertOnHealthFailure !== expected) {
      throw invalidField(
        'body.statement.revertOnHealthFailure',
        `must be ${expected}: the rollout's autoRevert is ${rollout.request.autoRevert}`,
      );
    }
    // The analyses are signed so that what gates the rollout is what people approved.
    const analyses = analysesOf(rollout.request).analyses ?? null;
    if (canonicalJson(statement.analyses ?? null) !== canonicalJson(analyses)) {
      throw invalidField(
        'body.statement.analyses',
        analyses === null
          ? 'must be absent: the rollout has no analyses'
          : "must be the rollout's analyses, exactly (analysesOf its request)",
      );
    }
    // A rehearsal reverts and applies again under this one statement: only when people signed for it.
    if ((statement.rehearseRevert === true) !== rollout.request.rehearseRevert) {
      throw invalidField(
        'body.statement.rehearseRevert',
        rollout.request.rehearseRevert
          ? 'must be true: the rollout rehearses its revert on the canary'
          : 'must be absent: the rollout does not rehearse its revert',
      );
    }
  }

  /**
   * A target agents can check (`all`, `hostIds`) is signed as the rollout's own selector; any other
   * is signed as host ids, each of which the rollout's target selects now.
   */
  private async checkApplyTarget(rollout: RolloutRecord, target: StatementTarget): Promise<void> {
    const selector = rollout.request.target;
    if (isAgentCheckableTarget(selector)) {
      if (!sameStatementTarget(target, { kind: 'selector', selector })) {
        throw invalidField(
          'body.statement.target',
          `must be {"kind": "selector", "selector": <the rollout's target>}: agents check all and hostIds themselves`,
        );
      }
      return;
    }
    if (target.kind !== 'hosts') {
      throw invalidField(
        'body.statement.target.kind',
        'must be "hosts": the rollout selects by labels or facts, which agents cannot check; sign the host ids it selects',
      );
    }
    if (new Set(target.hostIds).size !== target.hostIds.length) {
      throw invalidField('body.statement.target.hostIds', 'names a host twice');
    }
    const selected = new Set((await resolveFleetTarget(this.deps.store, selector)).hosts);
    const outside = target.hostIds.filter((h) => !selected.has(h));
    if (outside.length > 0) {
      throw invalidField(
        'body.statement.target.hostIds',
        `names hosts the rollout's target does not select: ${outside.slice(0, 20).join(', ')}`,
      );
    }
  }

  /**
   * The signature's key id is its public key's, it verifies over the statement, and the statement
   * has not expired. Returns the statement's digest. `stored` (the digest of a statement the
   * coordinator holds) makes an expired statement a conflict rather than a bad body.
   */
  private checkSignature(
    statement: Statement,
    { signature, publicKey }: Pick<AttachStatementRequest, 'signature' | 'publicKey'>,
    prefix: string,
    stored?: string,
  ): string {
    if (keyIdOf(publicKey) !== signature.keyId) {
      throw invalidField(
        `${prefix}signature.keyId`,
        `must be ${keyIdOf(publicKey)}, the key id of publicKey (first 16 hex digits of sha256 over it)`,
      );
    }
    const digest = stored ?? statementDigest(statement);
    if (!verifyStatementSignature(publicKey, statement, signature.signature)) {
      throw invalidField(
        `${prefix}signature.signature`,
        `does not verify: it is not publicKey's signature of statement ${short(digest)}`,
      );
    }
    if (Date.parse(statement.expiresAt) <= this.deps.clock.now()) {
      const message = `the statement expired at ${statement.expiresAt}`;
      if (stored !== undefined) throw new FleetError(ErrorCode.conflict, `${message}: create and sign a new rollout`);
      throw invalidField(`${prefix}statement.expiresAt`, `${message}: sign a new one`);
    }
    return digest;
  }

  private async addSignature(
    digest: string,
    { signature, publicKey }: Pick<AttachStatementRequest, 'signature' | 'publicKey'>,
    signer: string,
    role: SignerRole,
    at: string,
  ): Promise<void> {
    await this.deps.store.statements.addSignature({
      digest,
      keyId: signature.keyId,
      publicKey,
      signature: signature.signature,
      signer,
      role,
      at,
    });
  }
}
