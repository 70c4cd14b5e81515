/**
 * The coordinator's side of protocol evolution, against a coordinator on 127.0.0.1:0 and hand-driven
 * agents (test/support/raw-agent-socket.ts): which version it picks, how it refuses when there is
 * none, and how it treats what a newer agent may send.
 */
import { CloseCode, PROTOCOL_VERSION } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { connectAsAgent, OPCODE, type RawPeer, sampleHello } from '../../../test/support/raw-agent-socket.js';
import { type HubUnderTest, startHub } from './support/hub-under-test.js';

let hub: HubUnderTest;
const peers: RawPeer[] = [];

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.destroy();
  await hub.close();
});

/** A protocol 2 hello: the range instead of protocol 1's single version. */
function helloSpeaking(min: number, max: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const { protocolVersion: _v1, ...hello } = sampleHello();
  return { ...hello, protocolVersions: { min, max }, ...extra };
}

/** Enrolls `id` and connects it with `hello` (signed over the challenge by connectAsAgent). */
async function connect(id: string, hello: Record<string, unknown>) {
  const connected = await connectAsAgent(hub.port, id, await hub.register(id), { hello });
  peers.push(connected.peer);
  return connected;
}

function textMessages(peer: RawPeer): Record<string, unknown>[] {
  return peer.frames
    .filter((f) => f.opcode === OPCODE.text)
    .map((f) => JSON.parse(f.payload.toString()) as Record<string, unknown>);
}

function closeReason(peer: RawPeer): string | undefined {
  return peer.frames
    .find((f) => f.opcode === OPCODE.close)
    ?.payload.subarray(2)
    .toString();
}

const heartbeat = (extra: Record<string, unknown> = {}) => ({
  type: 'heartbeat',
  journalSeq: 0,
  sentAt: new Date().toISOString(),
  ...extra,
});

describe('version negotiation', () => {
  it.each([
    ['a protocol 1 hello (one exact version)', sampleHello(), 1],
    ['a range reaching past what the coordinator speaks', helloSpeaking(1, 9), PROTOCOL_VERSION],
    ['a range of only the newest', helloSpeaking(2, 2), 2],
    ['a range of only the oldest', helloSpeaking(1, 1), 1],
  ])('welcomes %s in the highest common version', async (_what, hello, expected) => {
    hub = await startHub();
    const { peer, welcomed } = await connect('ver-1', hello);
    expect(welcomed).toBe(true);
    expect(await peer.waitMessage('welcome')).toMatchObject({ protocolVersion: expected, agentId: 'ver-1' });
    expect(hub.logsSaying('agent connected')[0]).toMatchObject({ protocolVersion: expected });
  });

  it.each([
    [
      'a newer agent',
      helloSpeaking(PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 2),
      `agent ${PROTOCOL_VERSION + 1}-${PROTOCOL_VERSION + 2}`,
    ],
    [
      'a protocol 1 hello of an unknown version',
      { ...sampleHello(), protocolVersion: PROTOCOL_VERSION + 1 },
      `agent ${PROTOCOL_VERSION + 1}`,
    ],
  ])('refuses %s with no common version: 4426, the reason naming both ranges', async (_what, hello, agentRange) => {
    hub = await startHub();
    const { peer, welcomed, closeCode } = await connect('ver-2', hello);
    expect(welcomed).toBe(false);
    expect(closeCode).toBe(CloseCode.protocolMismatch);
    expect(closeReason(peer)).toBe(
      `no common protocol version: coordinator speaks 1-${PROTOCOL_VERSION}, ${agentRange}`,
    );
    expect(hub.app.fleet.hub.isOnline('ver-2')).toBe(false);
    expect(await hub.healthz()).toBe(200);
  });

  it('refuses a hello naming no version, or an upside-down range, as a bad frame', async () => {
    hub = await startHub();
    const { protocolVersion: _v1, ...noVersion } = sampleHello();
    expect((await connect('ver-3', noVersion)).closeCode).toBe(CloseCode.badFrame);
    expect((await connect('ver-4', helloSpeaking(2, 1))).closeCode).toBe(CloseCode.badFrame);
  });
});

