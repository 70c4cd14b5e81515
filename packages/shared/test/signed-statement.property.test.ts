import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rawPublicKey, verifyPayload } from '../src/agent-proof.js';
import { PatchSpecSchema } from '../src/patch.js';
import {
  type ApplyStatement,
  canonicalStatementBytes,
  checkSignatures,
  type SignaturePolicy,
  STATEMENT_PREFIX,
  signedPatchOf,
  signStatement,
  type TrustedKey,
  verifyStatementSignature,
} from '../src/signed-statement.js';

// ed25519 over the canonical bytes: whatever the statement, one flipped bit anywhere in what was
// signed, or in the signature, and the signature no longer verifies.

const SETTINGS = { seed: 20250101, numRuns: 200, endOnFailure: true } as const;

const { privateKey, publicKey: publicKeyObject } = generateKeyPairSync('ed25519');
const publicKey = rawPublicKey(publicKeyObject);
const approver = generateKeyPairSync('ed25519');

/** What an agent asks by default: the author and an approver, each with its own key. */
const FOUR_EYES: SignaturePolicy = { requiredSignatures: 2, requireRoles: ['author', 'approver'] };
const TRUSTED: TrustedKey[] = [
  { publicKey, roles: ['author'] },
  { publicKey: rawPublicKey(approver.publicKey), roles: ['approver'] },
];
const signedByBoth = (statement: ApplyStatement) => [
  signStatement(privateKey, statement),
  signStatement(approver.privateKey, statement),
];

const prose = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).filter((s) => s.trim().length > 0);

const statementArbitrary: fc.Arbitrary<ApplyStatement> = fc
  .record({
    title: prose,
    ticket: prose,
    content: fc.string({ unit: 'grapheme', maxLength: 200 }),
    path: fc.constantFrom('/etc/app.conf', '/opt/app/config.yml', '/usr/local/etc/ünïcode.ini'),
    mode: fc.constantFrom('0644', '600', '0755'),
    checks: fc.array(
      fc.oneof(
        fc.record({
          kind: fc.constant('tcp' as const),
          host: fc.constant('127.0.0.1'),
          port: fc.integer({ min: 1, max: 65535 }),
        }),
        fc.record({ kind: fc.constant('http' as const), url: fc.constant('http://127.0.0.1:8080/healthz') }),
      ),
      { maxLength: 3 },
    ),
    hostIds: fc.uniqueArray(fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,15}$/), { minLength: 1, maxLength: 5 }),
    revertOnHealthFailure: fc.boolean(),
    sequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    notBefore: fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2030, 0, 1) }),
    lifetime: fc.integer({ min: 1, max: 30 * 86_400_000 }),
  })
  .map((r) => ({
    kind: 'apply',
    statementVersion: 1,
    patch: signedPatchOf(
      PatchSpecSchema.parse({
        title: r.title,
        problem: 'p',
        rootCause: 'r',
        intendedFix: 'f',
        ticket: r.ticket,
        change: { kind: 'file', path: r.path, content: r.content, mode: r.mode, owner: 'root', group: 'root' },
        health: { checks: r.checks },
      }),
    ),
    revertOnHealthFailure: r.revertOnHealthFailure,
    target: { kind: 'hosts', hostIds: r.hostIds },
    notBefore: new Date(r.notBefore).toISOString(),
    expiresAt: new Date(r.notBefore + r.lifetime).toISOString(),
    sequence: r.sequence,
  }));

function flipBit(bytes: Buffer, bit: number): Buffer {
  const copy = Buffer.from(bytes);
  const index = Math.floor(bit / 8) % copy.length;
  copy[index] = copy[index]! ^ (1 << (bit % 8));
  return copy;
}

/** Whether `candidate` is the very statement whose canonical bytes are `bytes`. */
function isSameStatement(candidate: unknown, bytes: Buffer): boolean {
  try {
    return canonicalStatementBytes(candidate as ApplyStatement).equals(bytes);
  } catch {
    return false;
  }
}

/** The statement a flipped byte string would be read as by an agent, if it is one at all. */
function reread(bytes: Buffer): unknown {
  const text = bytes.toString('utf8');
  if (!text.startsWith(STATEMENT_PREFIX)) return undefined;
  try {
    return JSON.parse(text.slice(STATEMENT_PREFIX.length));
  } catch {
    return undefined;
  }
}

describe('statement signatures (property)', () => {
  it('refuse any single flipped bit of the signed bytes', () => {
    fc.assert(
      fc.property(statementArbitrary, fc.nat(), (statement, bit) => {
        const bytes = canonicalStatementBytes(statement);
        const { signature } = signStatement(privateKey, statement);
        const flipped = flipBit(bytes, bit % (bytes.length * 8));
        expect(verifyPayload(publicKey, flipped, signature)).toBe(false);
        // Read back as an agent would: if the flipped text still parses, it verifies only if it is
        // the very statement that was signed (its canonical bytes are the signed bytes).
        const reparsed = reread(flipped);
        if (reparsed === undefined) return;
        expect(verifyStatementSignature(publicKey, reparsed, signature)).toBe(isSameStatement(reparsed, bytes));
      }),
      SETTINGS,
    );
  });

  it('refuse any single flipped bit of the signature', () => {
    fc.assert(
      fc.property(statementArbitrary, fc.integer({ min: 0, max: 511 }), (statement, bit) => {
        const { signature } = signStatement(privateKey, statement);
        const flipped = flipBit(Buffer.from(signature, 'base64url'), bit).toString('base64url');
        expect(verifyStatementSignature(publicKey, statement, signature)).toBe(true);
        expect(verifyStatementSignature(publicKey, statement, flipped)).toBe(false);
      }),
      SETTINGS,
    );
  });

  it('checkSignatures, the agent’s gate, refuses a statement with any single flipped bit of its signed bytes', () => {
    fc.assert(
      fc.property(statementArbitrary, fc.nat(), (statement, bit) => {
        const signatures = signedByBoth(statement);
        expect(checkSignatures(statement, signatures, TRUSTED, FOUR_EYES).ok).toBe(true);
        const bytes = canonicalStatementBytes(statement);
        const reparsed = reread(flipBit(bytes, bit % (bytes.length * 8)));
        if (reparsed === undefined) return;
        expect(checkSignatures(reparsed, signatures, TRUSTED, FOUR_EYES).ok).toBe(isSameStatement(reparsed, bytes));
      }),
      SETTINGS,
    );
  });

  it('checkSignatures refuses as bad_signature when either signature has a single flipped bit', () => {
    fc.assert(
      fc.property(
        statementArbitrary,
        fc.integer({ min: 0, max: 1 }),
        fc.integer({ min: 0, max: 511 }),
        (statement, which, bit) => {
          const signatures = signedByBoth(statement);
          const target = signatures[which]!;
          signatures[which] = {
            ...target,
            signature: flipBit(Buffer.from(target.signature, 'base64url'), bit).toString('base64url'),
          };
          const verdict = checkSignatures(statement, signatures, TRUSTED, FOUR_EYES);
          expect(verdict).toMatchObject({ ok: false, code: 'bad_signature' });
        },
      ),
      SETTINGS,
    );
  });
});
