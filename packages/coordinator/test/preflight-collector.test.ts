/**
 * Dry runs: a question pending on a connection that closes is answered at once, not at the timeout
 * (up to 600 s) — in the collector alone, and through the hub's disconnect with a real agent socket.
 */
import {
  type CoordinatorMessage,
  HEALTH_TOLERANCE_PROTOCOL,
  PACKAGE_SETS_PROTOCOL,
  PatchSpecSchema,
  PROTOCOL_VERSION,
  RolloutRequestSchema,
} from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { connectAsAgent, type RawPeer, sampleHello } from '../../../test/support/raw-agent-socket.js';
import type { AgentChannel } from '../src/engine/engine-interfaces.js';
import { PreflightCollector } from '../src/engine/preflight-collector.js';
import { type HubUnderTest, startHub } from './support/hub-under-test.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';

const CHANGE = PatchSpecSchema.parse(SAMPLE_PATCH_SPEC).change;
const TEN_MINUTES = 600_000;

/** Every agent is connected; what was sent to whom is kept. */
class RecordingChannel implements AgentChannel {
  readonly sent: { agentId: string; message: CoordinatorMessage }[] = [];
  send(agentId: string, message: CoordinatorMessage): boolean {
    this.sent.push({ agentId, message });
    return true;
  }
  isOnline(): boolean {
    return true;
  }
  protocolVersionOf(agentId: string): number | undefined {
    return this.protocols.get(agentId) ?? PROTOCOL_VERSION;
  }
  /** Agents that speak an older protocol than this build's. */
  readonly protocols = new Map<string, number>();
}

function orderIdSentTo(channel: RecordingChannel, agentId: string): string {
  const sent = channel.sent.find((s) => s.agentId === agentId)?.message;
  if (sent?.type !== 'order.preflight') throw new Error(`no preflight sent to ${agentId}`);
  return sent.orderId;
}

