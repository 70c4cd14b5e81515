/**
 * Specification of signed rollouts, by example: the engine stores what people signed and forwards it
 * with every order, approvals are signatures, and a signed rollout reverts only under a revert
 * statement enough people signed. The real `RolloutEngine` over a real SQLite `Store`, driven
 * through the simulated fleet of `support/simulated-fleet.ts`.
 */
import {
  applyStatementFor,
  ErrorCode,
  patchSpecOf,
  type RevertStatement,
  type RolloutRequestInput,
  revertStatementFor,
  statementDigest,
  verifyStatementSignature,
} from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { refusal } from './support/refusal.js';
import { FIXED, opensslHost, VULNERABLE } from './support/sample-inventory.js';
import { HOUR_STATEMENT, signedFleet } from './support/signed-fleet.js';
import { SimulatedFleet } from './support/simulated-fleet.js';
import { statementSigner } from './support/statement-signer.js';

const alice = statementSigner();
const bob = statementSigner();
const carol = statementSigner();

describe('a signed rollout', () => {
  it('sends every apply order with its statement and every signature, untouched', async () => {
    const { fleet, id, statement } = await signedFleet(['web-1', 'web-2'], { alice, bob });
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();

    const applies = fleet.sentOf('order.apply');
    expect(applies.map((s) => s.agentId)).toEqual(['web-1', 'web-2']);
    for (const { message } of applies) {
      expect(message.signed?.statement).toEqual(statement);
      expect(message.signed?.signatures.map((s) => s.keyId)).toEqual([alice.keyId, bob.keyId]);
      for (const [signer, signature] of [alice, bob].map((k, i) => [k, message.signed?.signatures[i]] as const)) {
        expect(verifyStatementSignature(signer.publicKey, message.signed?.statement, signature?.signature ?? '')).toBe(
          true,
        );
      }
    }
    // A resend after a reconnect carries it too.
    fleet.disconnect('web-1');
    fleet.agent('web-1').journal.clear();
    await fleet.connect('web-1');
    expect(fleet.sentOf('order.apply', 'web-1').at(-1)?.message.signed?.statement).toEqual(statement);
  });

  it('an unsigned rollout sends no statement', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const id = await fleet.launch();
    expect(fleet.sentOf('order.apply').map((s) => s.message.signed)).toEqual([undefined]);
    expect(await fleet.store.statements.apply(id)).toBeUndefined();
  });

  it('signed for host ids (a label target): hosts that match at start but were not signed for get no order, and the trail says so', async () => {
    const { fleet, id } = await signedFleet(
      ['web-1', 'web-2'],
      { alice, bob },
      { target: { labels: { role: 'web' } } },
    );
    await fleet.addHosts(['web-3'], { labels: { role: 'web' } });
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();

    expect(fleet.appliedHosts()).toEqual(['web-1', 'web-2']);
    expect(Object.keys(await fleet.hostStates(id))).toEqual(['web-1', 'web-2']);
    const left = (await fleet.events(id)).find((e) => e.type === 'rollout.hosts_not_signed');
    expect(left?.data).toEqual({ count: 1, hosts: ['web-3'] });
  });

  it('signed for host ids (an exposedTo target): the hosts exposed when it was signed; one exposed later gets no order', async () => {
    const exposedTo = { source: 'openssl', fixed: FIXED };
    const { fleet, id, statement } = await signedFleet(
      ['web-1', 'web-2', 'web-3'],
      { alice, bob },
      {
        target: { exposedTo },
        inventories: { 'web-1': opensslHost(VULNERABLE), 'web-2': opensslHost(FIXED) },
      },
    );
    expect(statement.target).toEqual({ kind: 'hosts', hostIds: ['web-1'] });
    await fleet.reportInventory('web-3', opensslHost(VULNERABLE));
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();

    expect(fleet.appliedHosts()).toEqual(['web-1']);
    const left = (await fleet.events(id)).find((e) => e.type === 'rollout.hosts_not_signed');
    expect(left?.data).toEqual({ count: 1, hosts: ['web-3'] });
  });

  it('refuses a statement for an exposedTo target that names a host not exposed, storing nothing', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1', 'web-2']);
    await fleet.reportInventory('web-1', opensslHost(VULNERABLE));
    await fleet.reportInventory('web-2', opensslHost(FIXED));
    const rollout = await fleet.create(
      { target: { exposedTo: { source: 'openssl', fixed: FIXED } }, draft: true },
      'alice',
    );
    const patch = await fleet.store.patches.get(rollout.patchId);
    if (!patch) throw new Error('the fleet has no patch');
    const statement = applyStatementFor(patchSpecOf(patch), rollout.request, ['web-1', 'web-2'], {
      now: new Date(fleet.now),
      validForSeconds: 3600,
    });
    const err = await refusal(
      async () => await fleet.engine.attachStatement(rollout.id, alice.submission(statement), 'alice'),
    );
    expect(err.code).toBe(ErrorCode.validationFailed);
    expect(err.message + JSON.stringify(err.details)).toContain(
      "names hosts the rollout's target does not select: web-2",
    );
    expect(await fleet.store.statements.apply(rollout.id)).toBeUndefined();
  });

  it('refuses to start once its statement has expired: agents would refuse every order', async () => {
    const { fleet, id } = await signedFleet(['web-1'], { alice, bob });
    fleet.now += HOUR_STATEMENT + 1;
    const err = await refusal(async () => await fleet.engine.start(id, 'alice'));
    expect(err.code).toBe(ErrorCode.conflict);
    expect(err.message).toMatch(/expired at .*create and sign a new rollout/);
    expect(await fleet.state(id)).toBe('scheduled');
    expect(fleet.sent).toEqual([]);
  });

  it('retry sends the same statement again (hosts that accepted it answer replayed: a new attempt needs a new rollout)', async () => {
    const { fleet, id, statement } = await signedFleet(['web-1'], { alice, bob });
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finish('web-1', 'failed');
    expect(await fleet.state(id)).toBe('halted');
    await fleet.engine.retry(id, 'alice');
    await fleet.engine.whenIdle();
    const applies = fleet.sentOf('order.apply', 'web-1');
    expect(applies).toHaveLength(2);
    expect(applies[1]?.message.orderId).not.toBe(applies[0]?.message.orderId);
    expect(applies[1]?.message.signed).toEqual(applies[0]?.message.signed);
    expect(applies[1]?.message.signed?.statement).toEqual(statement);
  });
});

