/**
 * An agent's refusal of an order (a signature that does not hold, or its local policy) is a
 * security event in the audit trail: in the rollout's events and the whole trail, with the host,
 * the order, the refusal code and the agent's reason; and a warning in the log. The real
 * `RolloutEngine` over a real SQLite `Store`, driven through the simulated fleet.
 */
import { ORDER_REFUSED_EVENT, revertStatementFor } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { capturingLog } from './support/capturing-log.js';
import { signedFleet } from './support/signed-fleet.js';
import { SimulatedFleet } from './support/simulated-fleet.js';
import { statementSigner } from './support/statement-signer.js';

const alice = statementSigner();
const bob = statementSigner();

const TAMPERED = "tampered: the order's change is not the signed patch's (change.contentSha256)";
const OWNER = 'owner 0 of /etc/app/app.conf is not in file.allowedOwners';

describe('an order an agent refuses', () => {
  it('is a security event with its code — in the rollout’s events, the whole audit trail, and the log at warn', async () => {
    const { log, lines } = capturingLog();
    const { fleet, id } = await signedFleet(['web-1', 'web-2', 'web-3'], { alice, bob }, { log, maxFailures: 3 });
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();

    const tamperedOrder = await fleet.refuse('web-1', TAMPERED);
    const ownerOrder = await fleet.refuse('web-2', OWNER);
    await fleet.finish('web-3', 'failed'); // a health failure is no refusal

    const refused = (await fleet.events(id)).filter((e) => e.type === ORDER_REFUSED_EVENT);
    expect(refused.map(({ rolloutId, hostId, actor, data }) => ({ rolloutId, hostId, actor, data }))).toEqual([
      {
        rolloutId: id,
        hostId: 'web-1',
        actor: 'web-1',
        data: { orderId: tamperedOrder, order: 'apply', code: 'tampered', reason: TAMPERED },
      },
      {
        rolloutId: id,
        hostId: 'web-2',
        actor: 'web-2',
        data: { orderId: ownerOrder, order: 'apply', code: 'policy_denied', reason: OWNER },
      },
    ]);
    // Beside the host's own transition, which still says why it failed.
    expect(await fleet.run(id, 'web-1')).toMatchObject({
      state: 'failed',
      errorCode: 'policy_denied',
      reason: TAMPERED,
    });
    const trail = (await fleet.store.allEvents(0, 10_000)).filter((e) => e.type === ORDER_REFUSED_EVENT);
    expect(trail.map((e) => e.seq)).toEqual(refused.map((e) => e.seq));

    const warnings = lines.filter((l) => l.msg === 'agent refused an order: security event');
    expect(warnings.map((l) => [l.level, l.hostId, l.rolloutId, l.orderId, l.code])).toEqual([
      [40, 'web-1', id, tamperedOrder, 'tampered'],
      [40, 'web-2', id, ownerOrder, 'policy_denied'],
    ]);
  });

  it('is recorded once: the same result again in a later hello adds no event', async () => {
    const { fleet, id } = await signedFleet(['web-1'], { alice, bob });
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.refuse('web-1', TAMPERED);

    fleet.disconnect('web-1');
    fleet.agent('web-1').forgetAcks(); // its ack was lost: the hello reports the refusal again
    await fleet.connect('web-1');
    expect((await fleet.events(id)).filter((e) => e.type === ORDER_REFUSED_EVENT)).toHaveLength(1);
  });

  it('takes a code from the reason only when it is a refusal code; any other text is policy_denied', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const id = await fleet.launch();
    await fleet.refuse('web-1', 'root_granted: trust me');
    const [event] = (await fleet.events(id)).filter((e) => e.type === ORDER_REFUSED_EVENT);
    expect(event?.data).toMatchObject({ code: 'policy_denied', reason: 'root_granted: trust me' });
  });

  it('a refused revert order is one too, and the host still counts as changed, so a new revert statement reaches it', async () => {
    const { fleet, id, statement } = await signedFleet(['web-1'], { alice, bob });
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finishAll(['web-1']);
    const signedRevert = async () => {
      const revert = revertStatementFor(statement, null, { now: new Date(fleet.now), validForSeconds: 3600 });
      await fleet.engine.signRevert(id, alice.submission(revert), 'alice');
      expect(await fleet.engine.signRevert(id, bob.submission(revert), 'bob')).toBe(true);
      await fleet.engine.whenIdle();
    };
    await signedRevert();

    const reason = 'expired: expired at 2030-01-07T13:00:00.000Z';
    const revertOrder = await fleet.refuseRevert('web-1', reason);
    expect(await fleet.run(id, 'web-1')).toMatchObject({ state: 'revert_failed', changed: true });
    expect(await fleet.state(id)).toBe('revert_failed');
    const [event] = (await fleet.events(id)).filter((e) => e.type === ORDER_REFUSED_EVENT);
    expect(event).toMatchObject({
      hostId: 'web-1',
      data: { orderId: revertOrder, order: 'revert', code: 'expired', reason },
    });

    fleet.now += 1000;
    await signedRevert();
    const reverts = fleet.sentOf('order.revert', 'web-1');
    expect(reverts.map((r) => r.message.orderId)).toHaveLength(2);
    await fleet.finishRevert('web-1');
    expect(await fleet.state(id)).toBe('reverted');
  });
});
