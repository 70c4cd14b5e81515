/**
 * A fleet half-way through an upgrade: the new coordinator, one agent of today and one agent that
 * still speaks protocol 1 (frozen in test/support/protocol-v1.ts, parsing every frame `.strict()` as
 * old agents do). Both go through a whole rollout and its revert; the old one never sees a frame it
 * cannot parse.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  type AgentList,
  HEALTH_TOLERANCE_PROTOCOL,
  PACKAGE_SETS_PROTOCOL,
  type PatchSpecInput,
  PRECONDITIONS_PROTOCOL,
  PROTOCOL_VERSION,
  type PreflightResult,
} from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { enrollWith } from './support/agent-identity.js';
import {
  FINAL_APPLY_STATES,
  FINAL_REVERT_STATES,
  FleetHarness,
  hostOf,
  jsonLines,
  sampleFilePatch,
} from './support/fleet-harness.js';
import { ProtocolV1Agent } from './support/protocol-v1.js';

const FILE = '/etc/compat/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 8\n';
const OLD_HOST = 'old-agent-1';
const NEW_HOST = 'new-agent-1';

let work: string;
let fleet: FleetHarness;
let oldAgent: ProtocolV1Agent | undefined;
const rootOf = (host: string) => join(work, host, 'root');

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-protocol-compat-'));
  for (const host of [OLD_HOST, NEW_HOST]) {
    await mkdir(dirname(join(rootOf(host), FILE)), { recursive: true });
    await writeFile(join(rootOf(host), FILE), OLD);
  }
  fleet = await FleetHarness.start(join(work, 'coordinator'));
  fleet.spawnAgent({
    id: NEW_HOST,
    joinToken: await fleet.register(NEW_HOST),
    dataDir: join(work, NEW_HOST, 'data'),
    rootDir: rootOf(NEW_HOST),
  });
  const identity = await enrollWith(fleet.coordinator.url, await fleet.register(OLD_HOST), OLD_HOST);
  oldAgent = await ProtocolV1Agent.connect(fleet.coordinator.url, identity, rootOf(OLD_HOST));
  await fleet.waitOnline([OLD_HOST, NEW_HOST]);
});

afterAll(async () => {
  oldAgent?.close();
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe(`a protocol 1 agent under a protocol ${PROTOCOL_VERSION} coordinator`, () => {
  it(`is welcomed in protocol 1, the current agent in protocol ${PROTOCOL_VERSION}`, async () => {
    expect(oldAgent?.received.find((m) => m.type === 'welcome')).toMatchObject({ protocolVersion: 1 });
    // The coordinator counts the agent online once its hello is in; the agent logs its welcome a moment later.
    const connected = await waitFor("the current agent's 'connected to coordinator' log line", () =>
      jsonLines(fleet.agentLogs()).find((line) => line.msg === 'connected to coordinator'),
    );
    expect(connected).toMatchObject({ protocolVersion: PROTOCOL_VERSION });
  });

  it('goes through a whole rollout and its revert alongside a current agent, parsing every frame as protocol 1', async () => {
    const patchId = await fleet.createPatch(sampleFilePatch(FILE, NEW, { ticket: 'E2E-COMPAT' }));
    const rolloutId = await fleet.startRollout({ patchId, target: { all: true }, waves: [1, '100%'] });
    const applied = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES);
    expect(applied.rollout.state).toBe('succeeded');
    expect(hostOf(applied, OLD_HOST).state).toBe('healthy');
    expect(hostOf(applied, NEW_HOST).state).toBe('healthy');
    for (const host of [OLD_HOST, NEW_HOST]) expect(await readFile(join(rootOf(host), FILE), 'utf8')).toBe(NEW);

    await fleet.api.post(`/v1/rollouts/${rolloutId}/revert`);
    const reverted = await fleet.waitForState(rolloutId, FINAL_REVERT_STATES);
    expect(reverted.rollout.state).toBe('reverted');
    expect(hostOf(reverted, OLD_HOST).state).toBe('reverted');
    expect(hostOf(reverted, NEW_HOST).state).toBe('reverted');
    for (const host of [OLD_HOST, NEW_HOST]) expect(await readFile(join(rootOf(host), FILE), 'utf8')).toBe(OLD);

    const types = new Set(oldAgent?.received.map((m) => m.type));
    expect([...types]).toEqual(
      expect.arrayContaining(['challenge', 'welcome', 'order.apply', 'order.revert', 'order.ack']),
    );
    expect(oldAgent?.refused).toEqual([]);
    // Nothing of protocol 3 reached it: no one asked it for a package inventory.
    expect([...types]).not.toContain('inventory.request');
  });

  const fileChange = sampleFilePatch(FILE, NEW).change;
  it.each<[string, number, PatchSpecInput['change']]>([
    [
      'package set or source change',
      PACKAGE_SETS_PROTOCOL,
      { kind: 'package', manager: 'apt', source: 'fpcompat', version: '2.0-1' },
    ],
    [
      'change with host preconditions',
      PRECONDITIONS_PROTOCOL,
      { ...fileChange, requires: [{ package: 'libfoo', version: '>= 1.2-3' }] },
    ],
  ])(
    'is sent no %s: its plan and preflight say why, the rollout fails it with the reason',
    async (_what, protocol, change) => {
      const patchId = await fleet.createPatch({
        ...sampleFilePatch(FILE, NEW, { ticket: 'E2E-COMPAT-SET' }),
        change,
      });
      const rolloutId = await fleet.createRollout({
        patchId,
        target: { hostIds: [OLD_HOST] },
        waves: ['100%'],
        maxFailures: 0,
      });
      const tooOld = new RegExp(`speaks protocol 1; .* needs protocol ${protocol}: upgrade the agent`);

      expect((await fleet.plan(rolloutId)).incompatible).toEqual([
        { hostId: OLD_HOST, reason: expect.stringMatching(tooOld) },
      ]);
      const preflight = await fleet.api.post<PreflightResult>(`/v1/rollouts/${rolloutId}/preflight`, {
        timeoutSeconds: 5,
      });
      expect(preflight.results).toEqual([
        {
          hostId: OLD_HOST,
          outcome: 'incompatible',
          reason: expect.stringMatching(tooOld),
          errorCode: 'precondition_failed',
        },
      ]);

      await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
      const halted = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES);
      expect(halted.rollout.state).toBe('halted');
      expect(hostOf(halted, OLD_HOST)).toMatchObject({
        state: 'failed',
        changed: false,
        errorCode: 'precondition_failed',
      });
      expect(hostOf(halted, OLD_HOST).reason).toMatch(tooOld);
      // Nothing reached it: no order of this patch, and no frame it could not parse.
      const newer = (m: NonNullable<typeof oldAgent>['received'][number]) =>
        'change' in m && (m.change.kind === 'package' || m.change.requires !== undefined);
      expect(oldAgent?.received.filter(newer)).toEqual([]);
      expect(oldAgent?.refused).toEqual([]);
    },
  );
  it('is sent a dry run as protocol 1 wrote it and stays connected; health it cannot read is incompatible', async () => {
    const patchId = await fleet.createPatch(sampleFilePatch(FILE, NEW, { ticket: 'E2E-COMPAT-PREFLIGHT' }));
    const rolloutId = await fleet.createRollout({ patchId, target: { hostIds: [OLD_HOST] }, waves: ['100%'] });
    const before = oldAgent?.received.length ?? 0;
    await fleet.api.post<PreflightResult>(`/v1/rollouts/${rolloutId}/preflight`, { timeoutSeconds: 2 });
    const sent = oldAgent?.received.slice(before).filter((m) => m.type === 'order.preflight') ?? [];
    // Only the fields protocol 1 knew: the deadline, `signed` and the health checks stay behind.
    expect(sent.map((m) => Object.keys(m).sort())).toEqual([['change', 'orderId', 'type']]);
    expect(oldAgent?.refused).toEqual([]);
    expect((await fleet.api.get<AgentList>('/v1/agents')).agents.find((a) => a.id === OLD_HOST)?.online).toBe(true);

    // A health policy with a tolerance only protocol 6 reads: not sent at all, as the plan says.
    const tolerant = await fleet.createPatch({
      ...sampleFilePatch(FILE, NEW, { ticket: 'E2E-COMPAT-HEALTH' }),
      health: {
        checks: [{ kind: 'file', path: FILE }],
        failAfterConsecutive: 2,
        intervalSeconds: 1,
        minHealthySeconds: 0,
        healthyDeadlineSeconds: 10,
      },
    });
    const tolerantRollout = await fleet.createRollout({
      patchId: tolerant,
      target: { hostIds: [OLD_HOST] },
      waves: ['100%'],
    });
    const preflight = await fleet.api.post<PreflightResult>(`/v1/rollouts/${tolerantRollout}/preflight`, {
      timeoutSeconds: 2,
    });
    expect(preflight.results).toEqual([
      {
        hostId: OLD_HOST,
        outcome: 'incompatible',
        reason: expect.stringMatching(new RegExp(`needs protocol ${HEALTH_TOLERANCE_PROTOCOL}: upgrade the agent`)),
        errorCode: 'precondition_failed',
      },
    ]);
    expect(oldAgent?.refused).toEqual([]);
  });
});
