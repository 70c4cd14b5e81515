/**
 * Issue 11: durability and ordering, checked where they happen — at the system calls.
 *
 * The real coordinator and the real agent run under `strace -f` through an apply, a revert, a
 * refused order and a crash with its recovery, and the agent alone through a signed order (whose
 * signatures only a stand-in coordinator can send). The recorded calls are then held against
 * DESIGN.md's rules (test/support/durability-rules.ts): temp file fsync'd before its rename,
 * directory fsync'd before the step is reported or the next begins, the journal durable before the
 * change it announces and before any report of it, and on the coordinator the SQLite commit (WAL
 * write and sync) before the order or the ack that follows from it. A check that passed over fewer
 * calls than it should have would prove nothing, so each test also insists on what its traces hold.
 *
 * The rules take one step at a time (an acknowledgement is the next journal write or report, of
 * whatever order), so each scenario lets one order finish, acknowledged, before the next starts.
 * FLEETPATCH_KEEP_TRACES=1 keeps the logs for a human to read.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { readEntryFile } from '@fleetpatch/agent';
import {
  generateAgentKeyPair,
  loadPrivateKey,
  type OrderApply,
  type PatchSpecInput,
  PatchSpecSchema,
  type StatementInput,
  signedPatchOf,
  signStatement,
} from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { sendWelcome, writeTestCredential } from '../packages/agent/test/support/fake-coordinator.js';
import { sampleApplyOrder, sampleFileChange } from '../packages/agent/test/support/sample-orders.js';
import { type AgentProcess, startAgent, waitFor } from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sampleRollout, sha256Of } from '../scripts/lib/sample-specs.mjs';
import {
  type AgentTraceSpec,
  checkAgentTrace,
  checkCoordinatorTrace,
  formatViolations,
  type JournalRecord,
  parseJournalEntry,
} from './support/durability-rules.js';
import {
  type AgentSpawn,
  exitWithin,
  FINAL_APPLY_STATES,
  FINAL_REVERT_STATES,
  FleetHarness,
  hostOf,
} from './support/fleet-harness.js';
import { readTrace, straceSupport, straceWrap } from './support/strace-tracer.js';

const strace = straceSupport();
if (!strace.available) console.warn(`durability at the system calls: skipped — ${strace.reason}`);

const QUICK_HEALTH = { intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 10 } as const;

/** A coordinator and its agents, each under strace with its own log in `work`. */
class TracedFleet {
  private readonly agents: { process: AgentProcess; log: string }[] = [];

  private constructor(
    readonly work: string,
    readonly fleet: FleetHarness,
    private readonly coordinatorLog: string,
  ) {}

  static async start(name: string): Promise<TracedFleet> {
    const work = await mkdtemp(join(tmpdir(), `fleetpatch-strace-${name}-`));
    const coordinatorLog = join(work, 'coordinator.strace');
    const fleet = await FleetHarness.start(join(work, 'coordinator'), { wrap: straceWrap(coordinatorLog) });
    return new TracedFleet(work, fleet, coordinatorLog);
  }

  /** Starts an agent under strace; `checkAgent(n)` reads the n-th one's trace. */
  spawnAgent(spec: Omit<AgentSpawn, 'wrap'>): AgentProcess {
    const log = join(this.work, `agent-${this.agents.length + 1}.strace`);
    // Every progress report on the wire, none coalesced: the rules are checked against each one.
    const process = this.fleet.spawnAgent({
      ...spec,
      env: { FLEETPATCH_PROGRESS_COALESCE_MS: '0', ...spec.env },
      wrap: straceWrap(log, { reads: false }),
    });
    this.agents.push({ process, log });
    return process;
  }

  /** Creates the patch and starts a one-host rollout of it; returns the rollout's id. */
  async rollOut(hostId: string, patch: PatchSpecInput): Promise<string> {
    const patchId = await this.fleet.createPatch(patch);
    return this.fleet.startRollout(
      sampleRollout(patchId, { target: { hostIds: [hostId] }, waves: [1], maxFailures: 0, bakeSeconds: 0 }),
    );
  }

  /** Stops the n-th agent (if it still runs) and checks its trace. */
  async checkAgent(index: number, spec: AgentTraceSpec) {
    const run = this.agents[index];
    if (!run) throw new Error(`no agent run ${index}`);
    await run.process.stop();
    return checkAgentTrace(await readTrace(run.log, run.process.child.pid as number), spec);
  }

