import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { AgentPublicKeySchema, rawPublicKey, SignatureSchema, signPayload, verifyPayload } from './agent-proof.js';
import { AnalysesSchema } from './analysis.js';
import { canonicalJson } from './canonical-json.js';
import {
  FileChangeSchema,
  fileContentBytes,
  MAX_FILE_CONTENT_BYTES,
  PackageChangeSchema,
  type PatchSpec,
  PatchSpecSchema,
  parseMode,
} from './patch.js';
import { TargetSchema } from './rollout.js';
import { HostIdSchema, Sha256Schema } from './validation.js';

/**
 * What people sign so that agents need not trust the coordinator: a statement of the whole change
 * order — everything the agent will act on, where, when, and in what order — signed with ed25519
 * keys that live with the people who author and approve it. The coordinator stores and forwards
 * statements and signatures; it cannot change a byte they cover.
 *
 * The signed bytes are `fleetpatch-statement-v1\n` followed by the RFC 8785 canonical JSON
 * (`canonical-json.ts`) of the statement **as parsed by `StatementSchema`** (so with its defaults
 * filled in, strings trimmed where the schema trims them), encoded as UTF-8. The prefix keeps a
 * statement signature from ever being taken for an agent's connect or enroll proof, or the reverse.
 * A client in another language signs the same bytes if it emits every field (defaults included).
 */
export const STATEMENT_PREFIX = 'fleetpatch-statement-v1\n';

export const SIGNER_ROLES = ['author', 'approver'] as const;
export const SignerRoleSchema = z.enum(SIGNER_ROLES);
export type SignerRole = z.infer<typeof SignerRoleSchema>;

const fileChange = FileChangeSchema.shape;

/**
 * A file change as signed: the content is bound by the sha256 of its decoded bytes and their
 * length, not carried. The agent receives the content in the order and refuses it unless it hashes
 * to `contentSha256`, so the signature covers exactly the bytes written to disk, whatever their
 * transport encoding (utf8 or base64), and a statement stays small enough to read before signing.
 * The mode is normalized to four octal digits so `"644"` and `"0644"` sign the same.
 */
export const SignedFileChangeSchema = z
  .object({
    kind: z.literal('file'),
    path: fileChange.path,
    contentSha256: Sha256Schema,
    contentBytes: z.number().int().min(0).max(MAX_FILE_CONTENT_BYTES),
    mode: z.string().regex(/^[0-7]{4}$/, 'must be four octal digits such as "0644"'),
    owner: fileChange.owner,
    group: fileChange.group,
    expectedPriorSha256: fileChange.expectedPriorSha256,
    allowSpecialModes: fileChange.allowSpecialModes,
    restart: fileChange.restart,
    requires: fileChange.requires,
  })
  .strict();
export type SignedFileChange = z.infer<typeof SignedFileChangeSchema>;

export const SignedChangeSchema = z.discriminatedUnion('kind', [SignedFileChangeSchema, PackageChangeSchema]);
export type SignedChange = z.infer<typeof SignedChangeSchema>;

/**
 * The patch as signed: the PatchSpec, prose included, with the file content replaced by its digest.
 * The prose is not acted on, but binding it keeps a coordinator from showing an approver one
 * description and the fleet's history another.
 */
export const SignedPatchSchema = PatchSpecSchema.extend({ change: SignedChangeSchema });
export type SignedPatch = z.infer<typeof SignedPatchSchema>;

/** Where the order may run: named hosts, or the rollout's selector, which the agent matches against itself. */
export const StatementTargetSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('hosts'),
      hostIds: z.array(HostIdSchema).min(1).max(100_000),
    })
    .strict(),
  z.object({ kind: z.literal('selector'), selector: TargetSchema }).strict(),
]);
export type StatementTarget = z.infer<typeof StatementTargetSchema>;

/** UTC only (`…Z`): one spelling of the time zone, so two clients do not sign two strings for one instant. */
const UtcTimeSchema = z.iso.datetime();

