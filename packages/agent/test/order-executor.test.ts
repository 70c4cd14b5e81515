import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ErrorCode,
  type FileChange,
  FleetError,
  type HealthCheck,
  type HealthCheckResult,
  type OrderPhase,
  type OrderResultBody,
  OrderResultSchema,
} from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Clock } from '../src/clock.js';
import type { Driver, DriverContext, PreflightVerdict } from '../src/drivers/driver.js';
import type { HealthProbe } from '../src/health/health-probe.js';
import { HealthRunner } from '../src/health/health-runner.js';
import { Journal, readEntryFile } from '../src/journal.js';
import { OrderExecutor, type OrderExecutorOptions } from '../src/orders/order-executor.js';
import { AgentPolicy } from '../src/policy/agent-policy.js';
import type { AllowedCommand } from '../src/policy/allowed-commands.js';
import type { SignedOrderCheck } from '../src/policy/signed-order-check.js';
import { AfterChange } from '../src/services/after-change.js';
import { SystemdServiceManager } from '../src/services/service-manager.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';

// Logic of the executor with a fake driver that records calls and a host that is just a variable.
// The real drivers are tested on real files and real dpkg in their own files and end to end.

class FakeDriver implements Driver<FileChange, { prior: string }> {
  readonly kind = 'file' as const;
  host = 'old';
  calls: string[] = [];
  verdict: PreflightVerdict = { outcome: 'would_apply', detail: 'ok' };
  failSnapshot = false;
  /** The snapshot's copy finds its file system full, as the file driver reports it. */
  snapshotRoom = false;
  failApply = false;
  failRestore = false;
  /** What a restore leaves on the host instead of the snapshot (a revert that does not restore). */
  restoreLeaves: string | undefined;

  /** The lock budget each preflight was given (undefined: the driver's own). */
  lockWaits: (number | undefined)[] = [];

  async preflight(_change: FileChange, ctx: DriverContext): Promise<PreflightVerdict> {
    this.calls.push('preflight');
    this.lockWaits.push(ctx.lockWaitMs);
    return this.verdict;
  }
  async snapshot(): Promise<{ prior: string }> {
    this.calls.push('snapshot');
    if (this.failSnapshot) throw new FleetError(ErrorCode.snapshotFailed, 'unreadable');
    if (this.snapshotRoom) {
      const cause = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      throw new FleetError(ErrorCode.snapshotFailed, cause.message, { errno: 'ENOSPC' }, { cause });
    }
    return { prior: this.host };
  }
  async apply(change: FileChange): Promise<void> {
    this.calls.push('apply');
    if (this.failApply) {
      this.host = 'half';
      throw new FleetError(ErrorCode.applyFailed, 'write failed');
    }
    this.host = change.content;
  }
  async verify(): Promise<void> {
    this.calls.push('verify');
  }
  async restore(_change: FileChange, snapshot: { prior: string }): Promise<void> {
    this.calls.push('restore');
    if (this.failRestore) throw new FleetError(ErrorCode.revertFailed, 'restore failed');
    this.host = this.restoreLeaves ?? snapshot.prior;
  }
  async cleanup(): Promise<void> {
    this.calls.push('cleanup');
  }
  async describe(): Promise<{ content: string }> {
    this.calls.push('describe');
    return { content: this.host };
  }
}

/** Health that answers from a script: one boolean per poll, the last repeating. */
class ScriptedProbe implements HealthProbe {
  constructor(public script: boolean[]) {}
  polls = 0;
  async run(check: HealthCheck): Promise<HealthCheckResult> {
    const ok = this.script[Math.min(this.polls++, this.script.length - 1)] ?? true;
    return {
      check: check.name ?? check.kind,
      kind: check.kind,
      ok,
      observed: ok ? 'fine' : 'broken',
      at: new Date(0).toISOString(),
    };
  }
}

/** Time that passes only when something sleeps. */
function fakeClock(): Clock {
  let now = 0;
  return {
    now: () => now,
    monotonicNow: () => now,
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      now += ms;
      await Promise.resolve();
    },
  };
}

/**
 * Time for the health runner that stands still while held: a sleep waits until `release()` (or its
 * abort), so a bake watch stays in progress, provably, until a test lets it poll again.
 */
class HeldClock implements Clock {
  private ms = 0;
  private held = true;
  private readonly sleepers = new Set<() => void>();

  now = (): number => this.ms;

  monotonicNow = (): number => this.ms;

  sleep = (ms: number, signal?: AbortSignal): Promise<void> => {
    signal?.throwIfAborted();
    if (!this.held) {
      this.ms += ms;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const wake = () => {
        signal?.removeEventListener('abort', abort);
        this.ms += ms;
        resolve();
      };
      const abort = () => {
        this.sleepers.delete(wake);
        reject(signal?.reason);
      };
      this.sleepers.add(wake);
      signal?.addEventListener('abort', abort, { once: true });
    });
  };

  /** From now on time passes at once, as with `fakeClock`; the sleeps waiting end. */
  release(): void {
    this.held = false;
    for (const wake of this.sleepers) wake();
    this.sleepers.clear();
  }
}