  /** Stops everything and checks the coordinator's trace. */
  async checkCoordinator() {
    const { child } = this.fleet.coordinator;
    await this.fleet.stop();
    return checkCoordinatorTrace(await readTrace(this.coordinatorLog, child.pid as number), {
      databaseFile: join(this.work, 'coordinator', 'fleetpatch.db'),
    });
  }

  async dispose(): Promise<void> {
    await this.fleet.stop();
    if (!process.env.FLEETPATCH_KEEP_TRACES) await rm(this.work, { recursive: true, force: true });
  }
}

async function readEntries(dataDir: string): Promise<Buffer[]> {
  const ordersDir = join(dataDir, 'orders');
  return Promise.all((await readdir(ordersDir)).map((name) => readFile(join(ordersDir, name, 'entry.json'))));
}

/** The journal on disk, as the rules read it: a restarted agent's `journalBefore`. */
async function journalOnDisk(dataDir: string): Promise<JournalRecord[]> {
  return (await readEntries(dataDir)).map((bytes) => {
    const record = parseJournalEntry(bytes);
    if (!record) throw new Error(`a journal entry in ${dataDir} cannot be read`);
    return record;
  });
}

/** Waits until the journal holds `count` entries, each acknowledged: nothing more will be written. */
async function waitUntilAcknowledged(dataDir: string, count: number): Promise<void> {
  await waitFor(`${count} acknowledged journal entries in ${dataDir}`, async () => {
    const entries = (await readEntries(dataDir)).map((bytes) => readEntryFile(bytes.toString()));
    return entries.length === count && entries.every((entry) => entry.acked);
  });
}

/**
 * Signed orders need keys the coordinator never holds, so the signed-order scenario talks to this
 * stand-in: a plain WebSocket server that greets the agent and sends what the test tells it to.
 */
class ScriptedCoordinator {
  readonly frames: Record<string, unknown>[] = [];
  private socket: WebSocket | undefined;

