import { describe, expect, it } from 'vitest';
import { capturingLog } from './support/capturing-log.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

// ---- crash safety ------------------------------------------------------------------------------

describe('crash safety', () => {
  it('an order committed but never delivered is sent on hello with the same id', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    // The process dies between committing the order and the frame reaching host-1.
    fleet.lostOnTheWire.add('host-1');
    const id = await fleet.launch({ waves: ['100%'] });
    const orderId = (await fleet.run(id, 'host-1')).orderId;
    expect(orderId).not.toBeNull();
    expect(fleet.agent('host-1').journal.size).toBe(0);

    await fleet.restart();
    fleet.lostOnTheWire.clear();
    await fleet.connect('host-1');

    expect(fleet.agent('host-1').applyIds()).toEqual([orderId]);
    await fleet.finish('host-1');
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('an order the agent already journals is not sent again; its result from hello is recorded once', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.restart();
    // While the coordinator is down, host-1 finishes and host-2 keeps applying; they report on reconnect.
    await fleet.finish('host-1');
    await fleet.progress('host-2', 'applying');
    const applies = fleet.sentOf('order.apply').length;

    await fleet.connect('host-1');
    await fleet.connect('host-2');
    // The ack was lost on the way: host-1 reports the same result in its next hello.
    fleet.agent('host-1').forgetAcks();
    await fleet.connect('host-1');

    expect(fleet.sentOf('order.apply')).toHaveLength(applies);
    expect((await fleet.run(id, 'host-1')).state).toBe('healthy');
    expect((await fleet.events(id)).filter((e) => e.type === 'host.healthy' && e.hostId === 'host-1')).toHaveLength(1);
    expect(fleet.sentOf('order.ack', 'host-1').length).toBeGreaterThan(0);
    await fleet.finish('host-2');
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('a result for an unknown order that says the host changed is acked, and logged as an error', async () => {
    const { log: captured, lines } = capturingLog();
    const fleet = await SimulatedFleet.open({ log: captured });
    await fleet.addHosts(['host-1']);
    const finishedAt = new Date(fleet.now).toISOString();
    fleet.engine.onOrderResult('host-1', { orderId: 'ord_ghost1', outcome: 'healthy', changed: true, finishedAt });
    fleet.engine.onOrderResult('host-1', { orderId: 'ord_ghost2', outcome: 'failed', changed: false, finishedAt });
    await fleet.engine.whenIdle();

    expect(fleet.sentOf('order.ack', 'host-1').map((s) => s.message.orderId)).toEqual(['ord_ghost1', 'ord_ghost2']);
    const errors = lines.filter((l) => l.level >= 50);
    expect(errors).toEqual([
      expect.objectContaining({
        orderIds: ['ord_ghost1'],
        results: 1,
        msg: expect.stringContaining('host reports a change the coordinator has no record of'),
      }),
    ]);
  });

  it('the next wave never starts early: a restart during the bake waits the bake out', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 600 });
    await fleet.finish('host-1');
    await fleet.advance(300 * SECOND);
    await fleet.restart();
    for (const h of hosts(3)) await fleet.connect(h);

    await fleet.advance(299 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    await fleet.advance(1 * SECOND);
    expect(fleet.appliedHosts()).toEqual(hosts(3));
    await fleet.finishAll(hosts(3));
    await fleet.advance(600 * SECOND); // the last wave bakes too
    expect(await fleet.state(id)).toBe('succeeded');
  });

  /** One rollout, step by step; the coordinator is restarted after step `k` and must carry on. */
  const STEPS: { name: string; run: (fleet: SimulatedFleet, id: () => string) => Promise<void> }[] = [
    {
      name: 'start',
      run: async (fleet) => {
        await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60, maxFailures: 0 });
      },
    },
    { name: 'canary applying', run: (fleet) => fleet.progress('host-1', 'applying') },
    { name: 'canary healthy', run: async (fleet) => void (await fleet.finish('host-1')) },
    { name: 'bake over', run: (fleet) => fleet.advance(61 * SECOND) },
    { name: 'host-2 healthy', run: async (fleet) => void (await fleet.finish('host-2')) },
    { name: 'host-3 healthy', run: async (fleet) => void (await fleet.finish('host-3')) },
    { name: 'last bake over', run: (fleet) => fleet.advance(61 * SECOND) },
  ];

  it.each(STEPS.map((step, k) => ({ k, after: step.name })))(
    'a restart after "$after" neither repeats nor loses anything',
    async ({ k }) => {
      const fleet = await SimulatedFleet.open();
      const ids = hosts(3);
      await fleet.addHosts(ids);
      let rolloutId = '';
      const id = () => rolloutId;
      for (const [i, step] of STEPS.entries()) {
        await step.run(fleet, id);
        rolloutId ||= (await fleet.store.rollouts.list(1))[0]?.id ?? '';
        if (i === k) {
          await fleet.restart();
          for (const h of ids) await fleet.connect(h);
        }
      }

      expect(await fleet.state(rolloutId)).toBe('succeeded');
      for (const h of ids) {
        expect(fleet.agent(h).applyIds(), `${h} got one apply order id`).toHaveLength(1);
        expect(fleet.agent(h).redeliveries, `${h} was re-sent an order it already had`).toBe(0);
        expect((await fleet.events(rolloutId)).filter((e) => e.type === 'host.healthy' && e.hostId === h)).toHaveLength(
          1,
        );
      }
      const dispatchOrder = (await fleet.events(rolloutId))
        .filter((e) => e.type === 'host.dispatched' || e.type === 'wave.passed')
        .map((e) => e.type);
      expect(dispatchOrder).toEqual([
        'host.dispatched',
        'wave.passed',
        'host.dispatched',
        'host.dispatched',
        'wave.passed',
      ]);
    },
  );
});
