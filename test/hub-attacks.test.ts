/**
 * "One unauthenticated packet kills the coordinator": every attack from the issue, sent as raw
 * bytes over node:net at a real coordinator process with a real agent connected. After each one the
 * coordinator still answers /healthz and the agent still receives and applies an order.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { AGENT_ID_HEADER, APPLY_END_STATES, CloseCode, type EventPage, loadPrivateKey } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { samplePatch, sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { FleetHarness, hostOf } from './support/fleet-harness.js';
import { clientFrame, connectAsAgent, OPCODE, RawPeer, upgradeRequest } from './support/raw-agent-socket.js';

const HOST = 'atk-1';
const FILE = '/etc/atk/app.conf';

let work: string;
let fleet: FleetHarness;
let joinToken: string;
let rootDir: string;
let round = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-hub-attacks-'));
  rootDir = join(work, HOST, 'root');
  await mkdir(dirname(join(rootDir, FILE)), { recursive: true });
  await writeFile(join(rootDir, FILE), 'round 0\n');
  fleet = await FleetHarness.start(join(work, 'coordinator'));
  joinToken = await fleet.register(HOST);
  fleet.spawnAgent({ id: HOST, joinToken, dataDir: join(work, HOST, 'data'), rootDir });
  await fleet.waitOnline([HOST]);
});

afterAll(async () => {
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const port = () => fleet.coordinator.port;
/**
 * An agent upgrade by a stranger: on even tries it names no agent (refused at once, 4401), on odd
 * ones an unknown agent (challenged, still pending when the attack bytes arrive).
 */
let tries = 0;
const refusedUpgrade = () =>
  RawPeer.open(
    port(),
    upgradeRequest('/v1/agents/connect', tries++ % 2 === 0 ? {} : { [AGENT_ID_HEADER]: 'not-an-agent-00' }),
  );

/** The proof after each attack: the process serves HTTP and the agent applies a fresh order. */
async function expectCoordinatorServesTheFleet(): Promise<void> {
  expect((await fetch(`${fleet.coordinator.url}/healthz`)).status).toBe(200);
  round++;
  const content = `round ${round}\n`;
  const patchId = await fleet.createPatch(
    samplePatch({
      title: `hub attack round ${round}`,
      path: FILE,
      content,
      health: {
        checks: [{ kind: 'file', path: FILE }],
        intervalSeconds: 0.1,
        minHealthySeconds: 0,
        healthyDeadlineSeconds: 10,
      },
    }),
  );
  const rolloutId = await fleet.startRollout(sampleRollout(patchId));
  const status = await fleet.waitForState(rolloutId, APPLY_END_STATES);
  expect(hostOf(status, HOST).state).toBe('healthy');
  expect(await readFile(join(rootDir, FILE), 'utf8')).toBe(content);
}

describe('attacks before authentication', () => {
  it('a frame with RSV1 set on a refused socket closes that socket only', async () => {
    for (let i = 0; i < 3; i++) {
      const peer = await refusedUpgrade();
      peer.write(Buffer.from([0xc1, 0x80, 0x01, 0x02, 0x03, 0x04]));
      expect([CloseCode.unauthorized, CloseCode.protocolError, -1]).toContain(await peer.waitClose());
      peer.destroy();
    }
    await expectCoordinatorServesTheFleet();
  });

  it('a frame header announcing 8 GiB on a refused socket closes that socket only', async () => {
    for (let i = 0; i < 3; i++) {
      const peer = await refusedUpgrade();
      peer.write(Buffer.from([0x82, 0xff, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 1, 2, 3, 4]));
      expect([CloseCode.unauthorized, CloseCode.tooBig, -1]).toContain(await peer.waitClose());
      peer.destroy();
    }
    await expectCoordinatorServesTheFleet();
  });

  it('a 5 MiB binary frame on a refused socket closes that socket only', async () => {
    for (let i = 0; i < 3; i++) {
      const peer = await refusedUpgrade();
      peer.write(clientFrame(OPCODE.binary, Buffer.alloc(5 * 1024 * 1024, 7)));
      expect([CloseCode.unauthorized, CloseCode.tooBig, -1]).toContain(await peer.waitClose());
      peer.destroy();
    }
    await expectCoordinatorServesTheFleet();
  });

  it('an upgrade to another path reset at once does not end the process', async () => {
    for (let i = 0; i < 30; i++) {
      const peer = await RawPeer.open(port(), upgradeRequest('/x'));
      peer.socket.resetAndDestroy();
    }
    // And the same against the agent path, refused or not yet answered.
    for (let i = 0; i < 30; i++) (await refusedUpgrade()).socket.resetAndDestroy();
    await expectCoordinatorServesTheFleet();
  });
});

describe('a copied agent credential', () => {
  it('is refused with 4409 while the agent is live, and the agent keeps its orders', async () => {
    // The agent's own key file, copied off the host.
    const stolen = JSON.parse(await readFile(join(work, HOST, 'data', 'credential.json'), 'utf8'));
    const copy = await connectAsAgent(port(), HOST, loadPrivateKey(stolen.privateKeyPem));
    copy.peer.destroy();
    expect(copy.closeCode).toBe(CloseCode.alreadyConnected);
    const events = await fleet.api.get<EventPage>('/v1/events?limit=1000');
    expect(events.events.filter((e) => e.type === 'agent.duplicate_refused' && e.hostId === HOST)).toHaveLength(1);
    await expectCoordinatorServesTheFleet();
  });
});