describe('approvals are signatures', () => {
  it('a signed rollout is approved only with a signature of its statement by a key that has not signed it', async () => {
    const { fleet, id, statement } = await signedFleet(['web-1'], { alice }, { requiredApprovals: 2, approve: false });
    const before = await fleet.dump(['approvals', 'statement_signatures', 'events']);

    const unsigned = await refusal(async () => await fleet.engine.approve(id, 'bob'));
    expect(unsigned.code).toBe(ErrorCode.conflict);
    expect(unsigned.message).toMatch(/is signed: approve with --sign-key/);

    const authorsKey = await refusal(async () => await fleet.engine.approve(id, 'bob', alice.approval(statement)));
    expect(authorsKey.code).toBe(ErrorCode.forbidden);
    expect(authorsKey.message).toMatch(/four eyes: key .* is the author's key/);

    const other = applyStatementFor(
      patchSpecOf((await fleet.store.patches.get((await fleet.rollout(id)).patchId))!),
      (await fleet.rollout(id)).request,
      [],
      { now: new Date(fleet.now + 1), validForSeconds: 3600 },
    );
    const wrongStatement = await refusal(
      async () => await fleet.engine.approve(id, 'bob', { signature: bob.sign(other), publicKey: bob.publicKey }),
    );
    expect(wrongStatement.code).toBe(ErrorCode.validationFailed);
    expect(wrongStatement.details).toMatchObject({ issues: [{ path: 'body.signature.signature' }] });

    const mislabelled = await refusal(
      async () => await fleet.engine.approve(id, 'bob', { signature: bob.sign(statement), publicKey: carol.publicKey }),
    );
    expect(mislabelled.details).toMatchObject({ issues: [{ path: 'body.signature.keyId' }] });
    expect(await fleet.dump(['approvals', 'statement_signatures', 'events'])).toBe(before);

    expect((await fleet.engine.approve(id, 'bob', bob.approval(statement))).state).toBe('awaiting_approval');
    const sameKey = await refusal(async () => await fleet.engine.approve(id, 'carol', bob.approval(statement)));
    expect(sameKey.code).toBe(ErrorCode.conflict);
    expect(sameKey.message).toMatch(/has approved this rollout already \(as bob\)/);
    expect((await fleet.engine.approve(id, 'carol', carol.approval(statement))).state).toBe('scheduled');
    expect(
      (await fleet.store.statements.signatures(statementDigest(statement))).map((s) => [s.signer, s.role]),
    ).toEqual([
      ['alice', 'author'],
      ['bob', 'approver'],
      ['carol', 'approver'],
    ]);
  });

  it('an unsigned rollout takes no signature (nobody believes they signed what is not signed)', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const { id } = await fleet.create({ requiredApprovals: 1 });
    const statement = applyStatementFor(
      patchSpecOf((await fleet.store.patches.get((await fleet.rollout(id)).patchId))!),
      (await fleet.rollout(id)).request,
      [],
      { now: new Date(fleet.now), validForSeconds: 3600 },
    );
    const err = await refusal(async () => await fleet.engine.approve(id, 'bob', bob.approval(statement)));
    expect(err.code).toBe(ErrorCode.conflict);
    expect(err.message).toMatch(/is not signed: approve it without --sign-key/);
    expect(await fleet.store.rollouts.approvals(id)).toEqual([]);
  });
});