describe('what a newer agent may send', () => {
  it('accepts unknown optional fields, in hello and later frames, and keeps the connection', async () => {
    hub = await startHub();
    const hello = helloSpeaking(1, 3, {
      bootId: 'from-a-newer-agent',
      facts: { ...(sampleHello().facts as object), uptimeSeconds: 12 },
    });
    const { peer, welcomed } = await connect('tol-1', hello);
    expect(welcomed).toBe(true);
    peer.sendJson(heartbeat({ loadAverage: [0.1, 0.2, 0.3] }));
    peer.sendJson(heartbeat());
    await expect.poll(() => hub.app.fleet.hub.isOnline('tol-1')).toBe(true);
    expect(peer.frames.some((f) => f.opcode === OPCODE.close)).toBe(false);
    await expect
      .poll(async () => (await hub.app.fleet.store.agents.get('tol-1'))?.facts)
      .toMatchObject({ hostname: 'raw' });
    expect((await hub.app.fleet.store.agents.get('tol-1'))?.facts).not.toHaveProperty('uptimeSeconds');
  });

  it('answers an unknown message type with unsupported and keeps the connection (protocol 2)', async () => {
    hub = await startHub();
    const { peer } = await connect('tol-2', helloSpeaking(1, 2));
    peer.sendJson({ type: 'facts.delta', changed: { kernel: '6.9' } });
    expect(await peer.waitMessage('unsupported')).toEqual({
      type: 'unsupported',
      inReplyTo: 'facts.delta',
      reason: 'protocol 2 has no message "facts.delta"',
    });
    // A name on Object.prototype is as unknown as any other.
    peer.sendJson({ type: 'constructor' });
    const unsupported = () => textMessages(peer).filter((m) => m.type === 'unsupported');
    await peer.until('a second unsupported', () => (unsupported().length === 2 ? true : undefined));
    expect(unsupported()[1]).toMatchObject({ inReplyTo: 'constructor' });
    peer.sendJson(heartbeat());
    expect(hub.app.fleet.hub.isOnline('tol-2')).toBe(true);
    expect(peer.frames.some((f) => f.opcode === OPCODE.close)).toBe(false);
    expect(hub.logsSaying('message type this protocol version lacks')).toHaveLength(1);
  });

  it('ignores an unknown message type from a protocol 1 agent without a reply it could not parse', async () => {
    hub = await startHub();
    const { peer } = await connect('tol-3', sampleHello());
    peer.sendJson({ type: 'unsupported', inReplyTo: 'order.apply' }); // protocol 2 only: unknown in 1
    peer.sendJson({ type: 'facts.delta' });
    await expect.poll(() => hub.logsSaying('message type this protocol version lacks').length).toBe(1);
    expect(textMessages(peer).map((m) => m.type)).toEqual(['challenge', 'welcome']);
    expect(hub.app.fleet.hub.isOnline('tol-3')).toBe(true);
  });

  it('counts unknown message types against the message rate (4429)', async () => {
    hub = await startHub({ messagesPerSecond: 5, messageBurst: 10 });
    const { peer } = await connect('tol-4', helloSpeaking(1, 2));
    for (let i = 0; i < 30; i++) peer.sendJson({ type: 'facts.delta', i });
    expect(await peer.waitClose()).toBe(CloseCode.rateLimited);
  });

  it('still closes a known message type that fails its schema with 4400', async () => {
    hub = await startHub();
    const { peer } = await connect('tol-5', helloSpeaking(1, 2));
    peer.sendJson({ type: 'heartbeat', journalSeq: -1, sentAt: 'now' });
    expect(await peer.waitClose()).toBe(CloseCode.badFrame);
  });
});
