/**
 * The agent socket's limits, each configurable, against a coordinator on 127.0.0.1:0 and peers
 * written byte by byte (test/support/raw-agent-socket.ts).
 */
import { AGENT_ID_HEADER, CloseCode } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import {
  clientFrame,
  connectAsAgent,
  OPCODE,
  RawPeer,
  sampleHello,
  upgradeRequest,
} from '../../../test/support/raw-agent-socket.js';
import type { UpgradeCap } from '../src/hub/upgrade-gate.js';
import { type HubUnderTest, startHub } from './support/hub-under-test.js';

let hub: HubUnderTest;
const peers: RawPeer[] = [];
const track = <T extends { peer: RawPeer }>(connected: T): T => {
  peers.push(connected.peer);
  return connected;
};

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.destroy();
  await hub.close();
});

/** `fleetpatch_agent_upgrades_refused_total` for one cap, from the coordinator's /metrics (0 when never counted). */
async function refusedUpgrades(hub: HubUnderTest, cap: UpgradeCap): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${hub.port}/metrics`)).text();
  const line = new RegExp(`^fleetpatch_agent_upgrades_refused_total\\{cap="${cap}"\\} (\\d+)$`, 'm').exec(body);
  return Number(line?.[1] ?? 0);
}

const heartbeat = () => ({ type: 'heartbeat', journalSeq: 0, sentAt: new Date().toISOString() });

describe('unauthenticated sockets', () => {
  it('refuses upgrades beyond maxPendingSockets with 503, logs it once, and stays up', async () => {
    hub = await startHub({ maxPendingSockets: 20, handshakeTimeoutMs: 2000 });
    let maxPending = 0;
    const sampler = setInterval(() => {
      maxPending = Math.max(maxPending, hub.app.fleet.hub.pendingCount());
    }, 2);
    // 1,000 at once, each refused (no agent named) and then deaf to the close frame: each holds a slot.
    const opened = await Promise.all(
      Array.from({ length: 1000 }, () => RawPeer.open(hub.port, upgradeRequest('/v1/agents/connect', {}))),
    );
    peers.push(...opened);
    const statuses = await Promise.all(opened.map((peer) => peer.waitStatus(10_000)));
    clearInterval(sampler);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 101 || s === 503)).toBe(true);
    expect(maxPending).toBeLessThanOrEqual(20);
    expect(hub.logsSaying('too many unauthenticated agent sockets')).toHaveLength(1);
    // The log line is throttled; the metric counts every refusal.
    expect(await refusedUpgrades(hub, 'pending')).toBe(statuses.filter((s) => s === 503).length);
    expect(await hub.healthz()).toBe(200);
    await expect.poll(() => hub.app.fleet.hub.pendingCount(), { timeout: 5000 }).toBe(0);
  });

  it('caps the unauthenticated sockets of one address, so one peer cannot lock every agent out', async () => {
    hub = await startHub({ maxPendingSockets: 50, maxPendingSocketsPerAddress: 5, handshakeTimeoutMs: 3000 });
    // One address holds its 5 slots with sockets that name an agent and never answer the challenge.
    const hogs = await Promise.all(
      Array.from({ length: 8 }, () =>
        RawPeer.open(hub.port, upgradeRequest('/v1/agents/connect', { [AGENT_ID_HEADER]: 'nobody-1' }), '127.0.0.7'),
      ),
    );
    peers.push(...hogs);
    const statuses = await Promise.all(hogs.map((peer) => peer.waitStatus()));
    expect(statuses.filter((s) => s === 101)).toHaveLength(5);
    expect(statuses.filter((s) => s === 503)).toHaveLength(3);
    expect(hub.logsSaying('too many unauthenticated agent sockets from one address')).toHaveLength(1);
    expect(await refusedUpgrades(hub, 'per_address')).toBe(3);
    expect(await refusedUpgrades(hub, 'pending')).toBe(0);
    // An enrolled agent at another address still gets in.
    const key = await hub.register('nat-1');
    const agent = track(await connectAsAgent(hub.port, 'nat-1', key));
    expect(agent.welcomed).toBe(true);
  });

  it('bounds the bytes unauthenticated sockets may send, per address and in all, and gives them back', async () => {
    const MiB = 1024 * 1024;
    hub = await startHub({ maxPendingBytes: 5 * MiB, maxPendingBytesPerAddress: 4 * MiB, handshakeTimeoutMs: 20_000 });
    /** A socket at `address` that names an agent, then sends `bytes` of a frame it never finishes (ws keeps them). */
    const holding = async (address: string, bytes: number) => {
      const peer = await RawPeer.open(
        hub.port,
        upgradeRequest('/v1/agents/connect', { [AGENT_ID_HEADER]: 'nobody-1' }),
        address,
      );
      peers.push(peer);
      expect(await peer.waitStatus()).toBe(101);
      peer.write(clientFrame(OPCODE.text, Buffer.alloc(bytes, 0x61), { fin: false }));
      return peer;
    };
    const held = await holding('127.0.0.7', 3 * MiB);
    await expect.poll(() => hub.app.fleet.hub.pendingBytes()).toBeGreaterThan(3 * MiB);
    // 2 MiB more from the same address: over its 4 MiB, so that socket goes, the first stays.
    const second = await holding('127.0.0.7', 2 * MiB);
    await second.until('the socket to be cut', () => (second.ended ? true : undefined));
    expect(held.ended).toBe(false);
    // 3 MiB from another address: within its own 4 MiB, but over the 5 MiB of all of them.
    const third = await holding('127.0.0.8', 3 * MiB);
    await third.until('the socket to be cut', () => (third.ended ? true : undefined));
    expect(await refusedUpgrades(hub, 'bytes_per_address')).toBe(1);
    expect(await refusedUpgrades(hub, 'bytes')).toBe(1);
    expect(hub.logsSaying('unauthenticated agent sockets sent more than their budget of bytes')).toHaveLength(2);
    // A real agent's hello is a few kilobytes: it gets in beside the 3 MiB still held.
    const key = await hub.register('small-1');
    expect(track(await connectAsAgent(hub.port, 'small-1', key)).welcomed).toBe(true);
    // Once the holder is gone its bytes are given back: its address may send 3 MiB again.
    held.destroy();
    await expect.poll(() => hub.app.fleet.hub.pendingBytes()).toBe(0);
    const again = await holding('127.0.0.7', 3 * MiB);
    await expect.poll(() => hub.app.fleet.hub.pendingBytes()).toBeGreaterThan(3 * MiB);
    expect(again.ended).toBe(false);
    expect(await hub.healthz()).toBe(200);
  });

  it('cuts an upgrade whose headers trickle in within the handshake timeout', async () => {
    hub = await startHub({ handshakeTimeoutMs: 1000 });
    const peer = await RawPeer.open(hub.port, 'GET /v1/agents/connect HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    peers.push(peer);
    const started = Date.now();
    const drip = setInterval(() => peer.write('X-Slow: 1\r\n'), 200);
    await peer.until('the socket to be cut', () => (peer.ended ? true : undefined), 5000);
    clearInterval(drip);
    // headersTimeout plus Node's check interval (1 s here).
    expect(Date.now() - started).toBeLessThan(3000);
    expect(await hub.healthz()).toBe(200);
  });

  it('closes a refused socket whose peer never answers the close frame within a second', async () => {
    hub = await startHub();
    const peer = await RawPeer.open(hub.port, upgradeRequest('/v1/agents/connect', {}));
    peers.push(peer);
    expect(await peer.waitClose()).toBe(CloseCode.unauthorized);
    await peer.until('the server to drop the socket', () => (peer.ended ? true : undefined), 3000);
    await expect.poll(() => hub.app.fleet.hub.pendingCount()).toBe(0);
  });

  it('closes a socket that names an agent but never answers the challenge with 4408 at the handshake timeout', async () => {
    hub = await startHub({ handshakeTimeoutMs: 500 });
    await hub.register('silent-1');
    const peer = await RawPeer.open(hub.port, upgradeRequest('/v1/agents/connect', { [AGENT_ID_HEADER]: 'silent-1' }));
    peers.push(peer);
    expect(await peer.waitStatus()).toBe(101);
    expect((await peer.waitMessage('challenge')).nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await peer.waitClose(3000)).toBe(CloseCode.handshakeTimeout);
    await expect.poll(() => hub.app.fleet.hub.pendingCount()).toBe(0);
    expect(hub.app.fleet.hub.isOnline('silent-1')).toBe(false);
  });

  it('refuses a first frame nested deeper than MAX_FRAME_DEPTH with 4400, unparsed, and lets the agent in after', async () => {
    hub = await startHub();
    const key = await hub.register('deep-1');
    // Any well-formed agent id will do: the hello is read before its proof can be checked.
    const peer = await RawPeer.open(hub.port, upgradeRequest('/v1/agents/connect', { [AGENT_ID_HEADER]: 'nobody-1' }));
    peers.push(peer);
    expect(await peer.waitStatus()).toBe(101);
    await peer.waitMessage('challenge');
    // 2 MB of brackets a million deep: JSON.parse alone would hold the event loop for ~0.2 s.
    const depth = 1_000_000;
    peer.write(clientFrame(OPCODE.text, Buffer.from(`{"type":"hello","x":${'['.repeat(depth)}${']'.repeat(depth)}}`)));
    expect(await peer.waitClose()).toBe(CloseCode.badFrame);
    await expect.poll(() => hub.app.fleet.hub.pendingCount()).toBe(0);
    const refused = hub.logsSaying('agent connection refused: the first message must be a valid hello');
    expect(refused.map((line) => line.detail)).toEqual(['frame nests deeper than 128 levels']);
    const agent = track(await connectAsAgent(hub.port, 'deep-1', key));
    expect(agent.welcomed).toBe(true);
  });

  it('refuses a hello signed with another key, or for a revoked agent, with 4401', async () => {
    hub = await startHub();
    const key = await hub.register('key-1');
    const stranger = await hub.register('key-2');
    const forged = await connectAsAgent(hub.port, 'key-1', stranger);
    peers.push(forged.peer);
    expect(forged.closeCode).toBe(CloseCode.unauthorized);
    await hub.app.fleet.enrollment.revokeAgent('key-1', 'test');
    const revoked = await connectAsAgent(hub.port, 'key-1', key);
    peers.push(revoked.peer);
    expect(revoked.closeCode).toBe(CloseCode.unauthorized);
  });

  it('refuses an agent whose key was revoked while its proof was being checked, with 4401', async () => {
    hub = await startHub();
    const key = await hub.register('key-3');
    const agents = hub.app.fleet.store.agents;
    const readKey = agents.publicKeyOf.bind(agents);
    let reads = 0;
    // The key is read, then revoked before the proof is checked: an API call landing while the check
    // runs on the thread pool. The revoke cuts only live connections, and this one is not live yet.
    agents.publicKeyOf = async (id) => {
      const current = await readKey(id);
      if (reads++ === 0) await hub.app.fleet.enrollment.revokeAgent(id, 'test');
      return current;
    };
    const connected = track(await connectAsAgent(hub.port, 'key-3', key));
    expect(connected.closeCode).toBe(CloseCode.unauthorized);
    expect(hub.app.fleet.hub.isOnline('key-3')).toBe(false);
  });

  it('logs a flood of refused connections from one address once, with a count', async () => {
    hub = await startHub();
    for (let i = 0; i < 30; i++) {
      const peer = await RawPeer.open(hub.port, upgradeRequest('/v1/agents/connect', {}));
      peers.push(peer);
      expect(await peer.waitClose()).toBe(CloseCode.unauthorized);
      peer.destroy();
    }
    expect(hub.logsSaying('agent connection refused')).toHaveLength(1);
  });
});

describe('an authenticated agent', () => {
  it('is closed with 4400 for a second hello, and its reconnects add one agent.connected row', async () => {
    hub = await startHub();
    const token = await hub.register('hello-1');
    for (let i = 0; i < 30; i++) {
      const { peer, welcomed } = track(await connectAsAgent(hub.port, 'hello-1', token));
      expect(welcomed).toBe(true);
      peer.sendJson(sampleHello());
      expect(await peer.waitClose()).toBe(CloseCode.badFrame);
      peer.destroy();
    }
    await expect.poll(async () => (await hub.events('agent.connected', 'hello-1')).length).toBe(1);
    expect(hub.logsSaying('bad frame from agent')).toHaveLength(1);
    expect(await hub.healthz()).toBe(200);
  });

  it('logs the results of thousands of orders never sent in a line per hello with their count, each acknowledged', async () => {
    hub = await startHub();
    const key = await hub.register('noisy-1');
    const made = (n: number, changed: boolean) =>
      Array.from({ length: n }, (_, i) => ({
        orderId: `made-up-${changed ? 'c' : 'u'}-${i}`,
        phase: 'done',
        result: {
          orderId: `made-up-${changed ? 'c' : 'u'}-${i}`,
          outcome: 'healthy',
          changed,
          finishedAt: '2026-01-01T00:00:00Z',
        },
      }));
    for (let round = 0; round < 2; round++) {
      const orders = [...made(1000, true), ...made(1000, false)];
      const { peer, welcomed } = track(
        await connectAsAgent(hub.port, 'noisy-1', key, { hello: { ...sampleHello(), orders } }),
      );
      expect(welcomed).toBe(true);
      // Acknowledged all the same: re-reporting them for ever helps nobody.
      await expect
        .poll(() => peer.frames.filter((f) => f.opcode === OPCODE.text && f.payload.includes('"order.ack"')).length)
        .toBe(2000);
      peer.destroy();
      await expect.poll(() => hub.app.fleet.hub.isOnline('noisy-1')).toBe(false);
    }
    // 4,000 results in two hellos: per hello, one line for the changed ones (an error: a person must
    // look), one for the rest, each with the count and the first ten ids.
    const changed = hub.logsSaying('host reports a change the coordinator has no record of; acknowledged');
    expect(changed.map((line) => line.results)).toEqual([1000, 1000]);
    expect(changed[0]?.orderIds).toEqual(Array.from({ length: 10 }, (_, i) => `made-up-c-${i}`));
    const unchanged = hub.logsSaying('result for an unknown order; acknowledged and ignored');
    expect(unchanged.map((line) => line.results)).toEqual([1000, 1000]);
  });

  it('is closed with 4429 when over its message rate, logged once', async () => {
    hub = await startHub({ messagesPerSecond: 5, messageBurst: 10 });
    const token = await hub.register('flood-1');
    const { peer, welcomed } = track(await connectAsAgent(hub.port, 'flood-1', token));
    expect(welcomed).toBe(true);
    for (let i = 0; i < 500; i++) peer.sendJson(heartbeat());
    expect(await peer.waitClose()).toBe(CloseCode.rateLimited);
    expect(hub.logsSaying('over its message rate')).toHaveLength(1);
    // Within the rate, the agent comes back and is served.
    const again = track(await connectAsAgent(hub.port, 'flood-1', token));
    expect(again.welcomed).toBe(true);
  });

  it('is closed with 4429 when its pings (protocol 7 heartbeats) go over its message rate', async () => {
    hub = await startHub({ messagesPerSecond: 5, messageBurst: 10 });
    const token = await hub.register('ping-flood-1');
    const { peer, welcomed } = track(await connectAsAgent(hub.port, 'ping-flood-1', token));
    expect(welcomed).toBe(true);
    for (let i = 0; i < 500; i++) peer.write(clientFrame(OPCODE.ping, Buffer.from(String(i))));
    expect(await peer.waitClose()).toBe(CloseCode.rateLimited);
    expect(hub.logsSaying('over its message rate')).toHaveLength(1);
  });

  it('is not displaced by a copy of its credential: the newcomer gets 4409, one audit row', async () => {
    hub = await startHub({ staleCheckMs: 300 });
    const token = await hub.register('dup-1');
    const live = track(await connectAsAgent(hub.port, 'dup-1', token));
    expect(live.welcomed).toBe(true);
    for (let i = 0; i < 5; i++) {
      const copy = track(await connectAsAgent(hub.port, 'dup-1', token));
      expect(copy.closeCode).toBe(CloseCode.alreadyConnected);
    }
    const rows = await hub.events('agent.duplicate_refused', 'dup-1');
    expect(rows).toHaveLength(1);
    expect(rows[0]?.data).toMatchObject({ refusedSinceLast: 0 });
    // The live connection is still the agent's: what the coordinator sends reaches it.
    expect(hub.app.fleet.hub.send('dup-1', { type: 'order.ack', orderId: 'still-mine' })).toBe(true);
    await live.peer.until('the ack', () =>
      live.peer.frames.some((f) => f.opcode === OPCODE.text && f.payload.includes('still-mine')) ? true : undefined,
    );
    expect(live.peer.ended).toBe(false);
  });

  it('whose old socket went silent (killed, partitioned) is replaced by its new connection at once', async () => {
    hub = await startHub({ staleCheckMs: 300 });
    const token = await hub.register('stale-1');
    const old = track(await connectAsAgent(hub.port, 'stale-1', token, { answerPings: false }));
    expect(old.welcomed).toBe(true);
    const started = Date.now();
    const fresh = track(await connectAsAgent(hub.port, 'stale-1', token));
    expect(fresh.welcomed).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
    await old.peer.until('the stale socket to be dropped', () => (old.peer.ended ? true : undefined));
    expect(await hub.events('agent.duplicate_refused', 'stale-1')).toHaveLength(0);
    expect(hub.app.fleet.hub.isOnline('stale-1')).toBe(true);
  });
});
