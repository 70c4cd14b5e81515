import {
  canonicalJson,
  checkSignatures,
  checkValidityWindow,
  type OrderApply,
  type OrderRevert,
  PatchSpecSchema,
  type SignaturePolicy,
  type SignedPatch,
  SignedPatchSchema,
  type Statement,
  type StatementRefusal,
  StatementRefusalCode,
  StatementSchema,
  type StatementTarget,
  signedPatchOf,
  statementDigest,
  type TrustedKey,
} from '@fleetpatch/shared';
import { type AppliedSequences, sequenceKeysOf } from './applied-sequences.js';

export interface SigningConfig extends SignaturePolicy {
  trustedKeys: TrustedKey[];
  clockSkewSeconds: number;
}

/** A signed order that passed every check but the last: its sequence is recorded once it is admitted. */
export interface SignedAcceptance {
  ok: true;
  /** What the sequence is counted per: every package of a set, or the file (see sequenceKeysOf). */
  keys: string[];
  sequence: number;
  statementDigest: string;
}
export type SignedVerdict = SignedAcceptance | StatementRefusal;

const refuse = (code: StatementRefusalCode, reason: string): StatementRefusal => ({ ok: false, code, reason });

/**
 * With `signing` configured, every order must carry a statement people signed (signed-statement.ts)
 * that covers exactly what the agent is asked to do, is signed by enough trusted keys in the required
 * roles, is valid now, names this host, and is newer than the last one accepted for the same file or
 * package. The coordinator is not trusted for any of it. The checks run in that order; the first
 * that fails names the refusal.
 */
export class SignedOrderCheck {
  constructor(
    private readonly signing: SigningConfig,
    private readonly sequences: AppliedSequences,
    /** This agent's own host id (its credential's), undefined before it has one. */
    private readonly hostId: () => string | undefined,
  ) {}

  checkApply(order: OrderApply, now: Date): SignedVerdict {
    const parsed = this.parse(order.signed?.statement, 'apply');
    if (!parsed.ok) return parsed;
    const statement = parsed.statement;
    if (statement.kind !== 'apply') return refuse(StatementRefusalCode.malformedStatement, 'not an apply statement');
    if (!sameSignedPatch(order, statement.patch)) {
      return refuse(
        StatementRefusalCode.tampered,
        'the order’s change, health or prose differ from the signed patch: it is not what was signed',
      );
    }
    if (order.revertOnHealthFailure !== statement.revertOnHealthFailure) {
      return refuse(StatementRefusalCode.tampered, 'revertOnHealthFailure differs from the signed statement');
    }
    // A rehearsal reverts and applies again within this one order: only where people signed for it.
    if (order.rehearseRevert === true && statement.rehearseRevert !== true) {
      return refuse(
        StatementRefusalCode.tampered,
        'the order asks for a rehearsed revert and the signed statement does not allow one',
      );
    }
    return this.checkSigned(statement, order.signed?.signatures ?? [], sequenceKeysOf(order.change), now);
  }

  /**
   * A revert of a signed apply: signed itself, and naming the apply statement the order carried when
   * it was accepted (`applied`, from the journal). The agent's own revert of a failing order does
   * not come this way and needs no statement.
   */
  checkRevert(order: OrderRevert, applied: OrderApply, now: Date): SignedVerdict {
    const parsed = this.parse(order.signed?.statement, 'revert');
    if (!parsed.ok) return parsed;
    const statement = parsed.statement;
    if (statement.kind !== 'revert') return refuse(StatementRefusalCode.malformedStatement, 'not a revert statement');
    if (applied.signed === undefined) {
      return refuse(
        StatementRefusalCode.tampered,
        `order ${applied.orderId} was applied without a signed statement, so no revert statement can name it`,
      );
    }
    const appliedDigest = statementDigest(applied.signed.statement);
    if (statement.revertsStatementDigest !== appliedDigest) {
      return refuse(
        StatementRefusalCode.tampered,
        `the revert statement names statement ${statement.revertsStatementDigest.slice(0, 16)}, ` +
          `order ${applied.orderId} applied ${appliedDigest.slice(0, 16)}`,
      );
    }
    return this.checkSigned(statement, order.signed?.signatures ?? [], sequenceKeysOf(applied.change), now);
  }

