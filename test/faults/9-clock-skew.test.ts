import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { samplePatch } from '../../scripts/lib/sample-specs.mjs';
import { authorAndApproverSigning, type ThrowawayKey, throwawayKey } from '../../scripts/lib/signing.mjs';
import { type CliCall, runCli } from '../support/cli-process.js';
import { checkRollout } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { useFaultFleet } from '../support/fault-scenario.js';
import { hostOf, readJournal } from '../support/fleet-harness.js';
import { namespaces } from '../support/host-namespaces.js';
import { describeNeeding } from '../support/requirements.js';
import { skewedClockEnv, skewedClocks, skewedClockWrap, trackFaketimeLeftovers } from '../support/skewed-clock.js';

// Scenario 9: clocks that disagree. The signing workstation (the CLI signing and approving) runs
// 3 minutes behind, the coordinator 2 minutes ahead, and each agent at its own offset, every one
// through libfaketime in that process alone. The statement is valid for 15 minutes from the
// signer's clock: [T−3m, T+12m) in real time T. Agents accept an order while their own clock is in
// that window widened by `signing.clockSkewSeconds` (300 s, the default) either way:
//   · ±0, +4 min and −4 min: inside the window itself — legitimate orders apply;
//   · +16 min: 4 min past expiresAt by its own clock, and −7 min: notBefore 4 min ahead of it —
//     both within the 5 min allowed (and the statement really is valid): they apply;
//   · −10 min: notBefore is 7 min ahead of it, over the 5 min allowed — refused `not_yet_valid`;
//   · +20 min: 8 min past expiresAt, over the 5 min allowed — refused `expired`.
// A refused order runs nothing and is not journaled; the checker still finds all three accounts agreeing.

const PATH = '/etc/fault-9/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const SIGNER_CLOCK = '-3m';
const COORDINATOR_CLOCK = '+2m';
const VALID_FOR = '15m';
/** Each host's clock; the first runs on the machine's own. */
const HOST_CLOCKS: Readonly<Record<string, string | undefined>> = {
  'p9-1': undefined,
  'p9-2': '+4m',
  'p9-3': '-4m',
  'p9-4': '-10m',
  'p9-5': '+20m',
  'p9-6': '+16m',
  'p9-7': '-7m',
};
const HOSTS = Object.keys(HOST_CLOCKS).length;
const APPLIES = ['p9-1', 'p9-2', 'p9-3', 'p9-6', 'p9-7'];
const REFUSED: Readonly<Record<string, string>> = { 'p9-4': 'not_yet_valid', 'p9-5': 'expired' };
const TOKENS = { alice: 'fault9-alice-token-0001', bob: 'fault9-bob-token-000001' };

