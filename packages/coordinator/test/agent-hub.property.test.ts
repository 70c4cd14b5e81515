/**
 * Whatever bytes arrive — after a valid upgrade request but before authentication, or as well-framed
 * but random frames on an authenticated socket — the coordinator stays up and keeps serving.
 */
import type { KeyObject } from 'node:crypto';
import { AGENT_ID_HEADER } from '@fleetpatch/shared';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { clientFrame, connectAsAgent, RawPeer, upgradeRequest } from '../../../test/support/raw-agent-socket.js';
import { type HubUnderTest, startHub } from './support/hub-under-test.js';

let hub: HubUnderTest;
let token: KeyObject;

beforeAll(async () => {
  // A generous rate so the property exercises parsing, not the rate limiter.
  hub = await startHub({ staleCheckMs: 100, messagesPerSecond: 1000, messageBurst: 1000, handshakeTimeoutMs: 1000 });
  token = await hub.register('prop-1');
});

afterAll(async () => {
  await hub.close();
});

/** Lets the peer's bytes be processed: until the server closes it, or briefly if it does not. */
async function settle(peer: RawPeer): Promise<void> {
  await peer.until('the server to react', () => (peer.ended ? true : undefined), 150).catch(() => undefined);
  peer.destroy();
  expect(await hub.healthz()).toBe(200);
}

const SETTINGS = { seed: 20240611, numRuns: 25, endOnFailure: true } as const;

it('survives random bytes after a valid upgrade request, before authentication', async () => {
  await fc.assert(
    fc.asyncProperty(fc.boolean(), fc.uint8Array({ maxLength: 2048 }), async (knownAgent, bytes) => {
      // Naming an enrolled agent gets a challenge and a pending socket; naming nobody, a refusal.
      const peer = await RawPeer.open(
        hub.port,
        upgradeRequest('/v1/agents/connect', knownAgent ? { [AGENT_ID_HEADER]: 'prop-1' } : {}),
      );
      peer.write(Buffer.from(bytes));
      await settle(peer);
    }),
    SETTINGS,
  );
});

const frameArbitrary = fc.record({
  opcode: fc.integer({ min: 0, max: 15 }),
  fin: fc.boolean(),
  rsv: fc.integer({ min: 0, max: 7 }),
  // Mostly masked as a client must; sometimes not, which the server must refuse.
  masked: fc.integer({ min: 0, max: 9 }).map((n) => n > 0),
  payload: fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.json({ maxDepth: 3 }).map((json) => new TextEncoder().encode(json)),
    fc.constantFrom(
      new TextEncoder().encode('{"type":"hello"}'),
      new TextEncoder().encode('{"type":"heartbeat","journalSeq":0,"sentAt":"now"}'),
      new TextEncoder().encode('{"type":"order.result","orderId":"x"}'),
    ),
  ),
});

it('survives random frames (valid framing, random opcodes, flags and payloads) on an authenticated socket', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(frameArbitrary, { minLength: 1, maxLength: 8 }), async (frames) => {
      const { peer, welcomed } = await connectAsAgent(hub.port, 'prop-1', token);
      expect(welcomed).toBe(true);
      for (const f of frames)
        peer.write(clientFrame(f.opcode, Buffer.from(f.payload), { fin: f.fin, rsv: f.rsv, masked: f.masked }));
      await settle(peer);
      // The agent's next connection is live again once the server has let go of this one.
      await expect.poll(() => hub.app.fleet.hub.isOnline('prop-1'), { timeout: 2000 }).toBe(false);
    }),
    SETTINGS,
  );
});
