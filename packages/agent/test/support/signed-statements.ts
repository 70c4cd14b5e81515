import type { KeyObject } from 'node:crypto';
import {
  generateAgentKeyPair,
  loadPrivateKey,
  type OrderApply,
  type OrderRevert,
  PatchSpecSchema,
  type SignerRole,
  type StatementInput,
  signedPatchOf,
  signStatement,
  type TrustedKey,
} from '@fleetpatch/shared';

// What the people who author and approve a change would sign for an order, for tests that play a
// coordinator: the statements, their signatures, and the keys an agent is told to trust.

/** A person's signing key: the public half goes into the agent's `signing.trustedKeys`. */
export interface Signer {
  publicKey: string;
  privateKey: KeyObject;
}

export function newSigner(): Signer {
  const pair = generateAgentKeyPair();
  return { publicKey: pair.publicKey, privateKey: loadPrivateKey(pair.privateKeyPem) };
}

export function trustedKey(signer: Signer, roles: SignerRole[]): TrustedKey {
  return { publicKey: signer.publicKey, roles };
}

/** The prose a patch carries; the order does not, so the agent takes it from the statement. */
export const STATEMENT_PROSE = { title: 'x.conf', problem: 'p', rootCause: 'r', intendedFix: 'f', ticket: 'OPS-1' };

const HOUR_MS = 3_600_000;

/** From an hour ago to an hour from now: what a statement signed a moment ago says. */
export function validAroundNow(now = Date.now()): Pick<StatementInput, 'notBefore' | 'expiresAt'> {
  return { notBefore: new Date(now - HOUR_MS).toISOString(), expiresAt: new Date(now + HOUR_MS).toISOString() };
}

/** A window that closed `hoursAgo` hours ago (and opened an hour before that). */
export function expiredWindow(hoursAgo = 2): Pick<StatementInput, 'notBefore' | 'expiresAt'> {
  return validAroundNow(Date.now() - (hoursAgo + 1) * HOUR_MS);
}

/** A window that opens `hoursAhead` hours from now. */
export function futureWindow(hoursAhead = 2): Pick<StatementInput, 'notBefore' | 'expiresAt'> {
  return validAroundNow(Date.now() + (hoursAhead + 1) * HOUR_MS);
}

/** The apply statement people would sign for `order` on `hostId`, changed by `overrides`. */
export function applyStatement(
  order: OrderApply,
  hostId: string,
  sequence: number,
  overrides: Partial<StatementInput> = {},
): StatementInput {
  return {
    kind: 'apply',
    statementVersion: 1,
    patch: signedPatchOf(PatchSpecSchema.parse({ ...STATEMENT_PROSE, change: order.change, health: order.health })),
    revertOnHealthFailure: order.revertOnHealthFailure,
    target: { kind: 'hosts', hostIds: [hostId] },
    ...validAroundNow(),
    sequence,
    ...overrides,
  } as StatementInput;
}

/** The statement taking back the apply statement whose digest is `revertsStatementDigest`. */
export function revertStatement(
  revertsStatementDigest: string,
  hostId: string,
  sequence: number,
  overrides: Partial<StatementInput> = {},
): StatementInput {
  return {
    kind: 'revert',
    statementVersion: 1,
    revertsStatementDigest,
    target: { kind: 'hosts', hostIds: [hostId] },
    ...validAroundNow(),
    sequence,
    ...overrides,
  } as StatementInput;
}

/** `order` carrying `statement` and a signature of it by each of `signers`, in that order. */
export function signed<T extends OrderApply | OrderRevert>(
  order: T,
  statement: StatementInput,
  signers: readonly Signer[],
): T {
  return {
    ...order,
    signed: { statement, signatures: signers.map((signer) => signStatement(signer.privateKey, statement)) },
  } as T;
}

/** A base64url signature with bit `bit` (default: the lowest of the first byte) flipped. */
export function withOneBitFlipped(signature: string, bit = 0): string {
  const bytes = Buffer.from(signature, 'base64url');
  const index = Math.floor(bit / 8) % bytes.length;
  bytes[index] = (bytes[index] ?? 0) ^ (1 << (bit % 8));
  return bytes.toString('base64url');
}