describeNeeding([namespaces, skewedClocks], 'fault 9: clock skew between signer, coordinator and agents', () => {
  let work: string | undefined;
  let alice: ThrowawayKey;
  let bob: ThrowawayKey;
  let agentConfig: string;

  let removeFaketimeLeftovers: (() => void) | undefined;

  // Registered before the fleet's hooks: the agents start trusting these keys. (And its afterAll runs
  // after the fleet's, once every skewed process is gone.)
  beforeAll(async () => {
    removeFaketimeLeftovers = trackFaketimeLeftovers();
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-fault-9-'));
    alice = await throwawayKey(join(work, 'keys'), 'alice');
    bob = await throwawayKey(join(work, 'keys'), 'bob');
    agentConfig = join(work, 'agent.json');
    // clockSkewSeconds left at its default (300): the documented tolerance is what is tested.
    await writeFile(agentConfig, JSON.stringify(authorAndApproverSigning(alice.publicKey, bob.publicKey)));
  });
  afterAll(async () => {
    removeFaketimeLeftovers?.();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const fleetOf = useFaultFleet(() => ({
    name: 'p9',
    hosts: HOSTS,
    path: PATH,
    initial: OLD,
    harness: {
      tokens: [
        { name: 'alice', token: TOKENS.alice, role: 'operator' },
        { name: 'bob', token: TOKENS.bob, role: 'approver' },
      ],
      wrap: skewedClockWrap(COORDINATOR_CLOCK),
    },
    agentEnv: (id) => {
      const offset = HOST_CLOCKS[id];
      return offset === undefined ? {} : skewedClockEnv(offset);
    },
    prepareHost: async () => ({ configFile: agentConfig }),
  }));

  it('applies inside the tolerance, refuses not_yet_valid and expired beyond it, and applies nothing expired', async () => {
    const fleet = fleetOf();
    // The skew is real: the coordinator's own answers are dated two minutes ahead.
    const answered = await fleet.fleet.api.raw('GET', '/v1/rollouts');
    const ahead = Date.parse(answered.headers.get('date') ?? '') - Date.now();
    expect(ahead).toBeGreaterThan(100_000);
    expect(ahead).toBeLessThan(140_000);
    const cli = async (args: string[], call: CliCall): Promise<string> => {
      const env = { ...call.env, ...skewedClockEnv(SIGNER_CLOCK) };
      const result = await runCli(fleet.fleet.coordinator.url, args, { ...call, env });
      expect(result.code, `fleetpatch ${args.join(' ')}\n${result.stderr}`).toBe(0);
      return result.stdout;
    };
    const asAlice = { token: TOKENS.alice };
    const specFile = join(work as string, 'patch.json');
    await writeFile(specFile, JSON.stringify(samplePatch({ title: 'fault 9', path: PATH, content: NEW })));
    const patchId = (await cli(['patch', 'create', '--file', specFile], asAlice)).trim();
    const created = await cli(
      [
        ...['rollout', 'create', '--patch', patchId, '--hosts', fleet.hostIds.join(','), '--waves', '100%'],
        ...['--max-failures', '100%', '--approvals', '1', '--patch-file', specFile],
        ...['--valid-for', VALID_FOR, '--sign-key', alice.file],
      ],
      asAlice,
    );
    const rolloutId = created.split('\n')[0]?.trim() ?? '';
    await cli(['rollout', 'approve', rolloutId, '--sign-key', bob.file], { token: TOKENS.bob });
    const startedAt = Date.now();
    await cli(['rollout', 'start', rolloutId], asAlice);

    const done = await fleet.fleet.waitForState(rolloutId, ['succeeded', 'halted'], 90_000);
    const verdict = await checkRollout(fleet, { rolloutId, changedContent: NEW });
    const convergeMs = Date.now() - startedAt;
    const clocks = Object.values(HOST_CLOCKS).map((c) => c ?? '±0');
    await recordRow(
      rowOf(
        '9 clock skew',
        HOSTS,
        [`signer ${SIGNER_CLOCK}, coordinator ${COORDINATOR_CLOCK}, agents ${clocks.join(' ')}`],
        verdict,
        convergeMs,
      ),
    );
    for (const id of APPLIES) {
      expect(hostOf(done, id), id).toMatchObject({ state: 'healthy', changed: true });
      expect(await fleet.readFileOf(id)).toBe(NEW);
    }
    for (const [id, code] of Object.entries(REFUSED)) {
      const host = hostOf(done, id);
      expect(host, id).toMatchObject({ state: 'failed', changed: false, errorCode: 'policy_denied' });
      expect(host.reason, id).toMatch(new RegExp(`^${code}: `));
      expect(await fleet.readFileOf(id)).toBe(OLD);
      expect(await readJournal(fleet.dataOf(id))).toEqual([]);
      const counted = JSON.parse(await readFile(join(fleet.dataOf(id), 'refusals.json'), 'utf8')) as unknown;
      expect(JSON.stringify(counted)).toContain(code);
    }
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ orders: HOSTS, appliedOnce: APPLIES.length, lost: 0, doubled: 0 });
  });
});
