/**
 * An agent of the previous protocol (6) against this coordinator (7): the real agent connection,
 * limited to protocols 1–6, on a real coordinator's socket. It beats with the `heartbeat` message,
 * is pinged by the coordinator each interval as before, and stays connected; an agent of protocol 7
 * next to it beats with its own pings and is pinged only after an interval it was silent in. (A whole rollout and revert with an older
 * agent: protocol-compat.test.ts, whose protocol 1 agent beats as protocol 6 does.)
 */
import { connectProofPayload, type Hello, PROTOCOL_VERSION, signPayload } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, expect, it } from 'vitest';
import { CoordinatorConnection } from '../packages/agent/src/coordinator-connection.js';
import { type HubUnderTest, startHub } from '../packages/coordinator/test/support/hub-under-test.js';
import { sampleHello } from './support/raw-agent-socket.js';

const INTERVAL_MS = 300;
let hub: HubUnderTest;
const connections: CoordinatorConnection[] = [];

afterEach(async () => {
  for (const connection of connections.splice(0)) await connection.stop();
  await hub.close();
});

/** A real agent connection for `id`, speaking protocols 1..max; counts the pings it hears. */
async function agentSpeaking(id: string, max: number) {
  const key = await hub.register(id);
  let pings = 0;
  const connection = new CoordinatorConnection({
    urls: [`ws://127.0.0.1:${hub.port}/v1/agents/connect`],
    agentId: () => id,
    log: pino({ level: 'silent' }),
    protocolVersions: { min: 1, max },
    hello: (nonce): Omit<Hello, 'protocolVersion' | 'protocolVersions'> => ({
      type: 'hello',
      proof: signPayload(key, connectProofPayload(id, nonce)),
      agentVersion: 'test',
      labels: {},
      facts: sampleHello().facts as Hello['facts'],
      orders: [],
    }),
    onMessage: () => {},
  });
  connections.push(connection);
  connection.start(() => 0);
  // The coordinator's pings, as the agent's socket hears them (ws answers each with a pong).
  const socketOf = () => (connection as unknown as { socket: import('ws').WebSocket | null }).socket;
  await expect.poll(() => connection.connected, { timeout: 5_000 }).toBe(true);
  socketOf()?.on('ping', () => pings++);
  return { connection, pings: () => pings };
}

it('an agent of protocol 6 beats with heartbeat messages, is pinged each interval, and stays; one of 7 is hardly ever pinged', async () => {
  hub = await startHub({}, { heartbeatIntervalMs: INTERVAL_MS });
  const previous = await agentSpeaking('prev-6', 6);
  const current = await agentSpeaking('curr-7', PROTOCOL_VERSION);
  expect(previous.connection.agreedProtocol).toBe(6);
  expect(current.connection.agreedProtocol).toBe(7);

  // Six intervals: three times what either side waits before it drops a silent peer.
  await expect.poll(() => previous.pings(), { timeout: 10_000, interval: 50 }).toBeGreaterThanOrEqual(6);
  expect(previous.connection.connected).toBe(true);
  expect(current.connection.connected).toBe(true);
  // Pinged only after an interval its own ping came late in, if ever: far less often than the other.
  expect(current.pings()).toBeLessThan(previous.pings() / 2);
  expect(hub.logsSaying('agent missed its heartbeat')).toEqual([]);
  // The coordinator counted the protocol 6 agent's heartbeat messages and the protocol 7 agent's pings.
  const metrics = await (await fetch(`http://127.0.0.1:${hub.port}/metrics`)).text();
  const heartbeats = /fleetpatch_websocket_messages_total\{direction="received",type="heartbeat"\} (\d+)/.exec(metrics);
  expect(Number(heartbeats?.[1])).toBeGreaterThanOrEqual(8);
});
