import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type HealthCheck,
  type HealthCheckResult,
  type OrderApply,
  type OrderResultBody,
  type PackageChangeInput,
  PackageChangeSchema,
} from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeNeeding } from '../../../test/support/requirements.js';
import { AptDriver } from '../src/drivers/apt-driver.js';
import type { HealthProbe } from '../src/health/health-probe.js';
import { HealthRunner } from '../src/health/health-runner.js';
import { Journal } from '../src/journal.js';
import { OrderExecutor } from '../src/orders/order-executor.js';
import { AgentPolicy, type AgentPolicyConfig } from '../src/policy/agent-policy.js';
import {
  buildDeb,
  createAptRepository,
  createDebTestBed,
  type DebTestBed,
  type DpkgRoot,
  debTools,
} from './support/deb-fixtures.js';
import { sampleApplyOrder } from './support/sample-orders.js';

/**
 * What a stolen coordinator cannot make an agent (without signing) do to its packages, with the
 * policy as a host owner would write it: install a package outside the allow-list by naming a
 * source version apt learns of only once the agent refreshes its indexes, or downgrade a package
 * through the revert of an older order. The real OrderExecutor, AgentPolicy and AptDriver against
 * real dpkg in a throwaway root (deb-fixtures.ts).
 */

const probe: HealthProbe = {
  async run(check: HealthCheck): Promise<HealthCheckResult> {
    return { check: check.kind, kind: check.kind, ok: true, observed: 'fine', at: new Date(0).toISOString() };
  },
};

function change(input: Omit<PackageChangeInput, 'kind' | 'manager'>) {
  return PackageChangeSchema.parse({ kind: 'package', manager: 'apt', ...input });
}

function packageOrder(orderId: string, c: ReturnType<typeof change>): OrderApply {
  return sampleApplyOrder(orderId, {
    change: c,
    health: { checks: [], intervalSeconds: 1, minHealthySeconds: 0, healthyDeadlineSeconds: 5 },
  });
}

