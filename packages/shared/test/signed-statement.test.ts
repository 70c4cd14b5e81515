import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { rawPublicKey } from '../src/agent-proof.js';
import { canonicalJson } from '../src/canonical-json.js';
import { type PatchSpecInput, PatchSpecSchema } from '../src/patch.js';
import {
  type ApplyStatement,
  canonicalStatementBytes,
  checkSignatures,
  checkValidityWindow,
  keyIdOf,
  type SignaturePolicy,
  SignaturePolicySchema,
  STATEMENT_PREFIX,
  type StatementInput,
  StatementRefusalCode,
  StatementSchema,
  signedPatchOf,
  signStatement,
  statementDigest,
  type TrustedKey,
  verifyStatementSignature,
} from '../src/signed-statement.js';

/** An ed25519 private key from a 32-byte seed (PKCS#8 DER: a fixed 16-byte header, then the seed). */
function keyFromSeed(seedHex: string): KeyObject {
  return createPrivateKey({
    key: Buffer.from(`302e020100300506032b657004220420${seedHex}`, 'hex'),
    format: 'der',
    type: 'pkcs8',
  });
}

function samplePatchSpec(overrides: Partial<PatchSpecInput> = {}) {
  return PatchSpecSchema.parse({
    title: 'Raise nginx worker limit',
    problem: 'p',
    rootCause: 'r',
    intendedFix: 'f',
    ticket: 'OPS-1',
    change: {
      kind: 'file',
      path: '/etc/nginx/limits.conf',
      content: 'worker_connections 4096;\n',
      mode: '644',
      owner: 'root',
      group: 'root',
    },
    health: { checks: [{ kind: 'systemd', unit: 'nginx.service' }] },
    ...overrides,
  });
}

function sampleStatement(overrides: Partial<ApplyStatement> = {}): ApplyStatement {
  return {
    kind: 'apply',
    statementVersion: 1,
    patch: signedPatchOf(samplePatchSpec()),
    revertOnHealthFailure: true,
    target: { kind: 'hosts', hostIds: ['web-1', 'web-2'] },
    notBefore: '2025-01-01T00:00:00Z',
    expiresAt: '2025-01-02T00:00:00Z',
    sequence: 1_735_689_600_000,
    ...overrides,
  };
}

function newKey(): { privateKey: KeyObject; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey: rawPublicKey(publicKey) };
}

/** Every object's members in reverse order, recursively: the same value, written differently. */
function reverseMembers(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseMembers);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .reverse()
      .map(([k, v]) => [k, reverseMembers(v)]),
  );
}

