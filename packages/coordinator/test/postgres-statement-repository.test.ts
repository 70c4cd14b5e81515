/**
 * PostgresStatementRepository against StatementRepository (SQLite, the reference): the same calls on
 * a fresh store of each kind give the same answers — which statement is the apply one, which revert
 * is pending or covers a host, signatures in the order they were written — and the statement's text
 * is stored byte for byte as it was signed.
 */
import type { Statement } from '@fleetpatch/shared';
import { expect, it } from 'vitest';
import { postgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { PostgresStatementRepository } from '../src/store/postgres/postgres-statement-repository.js';
import { ROLLOUT_SCOPE, StatementRepository } from '../src/store/statement-repository.js';
import { useStoreTwins } from './support/store-twins.js';

const digest = (n: number) => n.toString(16).padStart(64, '0');

/** A statement as the repository keeps it (it checks nothing): keys in an order jsonb would not keep. */
function revertOf(applyDigest: string, extra: Record<string, unknown> = {}): Statement {
  return {
    kind: 'revert',
    statementVersion: 1,
    revertsStatementDigest: applyDigest,
    target: { kind: 'hosts', hostIds: ['web-1'] },
    notBefore: '2026-12-04T15:00:00.000Z',
    expiresAt: '2026-12-05T15:00:00.000Z',
    sequence: 1_764_860_400_000,
    ...extra,
  } as Statement;
}

const APPLY = {
  kind: 'apply',
  statementVersion: 1,
  zeta: 'keys out of order, unicode: é ✓ \u2028',
  alpha: { b: 1, a: [2.5, 1e-7, -0.125] },
} as unknown as Statement;

describeNeeding(postgresCluster, 'PostgresStatementRepository', () => {
  const { twins, same } = useStoreTwins(async (twins) => {
    await twins.seed.rollout('r1');
    await twins.seed.rollout('r2');
    return {
      sqlite: new StatementRepository(twins.sqlite),
      postgres: new PostgresStatementRepository(twins.postgres) as unknown as StatementRepository,
    };
  });

  it('answers every query as the SQLite store does, through inserts, signatures, use and deletion', async () => {
    const at = (s: number) => `2026-12-04T15:00:${String(s).padStart(2, '0')}.${String(s * 7).padStart(3, '0')}Z`;
    expect(await same((r) => r.apply('r1'))).toBeUndefined();
    await same((r) =>
      r.insert({ digest: digest(1), rolloutId: 'r1', scope: ROLLOUT_SCOPE, statement: APPLY, createdAt: at(1) }),
    );
    // Two reverts written in the same millisecond: the order they were written breaks the tie.
    for (const [n, scope, createdAt] of [
      [2, ROLLOUT_SCOPE, at(3)],
      [3, { kind: 'host', hostId: 'web-1' }, at(2)],
      [4, { kind: 'host', hostId: 'web-1' }, at(2)],
      [5, ROLLOUT_SCOPE, at(3)],
      [6, { kind: 'host', hostId: 'web-2' }, at(4)],
    ] as const) {
      await same((r) =>
        r.insert({ digest: digest(n), rolloutId: 'r1', scope, statement: revertOf(digest(1), { n }), createdAt }),
      );
    }
    await same((r) =>
      r.insert({
        digest: digest(9),
        rolloutId: 'r2',
        scope: ROLLOUT_SCOPE,
        statement: revertOf(digest(8)),
        createdAt: at(1),
      }),
    );
    // The digest is the key: a second statement under it is refused by both.
    await same(
      (r) => r.insert({ digest: digest(2), rolloutId: 'r1', scope: ROLLOUT_SCOPE, statement: APPLY, createdAt: at(5) }),
      { refusal: true },
    );

    expect((await same((r) => r.apply('r1')))?.digest).toBe(digest(1));
    expect((await same((r) => r.reverts('r1'))).map((s) => s.digest)).toEqual([
      digest(3),
      digest(4),
      digest(2),
      digest(5),
      digest(6),
    ]);
    await same((r) => r.get(digest(3)));
    await same((r) => r.get(digest(77)));
    const web1 = { kind: 'host', hostId: 'web-1' } as const;
    expect((await same((r) => r.pendingRevert('r1', web1)))?.digest).toBe(digest(4));
    expect((await same((r) => r.pendingRevert('r1', ROLLOUT_SCOPE)))?.digest).toBe(digest(5));
    expect(await same((r) => r.revertCovering('r1', 'web-1'))).toBeUndefined();

    await same((r) => r.markUsed(digest(4), at(10)));
    await same((r) => r.markUsed(digest(3), at(10)));
    // Used in the same millisecond: the one written last covers.
    expect((await same((r) => r.revertCovering('r1', 'web-1')))?.digest).toBe(digest(4));
    await same((r) => r.markUsed(digest(2), at(11)));
    expect((await same((r) => r.revertCovering('r1', 'web-1')))?.digest).toBe(digest(2));
    expect((await same((r) => r.revertCovering('r1', 'web-2')))?.digest).toBe(digest(2));
    expect(await same((r) => r.pendingRevert('r1', web1))).toBeUndefined();
    expect((await same((r) => r.pendingRevert('r1', ROLLOUT_SCOPE)))?.digest).toBe(digest(5));

    const signature = (key: string, when: string) => ({
      digest: digest(1),
      keyId: key,
      publicKey: `pk-${key}`,
      signature: `sig-${key}`,
      signer: 'token-a',
      role: 'approver' as const,
      at: when,
    });
    await same((r) => r.addSignature(signature('k2', at(6))));
    await same((r) => r.addSignature(signature('k1', at(6))));
    await same((r) => r.addSignature(signature('k0', at(5))));
    await same((r) => r.addSignature(signature('k1', at(7))), { refusal: true });
    expect((await same((r) => r.signatures(digest(1)))).map((s) => s.keyId)).toEqual(['k0', 'k2', 'k1']);
    const record = await same((r) => r.get(digest(1)));
    if (record === undefined) throw new Error('the apply statement is gone');
    await same((r) => r.signed(record));

    await same((r) => r.delete(digest(1)));
    expect(await same((r) => r.get(digest(1)))).toBeUndefined();
    expect(await same((r) => r.signatures(digest(1)))).toEqual([]);
    expect(await same((r) => r.apply('r1'))).toBeUndefined();
  });

  it('stores the statement as the text that was signed, not as re-serialized JSON', async () => {
    const repository = new PostgresStatementRepository(twins().postgres);
    await repository.insert({
      digest: digest(1),
      rolloutId: 'r1',
      scope: ROLLOUT_SCOPE,
      statement: APPLY,
      createdAt: '2026-12-04T15:00:00.000Z',
    });
    const row = await twins().postgres.one<{ json: string }>('SELECT json FROM statements WHERE digest = $1', [
      digest(1),
    ]);
    expect(row?.json).toBe(JSON.stringify(APPLY));
    expect((await repository.get(digest(1)))?.statement).toStrictEqual(APPLY);
  });
});