describe('PreflightCollector', () => {
  it('tells each agent how long it will wait for the answer, so a held lock is answered blocked in time', async () => {
    const channel = new RecordingChannel();
    const collector = new PreflightCollector(channel);
    const answers = collector.run(['web-1'], { change: CHANGE, signed: true }, 30_000);
    expect(channel.sent[0]?.message).toMatchObject({ type: 'order.preflight', answerWithinMs: 30_000, signed: true });
    collector.agentGone('web-1');
    expect(await answers).toMatchObject([{ outcome: 'offline' }]);
  });

  it('passes on what the agent answered: a host unhealthy before the patch with the health results that say so', async () => {
    const channel = new RecordingChannel();
    const collector = new PreflightCollector(channel);
    const answers = collector.run(['web-1', 'web-2'], { change: CHANGE }, TEN_MINUTES);
    const health = [
      { check: 'app-port', kind: 'tcp', ok: false, observed: 'connection refused', at: '2026-12-06T00:00:00.000Z' },
      { check: 'config', kind: 'file', ok: true, observed: 'present', at: '2026-12-06T00:00:00.000Z' },
    ];
    const finishedAt = '2026-12-06T00:00:01.000Z';
    const reason = 'unhealthy before patch: app-port: connection refused; the apply would skip this host';
    expect(
      collector.accept('web-1', {
        orderId: orderIdSentTo(channel, 'web-1'),
        outcome: 'would_fail',
        changed: false,
        errorCode: 'health_failed',
        reason,
        health,
        finishedAt,
      }),
    ).toBe(true);
    collector.accept('web-2', {
      orderId: orderIdSentTo(channel, 'web-2'),
      outcome: 'would_apply',
      changed: false,
      finishedAt,
    });
    expect(await answers).toEqual([
      { hostId: 'web-1', outcome: 'would_fail', errorCode: 'health_failed', reason, health },
      { hostId: 'web-2', outcome: 'would_apply', errorCode: null, reason: null },
    ]);
  });

  it("answers a gone agent's questions offline at once and still waits for the others", async () => {
    const channel = new RecordingChannel();
    const collector = new PreflightCollector(channel);
    const started = Date.now();
    const answers = collector.run(['web-1', 'web-2'], { change: CHANGE }, TEN_MINUTES);

    collector.agentGone('web-1');
    collector.accept('web-2', {
      orderId: orderIdSentTo(channel, 'web-2'),
      outcome: 'would_apply',
      changed: false,
      finishedAt: new Date().toISOString(),
    });

    expect(await answers).toEqual([
      { hostId: 'web-1', outcome: 'offline', reason: 'agent disconnected before answering', errorCode: 'offline' },
      { hostId: 'web-2', outcome: 'would_apply', reason: null, errorCode: null },
    ]);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("ignores a late answer on the gone agent's order", async () => {
    const channel = new RecordingChannel();
    const collector = new PreflightCollector(channel);
    const answers = collector.run(['web-1'], { change: CHANGE }, TEN_MINUTES);
    const orderId = orderIdSentTo(channel, 'web-1');
    collector.agentGone('web-1');
    // Still recognised as a preflight answer (never handed to the engine), but the dry run has moved on.
    expect(
      collector.accept('web-1', {
        orderId,
        outcome: 'would_apply',
        changed: false,
        finishedAt: new Date().toISOString(),
      }),
    ).toBe(true);
    expect((await answers)[0]?.outcome).toBe('offline');
  });

  it('asks no agent too old for the health checks it would run either: it answers incompatible, as the plan does', async () => {
    const channel = new RecordingChannel();
    channel.protocols.set('old-1', HEALTH_TOLERANCE_PROTOCOL - 1);
    const collector = new PreflightCollector(channel);
    const health = PatchSpecSchema.parse({
      ...SAMPLE_PATCH_SPEC,
      health: { checks: [{ kind: 'tcp', host: '127.0.0.1', port: 22 }], failAfterConsecutive: 2 },
    }).health;
    const answers = await collector.run(['old-1'], { change: CHANGE, health }, TEN_MINUTES);
    expect(channel.sent).toEqual([]);
    expect(answers).toEqual([
      {
        hostId: 'old-1',
        outcome: 'incompatible',
        reason: expect.stringMatching(new RegExp(`needs protocol ${HEALTH_TOLERANCE_PROTOCOL}: upgrade the agent`)),
        errorCode: 'precondition_failed',
      },
    ]);
  });

  it('asks no agent too old for a package set: it answers incompatible at once, naming the protocols', async () => {
    const channel = new RecordingChannel();
    channel.protocols.set('old-1', PACKAGE_SETS_PROTOCOL - 1);
    const collector = new PreflightCollector(channel);
    const set = PatchSpecSchema.parse({
      ...SAMPLE_PATCH_SPEC,
      change: { kind: 'package', manager: 'apt', source: 'openssl', version: '3.0.15-1~deb12u1' },
    }).change;
    const answers = collector.run(['old-1', 'new-1'], { change: set }, TEN_MINUTES);
    expect(channel.sent.map((s) => s.agentId)).toEqual(['new-1']);
    collector.accept('new-1', {
      orderId: orderIdSentTo(channel, 'new-1'),
      outcome: 'not_applicable',
      changed: false,
      finishedAt: new Date().toISOString(),
    });
    expect(await answers).toEqual([
      {
        hostId: 'old-1',
        outcome: 'incompatible',
        reason: `its agent speaks protocol ${PACKAGE_SETS_PROTOCOL - 1}; a package set or source change needs protocol ${PACKAGE_SETS_PROTOCOL}: upgrade the agent (an older one cannot read the order)`,
        errorCode: 'precondition_failed',
      },
      { hostId: 'new-1', outcome: 'not_applicable', reason: null, errorCode: null },
    ]);
  });
});

describe('a dry run over the agent socket', () => {
  let hub: HubUnderTest | undefined;
  let peer: RawPeer | undefined;

  afterEach(async () => {
    peer?.destroy();
    await hub?.close();
  });

  it('answers offline at once for an agent that disconnects instead of waiting out its timeout', async () => {
    hub = await startHub();
    const key = await hub.register('web-1');
    // Speaking this build's protocol: a protocol 1 agent is sent the preflight as protocol 1 wrote it.
    const { protocolVersion: _v1, ...hello } = sampleHello();
    const connected = await connectAsAgent(hub.port, 'web-1', key, {
      hello: { ...hello, protocolVersions: { min: 1, max: PROTOCOL_VERSION } },
    });
    expect(connected.welcomed).toBe(true);
    peer = connected.peer;
    const { patches, engine, dryRun } = hub.app.fleet;
    const patch = await patches.create(PatchSpecSchema.parse(SAMPLE_PATCH_SPEC), 'olga');
    const rollout = await engine.create(
      RolloutRequestSchema.parse({ patchId: patch.id, target: { all: true } }),
      'olga',
    );

    const started = Date.now();
    const result = dryRun.run(rollout.id, TEN_MINUTES, 'olga');
    // An unsigned rollout: an agent that requires signed orders answers would_fail at once.
    // And the patch's health checks, whose baseline the apply would run first.
    expect(await peer.waitMessage('order.preflight')).toMatchObject({
      signed: false,
      health: patch.health,
      failIfUnhealthyBefore: false,
    });
    peer.destroy();

    const { summary, results } = await result;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(summary).toEqual({ offline: 1 });
    expect(results).toEqual([
      { hostId: 'web-1', outcome: 'offline', reason: 'agent disconnected before answering', errorCode: 'offline' },
    ]);
  });
});