describe('the signed statement', () => {
  it('binds a file by the sha256 and length of its decoded bytes, whatever their encoding', () => {
    const utf8 = signedPatchOf(samplePatchSpec());
    const base64 = signedPatchOf(
      samplePatchSpec({
        change: {
          kind: 'file',
          path: '/etc/nginx/limits.conf',
          content: Buffer.from('worker_connections 4096;\n').toString('base64'),
          encoding: 'base64',
          mode: '0644',
          owner: 'root',
          group: 'root',
        },
      }),
    );
    expect(utf8).toEqual(base64);
    expect(utf8.change).toEqual({
      kind: 'file',
      path: '/etc/nginx/limits.conf',
      contentSha256: createHash('sha256').update('worker_connections 4096;\n').digest('hex'),
      contentBytes: 25,
      mode: '0644',
      owner: 'root',
      group: 'root',
    });
    expect(utf8).not.toHaveProperty('change.content');
  });

  it('carries a package change, prose and health as the patch has them', () => {
    const spec = samplePatchSpec({
      change: { kind: 'package', manager: 'apt', name: 'openssl', version: '3.0.13-0ubuntu3.5' },
    });
    expect(signedPatchOf(spec)).toEqual(spec);
  });

  /**
   * A vector for clients in other languages. The key is RFC 8032's test 1 seed; ed25519 signatures
   * are deterministic. Checked independently: Python's json.dumps(sort_keys=True,
   * separators=(',', ':')) gives the same text, and `openssl pkeyutl -verify -rawin` accepts the signature.
   */
  it('signs exactly the published bytes (test vector)', () => {
    const key = keyFromSeed('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
    const statement = sampleStatement();
    expect(canonicalStatementBytes(statement).toString('utf8')).toBe(
      'fleetpatch-statement-v1\n' +
        '{"expiresAt":"2025-01-02T00:00:00Z","kind":"apply","notBefore":"2025-01-01T00:00:00Z","patch":{"change":' +
        '{"contentBytes":25,"contentSha256":"63d73d3206ca0c57d2b0661d61191b032a2800dd91bba44312f259ae9f4ad1ac",' +
        '"group":"root","kind":"file","mode":"0644","owner":"root","path":"/etc/nginx/limits.conf"},"health":' +
        '{"checks":[{"kind":"systemd","timeoutMs":5000,"unit":"nginx.service"}],"healthyDeadlineSeconds":60,' +
        '"intervalSeconds":2,"minHealthySeconds":0},"intendedFix":"f","problem":"p","rootCause":"r",' +
        '"ticket":"OPS-1","title":"Raise nginx worker limit"},"revertOnHealthFailure":true,' +
        '"sequence":1735689600000,"statementVersion":1,"target":{"hostIds":["web-1","web-2"],"kind":"hosts"}}',
    );
    expect(statementDigest(statement)).toBe('9940b54fbd7795e0b4dd5e0849e5aae14f1c457598b42d999f6e590d64e8b258');
    const publicKey = rawPublicKey(createPublicKey(key));
    expect(Buffer.from(publicKey, 'base64url').toString('hex')).toBe(
      'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    );
    expect(keyIdOf(publicKey)).toBe('21fe31dfa154a261');
    expect(signStatement(key, statement)).toEqual({
      keyId: '21fe31dfa154a261',
      signature: 'Sueh-poeeZSJlwma9YbpxpSPBjuFoPUu--KGeklTchnC2Ftm3xhU358MWTLbJ2ecQ0iBjMewxPmKC1FT56fJDQ',
    });
  });

  it('signs the prefix and the canonical JSON of the parsed statement', () => {
    const statement = sampleStatement();
    const bytes = canonicalStatementBytes(statement).toString('utf8');
    expect(bytes.startsWith(STATEMENT_PREFIX)).toBe(true);
    expect(bytes.slice(STATEMENT_PREFIX.length)).toBe(canonicalJson(StatementSchema.parse(statement)));
  });

  it('has one digest however its members are ordered, and with defaults left out or written', () => {
    const statement = sampleStatement();
    const digest = statementDigest(statement);
    expect(statementDigest(reverseMembers(statement) as StatementInput)).toBe(digest);
    const withoutDefaults = sampleStatement({
      patch: { ...statement.patch, health: { checks: [{ kind: 'systemd', unit: 'nginx.service' }] } } as never,
    });
    expect(statementDigest(withoutDefaults)).toBe(digest);
    expect(statementDigest(sampleStatement({ sequence: statement.sequence + 1 }))).not.toBe(digest);
  });

  it('describes a revert by the digest of the statement it takes back', () => {
    const revert: StatementInput = {
      kind: 'revert',
      statementVersion: 1,
      revertsStatementDigest: statementDigest(sampleStatement()),
      target: { kind: 'selector', selector: { labels: { role: 'web' } } },
      notBefore: '2025-01-01T00:00:00Z',
      expiresAt: '2025-01-01T01:00:00Z',
      sequence: 1_735_689_600_001,
    };
    expect(StatementSchema.safeParse(revert).success).toBe(true);
    expect(statementDigest(revert)).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each([
    ['an unknown member', { extra: 1 }],
    ['another statement version', { statementVersion: 2 }],
    ['an expiry not after notBefore', { expiresAt: '2025-01-01T00:00:00Z' }],
    ['a time with an offset', { notBefore: '2025-01-01T01:00:00+01:00' }],
    ['sequence 0', { sequence: 0 }],
    ['a fractional sequence', { sequence: 1.5 }],
    ['a sequence past 2^53 - 1', { sequence: 2 ** 53 }],
    ['an empty host list', { target: { kind: 'hosts', hostIds: [] } }],
    ['a selector that names nobody', { target: { kind: 'selector', selector: {} } }],
    [
      'file content beside its digest',
      {
        patch: {
          ...signedPatchOf(samplePatchSpec()),
          change: { ...signedPatchOf(samplePatchSpec()).change, content: 'x' },
        },
      },
    ],
  ])('refuses %s', (_, overrides) => {
    expect(StatementSchema.safeParse({ ...sampleStatement(), ...overrides }).success).toBe(false);
    expect(() => canonicalStatementBytes({ ...sampleStatement(), ...overrides } as StatementInput)).toThrow();
  });

  it('refuses a three-digit mode in a statement (the CLI writes four)', () => {
    const patch = signedPatchOf(samplePatchSpec());
    const statement = sampleStatement({ patch: { ...patch, change: { ...patch.change, mode: '644' } } as never });
    expect(StatementSchema.safeParse(statement).success).toBe(false);
  });
});

describe('signing and verifying', () => {
  const author = newKey();

  it('verifies what the key signed, and nothing else', () => {
    const statement = sampleStatement();
    const { keyId, signature } = signStatement(author.privateKey, statement);
    expect(keyId).toBe(keyIdOf(author.publicKey));
    expect(verifyStatementSignature(author.publicKey, statement, signature)).toBe(true);
    expect(verifyStatementSignature(author.publicKey, reverseMembers(statement), signature)).toBe(true);
    expect(verifyStatementSignature(newKey().publicKey, statement, signature)).toBe(false);
    expect(verifyStatementSignature(author.publicKey, sampleStatement({ sequence: 2 }), signature)).toBe(false);
    expect(
      verifyStatementSignature(
        author.publicKey,
        sampleStatement({ target: { kind: 'hosts', hostIds: ['web-1', 'web-2', 'db-1'] } }),
        signature,
      ),
    ).toBe(false);
  });

  it('covers a package set and a source change: a member, a version or the source changed breaks it', () => {
    const withChange = (change: PatchSpecInput['change']) =>
      sampleStatement({ patch: signedPatchOf(samplePatchSpec({ change })) });
    const openssl = { name: 'openssl', version: '3.0.15-1~deb12u1' };
    const libssl3 = { name: 'libssl3', version: '3.0.15-1~deb12u1' };
    const set = { kind: 'package' as const, manager: 'apt' as const, packages: [openssl, libssl3] };
    const signedSet = withChange(set);
    const { signature } = signStatement(author.privateKey, signedSet);
    expect(verifyStatementSignature(author.publicKey, signedSet, signature)).toBe(true);
    const tampered = [
      { ...set, packages: [...set.packages, { name: 'libssl-dev', version: '3.0.15-1~deb12u1' }] },
      { ...set, packages: [openssl] },
      { ...set, packages: [openssl, { name: 'libssl3', version: '3.0.11-1~deb12u2' }] },
      { ...set, packages: [libssl3, openssl] },
    ];
    for (const change of tampered) {
      expect(verifyStatementSignature(author.publicKey, withChange(change), signature)).toBe(false);
    }

    const source = {
      kind: 'package' as const,
      manager: 'apt' as const,
      source: 'openssl',
      version: '3.0.15-1~deb12u1',
    };
    const signedSource = withChange(source);
    const bySource = signStatement(author.privateKey, signedSource).signature;
    expect(verifyStatementSignature(author.publicKey, signedSource, bySource)).toBe(true);
    for (const change of [
      { ...source, source: 'openssh' },
      { ...source, version: '3.0.14-1~deb12u1' },
      { ...source, revertable: false },
    ]) {
      expect(verifyStatementSignature(author.publicKey, withChange(change), bySource)).toBe(false);
    }
  });

  it('never throws on hostile statements, keys or signatures', () => {
    const { signature } = signStatement(author.privateKey, sampleStatement());
    const loneSurrogate = sampleStatement({ patch: { ...sampleStatement().patch, title: 'a\uD800' } });
    for (const statement of [null, undefined, 'x', 1, [], {}, { kind: 'apply' }, loneSurrogate]) {
      expect(verifyStatementSignature(author.publicKey, statement, signature)).toBe(false);
    }
    for (const [publicKey, sig] of [
      ['', signature],
      ['A'.repeat(43), signature],
      [author.publicKey, ''],
      [author.publicKey, '!'.repeat(86)],
    ] as const) {
      expect(verifyStatementSignature(publicKey, sampleStatement(), sig)).toBe(false);
    }
  });

  it('refuses to sign with a key that is not ed25519', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(() => signStatement(privateKey, sampleStatement())).toThrow(/ed25519/);
  });
});

describe('checkSignatures', () => {
  const author = newKey();
  const approver = newKey();
  const both = newKey();
  const stranger = newKey();
  const statement = sampleStatement();
  const trusted: TrustedKey[] = [
    { publicKey: author.publicKey, roles: ['author'] },
    { publicKey: approver.publicKey, roles: ['approver'] },
    { publicKey: both.publicKey, roles: ['author', 'approver'] },
  ];
  const fourEyes: SignaturePolicy = { requiredSignatures: 2, requireRoles: ['author', 'approver'] };
  const sign = (key: { privateKey: KeyObject }) => signStatement(key.privateKey, statement);

  it('passes an author and an approver under four eyes, and names them', () => {
    expect(checkSignatures(statement, [sign(author), sign(approver)], trusted, fourEyes)).toEqual({
      ok: true,
      signerKeyIds: [keyIdOf(author.publicKey), keyIdOf(approver.publicKey)],
    });
  });

  it('refuses one author alone when two signatures are required', () => {
    expect(checkSignatures(statement, [sign(author)], trusted, fourEyes)).toMatchObject({
      ok: false,
      code: StatementRefusalCode.tooFewSignatures,
    });
  });

  it('counts the same key once, however often it signed', () => {
    const twice = [sign(author), sign(author)];
    expect(checkSignatures(statement, twice, trusted, fourEyes)).toMatchObject({ code: 'too_few_signatures' });
    expect(checkSignatures(statement, [sign(both), sign(both)], trusted, fourEyes)).toMatchObject({
      code: 'too_few_signatures',
    });
  });

  it('ignores keys it does not trust', () => {
    const withStranger = [sign(author), sign(stranger)];
    expect(checkSignatures(statement, withStranger, trusted, fourEyes)).toMatchObject({ code: 'too_few_signatures' });
    expect(checkSignatures(statement, [sign(stranger)], trusted, fourEyes)).toMatchObject({
      code: StatementRefusalCode.unknownSigner,
    });
    expect(checkSignatures(statement, [...withStranger, sign(approver)], trusted, fourEyes)).toMatchObject({
      ok: true,
    });
  });

  it('respects roles: an approver-only key cannot stand in for the author', () => {
    const authorOnly: SignaturePolicy = { requiredSignatures: 1, requireRoles: ['author'] };
    expect(checkSignatures(statement, [sign(approver)], trusted, authorOnly)).toMatchObject({
      ok: false,
      code: StatementRefusalCode.missingRole,
    });
    expect(checkSignatures(statement, [sign(author)], trusted, authorOnly)).toMatchObject({ ok: true });
  });

  it('needs a different key for each required role, assigning roles so that it can', () => {
    // `both` must be the approver here so that `author` can be the author.
    expect(checkSignatures(statement, [sign(both), sign(author)], trusted, fourEyes)).toMatchObject({ ok: true });
    const twoApprovers: SignaturePolicy = { requiredSignatures: 2, requireRoles: ['approver', 'approver'] };
    expect(checkSignatures(statement, [sign(author), sign(approver)], trusted, twoApprovers)).toMatchObject({
      code: 'missing_role',
    });
    expect(checkSignatures(statement, [sign(both), sign(approver)], trusted, twoApprovers)).toMatchObject({
      ok: true,
    });
  });

  it('merges the roles of a key listed twice', () => {
    const split: TrustedKey[] = [
      { publicKey: author.publicKey, roles: ['author'] },
      { publicKey: author.publicKey, roles: ['approver'] },
    ];
    const policy: SignaturePolicy = { requiredSignatures: 1, requireRoles: ['approver'] };
    expect(checkSignatures(statement, [sign(author)], split, policy)).toMatchObject({ ok: true });
  });

  it('refuses a signature over another statement, and says so', () => {
    const other = signStatement(author.privateKey, sampleStatement({ sequence: 7 }));
    expect(checkSignatures(statement, [other, sign(approver)], trusted, fourEyes)).toMatchObject({
      code: StatementRefusalCode.badSignature,
    });
  });

  it('refuses no signatures, malformed signatures and a malformed statement without throwing', () => {
    expect(checkSignatures(statement, [], trusted, fourEyes)).toMatchObject({ code: StatementRefusalCode.unsigned });
    for (const junk of [null, 'sig', { keyId: 'x', signature: 'y' }, { ...sign(author), extra: 1 }]) {
      expect(checkSignatures(statement, [junk, sign(approver)], trusted, fourEyes)).toMatchObject({
        code: 'bad_signature',
      });
    }
    expect(checkSignatures({ kind: 'apply' }, [sign(author)], trusted, fourEyes)).toMatchObject({
      code: StatementRefusalCode.malformedStatement,
    });
  });

  it('never passes an unsigned-by-anyone-trusted statement, even under a policy of zero', () => {
    const none = { requiredSignatures: 0, requireRoles: [] } as SignaturePolicy;
    expect(checkSignatures(statement, [sign(stranger)], trusted, none)).toMatchObject({ ok: false });
    expect(SignaturePolicySchema.safeParse(none).success).toBe(false);
    expect(
      SignaturePolicySchema.safeParse({ requiredSignatures: 1, requireRoles: ['author', 'approver'] }).success,
    ).toBe(false);
  });
});

describe('checkValidityWindow', () => {
  const statement = sampleStatement();

  it('accepts [notBefore, expiresAt) and refuses either side', () => {
    expect(checkValidityWindow(statement, new Date('2025-01-01T00:00:00Z'))).toEqual({ ok: true });
    expect(checkValidityWindow(statement, new Date('2024-12-31T23:59:59Z'))).toMatchObject({
      code: StatementRefusalCode.notYetValid,
    });
    expect(checkValidityWindow(statement, new Date('2025-01-02T00:00:00Z'))).toMatchObject({
      code: StatementRefusalCode.expired,
    });
  });

  it('allows the given clock skew either way', () => {
    expect(checkValidityWindow(statement, new Date('2024-12-31T23:59:30Z'), 60_000)).toEqual({ ok: true });
    expect(checkValidityWindow(statement, new Date('2025-01-02T00:00:30Z'), 60_000)).toEqual({ ok: true });
  });
});