  private constructor(private readonly server: WebSocketServer) {
    server.on('connection', (ws) => {
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as Record<string, unknown>;
        this.frames.push(frame);
        if (frame.type !== 'hello') return;
        sendWelcome(ws);
        this.socket = ws;
      });
      ws.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
    });
  }

  static async start(): Promise<ScriptedCoordinator> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    return new ScriptedCoordinator(server);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async send(message: object): Promise<void> {
    const socket = await waitFor('the agent to say hello', () => this.socket);
    socket.send(JSON.stringify(message));
  }

  /** The agent's result for `orderId`, once it has come. */
  result(orderId: string): Promise<Record<string, unknown>> {
    return waitFor(`the result of ${orderId}`, () =>
      this.frames.find((f) => f.type === 'order.result' && f.orderId === orderId),
    );
  }

  async close(): Promise<void> {
    for (const client of this.server.clients) client.terminate();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

describe.skipIf(!strace.available)(
  `durability at the system calls${strace.available ? '' : ` (skipped: ${strace.reason})`}`,
  () => {
    let traced: TracedFleet | undefined;

    afterEach(async () => {
      await traced?.dispose();
      traced = undefined;
    });

    it('an apply, a revert and a refused order: every durable write and every report in order', async () => {
      traced = await TracedFleet.start('apply');
      const { fleet, work } = traced;
      const spec = { rootDir: join(work, 'root'), dataDir: join(work, 'agent-data') };
      const path = '/etc/traced/app.conf';
      const old = 'workers = 2\n';
      await mkdir(dirname(join(spec.rootDir, path)), { recursive: true });
      await writeFile(join(spec.rootDir, path), old);
      traced.spawnAgent({ id: 'traced-1', joinToken: await fleet.register('traced-1'), ...spec });
      await fleet.waitOnline(['traced-1']);

      const rollout = await traced.rollOut(
        'traced-1',
        samplePatch({
          path,
          content: 'workers = 4\n',
          expectedPriorSha256: sha256Of(old),
          health: { checks: [{ kind: 'file', path }], ...QUICK_HEALTH },
        }),
      );
      const applied = await fleet.waitForState(rollout, FINAL_APPLY_STATES);
      expect(applied.rollout.state, applied.rollout.stateReason ?? '').toBe('succeeded');
      await waitUntilAcknowledged(spec.dataDir, 1);

      await fleet.api.post(`/v1/rollouts/${rollout}/revert`);
      const reverted = await fleet.waitForState(rollout, FINAL_REVERT_STATES);
      expect(reverted.rollout.state, reverted.rollout.stateReason ?? '').toBe('reverted');
      expect(await readFile(join(spec.rootDir, path), 'utf8')).toBe(old);
      await waitUntilAcknowledged(spec.dataDir, 2);

      // Outside the allowed roots: refused before it is journaled, counted in refusals.json.
      const refused = await traced.rollOut('traced-1', samplePatch({ path: '/srv/traced/app.conf', content: 'x\n' }));
      const halted = await fleet.waitForState(refused, FINAL_APPLY_STATES);
      expect(hostOf(halted, 'traced-1').errorCode).toBe('policy_denied');

      const agent = await traced.checkAgent(0, spec);
      const coordinator = await traced.checkCoordinator();
      expect(formatViolations(agent.violations)).toBe('');
      expect(formatViolations(coordinator.violations)).toBe('');

      // What the traces had to hold for the rules to have proven anything. (A reconnect under load
      // adds a hello, resends and acks: those counts are lower bounds.)
      expect(agent.checked.placements).toMatchObject({ credential: 1, snapshot: 1, 'managed file': 2 });
      expect(agent.checked.placements['refusal counter']).toBeGreaterThanOrEqual(1);
      // accepted, baseline, applying (with the snapshot), done, acked (snapshotted is neither
      // journaled nor reported; applied and verifying are reported, not journaled); reverting, done,
      // the apply's 'changed: false', acked. Each order's first renamed into place, the rest appended.
      expect(agent.checked.placements['journal entry']).toBeGreaterThanOrEqual(2);
      expect(agent.checked.appends).toBeGreaterThanOrEqual(7);
      expect(agent.checked.managedChanges).toBe(2);
      expect(agent.checked.reports['order.result']).toBeGreaterThanOrEqual(3);
      expect(agent.checked.reports['order.progress']).toBeGreaterThanOrEqual(7);
      expect(agent.checked.reports.hello).toBeGreaterThanOrEqual(1);
      expect(coordinator.checked.sent['order.apply']).toBeGreaterThanOrEqual(2);
      expect(coordinator.checked.sent['order.revert']).toBeGreaterThanOrEqual(1);
      expect(coordinator.checked.acks).toBeGreaterThanOrEqual(3);
    });

    it('a crash after the apply, and the recovery that restores the snapshot and reports it', async () => {
      traced = await TracedFleet.start('crash');
      const { fleet, work } = traced;
      const spec = { rootDir: join(work, 'root'), dataDir: join(work, 'agent-data') };
      const path = '/etc/traced/new.conf';
      await mkdir(dirname(join(spec.rootDir, path)), { recursive: true });
      const crashing = traced.spawnAgent({
        id: 'traced-2',
        joinToken: await fleet.register('traced-2'),
        ...spec,
        env: { FLEETPATCH_TEST_CRASH_AT: 'apply:applied' },
      });
      await fleet.waitOnline(['traced-2']);

      // A new file: the snapshot records its absence, and the recovery removes it again.
      const rollout = await traced.rollOut(
        'traced-2',
        samplePatch({ path, content: 'made by the apply\n', expectedPriorSha256: 'absent' }),
      );
      expect(await exitWithin(crashing, 30_000, 'crash at apply:applied')).toEqual({ code: null, signal: 'SIGKILL' });
      const journalBefore = await journalOnDisk(spec.dataDir);
      // The file changed, and the journal durably says `applying`: recovery restores the snapshot.
      expect(journalBefore.map((record) => record.phase)).toEqual(['applying']);
      traced.spawnAgent({ id: 'traced-2', ...spec });

      // The crashed run's trace is read while the restarted agent recovers.
      const crashed = await traced.checkAgent(0, spec);
      expect(formatViolations(crashed.violations)).toBe('');
      expect(crashed.checked.placements['managed file']).toBe(1);
      expect(crashed.checked.managedChanges).toBe(1);

      const settled = await fleet.waitForState(rollout, FINAL_APPLY_STATES);
      expect(hostOf(settled, 'traced-2')).toMatchObject({ state: 'failed', changed: false });
      await expect(readFile(join(spec.rootDir, path))).rejects.toMatchObject({ code: 'ENOENT' });
      await waitUntilAcknowledged(spec.dataDir, 1);

      const recovered = await traced.checkAgent(1, { ...spec, journalBefore });
      const coordinator = await traced.checkCoordinator();
      expect(formatViolations(recovered.violations)).toBe('');
      expect(formatViolations(coordinator.violations)).toBe('');
      expect(recovered.checked.placements['managed file']).toBe(1);
      expect(recovered.checked.managedChanges).toBe(1);
      expect(recovered.checked.reports.hello).toBeGreaterThanOrEqual(1);
      expect(coordinator.checked.sent['order.apply']).toBeGreaterThanOrEqual(1);
      // The ack of the result the restarted agent reported in its hello.
      expect(coordinator.checked.acks).toBeGreaterThanOrEqual(1);
    });

    it('a signed order: its sequence durable in applied-sequences.json before it is journaled, a replay refused', async () => {
      const work = await mkdtemp(join(tmpdir(), 'fleetpatch-strace-signed-'));
      const spec = { rootDir: join(work, 'root'), dataDir: join(work, 'agent-data') };
      const log = join(work, 'agent.strace');
      const scripted = await ScriptedCoordinator.start();
      let agent: AgentProcess | undefined;
      try {
        await mkdir(join(spec.rootDir, 'etc'), { recursive: true });
        await writeFile(join(spec.rootDir, 'etc', 'x.conf'), 'old\n');
        await writeTestCredential(spec.dataDir, 'web-1');
        const [author, approver] = [generateAgentKeyPair(), generateAgentKeyPair()];
        const configFile = join(work, 'agent.json');
        const trustedKeys = [
          { publicKey: author.publicKey, roles: ['author'] },
          { publicKey: approver.publicKey, roles: ['approver'] },
        ];
        await writeFile(configFile, JSON.stringify({ signing: { trustedKeys } }));
        agent = startAgent({
          coordinatorUrl: scripted.url,
          hostId: 'web-1',
          ...spec,
          configExtra: configFile,
          env: { FLEETPATCH_PROGRESS_COALESCE_MS: '0' },
          wrap: straceWrap(log, { reads: false }),
        });

        const me = { owner: String(process.getuid?.() ?? 0), group: String(process.getgid?.() ?? 0) };
        const unsigned: OrderApply = sampleApplyOrder('signed-1', {
          change: sampleFileChange({ content: 'new\n', ...me }),
          health: { checks: [], intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 5 },
        });
        const prose = { title: 'x.conf', problem: 'p', rootCause: 'r', intendedFix: 'f', ticket: 'OPS-1' };
        const statement = {
          kind: 'apply',
          statementVersion: 1,
          patch: signedPatchOf(PatchSpecSchema.parse({ ...prose, change: unsigned.change, health: unsigned.health })),
          revertOnHealthFailure: unsigned.revertOnHealthFailure,
          target: { kind: 'hosts', hostIds: ['web-1'] },
          notBefore: new Date(Date.now() - 3600_000).toISOString(),
          expiresAt: new Date(Date.now() + 3600_000).toISOString(),
          sequence: 1,
        } as StatementInput;
        const signatures = [author, approver].map((pair) =>
          signStatement(loadPrivateKey(pair.privateKeyPem), statement),
        );
        const order = { ...unsigned, signed: { statement, signatures } };

        await scripted.send(order);
        const result = await scripted.result('signed-1');
        expect(result, agent.logs.join('\n')).toMatchObject({ outcome: 'healthy', changed: true });
        await scripted.send({ type: 'order.ack', orderId: 'signed-1', finishedAt: result.finishedAt });
        await waitUntilAcknowledged(spec.dataDir, 1);
        // The same statement again, under a new order id: a replay, refused and counted.
        await scripted.send({ ...order, orderId: 'signed-2' });
        expect(await scripted.result('signed-2')).toMatchObject({ outcome: 'failed', errorCode: 'policy_denied' });

        await agent.stop();
        const report = checkAgentTrace(await readTrace(log, agent.child.pid as number), spec);
        expect(formatViolations(report.violations)).toBe('');
        expect(report.checked.placements).toMatchObject({ 'applied sequences': 1, 'managed file': 1 });
        expect(report.checked.placements['refusal counter']).toBeGreaterThanOrEqual(1);
        expect(report.checked.reports['order.result']).toBeGreaterThanOrEqual(2);
      } finally {
        await agent?.stop();
        await scripted.close();
        if (!process.env.FLEETPATCH_KEEP_TRACES) await rm(work, { recursive: true, force: true });
      }
    });
  },
);