describe('reverting a signed rollout', () => {
  /** A signed rollout approved by bob, applied healthy on every host (succeeded). */
  async function succeeded(hostIds: string[], input: Partial<RolloutRequestInput> = {}) {
    const signed = await signedFleet(hostIds, { alice, bob }, input);
    await signed.fleet.engine.start(signed.id, 'alice');
    await signed.fleet.engine.whenIdle();
    await signed.fleet.finishAll(hostIds);
    expect(await signed.fleet.state(signed.id)).toBe('succeeded');
    const revert = (hostId: string | null = null, at = signed.fleet.now): RevertStatement =>
      revertStatementFor(signed.statement, hostId, { now: new Date(at), validForSeconds: 3600 });
    return { ...signed, revert };
  }

  it('needs a revert statement signed by two people (author + approver), each with their own key and token', async () => {
    const { fleet, id, revert } = await succeeded(['web-1', 'web-2']);
    const statement = revert();

    const none = await refusal(async () => await fleet.engine.revert(id, 'alice'));
    expect(none.code).toBe(ErrorCode.conflict);
    expect(none.message).toMatch(
      /needs a revert statement signed by 2 people \(fleetpatch rollout revert .* --sign-key/,
    );

    expect(await fleet.engine.signRevert(id, alice.submission(statement), 'alice')).toBe(false);
    const one = await refusal(async () => await fleet.engine.revert(id, 'alice'));
    expect(one.message).toMatch(/has 1 of 2 signatures: 1 more person must run fleetpatch rollout revert/);
    expect(one.details).toMatchObject({ signatures: 1, needed: 2 });

    const sameKey = await refusal(async () => await fleet.engine.signRevert(id, alice.submission(statement), 'bob'));
    expect(sameKey.code).toBe(ErrorCode.conflict);
    expect(sameKey.message).toMatch(/has signed this revert statement already/);
    const sameToken = await refusal(
      async () => await fleet.engine.signRevert(id, carol.submission(statement), 'alice'),
    );
    expect(sameToken.code).toBe(ErrorCode.forbidden);
    expect(sameToken.message).toMatch(/four eyes: alice has signed this revert statement already/);
    const another = await refusal(
      async () => await fleet.engine.signRevert(id, bob.submission(revert(null, fleet.now + 5)), 'bob'),
    );
    expect(another.code).toBe(ErrorCode.conflict);
    expect(another.message).toMatch(/is pending with 1 of 2 signatures: sign that one/);
    expect(await fleet.state(id)).toBe('succeeded');
    expect(fleet.sentOf('order.revert')).toEqual([]);

    expect(await fleet.engine.signRevert(id, bob.submission(statement), 'bob')).toBe(true);
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('reverting');
    const reverts = fleet.sentOf('order.revert');
    expect(reverts.map((r) => r.agentId).sort()).toEqual(['web-1', 'web-2']);
    for (const { message } of reverts) {
      expect(message.signed?.statement).toEqual(statement);
      expect(message.signed?.signatures.map((s) => s.keyId)).toEqual([alice.keyId, bob.keyId]);
    }
    await fleet.finishRevert('web-1');
    await fleet.finishRevert('web-2');
    expect(await fleet.state(id)).toBe('reverted');
    expect((await fleet.store.statements.reverts(id)).map((r) => r.usedAt !== null)).toEqual([true]);
  });

  it('refuses revert statements that do not take back this rollout, storing nothing', async () => {
    const { fleet, id, statement, revert } = await succeeded(['web-1', 'web-2']);
    const before = await fleet.dump(['statements', 'statement_signatures', 'events']);
    const good = revert();
    const bad: { name: string; body: ReturnType<typeof alice.submission>; path: string }[] = [
      {
        name: 'names another apply statement',
        body: alice.submission({ ...good, revertsStatementDigest: 'ab'.repeat(32) }),
        path: 'body.statement.revertsStatementDigest',
      },
      {
        name: 'targets other hosts',
        body: alice.submission({ ...good, target: { kind: 'hosts', hostIds: ['web-1'] } }),
        path: 'body.statement.target',
      },
      { name: 'an apply statement', body: alice.submission(statement), path: 'body.statement.kind' },
      {
        name: 'signed by another key than it says',
        body: { ...alice.submission(good), publicKey: bob.publicKey },
        path: 'body.signature.keyId',
      },
      {
        name: 'a signature of another statement',
        body: { ...alice.submission(good), signature: alice.sign(revert(null, fleet.now + 9)) },
        path: 'body.signature.signature',
      },
      {
        name: 'expired',
        body: alice.submission(
          revertStatementFor(statement, null, { now: new Date(fleet.now - 7200_000), validForSeconds: 3600 }),
        ),
        path: 'body.statement.expiresAt',
      },
    ];
    for (const { name, body, path } of bad) {
      const err = await refusal(async () => await fleet.engine.signRevert(id, body as never, 'alice'));
      expect(err.code, name).toBe(ErrorCode.validationFailed);
      expect(err.details, name).toMatchObject({ issues: [{ path }] });
    }
    expect(await fleet.dump(['statements', 'statement_signatures', 'events'])).toBe(before);
  });

  it('autoRevert rollout: a halt sends no unsigned revert; it records that the revert waits for a signed revert statement', async () => {
    const { fleet, id } = await signedFleet(
      ['web-1', 'web-2'],
      { alice, bob },
      { autoRevert: 'rollout', waves: [1, 1] },
    );
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finish('web-1', 'failed', true);
    expect(await fleet.state(id)).toBe('halted');
    expect(fleet.sentOf('order.revert')).toEqual([]);
    const waiting = (await fleet.events(id)).find((e) => e.type === 'rollout.revert_waiting');
    expect(waiting?.data).toMatchObject({ autoRevert: 'rollout' });
    expect(String(waiting?.data?.reason)).toMatch(/fleetpatch rollout revert .* --sign-key/);
    // Each host's own order still says to restore its snapshot when its health fails.
    expect(fleet.sentOf('order.apply')[0]?.message.revertOnHealthFailure).toBe(true);
  });

  it('revert-host needs a revert statement for that host, signed by two people; its order carries it', async () => {
    const { fleet, id, revert } = await succeeded(['web-1', 'web-2']);
    const none = await refusal(async () => await fleet.engine.revertHost(id, 'web-2', 'alice'));
    expect(none.message).toMatch(/reverting host web-2 of rollout .* needs a revert statement signed by 2 people/);
    const forWeb2 = revert('web-2');
    expect(forWeb2.target).toEqual({ kind: 'hosts', hostIds: ['web-2'] });
    expect(await fleet.engine.signRevert(id, { ...alice.submission(forWeb2), hostId: 'web-2' }, 'alice')).toBe(false);
    // The whole rollout's pending statement is another one: this one is for web-2 only.
    expect(await fleet.store.statements.pendingRevert(id, { kind: 'rollout' })).toBeUndefined();
    expect(await fleet.engine.signRevert(id, { ...bob.submission(forWeb2), hostId: 'web-2' }, 'bob')).toBe(true);
    await fleet.engine.whenIdle();
    const reverts = fleet.sentOf('order.revert');
    expect(reverts.map((r) => r.agentId)).toEqual(['web-2']);
    expect(reverts[0]?.message.signed?.statement).toEqual(forWeb2);
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('a rollout that needed no approval reverts with its author’s signature alone', async () => {
    const { fleet, id, revert } = await succeeded(['web-1'], { requiredApprovals: 0 });
    expect(await fleet.engine.signRevert(id, alice.submission(revert()), 'alice')).toBe(true);
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('reverting');
    expect(fleet.sentOf('order.revert')).toHaveLength(1);
  });

  it('an unsigned rollout reverts as before, and takes no revert statement', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const id = await fleet.launch();
    await fleet.finishAll(['web-1']);
    const anyStatement: RevertStatement = {
      kind: 'revert',
      statementVersion: 1,
      revertsStatementDigest: 'ab'.repeat(32),
      target: { kind: 'selector', selector: { all: true } },
      notBefore: new Date(fleet.now).toISOString(),
      expiresAt: new Date(fleet.now + 60_000).toISOString(),
      sequence: fleet.now,
    };
    const err = await refusal(async () => await fleet.engine.signRevert(id, alice.submission(anyStatement), 'alice'));
    expect(err.message).toMatch(/is not signed: revert it without --sign-key/);
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.revert').map((r) => r.message.signed)).toEqual([undefined]);
  });
});
