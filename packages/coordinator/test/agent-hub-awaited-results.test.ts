/**
 * The hub counts the apply and revert orders it sent that still owe a result (on real sockets): the
 * engine holds a burst of reports open for company only while one does.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { connectAsAgent, type RawPeer } from '../../../test/support/raw-agent-socket.js';
import { AwaitedResults } from '../src/hub/awaited-results.js';
import { type HubUnderTest, startHub } from './support/hub-under-test.js';

let hub: HubUnderTest;
const peers: RawPeer[] = [];

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.destroy();
  await hub.close();
});

const revert = (orderId: string) => ({ type: 'order.revert' as const, orderId, revertsOrderId: 'ord_applied' });
const result = (orderId: string) => ({
  type: 'order.result',
  orderId,
  outcome: 'reverted',
  changed: false,
  finishedAt: new Date().toISOString(),
});

it('awaits an order sent until its result comes, counting a resend once, and forgets a closed connection’s', async () => {
  hub = await startHub();
  const keys = [await hub.register('web-1'), await hub.register('web-2')];
  const [one, two] = await Promise.all(['web-1', 'web-2'].map((id, i) => connectAsAgent(hub.port, id, keys[i]!)));
  peers.push(one!.peer, two!.peer);
  const { hub: agents } = hub.app.fleet;
  expect(agents.awaitsResults()).toBe(false);
  // Messages that are not apply or revert orders owe nothing.
  agents.send('web-1', { type: 'order.ack', orderId: 'rev_one', finishedAt: new Date().toISOString() });
  expect(agents.awaitsResults()).toBe(false);

  expect(agents.send('web-1', revert('rev_one'))).toBe(true);
  expect(agents.send('web-1', revert('rev_one'))).toBe(true); // resent: still one owed
  expect(agents.send('web-2', revert('rev_two'))).toBe(true);
  expect(agents.awaitsResults()).toBe(true);
  // The coordinator's engine asks this hub (its one hint: see RolloutEngineOptions.resultsAwaited).
  const engine = hub.app.fleet.engine as unknown as { resultsAwaited: () => boolean };
  expect(engine.resultsAwaited()).toBe(true);

  // web-2's connection goes: its answer, if any, comes on the next one. web-1's is still owed.
  two!.peer.destroy();
  await vi.waitFor(() => expect(agents.isOnline('web-2')).toBe(false), { timeout: 5000, interval: 5 });
  expect(agents.awaitsResults()).toBe(true);

  // web-1 answers once, for the order it was sent twice: nothing is owed any more.
  one!.peer.sendJson(result('rev_one'));
  await vi.waitFor(() => expect(agents.awaitsResults()).toBe(false), { timeout: 5000, interval: 5 });
  expect(agents.isOnline('web-1')).toBe(true); // answered, not gone
  expect(engine.resultsAwaited()).toBe(false);
});

it('counts each order once per connection, and only answers to orders it holds', () => {
  const awaited = new AwaitedResults();
  const a = new Set<string>();
  const b = new Set<string>();
  awaited.sent(a, 'ord_1');
  awaited.sent(a, 'ord_1');
  awaited.sent(b, 'ord_1'); // the same order resent on the agent's next connection
  awaited.answered(a, 'ord_other');
  awaited.answered(b, 'ord_1');
  expect(awaited.any()).toBe(true);
  awaited.answered(a, 'ord_1');
  expect(awaited.any()).toBe(false);
  awaited.answered(a, 'ord_1'); // a repeated answer does not go below none
  awaited.sent(b, 'ord_2');
  awaited.sent(b, 'ord_3');
  awaited.closed(b);
  expect(awaited.any()).toBe(false);
  expect(b.size).toBe(0);
  awaited.sent(a, 'ord_4');
  expect(awaited.any()).toBe(true);
});