/**
 * Chosen by the author, not by the coordinator: the CLI uses the signing time in milliseconds since
 * the epoch, which grows across authors without any shared counter. The agent refuses an order
 * whose sequence is not above the last one it applied to the same file or package (rollback,
 * replay). At most 2^53 − 1 so every language reads it exactly and JCS never writes an exponent.
 */
const SequenceSchema = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

const validity = {
  target: StatementTargetSchema,
  notBefore: UtcTimeSchema,
  expiresAt: UtcTimeSchema,
  sequence: SequenceSchema,
};

export const ApplyStatementSchema = z
  .object({
    kind: z.literal('apply'),
    statementVersion: z.literal(1),
    patch: SignedPatchSchema,
    /**
     * What the agent does when health fails after apply: restore its snapshot (true) or leave the
     * host changed for a person to inspect (false). Signed, because it is the agent's own revert plan.
     */
    revertOnHealthFailure: z.boolean(),
    /**
     * The rollout's metric analyses, when it has any (absent otherwise, so a statement without them
     * signs the same bytes as before they existed). Agents do not act on them — the coordinator runs
     * them — but they are part of the change people approved: the coordinator refuses a statement
     * whose analyses are not the rollout's, and anyone can check later what gated the rollout.
     */
    analyses: AnalysesSchema.min(1).optional(),
    /**
     * Present (true) when the rollout rehearses its revert on the canary: it lets an agent, within the
     * one order it accepts under this statement, restore its snapshot and apply again. An order that
     * asks for a rehearsal under a statement without it is refused as tampered.
     */
    rehearseRevert: z.literal(true).optional(),
    ...validity,
  })
  .strict();

/** Taking back a succeeded apply: names the apply statement by its digest. */
export const RevertStatementSchema = z
  .object({
    kind: z.literal('revert'),
    statementVersion: z.literal(1),
    revertsStatementDigest: Sha256Schema,
    ...validity,
  })
  .strict();

export const StatementSchema = z
  .discriminatedUnion('kind', [ApplyStatementSchema, RevertStatementSchema])
  .refine((s) => Date.parse(s.expiresAt) > Date.parse(s.notBefore), {
    message: 'must be later than notBefore',
    path: ['expiresAt'],
  });
export type Statement = z.infer<typeof StatementSchema>;
export type StatementInput = z.input<typeof StatementSchema>;
export type ApplyStatement = z.infer<typeof ApplyStatementSchema>;
export type RevertStatement = z.infer<typeof RevertStatementSchema>;

/** The signed part of a patch, derived the same way by the CLI that signs and the agent that checks. */
export function signedPatchOf(spec: PatchSpec): SignedPatch {
  const { change, ...rest } = spec;
  if (change.kind === 'package') return { ...rest, change };
  const { content: _content, encoding: _encoding, mode, ...file } = change;
  const bytes = fileContentBytes(change);
  return {
    ...rest,
    change: {
      ...file,
      contentSha256: createHash('sha256').update(bytes).digest('hex'),
      contentBytes: bytes.byteLength,
      mode: parseMode(mode).toString(8).padStart(4, '0'),
    },
  };
}

/** The bytes a signature covers. Throws (ZodError, CanonicalJsonError) on a statement that does not parse. */
export function canonicalStatementBytes(statement: StatementInput): Buffer {
  return Buffer.from(STATEMENT_PREFIX + canonicalJson(StatementSchema.parse(statement)), 'utf8');
}

/** sha256 hex of the signed bytes: how signatures, approvals and revert statements name a statement. */
export function statementDigest(statement: StatementInput): string {
  return createHash('sha256').update(canonicalStatementBytes(statement)).digest('hex');
}

/** The first 16 hex digits (64 bits) of sha256 over the raw 32-byte public key. */
export const KeyIdSchema = z.string().regex(/^[0-9a-f]{16}$/, 'must be a key id: 16 lower-case hex digits');

/**
 * A key's short name. It only says which trusted key to try: signatures are always verified against
 * the full public key, so two keys sharing an id are each tried, never confused.
 */