describeNeeding([debTools], 'package guards against a stolen coordinator', () => {
  let bed: DebTestBed;
  let base: string;

  beforeAll(async () => {
    bed = await createDebTestBed();
    base = await mkdtemp(join(tmpdir(), 'package-guards-'));
  }, 60_000);

  afterAll(async () => {
    await bed?.dispose();
    if (base) await rm(base, { recursive: true, force: true });
  });

  /**
   * The agent as `agent.ts` wires it: the policy gets the driver's package facts; with
   * `allowedSourcePackages` set, the driver gets NO allow-list of its own (aptDriverFor).
   */
  async function agentFor(host: DpkgRoot, apt: NonNullable<AgentPolicyConfig['apt']>) {
    const driver = new AptDriver(host.driverOptions);
    const policy = new AgentPolicy(
      { file: { allowedRoots: ['/etc', '/opt', '/usr/local/etc'] }, health: {}, apt },
      { packageFacts: driver.packageFacts },
    );
    const results: OrderResultBody[] = [];
    const journal = await Journal.open(await mkdtemp(join(base, 'data-')));
    const executor = new OrderExecutor({
      journal,
      drivers: { package: driver },
      health: new HealthRunner(probe),
      clock: {
        now: () => Date.now(),
        monotonicNow: () => performance.now(),
        sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      },
      log: pino({ level: 'silent' }),
      events: { progress: () => {}, result: (r) => results.push(r) },
      policy,
    });
    return { executor, results, policy };
  }

  it('a source change apt resolves only after the agent refreshed its indexes is judged again then: a package outside the allow-list stays as it was', async () => {
    // The host owner allows only packages built from `openssl`. `fpsecret` (source `fpsecret`) is
    // installed at 1.0; version 2.0 is published in the host's repository after its last apt-get update.
    const repoDir = join(bed.baseDir, 'toctou-repo');
    const v1 = await buildDeb(
      { name: 'fpsecret', version: '1.0', files: { '/usr/share/fpsecret/V': '1\n' } },
      bed.baseDir,
    );
    const v2 = await buildDeb(
      { name: 'fpsecret', version: '2.0', files: { '/usr/share/fpsecret/V': '2\n' } },
      bed.baseDir,
    );
    const repo = await createAptRepository(repoDir, [v1]);
    const host = await bed.newRoot('toctou');
    await writeFile(host.path('etc/apt/sources.list'), `${repo.sourcesLine}\n`);
    expect((await host.run(['apt-get', ...(host.driverOptions.aptOptions ?? []), '-q', 'update'])).code).toBe(0);
    await host.install(v1);
    await createAptRepository(repoDir, [v1, v2]);

    const { executor, results } = await agentFor(host, {
      allowedPackages: [],
      allowedSourcePackages: ['openssl'],
    });
    // Admitted (apt cannot resolve it yet: it moves nothing as far as the policy can tell), then the
    // apply's preflight runs apt-get update and it resolves to fpsecret 2.0: judged again, refused.
    await executor.apply(packageOrder('ord_toctou', change({ source: 'fpsecret', version: '2.0' })));
    const result = results.find((r) => r.orderId === 'ord_toctou');
    expect(await host.query('fpsecret'), `result: ${JSON.stringify(result)}`).toEqual({ status: 'ii', version: '1.0' });
    expect(result).toMatchObject({
      outcome: 'failed',
      changed: false,
      errorCode: 'policy_denied',
      reason: expect.stringMatching(/fpsecret.*not in apt.allowedPackages.*refreshed/),
    });
  }, 60_000);

  it('a revert of an order a later one superseded is refused: the package stays at the later version', async () => {
    const host = await bed.newRoot('revert-old');
    await host.install(bed.deb('fptest', '1.0'));
    const { executor, results, policy } = await agentFor(host, { allowedPackages: ['fptest'] });

    // A: 1.0 -> 2.0 (its snapshot keeps the 1.0 .deb). B: the security fix, 2.0 -> 5.0.
    await executor.apply(packageOrder('ord_a', change({ name: 'fptest', version: '2.0' })));
    expect(results.find((r) => r.orderId === 'ord_a')).toMatchObject({ outcome: 'healthy' });
    await executor.apply(packageOrder('ord_b', change({ name: 'fptest', version: '5.0' })));
    expect(results.find((r) => r.orderId === 'ord_b')).toMatchObject({ outcome: 'healthy' });
    expect(await host.query('fptest')).toEqual({ status: 'ii', version: '5.0' });

    // The policy refuses the downgrade when it is asked for as an apply...
    const direct = await policy.checkPackageChange(
      change({ name: 'fptest', version: '1.0' }),
      new AbortController().signal,
    );
    expect(direct).toMatchObject({ ok: false, code: 'policy_denied' });

    // ...and so does the agent when a stolen coordinator asks for it as the revert of A.
    await executor.revert({ type: 'order.revert', orderId: 'ord_revert_a', revertsOrderId: 'ord_a' });
    const revert = results.find((r) => r.orderId === 'ord_revert_a');
    expect(await host.query('fptest'), `revert result: ${JSON.stringify(revert)}`).toEqual({
      status: 'ii',
      version: '5.0',
    });
    expect(revert).toMatchObject({
      outcome: 'revert_failed',
      changed: false,
      errorCode: 'policy_denied',
      reason: expect.stringMatching(/ord_b, begun later on the same target, superseded order ord_a/),
    });
    // B, the order on top, goes back as ever.
    await executor.revert({ type: 'order.revert', orderId: 'ord_revert_b', revertsOrderId: 'ord_b' });
    expect(results.find((r) => r.orderId === 'ord_revert_b')).toMatchObject({ outcome: 'reverted' });
    expect(await host.query('fptest')).toEqual({ status: 'ii', version: '2.0' });
  }, 60_000);

  it('a revert is refused when the package moved on since by other means (unattended-upgrades, an admin): no downgrade', async () => {
    const host = await bed.newRoot('revert-outside');
    await host.install(bed.deb('fptest', '1.0'));
    const { executor, results } = await agentFor(host, { allowedPackages: ['fptest'] });
    await executor.apply(packageOrder('ord_c', change({ name: 'fptest', version: '2.0' })));
    expect(results.find((r) => r.orderId === 'ord_c')).toMatchObject({ outcome: 'healthy' });
    await host.install(bed.deb('fptest', '5.0')); // the host moved on by itself

    await executor.revert({ type: 'order.revert', orderId: 'ord_revert_c', revertsOrderId: 'ord_c' });
    const revert = results.find((r) => r.orderId === 'ord_revert_c');
    expect(await host.query('fptest'), `revert result: ${JSON.stringify(revert)}`).toEqual({
      status: 'ii',
      version: '5.0',
    });
    expect(revert).toMatchObject({
      outcome: 'revert_failed',
      errorCode: 'revert_failed',
      reason: expect.stringMatching(/fptest is at 5.0, above the 2.0 this order installed.*nothing was changed/),
    });
  }, 60_000);

  it('the revert of an allowed downgrade found half-way (one member back at its prior, above the target) finishes: it is not "moved on"', async () => {
    const host = await bed.newRoot('downgrade-halfway');
    await host.install(bed.deb('fptest', '2.0'));
    const { executor, results } = await agentFor(host, { allowedPackages: ['fptest', 'fpnew'], allowDowngrade: true });
    // The patch: fptest 2.0 -> 1.0 (a downgrade the host owner allows) and fpnew installed, as one set.
    await executor.apply(
      packageOrder(
        'ord_down',
        change({
          packages: [
            { name: 'fptest', version: '1.0' },
            { name: 'fpnew', version: '1.0' },
          ],
        }),
      ),
    );
    expect(results.find((r) => r.orderId === 'ord_down')).toMatchObject({ outcome: 'healthy' });
    // A first revert got as far as reinstalling fptest's prior .deb (2.0) and stopped before removing
    // fpnew (the agent was killed, say): fptest is at its prior, not moved on.
    await host.install(bed.deb('fptest', '2.0'));
    await executor.revert({ type: 'order.revert', orderId: 'ord_revert_down', revertsOrderId: 'ord_down' });
    const revert = results.find((r) => r.orderId === 'ord_revert_down');
    expect(revert, JSON.stringify(revert)).toMatchObject({ outcome: 'reverted' });
    expect(await host.query('fpnew')).not.toMatchObject({ status: 'ii' });
  }, 60_000);
});
