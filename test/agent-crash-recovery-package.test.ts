/**
 * Issue "Agent: crash-safe order journal" — the crash-point matrix, the apt package change; its cases and
 * runner are in support/crash-matrix.ts.
 *
 * For every checkpoint of the order executor, for a file change and for an apt package change: a
 * real coordinator and a real agent process that SIGKILLs itself at that checkpoint
 * (`FLEETPATCH_TEST_CRASH_AT`). The agent is restarted without the crash and the test proves that
 * the host is exactly at the old or the new state (never between), that this is what the
 * coordinator reports and what the agent's journal says, and that no temp files are left behind.
 *
 * For the file change, also at points inside each durable write (issue 11): the target file, the
 * snapshot copy, the restore and the journal entries, each after the temp file is written (before
 * its fsync), after the fsync (before the rename) and after the rename (before the directory fsync).
 * Every case also proves at most once: each order id was started once (the journal's `executions`),
 * the coordinator took in one result per order, and the journal ends with every result acknowledged.
 */

import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  createDebTestBed,
  type DebTestBed,
  type DpkgRoot,
  debToolsAvailable,
} from '../packages/agent/test/support/deb-fixtures.js';
import { samplePackagePatch, sha256Of } from '../scripts/lib/sample-specs.mjs';
import {
  CHECKPOINTS,
  type CrashHost,
  caseId,
  checkpointCase,
  FAILING_HEALTH,
  QUICK_HEALTH,
  runCrashCase,
  type Subject,
  titled,
} from './support/crash-matrix.js';
import { FleetHarness, findNames } from './support/fleet-harness.js';

/**
 * The agent policy of a package host: apt may change fptest only (required since i10), and file
 * checks may look at what fptest ships under /usr/share/fptest besides the usual roots.
 */
const PACKAGE_AGENT_CONFIG = (apt: object) => ({
  apt: { ...apt, allowedPackages: ['fptest'] },
  health: { allowedFileRoots: ['/etc', '/opt', '/usr/local/etc', '/usr/share/fptest'] },
});

// ---- package changes ---------------------------------------------------------------------------

const tools = debToolsAvailable();
if (!tools.available) console.warn(`crash-point matrix, package change: skipped — ${tools.reason}`);

async function newPackageHost(bed: DebTestBed, caseDir: string, label: string): Promise<CrashHost> {
  await mkdir(caseDir, { recursive: true });
  const root: DpkgRoot = await bed.newRoot(label);
  await root.install(bed.deb('fptest', '1.0'));
  const configFile = join(caseDir, 'agent.json');
  await writeFile(configFile, JSON.stringify(PACKAGE_AGENT_CONFIG(root.driverOptions)));
  const staging = root.driverOptions.stagingDir ?? root.path('var/cache/fleetpatch');
  return {
    rootDir: root.root,
    configFile,
    async state() {
      const [query, audit] = await Promise.all([root.query('fptest'), root.audit()]);
      if (audit !== '') throw new Error(`dpkg --audit is not clean:\n${audit}`);
      if (query?.status !== 'ii') throw new Error(`fptest is ${JSON.stringify(query)}, not installed cleanly`);
      const shipped = await readFile(root.path('usr/share/fptest/VERSION'), 'utf8');
      if (shipped !== `${query.version}\n`) throw new Error(`fptest ${query.version} ships VERSION ${shipped}`);
      if (query.version === '1.0') return 'old';
      if (query.version === '2.0') return 'new';
      throw new Error(`fptest is at ${query.version}, neither 1.0 nor 2.0`);
    },
    async leftovers() {
      const staged = (await readdir(staging)).filter((name) => name.endsWith('.deb'));
      const dpkgJournal = (await readdir(root.path('var/lib/dpkg/updates'))).filter((name) => /^\d+$/.test(name));
      const temps = await findNames(root.root, /fleetpatch-tmp|\.dpkg-(?:new|tmp)$/);
      return [...staged.map((n) => join(staging, n)), ...dpkgJournal.map((n) => `updates/${n}`), ...temps];
    },
  };
}

/**
 * A fresh dpkg root costs an `apt-get update` and a `dpkg --install`: the next case's root is
 * prepared while the current case runs, so the matrix mostly waits on one thing at a time.
 */
class HostPrefetcher {
  private readonly started = new Map<string, Promise<CrashHost>>();

  constructor(
    private readonly labels: readonly string[],
    private readonly make: (label: string) => Promise<CrashHost>,
  ) {}

  get(label: string): Promise<CrashHost> {
    const next = this.labels[this.labels.indexOf(label) + 1];
    const host = this.start(label);
    // Prefetch, not awaited here: start() keeps the promise (its rejection handled) for the case that needs it.
    if (next !== undefined) void this.start(next);
    return host;
  }

  /** Waits for every preparation begun, so nothing still writes into a directory being removed. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.started.values());
  }

  private start(label: string): Promise<CrashHost> {
    let host = this.started.get(label);
    if (!host) {
      host = this.make(label);
      host.catch(() => {}); // reported by the case that awaits it
      this.started.set(label, host);
    }
    return host;
  }
}

describe.skipIf(!tools.available)(
  `crash-point matrix: package change${tools.available ? '' : ` (skipped: ${tools.reason})`}`,
  () => {
    let work: string;
    let bed: DebTestBed;
    let fleet: FleetHarness;
    let subject: Subject;
    let prefetch: HostPrefetcher | undefined;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'fleetpatch-crash-pkg-'));
      [bed, fleet] = await Promise.all([createDebTestBed(), FleetHarness.start(join(work, 'coordinator'))]);
      const change = { name: 'fptest', version: '2.0', expectedPriorVersion: '1.0' };
      const shippedVersion = '/usr/share/fptest/VERSION';
      const hosts = new HostPrefetcher(
        CHECKPOINTS.map((checkpoint) => caseId('package', checkpointCase(checkpoint))),
        (label) => newPackageHost(bed, join(work, label), label),
      );
      prefetch = hosts;
      subject = {
        kind: 'package',
        newHost: (_caseDir, label) => hosts.get(label),
        healthyPatch: await fleet.createPatch(
          samplePackagePatch({
            title: 'crash matrix: package',
            ...change,
            health: { checks: [{ kind: 'file', path: shippedVersion }], ...QUICK_HEALTH },
          }),
        ),
        unhealthyAfterApplyPatch: await fleet.createPatch(
          samplePackagePatch({
            title: 'crash matrix: package, unhealthy after apply',
            ...change,
            health: {
              // Passes while 1.0 is installed, fails once 2.0 has replaced the file.
              checks: [{ kind: 'file', name: 'still 1.0', path: shippedVersion, sha256: sha256Of('1.0\n') }],
              ...FAILING_HEALTH,
            },
          }),
        ),
      };
    });

    afterAll(async () => {
      await fleet?.stop();
      await prefetch?.settle();
      await bed?.dispose();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it.concurrent.for(titled(CHECKPOINTS.map(checkpointCase), 'version'))('%s', async ([, crash], { expect }) => {
      await runCrashCase(fleet, subject, crash, work, expect);
    });
  },
);
