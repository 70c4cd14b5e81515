import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebTestBed,
  type DpkgRoot,
  debTools,
} from '../../packages/agent/test/support/deb-fixtures.js';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { checkRollout } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { startFleetRollout, useFaultFleet } from '../support/fault-scenario.js';
import { hostOf } from '../support/fleet-harness.js';
import { fptestPatch } from '../support/fptest-patch.js';
import { namespaces } from '../support/host-namespaces.js';
import { describeNeeding } from '../support/requirements.js';

// Scenario 4, package change: every host holds fptest 1.0 in its own throwaway dpkg root (real dpkg,
// unprivileged under fakeroot, never this machine's database) and is told to install 2.5, whose
// preinst waits for a release file. While every host's dpkg sits in that preinst, half the agents
// are SIGKILLed at once. dpkg runs detached from the agent, so it finishes 2.5 on its own once
// released; each restarted agent lets it end, then recovers from its journal: the interrupted order
// goes back to its snapshot (1.0, from the captured .deb) and is reported as such, never run again.
// The other half finish at 2.5.

const HOSTS = 6;
const PRIOR = '1.0';
/** fptest 2.5's preinst waits for `$DPKG_ROOT/release-fptest` (deb-fixtures' `waitForReleaseScript`). */
const HELD = '2.5';

describeNeeding([namespaces, debTools], 'fault 4: agents SIGKILLed mid-dpkg on several hosts at once', () => {
  let bed: DebTestBed | undefined;
  const roots = new Map<string, DpkgRoot>();
  const rootOf = (id: string): DpkgRoot => {
    const root = roots.get(id);
    if (!root) throw new Error(`no dpkg root for ${id}`);
    return root;
  };

  // Registered before the fleet's hooks: the packages exist before the hosts, and outlive them.
  beforeAll(async () => {
    bed = await createDebTestBed();
  });
  afterAll(async () => {
    await bed?.dispose();
  });

  const fleetOf = useFaultFleet(() => ({
    name: 'p4d',
    hosts: HOSTS,
    path: '/usr/share/fptest/VERSION',
    initial: `${PRIOR}\n`,
    async prepareHost(id) {
      if (!bed) throw new Error('the package test bed did not start');
      const root = await bed.newRoot(id);
      await root.install(bed.deb('fptest', PRIOR));
      roots.set(id, root);
      const configFile = join(root.root, '..', `${id}-agent.json`);
      await mkdir(join(configFile, '..'), { recursive: true });
      // The agent's apt policy: fptest only, every dpkg command confined to this root.
      await writeFile(
        configFile,
        JSON.stringify({
          apt: { ...root.driverOptions, allowedPackages: ['fptest'] },
          health: { allowedFileRoots: ['/etc', '/usr/share/fptest'] },
        }),
      );
      return { rootDir: root.root, configFile };
    },
  }));

  it('recovers every killed host to a clean prior package, reported once, with no order run twice', async () => {
    const fleet = fleetOf();
    const patchId = await fleet.fleet.createPatch(
      fptestPatch(HELD, 'fptest 2.5 (fault suite, agents killed mid-dpkg)'),
    );
    const rolloutId = await startFleetRollout(fleet, patchId, { maxFailures: '100%', hostTimeoutSeconds: 120 });
    // Every host's dpkg is in fptest's preinst: the order is applying, the package half-unpacked.
    await waitFor(
      'dpkg in fptest 2.5 preinst on every host',
      () => fleet.hostIds.every((id) => existsSync(rootOf(id).path('started-fptest'))) || undefined,
      { timeoutMs: 60_000 },
    );
    const killed = fleet.hostIds.filter((_, i) => i % 2 === 0);
    const startedAt = Date.now();
    await fleet.killAgents(killed);
    const mid = await fleet.fleet.status(rolloutId);
    for (const id of killed) expect(hostOf(mid, id).state).not.toBe('healthy');
    // Released, every dpkg finishes 2.5 — the killed agents' ones without their agent.
    await Promise.all(fleet.hostIds.map((id) => rootOf(id).writeFile('release-fptest', '')));
    for (const id of killed) fleet.startAgent(id);

    const done = await fleet.fleet.waitForState(rolloutId, ['succeeded', 'halted'], 120_000);
    const verdict = await checkRollout(fleet, {
      rolloutId,
      package: { name: 'fptest', version: HELD, priorVersion: PRIOR, rootOf },
    });
    const convergeMs = Date.now() - startedAt;
    await recordRow(
      rowOf(
        '4 agent SIGKILL mid-dpkg (package)',
        HOSTS,
        [`SIGKILL of ${killed.length} agents at once, their dpkg running on`],
        verdict,
        convergeMs,
      ),
    );
    for (const id of killed) {
      expect(await rootOf(id).query('fptest')).toEqual({ status: 'ii', version: PRIOR });
      expect(hostOf(done, id)).toMatchObject({ changed: false });
    }
    for (const id of fleet.hostIds.filter((h) => !killed.includes(h))) {
      expect(await rootOf(id).query('fptest')).toEqual({ status: 'ii', version: HELD });
      expect(hostOf(done, id)).toMatchObject({ state: 'healthy', changed: true });
    }
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ orders: HOSTS, appliedOnce: HOSTS, lost: 0, doubled: 0 });
  });
});