export function keyIdOf(publicKey: string): string {
  return createHash('sha256').update(Buffer.from(publicKey, 'base64url')).digest('hex').slice(0, 16);
}

export const StatementSignatureSchema = z
  .object({
    keyId: KeyIdSchema,
    signature: SignatureSchema,
  })
  .strict();
export type StatementSignature = z.infer<typeof StatementSignatureSchema>;

export function signStatement(privateKey: KeyObject, statement: StatementInput): StatementSignature {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('a signing key must be ed25519');
  return {
    keyId: keyIdOf(rawPublicKey(createPublicKey(privateKey))),
    signature: signPayload(privateKey, canonicalStatementBytes(statement)),
  };
}

/** False for a wrong signature, a malformed key or signature, or a statement that does not parse: never throws. */
export function verifyStatementSignature(publicKey: string, statement: unknown, signature: string): boolean {
  const bytes = signedBytesOrUndefined(statement);
  return bytes !== undefined && verifyPayload(publicKey, bytes, signature);
}

function signedBytesOrUndefined(statement: unknown): Buffer | undefined {
  const parsed = StatementSchema.safeParse(statement);
  if (!parsed.success) return undefined;
  try {
    return Buffer.from(STATEMENT_PREFIX + canonicalJson(parsed.data), 'utf8');
  } catch {
    return undefined; // a lone surrogate in a prose field: no canonical form, so nothing can have signed it
  }
}

/** A key an agent trusts, and what it may sign as. The coordinator holds none of these. */
export const TrustedKeySchema = z
  .object({
    publicKey: AgentPublicKeySchema,
    roles: z.array(SignerRoleSchema).min(1).max(SIGNER_ROLES.length),
  })
  .strict();
export type TrustedKey = z.infer<typeof TrustedKeySchema>;

/**
 * How many distinct trusted keys must sign, and which roles they must cover: each entry of
 * `requireRoles` needs its own key (`['author', 'approver']` is four eyes even when one key holds both roles).
 */
export const SignaturePolicySchema = z
  .object({
    requiredSignatures: z.number().int().min(1).max(10),
    requireRoles: z.array(SignerRoleSchema).max(10),
  })
  .strict()
  .refine((p) => p.requireRoles.length <= p.requiredSignatures, {
    message: 'must be at least the number of requireRoles',
    path: ['requiredSignatures'],
  });
export type SignaturePolicy = z.infer<typeof SignaturePolicySchema>;

/** Why an agent refuses a signed order; it puts the code in its result. */
export const StatementRefusalCode = {
  /** The statement does not parse (or has no canonical form). */
  malformedStatement: 'malformed_statement',
  unsigned: 'unsigned',
  /**
   * The order the agent received is not what was signed: its change, health or prose differ from
   * the statement's patch, or a revert names another apply statement than the one the order carried.
   */
  tampered: 'tampered',
  /** A signature names a trusted key but does not verify (or is not a signature at all). */
  badSignature: 'bad_signature',
  /** Every signature is by a key the agent does not trust. */
  unknownSigner: 'unknown_signer',
  tooFewSignatures: 'too_few_signatures',
  /** Enough signers, but not the roles the policy demands, each by its own key. */
  missingRole: 'missing_role',
  expired: 'expired',
  notYetValid: 'not_yet_valid',
  notInTarget: 'not_in_target',
  /** This statement was applied already. */
  replayed: 'replayed',
  /** Its sequence is not above the last one applied to the same file or package. */
  rollback: 'rollback',
} as const;
export type StatementRefusalCode = (typeof StatementRefusalCode)[keyof typeof StatementRefusalCode];

export interface StatementRefusal {
  ok: false;
  code: StatementRefusalCode;
  reason: string;
}
export type SignatureCheck = { ok: true; signerKeyIds: string[] } | StatementRefusal;
export type ValidityCheck = { ok: true } | StatementRefusal;

const refuse = (code: StatementRefusalCode, reason: string): StatementRefusal => ({ ok: false, code, reason });