/** A health runner that counts bake watches: each `watch` call is one, in progress until it returns. */
class CountingHealthRunner extends HealthRunner {
  /** Watches in progress right now. */
  live = 0;
  /** Watches ever started. */
  started = 0;

  override async watch(...args: Parameters<HealthRunner['watch']>): ReturnType<HealthRunner['watch']> {
    this.live++;
    this.started++;
    try {
      return await super.watch(...args);
    } finally {
      this.live--;
    }
  }
}

const order = sampleApplyOrder;
const check: HealthCheck = { kind: 'file', path: '/etc/x.conf' };
/** Healthy on the first good poll: the apply needs no sleep, so a held clock only holds the bake. */
const healthyAtOnce = { checks: [check], intervalSeconds: 1, minHealthySeconds: 0, healthyDeadlineSeconds: 10 };

let dir: string;
let driver: FakeDriver;
let probe: ScriptedProbe;
let results: OrderResultBody[];
/** Called with every progress event; a test sets it to act at a given phase. */
let onProgress: (orderId: string, phase: OrderPhase) => void;

async function executor(journal?: Journal, extra: Partial<OrderExecutorOptions> = {}) {
  return new OrderExecutor({
    journal: journal ?? (await Journal.open(dir)),
    drivers: { file: driver },
    health: new HealthRunner(probe, fakeClock()),
    clock: fakeClock(),
    log: pino({ level: 'silent' }),
    events: { progress: (orderId, phase) => onProgress(orderId, phase), result: (r) => results.push(r) },
    ...extra,
  });
}