  /** Records the sequence (durably) unless another order for the same key got there first. */
  async accept(verdict: SignedAcceptance): Promise<StatementRefusal | undefined> {
    return this.sequences.accept(verdict.keys, verdict.sequence, verdict.statementDigest);
  }

  private parse(statement: unknown, kind: Statement['kind']): { ok: true; statement: Statement } | StatementRefusal {
    if (statement === undefined) {
      return refuse(
        StatementRefusalCode.unsigned,
        `this agent requires signed orders (signing is configured) and the ${kind} order carries no signed statement`,
      );
    }
    const parsed = StatementSchema.safeParse(statement);
    if (!parsed.success) return refuse(StatementRefusalCode.malformedStatement, 'the statement does not parse');
    try {
      canonicalJson(parsed.data);
    } catch {
      return refuse(StatementRefusalCode.malformedStatement, 'the statement has no canonical form');
    }
    return { ok: true, statement: parsed.data };
  }

  private checkSigned(statement: Statement, signatures: readonly unknown[], keys: string[], now: Date): SignedVerdict {
    const { trustedKeys, requiredSignatures, requireRoles, clockSkewSeconds } = this.signing;
    const signed = checkSignatures(statement, signatures, trustedKeys, { requiredSignatures, requireRoles });
    if (!signed.ok) return signed;
    const valid = checkValidityWindow(statement, now, clockSkewSeconds * 1000);
    if (!valid.ok) return valid;
    const outside = targetRefusal(statement.target, this.hostId());
    if (outside) return outside;
    const digest = statementDigest(statement);
    const stale = this.sequences.check(keys, statement.sequence, digest);
    if (stale) return stale;
    return { ok: true, keys, sequence: statement.sequence, statementDigest: digest };
  }
}

/**
 * The statement's patch is compared with one derived from what the agent will act on — the order's
 * change and health — and the statement's own prose (the order does not carry the prose, and the
 * agent does not act on it). Both are normalized by the schema and compared as canonical JSON.
 */
function sameSignedPatch(order: OrderApply, signedPatch: SignedPatch): boolean {
  try {
    const { change: _change, health: _health, ...prose } = signedPatch;
    const spec = PatchSpecSchema.parse({ ...prose, change: order.change, health: order.health });
    return canonicalJson(SignedPatchSchema.parse(signedPatchOf(spec))) === canonicalJson(signedPatch);
  } catch {
    return false;
  }
}

/**
 * Named hosts must include this one. A selector is accepted only when it cannot depend on what the
 * coordinator holds: `all: true` or `hostIds` alone. Labels (assigned and stored by the coordinator),
 * reported labels and facts (as the coordinator last saw them) would let the coordinator decide who
 * matches, so a selector that uses them is refused: sign such rollouts with their host ids.
 */
function targetRefusal(target: StatementTarget, hostId: string | undefined): StatementRefusal | undefined {
  if (hostId === undefined) return refuse(StatementRefusalCode.notInTarget, 'this agent does not know its host id yet');
  if (target.kind === 'hosts') {
    return target.hostIds.includes(hostId)
      ? undefined
      : refuse(StatementRefusalCode.notInTarget, `${hostId} is not among the statement's hosts`);
  }
  const { all, hostIds, ...narrowing } = target.selector;
  if (Object.values(narrowing).some((v) => v !== undefined)) {
    return refuse(
      StatementRefusalCode.notInTarget,
      'the statement targets a selector with labels or facts, which the agent cannot check without trusting the coordinator: sign it for host ids or all hosts',
    );
  }
  if (hostIds !== undefined) {
    return hostIds.includes(hostId)
      ? undefined
      : refuse(StatementRefusalCode.notInTarget, `${hostId} is not among the statement's hostIds`);
  }
  return all === true ? undefined : refuse(StatementRefusalCode.notInTarget, 'the selector names no hosts');
}