/**
 * Whether `signatures` meet `policy` for `statement`. A key counts once however often it signed;
 * signatures by keys not in `trustedKeys` are ignored; a signature that does not verify counts for
 * nothing (and names the refusal if the rest do not suffice). Never throws on hostile statements or signatures.
 */
export function checkSignatures(
  statement: unknown,
  signatures: readonly unknown[],
  trustedKeys: readonly TrustedKey[],
  policy: SignaturePolicy,
): SignatureCheck {
  const bytes = signedBytesOrUndefined(statement);
  if (bytes === undefined) return refuse(StatementRefusalCode.malformedStatement, 'the statement does not parse');
  if (signatures.length === 0) return refuse(StatementRefusalCode.unsigned, 'the statement carries no signature');

  const trusted = trustedRolesByKey(trustedKeys);
  const signers = new Map<string, ReadonlySet<SignerRole>>();
  let bad = 0;
  for (const entry of signatures) {
    const parsed = StatementSignatureSchema.safeParse(entry);
    if (!parsed.success) {
      bad++;
      continue;
    }
    const { keyId, signature } = parsed.data;
    const candidates = [...trusted].filter(([publicKey]) => keyIdOf(publicKey) === keyId);
    if (candidates.length === 0) continue;
    const signer = candidates.find(([publicKey]) => verifyPayload(publicKey, bytes, signature));
    if (signer) signers.set(signer[0], signer[1]);
    else bad++;
  }

  // An unsigned statement never passes, whatever the policy says.
  const required = Math.max(1, policy.requiredSignatures);
  if (signers.size >= required && coversRoles(policy.requireRoles, [...signers.values()])) {
    return { ok: true, signerKeyIds: [...signers.keys()].map(keyIdOf) };
  }
  if (bad > 0) return refuse(StatementRefusalCode.badSignature, `${bad} signature(s) do not verify`);
  if (signers.size === 0) return refuse(StatementRefusalCode.unknownSigner, 'no signature is by a trusted key');
  if (signers.size < required) {
    return refuse(
      StatementRefusalCode.tooFewSignatures,
      `${signers.size} trusted key(s) signed, ${required} must (a key counts once)`,
    );
  }
  return refuse(
    StatementRefusalCode.missingRole,
    `the signers do not cover ${policy.requireRoles.join(' + ')}, each with its own key`,
  );
}

/** Whether `now` lies in [notBefore, expiresAt), allowing `clockSkewMs` either way. */
export function checkValidityWindow(statement: Statement, now: Date, clockSkewMs = 0): ValidityCheck {
  const at = now.getTime();
  if (at + clockSkewMs < Date.parse(statement.notBefore)) {
    return refuse(StatementRefusalCode.notYetValid, `not valid before ${statement.notBefore}`);
  }
  if (at - clockSkewMs >= Date.parse(statement.expiresAt)) {
    return refuse(StatementRefusalCode.expired, `expired at ${statement.expiresAt}`);
  }
  return { ok: true };
}

/** The same key listed twice holds the union of its roles. */
function trustedRolesByKey(trustedKeys: readonly TrustedKey[]): Map<string, Set<SignerRole>> {
  const byKey = new Map<string, Set<SignerRole>>();
  for (const { publicKey, roles } of trustedKeys) {
    const held = byKey.get(publicKey) ?? new Set<SignerRole>();
    for (const role of roles) held.add(role);
    byKey.set(publicKey, held);
  }
  return byKey;
}

/** Each required role filled by a different signer: a bipartite matching, found by augmenting paths. */
function coversRoles(required: readonly SignerRole[], signers: readonly ReadonlySet<SignerRole>[]): boolean {
  const filling: (number | undefined)[] = signers.map(() => undefined);
  const assign = (role: number, visited: Set<number>): boolean => {
    for (let s = 0; s < signers.length; s++) {
      if (visited.has(s) || !signers[s]?.has(required[role]!)) continue;
      visited.add(s);
      const displaced = filling[s];
      if (displaced === undefined || assign(displaced, visited)) {
        filling[s] = role;
        return true;
      }
    }
    return false;
  };
  return required.every((_, role) => assign(role, new Set()));
}