function withCommands(allowedCommands: AllowedCommand[]): AgentPolicy {
  return new AgentPolicy({ file: { allowedRoots: ['/etc'] }, health: { allowedCommands } });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'executor-'));
  driver = new FakeDriver();
  probe = new ScriptedProbe([true]);
  results = [];
  onProgress = () => {};
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('OrderExecutor', () => {
  it('applies a healthy change through every step, in order', async () => {
    await (await executor()).apply(order('o1'));
    expect(driver.calls).toEqual(['preflight', 'snapshot', 'apply', 'verify']);
    expect(driver.host).toBe('new');
    expect(results).toMatchObject([{ orderId: 'o1', outcome: 'healthy', changed: true }]);
  });

  it('journals a healthy apply at the phases recovery tells apart, and reports only what is journaled before apply', async () => {
    const written: { phase: string; snapshot: unknown }[] = [];
    const journal = await Journal.open(dir, {
      checkpoint: (name) => {
        // The end of each write: the first renamed into place, each later one appended and synced.
        if (!name.endsWith(':renamed') && !name.endsWith(':synced')) return;
        const onDisk = readEntryFile(readFileSync(join(dir, 'orders', 'o1', 'entry.json'), 'utf8'));
        written.push({ phase: name.split(':')[2] as string, snapshot: onDisk.snapshot });
      },
    });
    const reported: OrderPhase[] = [];
    onProgress = (_orderId, phase) => reported.push(phase);
    await (await executor(journal)).apply(order('o1'));
    // snapshotted, applied and verifying are not journaled: recovery tells none of them from the
    // phase journaled before it (the crash matrix kills the agent at each to prove it). The snapshot
    // is on disk in the entry that announces the change.
    expect(written.map((w) => w.phase)).toEqual(['accepted', 'baseline', 'applying', 'done']);
    expect(written.find((w) => w.phase === 'applying')?.snapshot).toEqual({ prior: 'old' });
    expect(written.find((w) => w.phase === 'baseline')?.snapshot).toBeUndefined();
    expect(reported).toEqual(expect.arrayContaining(['applying', 'applied', 'verifying']));
    // A phase reported is one the journal holds, or one recovery tells from it: never `snapshotted` unwritten.
    expect(reported).not.toContain('snapshotted');
  });

  it('applies an order id at most once and answers a re-delivery from the journal', async () => {
    const ex = await executor();
    await ex.apply(order('o1'));
    await ex.apply(order('o1'));
    expect(driver.calls.filter((c) => c === 'apply')).toHaveLength(1);
    expect(results.map((r) => r.outcome)).toEqual(['healthy', 'healthy']);
    // And across a restart: a new executor over the same journal does not apply again.
    await (await executor()).apply(order('o1'));
    expect(driver.calls.filter((c) => c === 'apply')).toHaveLength(1);
    expect(results).toHaveLength(3);
  });

  it('answers an order its full data dir cannot journal as failed, changing nothing, and runs it once there is room', async () => {
    const journal = await Journal.open(dir);
    const createApply = journal.createApply.bind(journal);
    journal.createApply = async () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    const ex = await executor(journal);
    await ex.apply(order('o1'));
    expect(driver.calls).toEqual([]);
    expect(driver.host).toBe('old');
    expect(results).toMatchObject([{ orderId: 'o1', outcome: 'failed', changed: false, errorCode: 'blocked' }]);
    expect(results[0]?.reason).toMatch(/data dir is full \(ENOSPC\).*nothing was changed/);
    expect(journal.get('o1')).toBeUndefined();
    // Space returns: a re-delivery is judged afresh and runs, once.
    journal.createApply = createApply;
    await ex.apply(order('o1'));
    expect(driver.calls.filter((c) => c === 'apply')).toHaveLength(1);
    expect(results[1]).toMatchObject({ orderId: 'o1', outcome: 'healthy', changed: true });
  });

  it('refuses to apply when the snapshot cannot be taken', async () => {
    driver.failSnapshot = true;
    await (await executor()).apply(order('o1'));
    expect(driver.calls).not.toContain('apply');
    expect(driver.host).toBe('old');
    expect(results).toMatchObject([{ outcome: 'failed', changed: false, errorCode: 'snapshot_failed' }]);
  });

  it('answers a snapshot its data dir had no room for as storage_full, changing nothing', async () => {
    driver.snapshotRoom = true;
    await (await executor()).apply(order('o1'));
    expect(driver.calls).not.toContain('apply');
    expect(driver.host).toBe('old');
    expect(results).toMatchObject([
      {
        outcome: 'failed',
        changed: false,
        errorCode: 'storage_full',
        reason: "the agent's data dir is full (ENOSPC): the snapshot could not be stored, so nothing was changed",
      },
    ]);
  });

  it('undoes a change that failed half-way', async () => {
    driver.failApply = true;
    await (await executor()).apply(order('o1'));
    expect(driver.host).toBe('old');
    expect(results).toMatchObject([{ outcome: 'failed', changed: false, errorCode: 'apply_failed' }]);
  });

  it('reverts itself when health fails after apply', async () => {
    probe.script = [true, false];
    await (await executor()).apply(order('o1'));
    expect(driver.calls.at(-1)).toBe('restore');
    expect(driver.host).toBe('old');
    expect(results).toMatchObject([{ outcome: 'failed', changed: false, errorCode: 'health_failed' }]);
    expect(results[0]?.health?.some((h) => !h.ok)).toBe(true);
  });

  it('leaves a failing host changed when autoRevert is none', async () => {
    probe.script = [true, false];
    await (await executor()).apply(order('o1', { revertOnHealthFailure: false }));
    expect(driver.calls).not.toContain('restore');
    expect(results).toMatchObject([{ outcome: 'failed', changed: true, errorCode: 'health_failed' }]);
  });

  it('reports revert_failed loudly, once, when the restore itself fails', async () => {
    probe.script = [true, false];
    driver.failRestore = true;
    await (await executor()).apply(order('o1'));
    expect(driver.calls.filter((c) => c === 'restore')).toHaveLength(1);
    expect(results).toMatchObject([{ outcome: 'revert_failed', changed: true, errorCode: 'revert_failed' }]);
  });

  it('rehearses its revert when asked: applies, reverts to exactly the prior state, checks health, applies again', async () => {
    await (await executor()).apply(order('o1', { rehearseRevert: true }));
    expect(driver.calls).toEqual([
      'preflight',
      'describe',
      'snapshot',
      'apply',
      'verify',
      'restore',
      'describe',
      'apply',
      'verify',
    ]);
    expect(driver.host).toBe('new');
    expect(results).toMatchObject([
      {
        outcome: 'healthy',
        changed: true,
        rehearsal: {
          ok: true,
          prior: { content: 'old' },
          restored: { content: 'old' },
          differences: [],
          healthyAfterRevert: true,
        },
      },
    ]);
  });

  it('a rehearsed revert that does not restore the prior state fails the order and is not applied again', async () => {
    driver.restoreLeaves = 'drifted';
    await (await executor()).apply(order('o1', { rehearseRevert: true }));
    expect(driver.calls.filter((c) => c === 'apply')).toHaveLength(1);
    expect(driver.host).toBe('drifted');
    expect(results).toMatchObject([
      {
        outcome: 'failed',
        changed: false,
        errorCode: 'rehearsal_failed',
        rehearsal: { ok: false, differences: ['content: old → drifted'], healthyAfterRevert: true },
      },
    ]);
    expect(results[0]?.reason).toBe('the rehearsed revert did not restore the prior state: content: old → drifted');
  });

  it('a host unhealthy after its rehearsed revert fails the rehearsal; one whose restore throws is revert_failed', async () => {
    // Healthy before, healthy after the apply, unhealthy from the revert on.
    probe.script = [true, true, false];
    await (await executor()).apply(order('o1', { rehearseRevert: true, health: healthyAtOnce }));
    expect(results[0]).toMatchObject({
      outcome: 'failed',
      changed: false,
      errorCode: 'rehearsal_failed',
      rehearsal: { ok: false, differences: [], healthyAfterRevert: false },
    });
    expect(driver.calls.filter((c) => c === 'apply')).toHaveLength(1);

    probe.script = [true];
    driver.failRestore = true;
    await (await executor()).apply(order('o2', { rehearseRevert: true }));
    expect(results[1]).toMatchObject({
      outcome: 'revert_failed',
      changed: true,
      errorCode: 'rehearsal_failed',
      rehearsal: { ok: false },
    });
  });

  it('cuts a rehearsal report to the protocol’s limits, so a failed rehearsal is always recorded', async () => {
    driver.restoreLeaves = 'y'.repeat(10_000);
    await (await executor()).apply(order('o1', { rehearseRevert: true }));
    expect(results[0]).toMatchObject({ outcome: 'failed', errorCode: 'rehearsal_failed' });
    const parsed = OrderResultSchema.safeParse({ type: 'order.result', ...results[0] });
    expect(parsed.success, parsed.error?.message).toBe(true);
    expect(String(results[0]?.rehearsal?.restored?.content)).toHaveLength(200);
  });

  it('without rehearseRevert nothing is rehearsed and no state is described', async () => {
    await (await executor()).apply(order('o1'));
    expect(driver.calls).not.toContain('describe');
    expect(results[0]?.rehearsal).toBeUndefined();
  });

  it('skips a host that was unhealthy before the patch, or fails it when told to', async () => {
    probe.script = [false];
    await (await executor()).apply(order('o1'));
    await (await executor()).apply(order('o2', { failIfUnhealthyBefore: true }));
    expect(driver.calls).not.toContain('snapshot');
    expect(results).toMatchObject([
      { outcome: 'skipped', changed: false, reason: 'unhealthy before patch' },
      { outcome: 'failed', changed: false, reason: 'unhealthy before patch' },
    ]);
  });

  it("a dry run runs the patch's health checks once, as the apply's baseline: unhealthy is would_fail, naming what the apply would do", async () => {
    driver.verdict = { outcome: 'would_apply', detail: 'would replace /etc/x' };
    const ex = await executor();
    const dryRun = { type: 'order.preflight' as const, change: order('x').change, health: healthyAtOnce };
    probe.script = [false, false, true];
    await ex.preflight({ ...dryRun, orderId: 'pf_skip' });
    await ex.preflight({ ...dryRun, orderId: 'pf_fail', failIfUnhealthyBefore: true });
    await ex.preflight({ ...dryRun, orderId: 'pf_healthy' });
    // An older coordinator sends no checks: none is run.
    await ex.preflight({ type: 'order.preflight', orderId: 'pf_older', change: order('x').change });
    expect(probe.polls).toBe(3);
    expect(results).toMatchObject([
      {
        orderId: 'pf_skip',
        outcome: 'would_fail',
        errorCode: 'health_failed',
        changed: false,
        reason: 'unhealthy before patch (file: broken): the apply would skip this host',
        health: [{ ok: false, observed: 'broken' }],
      },
      { orderId: 'pf_fail', reason: 'unhealthy before patch (file: broken): the apply would fail this host' },
      { orderId: 'pf_healthy', outcome: 'would_apply' },
      { orderId: 'pf_older', outcome: 'would_apply' },
    ]);
    // Nothing but the dry run's own preflights reached the driver; nothing was journaled.
    expect(driver.calls).toEqual(['preflight', 'preflight']);
  });

  it("a dry run's health checks end within the coordinator's wait: a slow one is not judged, and says so", async () => {
    driver.verdict = { outcome: 'would_apply', detail: 'would replace /etc/x' };
    // A check that answers only when it is given up on.
    const stuck: HealthProbe = {
      run: (_check, signal) =>
        new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    };
    // The real clock: the runner's own limit for a check (seconds) must not end it first.
    const ex = await executor(undefined, { health: new HealthRunner(stuck) });
    // 1 s to answer: the checks get half of it (as a held dpkg lock would), then the change is judged.
    await ex.preflight({
      type: 'order.preflight',
      orderId: 'pf_1',
      change: order('x').change,
      health: healthyAtOnce,
      answerWithinMs: 1000,
    });
    expect(results).toMatchObject([
      {
        orderId: 'pf_1',
        outcome: 'would_apply',
        reason: "would replace /etc/x; the health checks did not finish within the dry run's time: not judged",
      },
    ]);
    // The checks used the whole of what a held dpkg lock could have had: the lock wait gets the rest, none.
    expect(driver.lockWaits).toEqual([0]);
  });

  it("where orders must be signed, a dry run runs no health check (they are the coordinator's word alone), and says so", async () => {
    driver.verdict = { outcome: 'would_apply', detail: 'would replace /etc/x' };
    const commandCheck: HealthCheck = { kind: 'command', argv: ['/bin/sh', '-c', 'id'], timeoutMs: 1000 };
    const ex = await executor(undefined, {
      policy: withCommands([['/bin/sh', '-c', 'id']]),
      // Only whether signing is configured matters to a dry run: the statement check is the apply's.
      signing: {} as SignedOrderCheck,
    });
    const health = { ...healthyAtOnce, checks: [commandCheck, check] };
    await ex.preflight({ type: 'order.preflight', orderId: 'pf_1', change: order('x').change, health, signed: true });
    // Neither the file check nor the command check ran.
    expect(probe.polls).toBe(0);
    expect(results).toMatchObject([
      {
        orderId: 'pf_1',
        outcome: 'would_apply',
        reason:
          'would replace /etc/x; 2 health check(s) not run: a dry run is not signed, and this agent requires signed orders',
      },
    ]);
  });

  it('an agent that requires no signature ignores whether the rollout is signed in a dry run', async () => {
    driver.verdict = { outcome: 'would_apply', detail: 'would replace /etc/x' };
    const ex = await executor();
    await ex.preflight({ type: 'order.preflight', orderId: 'pf_1', change: order('x').change, signed: false });
    expect(results).toMatchObject([{ orderId: 'pf_1', outcome: 'would_apply' }]);
    expect(driver.calls).toEqual(['preflight']);
  });

  it("bounds a dry run's lock wait by how long the coordinator waits for the answer", async () => {
    driver.verdict = { outcome: 'blocked', detail: 'dpkg lock held by process 42 (dpkg)' };
    const ex = await executor();
    const dryRun = { type: 'order.preflight' as const, orderId: 'pf_1', change: order('x').change };
    await ex.preflight({ ...dryRun, answerWithinMs: 30_000 });
    await ex.preflight({ ...dryRun, orderId: 'pf_2', answerWithinMs: 2_000 });
    await ex.preflight({ ...dryRun, orderId: 'pf_3' }); // an older coordinator: the driver's own timeout
    expect(driver.lockWaits).toEqual([25_000, 1_000, undefined]);
    expect(results).toMatchObject([
      { orderId: 'pf_1', outcome: 'blocked', reason: 'dpkg lock held by process 42 (dpkg)' },
      { orderId: 'pf_2', outcome: 'blocked' },
      { orderId: 'pf_3', outcome: 'blocked' },
    ]);
  });

  it('restarts the listed units after apply and after the restore, and a restart that fails undoes the apply', async () => {
    // A real program in systemctl's place: it notes each restart, and fails for units named bad-*.
    const calls = join(dir, 'systemctl-calls');
    const services = new SystemdServiceManager({
      systemctl: [
        '/bin/sh',
        '-c',
        'echo "$4" >> "$0"; case "$4" in bad-*) echo "Job for $4 failed" >&2; exit 1;; esac',
        calls,
      ],
    });
    const afterChange = new AfterChange({ services, procDir: '/proc', root: dir, needrestart: null });
    const policy = new AgentPolicy({
      file: { allowedRoots: ['/etc'] },
      health: {},
      services: { allowedUnits: ['app.service', 'bad-app.service'] },
    });
    const ex = await executor(undefined, { afterChange, policy });
    const restarting = (orderId: string, afterApply: string[]) =>
      order(orderId, {
        change: sampleFileChange({ content: orderId, restart: { afterApply, afterRevert: ['app.service'] } }),
        health: healthyAtOnce,
      });

    await ex.apply(restarting('o1', ['app.service']));
    expect(results[0]).toMatchObject({
      outcome: 'healthy',
      afterChange: { restarts: [{ unit: 'app.service', when: 'apply', ok: true }] },
    });

    await ex.apply(restarting('o2', ['bad-app.service']));
    expect(driver.host).toBe('o1');
    expect(results[1]).toMatchObject({
      outcome: 'failed',
      changed: false,
      errorCode: 'apply_failed',
      reason:
        'restart of bad-app.service failed: exited with status 1: Job for bad-app.service failed; reverted to the snapshot',
      afterChange: {
        restarts: [
          { unit: 'bad-app.service', when: 'apply', ok: false },
          { unit: 'app.service', when: 'revert', ok: true },
        ],
      },
    });
    expect((await readFile(calls, 'utf8')).split('\n')).toEqual(['app.service', 'bad-app.service', 'app.service', '']);

    // A unit the owner did not list is refused before anything runs.
    await ex.apply(restarting('o3', ['ssh.service']));
    expect(results[2]).toMatchObject({ outcome: 'failed', errorCode: 'policy_denied' });
    expect(results[2]?.reason).toMatch(
      /^restarting ssh\.service is not allowed on this agent \(services\.allowedUnits: app\.service, bad-app\.service\)/,
    );
  });

  it('does nothing to a host already at the target', async () => {
    driver.verdict = { outcome: 'already_applied', detail: 'same bytes' };
    await (await executor()).apply(order('o1'));
    expect(driver.calls).toEqual(['preflight']);
    expect(results).toMatchObject([{ outcome: 'skipped', changed: false }]);
  });

  it('keeps watching through the bake and reverts on a failure there, reporting a second result', async () => {
    probe.script = [true, true, true, true, false];
    const ex = await executor();
    await ex.apply(order('o1', { bakeSeconds: 30 }));
    expect(results).toMatchObject([{ outcome: 'healthy' }]);
    await expect.poll(() => results.length).toBe(2);
    expect(results[1]).toMatchObject({ orderId: 'o1', outcome: 'failed', changed: false, errorCode: 'health_failed' });
    expect(driver.host).toBe('old');
  });

  it("watches through its wave's bake when the coordinator says the wave passed, and reverts on a failure there", async () => {
    const ex = await executor();
    await ex.apply(order('o1'));
    expect(results).toMatchObject([{ outcome: 'healthy' }]);
    probe.script = [true, true, false];
    probe.polls = 0;
    await ex.extendBake('o1', 30);
    await expect.poll(() => results.length).toBe(2);
    expect(results[1]).toMatchObject({ orderId: 'o1', outcome: 'failed', changed: false, errorCode: 'health_failed' });
    expect(driver.host).toBe('old');
    // A watch for an order that is not healthy and changed is ignored.
    await ex.extendBake('o1', 30);
    await ex.extendBake('nope', 30);
    expect(results).toHaveLength(2);
  });

  it('reverts on order: restores the snapshot of the apply order, and answers a re-delivered revert from the journal', async () => {
    const ex = await executor();
    await ex.apply(order('o1'));
    await ex.revert({ type: 'order.revert', orderId: 'r1', revertsOrderId: 'o1' });
    await ex.revert({ type: 'order.revert', orderId: 'r1', revertsOrderId: 'o1' });
    expect(driver.host).toBe('old');
    expect(driver.calls.filter((c) => c === 'restore')).toHaveLength(1);
    expect(results.slice(1)).toMatchObject([
      { orderId: 'r1', outcome: 'reverted', changed: false },
      { orderId: 'r1', outcome: 'reverted', changed: false },
    ]);
  });

  it('recovers an order interrupted mid-apply by restoring its snapshot', async () => {
    const journal = await Journal.open(dir);
    const entry = await journal.createApply(order('o1'), new Date(0).toISOString());
    await journal.update(entry, { phase: 'applying', snapshot: { prior: 'old' } }, new Date(0).toISOString());
    driver.host = 'half';
    await (await executor(await Journal.open(dir))).recover();
    expect(driver.calls).toEqual(['cleanup', 'restore']);
    expect(driver.host).toBe('old');
    expect(results).toEqual([
      expect.objectContaining({
        orderId: 'o1',
        outcome: 'failed',
        changed: false,
        errorCode: 'interrupted',
        reason: 'interrupted: the agent stopped (crash, kill or power loss) at applying; reverted to the snapshot',
      }),
    ]);
  });

  it('recovers an order interrupted before it changed anything without touching the host', async () => {
    // `snapshotted` with its snapshot: how agents before this one journaled it (and may have left it).
    const journal = await Journal.open(dir);
    const entry = await journal.createApply(order('o1'), new Date(0).toISOString());
    await journal.update(entry, { phase: 'snapshotted', snapshot: { prior: 'old' } }, new Date(0).toISOString());
    await (await executor(await Journal.open(dir))).recover();
    expect(driver.calls).toEqual(['cleanup']);
    expect(results).toEqual([
      expect.objectContaining({
        outcome: 'failed',
        changed: false,
        errorCode: 'interrupted',
        reason:
          'interrupted: the agent stopped (crash, kill or power loss) at snapshotted, before it changed anything; nothing was changed',
      }),
    ]);
  });

  it('reports unacknowledged results in hello until the coordinator acks them', async () => {
    const ex = await executor();
    await ex.apply(order('o1'));
    const reopened = await Journal.open(dir);
    expect(reopened.position).toBeGreaterThan(0);
    expect(reopened.pendingReports()).toMatchObject([{ orderId: 'o1', phase: 'done', result: { outcome: 'healthy' } }]);
    await ex.acknowledge('o1');
    expect((await Journal.open(dir)).pendingReports()).toEqual([]);
  });

  it('prunes finished, acknowledged orders past the retention period, snapshots and all', async () => {
    const ex = await executor();
    await ex.apply(order('o1'));
    await ex.apply(order('o2'));
    await ex.acknowledge('o1');
    const journal = await Journal.open(dir);
    const updated = Date.parse(journal.get('o1')?.updatedAt as string);
    expect(await journal.prune(1000, updated + 500)).toBe(0);
    expect(await journal.prune(1000, updated + 5000)).toBe(1); // o2 is not acknowledged: it stays
    const reopened = await Journal.open(dir);
    expect(reopened.get('o1')).toBeUndefined();
    expect(reopened.get('o2')?.phase).toBe('done');
  });

  it('a revert delivered while the apply is verifying waits for it, and no bake watch starts or is live when it restores', async () => {
    // Once the apply is verifying, its health check answers only when the revert is journaled and
    // waiting; the bake (bakeSeconds 3600, on a held clock) would still be watching at the restore
    // had it started.
    let verifying = false;
    let revertJournaled = () => {};
    const journaled = new Promise<void>((resolve) => {
      revertJournaled = resolve;
    });
    const gated: HealthProbe = {
      run: async (c) => {
        if (verifying) await journaled;
        return probe.run(c);
      },
    };
    const health = new CountingHealthRunner(gated, new HeldClock());
    const ex = await executor(undefined, { health });
    let reverting: Promise<void> | undefined;
    onProgress = (orderId, phase) => {
      if (orderId === 'o1' && phase === 'verifying' && !reverting) {
        verifying = true;
        reverting = ex.revert({ type: 'order.revert', orderId: 'r1', revertsOrderId: 'o1' });
      }
      if (orderId === 'r1' && phase === 'reverting') revertJournaled();
    };
    const atRestore: { watching: number; reported: string[] }[] = [];
    const restore = driver.restore.bind(driver);
    driver.restore = async (c, snapshot) => {
      atRestore.push({ watching: health.live, reported: results.map((r) => `${r.orderId}:${r.outcome}`) });
      return restore(c, snapshot);
    };

    await ex.apply(order('o1', { bakeSeconds: 3600, health: healthyAtOnce }));
    await reverting;

    // It waited: the apply had reported healthy before anything was restored.
    expect(atRestore).toEqual([{ watching: 0, reported: ['o1:healthy'] }]);
    // No bake may start while a revert holds the order, so none ever did, and none runs now.
    expect(health.started).toBe(0);
    expect(health.live).toBe(0);
    expect(driver.host).toBe('old');
    expect(results.filter((r) => r.orderId === 'o1')).toMatchObject([{ outcome: 'healthy' }]);
    expect(results.filter((r) => r.orderId === 'r1')).toMatchObject([{ outcome: 'reverted', changed: false }]);
    await ex.stop();
  });

  it('a revert during the bake ends the watch before it restores: no watch outlives the revert', async () => {
    const health = new CountingHealthRunner(probe, new HeldClock());
    const ex = await executor(undefined, { health });
    const watchingAtRestore: number[] = [];
    const restore = driver.restore.bind(driver);
    driver.restore = async (c, snapshot) => {
      watchingAtRestore.push(health.live);
      return restore(c, snapshot);
    };

    await ex.apply(order('o1', { bakeSeconds: 3600, health: healthyAtOnce }));
    expect(health.live).toBe(1); // the bake is watching, between two polls
    await ex.revert({ type: 'order.revert', orderId: 'r1', revertsOrderId: 'o1' });

    expect(watchingAtRestore).toEqual([0]);
    expect(health.live).toBe(0);
    expect(driver.host).toBe('old');
    expect(results.map((r) => `${r.orderId}:${r.outcome}`)).toEqual(['o1:healthy', 'r1:reverted']);
    await ex.stop();
  });

  it('a bake failure seen after a revert began does nothing: the revert owns the host', async () => {
    const ex = await executor();
    await ex.apply(order('o1'));
    probe.script = [false];
    // The watch and the revert start together; whichever polls first, the host is restored once
    // and o1 keeps its one result.
    const watching = ex.extendBake('o1', 30);
    await ex.revert({ type: 'order.revert', orderId: 'r1', revertsOrderId: 'o1' });
    await watching;
    await ex.stop();
    expect(driver.calls.filter((c) => c === 'restore')).toHaveLength(1);
    expect(results.filter((r) => r.orderId === 'o1')).toHaveLength(1);
  });

  it('cuts a long reason and long health observations so the result always fits the protocol', async () => {
    const long = 'x'.repeat(10_000);
    const loud: HealthProbe = {
      run: async () => ({ check: long, kind: 'command', ok: false, observed: long, at: new Date(0).toISOString() }),
    };
    const ex = await executor(undefined, { health: new HealthRunner(loud, fakeClock()) });
    await ex.apply(order('o1', { failIfUnhealthyBefore: true }));
    await ex.apply(order('o2', { health: { ...order('o2').health, checks: Array(32).fill(check) } }));
    expect(results).toHaveLength(2);
    for (const result of results) {
      const parsed = OrderResultSchema.safeParse({ type: 'order.result', ...result });
      expect(parsed.success, parsed.error?.message).toBe(true);
    }
    // A long reason built from them (the failing check and what it saw) is cut too.
    probe.script = [true, false];
    const failing: HealthProbe = {
      run: async (c) => {
        const ok = probe.script[Math.min(probe.polls++, 1)] ?? true;
        return { check: long, kind: c.kind, ok, observed: ok ? 'fine' : long, at: new Date(0).toISOString() };
      },
    };
    const ex3 = await executor(undefined, { health: new HealthRunner(failing, fakeClock()) });
    await ex3.apply(order('o3'));
    const third = results[2];
    expect(third).toMatchObject({ orderId: 'o3', outcome: 'failed', errorCode: 'health_failed' });
    expect((third?.reason ?? '').length).toBeLessThanOrEqual(8192);
    expect(OrderResultSchema.safeParse({ type: 'order.result', ...third }).success).toBe(true);
  });

  it('runs an order delivered twice while the first copy is still being journaled once, with one result', async () => {
    const ex = await executor();
    await Promise.all([ex.apply(order('o1')), ex.apply(order('o1'))]);
    expect(driver.calls.filter((c) => c === 'apply')).toHaveLength(1);
    expect(results).toMatchObject([{ orderId: 'o1', outcome: 'healthy' }]);
  });

  it('cancels an order delivered twice: the cancel reaches the copy that runs', async () => {
    const ex = await executor();
    onProgress = (orderId, phase) => {
      if (orderId === 'o1' && phase === 'verifying') ex.cancel('o1');
    };
    await Promise.all([ex.apply(order('o1')), ex.apply(order('o1'))]);
    expect(driver.calls.filter((c) => c === 'apply')).toHaveLength(1);
    expect(driver.host).toBe('old');
    expect(results).toMatchObject([{ orderId: 'o1', outcome: 'cancelled', changed: false }]);
  });

  it('runs a revert delivered twice at once only once', async () => {
    const ex = await executor();
    await ex.apply(order('o1'));
    const revert = { type: 'order.revert', orderId: 'r1', revertsOrderId: 'o1' } as const;
    await Promise.all([ex.revert(revert), ex.revert(revert)]);
    expect(driver.calls.filter((c) => c === 'restore')).toHaveLength(1);
    expect(results.filter((r) => r.orderId === 'r1')).toMatchObject([{ outcome: 'reverted' }]);
  });

  it('a late ack of the first result does not acknowledge a second one written after it', async () => {
    probe.script = [true, true, true, true, false];
    const ex = await executor();
    await ex.apply(order('o1', { bakeSeconds: 30 }));
    await expect.poll(() => results.length).toBe(2);
    const [first, second] = results;
    expect(first?.finishedAt).not.toBe(second?.finishedAt);
    await ex.acknowledge('o1', first?.finishedAt);
    expect((await Journal.open(dir)).pendingReports()).toMatchObject([
      { orderId: 'o1', result: { outcome: 'failed' } },
    ]);
    await ex.acknowledge('o1', second?.finishedAt);
    expect((await Journal.open(dir)).pendingReports()).toEqual([]);
  });

  it('refuses an order whose command health check is not allowed on this agent, before anything runs', async () => {
    let ran = 0;
    const counting: HealthProbe = {
      run: async (c) => {
        ran++;
        return { check: c.kind, kind: c.kind, ok: true, observed: 'fine', at: new Date(0).toISOString() };
      },
    };
    const commandCheck: HealthCheck = { kind: 'command', argv: ['/bin/sh', '-c', 'id'], timeoutMs: 1000 };
    const withCommand = (id: string) => order(id, { health: { ...order(id).health, checks: [check, commandCheck] } });
    const ex = await executor(undefined, {
      health: new HealthRunner(counting, fakeClock()),
      policy: withCommands(['/usr/local/bin/check-app']),
    });
    await ex.apply(withCommand('o1'));
    expect(ran).toBe(0);
    expect(driver.calls).toEqual([]);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ orderId: 'o1', outcome: 'failed', changed: false, errorCode: 'policy_denied' });
    expect(results[0]?.reason).toContain('/bin/sh');
    expect(results[0]?.reason).toContain('health.allowedCommands');
    expect(await readdir(join(dir, 'orders'))).toEqual([]);
    // No allow-list at all refuses too; a listed executable runs.
    await (await executor(undefined, { health: new HealthRunner(counting, fakeClock()) })).apply(withCommand('o2'));
    expect(results[1]).toMatchObject({ orderId: 'o2', errorCode: 'policy_denied' });
    const allowed = await executor(undefined, {
      health: new HealthRunner(counting, fakeClock()),
      // Allowed by its full argv; a bare '/bin/sh' would allow only an argv without arguments.
      policy: withCommands([['/bin/sh', '-c', 'id']]),
    });
    await allowed.apply(withCommand('o3'));
    expect(results[2]).toMatchObject({ orderId: 'o3', outcome: 'healthy' });
  });

  it('two bake extensions at once leave one watch: one restore and one second result', async () => {
    const clock = new HeldClock();
    const health = new CountingHealthRunner(probe, clock);
    const ex = await executor(undefined, { health });
    await ex.apply(order('o1', { bakeSeconds: 600, health: healthyAtOnce }));
    expect(health.live).toBe(1);

    await Promise.all([ex.extendBake('o1', 30), ex.extendBake('o1', 30)]);
    // Each extension replaced the watch it found; an orphan would be a second watch in progress.
    expect(health.live).toBe(1);
    expect(health.started).toBe(3);

    probe.script = [false];
    probe.polls = 0;
    clock.release();
    // The one watch polls, fails, restores and reports: that second result is the last thing it does.
    await expect.poll(() => results.length).toBe(2);
    expect(health.live).toBe(0);
    expect(driver.calls.filter((c) => c === 'restore')).toHaveLength(1);
    expect(results.map((r) => r.outcome)).toEqual(['healthy', 'failed']);
    expect(driver.host).toBe('old');
  });

  it('refuses a second order for the same file while the first still runs, and changes nothing for it', async () => {
    const ex = await executor();
    await Promise.all([ex.apply(order('o1')), ex.apply(order('o2'))]);
    expect(driver.calls.filter((c) => c === 'apply')).toHaveLength(1);
    expect(results).toHaveLength(2);
    expect(results.find((r) => r.orderId === 'o1')).toMatchObject({ outcome: 'healthy', changed: true });
    expect(results.find((r) => r.orderId === 'o2')).toMatchObject({
      outcome: 'failed',
      changed: false,
      errorCode: 'blocked',
    });
    expect(results.find((r) => r.orderId === 'o2')?.reason).toMatch(
      /another order for file \/etc\/x.conf is still running/,
    );
  });

  it('returns the same drain to every stop() caller, and none before the running order has reported', async () => {
    let openGate = () => {};
    const gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    const apply = driver.apply.bind(driver);
    driver.apply = async (c) => {
      await gate;
      return apply(c);
    };
    const applying = new Promise<void>((resolve) => {
      onProgress = (_orderId, phase) => {
        if (phase === 'applying') resolve();
      };
    });
    const ex = await executor();
    const running = ex.apply(order('o1'));
    await applying;

    const first = ex.stop();
    const second = ex.stop();
    expect(second).toBe(first);
    await ex.apply(order('o2')); // refused while stopping: never journaled, never reported
    openGate();
    await second;

    expect(results).toMatchObject([{ orderId: 'o1', outcome: 'healthy', changed: true }]);
    await running;
  });
});
