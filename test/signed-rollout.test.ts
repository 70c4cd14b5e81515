import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EventPage, ORDER_REFUSED_EVENT, type Patch } from '@fleetpatch/shared';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sha256Of } from '../scripts/lib/sample-specs.mjs';
import { authorAndApproverSigning } from '../scripts/lib/signing.mjs';
import { type CliCall, type CliResult, runCli } from './support/cli-process.js';
import { ADMIN_TOKEN, FleetHarness, hostsOf, readJournal } from './support/fleet-harness.js';

// Signed rollouts end to end: the real CLI makes the keys, signs and approves; a real coordinator
// stores and forwards the statements; real agents whose config requires an author's and an
// approver's signature apply only what both signed — and refuse a patch edited in the database
// after it was approved.

const PATH = '/etc/app/app.conf';
const OLD = 'listen = 8080\nworkers = 2\n';
const NEW = 'listen = 8080\nworkers = 8\n';
const HOSTS = ['web-1', 'web-2'];
const TOKENS = { alice: 'signed-alice-token-0001', bob: 'signed-bob-token-00001' };
const BOB_PASS = 'correct horse battery staple';

let work: string;
let fleet: FleetHarness;
const keys = { alice: '', bob: '' };

const rootOf = (host: string) => join(work, host, 'root');
const dataOf = (host: string) => join(work, host, 'data');
const onDisk = (host: string) => readFile(join(rootOf(host), PATH), 'utf8');

function fleetpatch(args: string[], call: CliCall = {}): Promise<CliResult> {
  return runCli(fleet.coordinator.url, args, call);
}

/** Runs the CLI and expects exit 0; returns its stdout. */
async function ok(args: string[], call: CliCall): Promise<string> {
  const result = await fleetpatch(args, call);
  expect(result.code, `fleetpatch ${args.join(' ')}\n${result.stderr}`).toBe(0);
  return result.stdout;
}

const asAlice: CliCall = { token: TOKENS.alice };
const asBob: CliCall = { token: TOKENS.bob, env: { BOB_PASS } };
const aliceSigns = () => ['--sign-key', keys.alice];
const bobSigns = () => ['--sign-key', keys.bob, '--passphrase-env', 'BOB_PASS'];

/** `fleetpatch key generate --json` → the public key. */
async function generateKey(name: string, call: CliCall, extra: string[] = []): Promise<string> {
  const file = join(work, 'keys', `${name}.pem`);
  const out = await ok(['key', 'generate', '--out', file, '--json', ...extra], call);
  keys[name as keyof typeof keys] = file;
  return (JSON.parse(out) as { publicKey: string }).publicKey;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-signed-'));
  fleet = await FleetHarness.start(join(work, 'coordinator'), {
    tokens: [
      { name: 'alice', token: TOKENS.alice, role: 'operator' },
      { name: 'bob', token: TOKENS.bob, role: 'approver' },
    ],
    tickIntervalMs: 100,
  });
  const alicePublic = await generateKey('alice', asAlice);
  const bobPublic = await generateKey('bob', asBob, ['--passphrase-env', 'BOB_PASS']);
  // What each host's admin writes: the people whose signatures this host obeys, and how many it needs.
  const agentConfig = join(work, 'agent.json');
  await writeFile(agentConfig, JSON.stringify(authorAndApproverSigning(alicePublic, bobPublic)));
  for (const host of HOSTS) {
    await mkdir(join(rootOf(host), 'etc/app'), { recursive: true, mode: 0o755 });
    await writeFile(join(rootOf(host), PATH), OLD);
    await chmod(join(rootOf(host), PATH), 0o644);
    fleet.spawnAgent({
      id: host,
      joinToken: await fleet.register(host, { role: 'web' }),
      dataDir: dataOf(host),
      rootDir: rootOf(host),
      configFile: agentConfig,
    });
  }
  await fleet.waitOnline(HOSTS);
});

afterAll(async () => {
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** A patch OLD → NEW as alice; returns its id and the spec file. */
async function createPatch(): Promise<{ patchId: string; specFile: string }> {
  const specFile = join(work, `patch-${Date.now()}.json`);
  const spec = samplePatch({
    path: PATH,
    content: NEW,
    owner: 'root',
    group: 'root',
    expectedPriorSha256: sha256Of(OLD),
    health: {
      checks: [{ kind: 'file', name: 'config present', path: PATH }],
      intervalSeconds: 0.2,
      minHealthySeconds: 0.2,
      healthyDeadlineSeconds: 10,
    },
  });
  await writeFile(specFile, JSON.stringify(spec));
  return { patchId: (await ok(['patch', 'create', '--file', specFile], asAlice)).trim(), specFile };
}

/** `rollout create … --sign-key` as alice, the patch checked against her spec file first. */
function createSigned(patchId: string, specFile: string, target: string[]): Promise<CliResult> {
  const flags = ['--waves', '100%', '--approvals', '1', '--patch-file', specFile, ...aliceSigns()];
  return fleetpatch(['rollout', 'create', '--patch', patchId, ...target, ...flags], asAlice);
}

/** Created and signed by alice, approved with bob's key; returns its id. */
async function signedAndApproved(patchId: string, specFile: string, target: string[]): Promise<string> {
  const created = await createSigned(patchId, specFile, target);
  expect(created.code, created.stderr).toBe(0);
  const rolloutId = created.stdout.split('\n')[0]?.trim() ?? '';
  expect(rolloutId).toMatch(/^ro_/);
  await ok(['rollout', 'approve', rolloutId, ...bobSigns()], asBob);
  return rolloutId;
}

describe('a signed rollout, from the keys to the agents', () => {
  let rolloutId: string;

  it('signed by its author and its approver with keys the agents trust, it changes the file on every host', async () => {
    const { patchId, specFile } = await createPatch();
    const created = await createSigned(patchId, specFile, ['--labels', 'role=web']);
    expect(created.code, created.stderr).toBe(0);
    rolloutId = created.stdout.split('\n')[0]?.trim() ?? '';
    expect(created.stderr).toMatch(/signing rollout ro_\S+ as its author\nstatement [0-9a-f]{64}/);
    expect(created.stderr).toContain(`sha256 ${sha256Of(NEW)} (${Buffer.byteLength(NEW)} bytes)`);
    expect(created.stderr).toContain('target    hosts web-1, web-2');

    const unsigned = await fleetpatch(['rollout', 'approve', rolloutId], asBob);
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toMatch(/is signed: approve with --sign-key/);
    const byAuthorsKey = await fleetpatch(['rollout', 'approve', rolloutId, ...aliceSigns()], asBob);
    expect(byAuthorsKey.code).toBe(1);
    expect(byAuthorsKey.stderr).toMatch(/four eyes: key [0-9a-f]{16} is the author's key/);
    await ok(['rollout', 'approve', rolloutId, ...bobSigns()], asBob);

    await ok(['rollout', 'start', rolloutId], asAlice);
    const done = await fleet.waitForState(rolloutId, ['succeeded', 'halted']);
    expect(done.rollout.state, JSON.stringify(hostsOf(done))).toBe('succeeded');
    for (const host of HOSTS) expect(await onDisk(host)).toBe(NEW);
    const shown = await ok(['rollout', 'status', rolloutId], asAlice);
    expect(shown).toMatch(
      /signed {4}statement [0-9a-f]{16} by alice \(key [0-9a-f]{16}\) as author, bob \(key [0-9a-f]{16}\) as approver/,
    );
  });

  it('one signature of its revert statement reverts nothing; the second person’s starts the revert', async () => {
    const alone = await fleetpatch(['rollout', 'revert', rolloutId], asAlice);
    expect(alone.code).toBe(1);
    expect(alone.stderr).toMatch(/needs a revert statement signed by 2 people/);

    const first = await fleetpatch(['rollout', 'revert', rolloutId, ...aliceSigns()], asAlice);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('signed 1 of 2; a second person runs the same command');
    const notYet = await fleetpatch(['rollout', 'revert', rolloutId], asAlice);
    expect(notYet.code).toBe(1);
    expect(notYet.stderr).toMatch(/has 1 of 2 signatures/);
    expect((await fleet.status(rolloutId)).rollout.state).toBe('succeeded');
    for (const host of HOSTS) {
      expect(await onDisk(host)).toBe(NEW);
      expect((await readJournal(dataOf(host))).filter((e) => e.kind === 'revert')).toEqual([]);
    }

    const second = await fleetpatch(['rollout', 'revert', rolloutId, ...bobSigns()], asBob);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain('signed 2 of 2: the revert has started');
    const reverted = await fleet.waitForState(rolloutId, ['reverted', 'revert_failed']);
    expect(reverted.rollout.state, JSON.stringify(hostsOf(reverted))).toBe('reverted');
    for (const host of HOSTS) expect(await onDisk(host)).toBe(OLD);
  });
});

describe('a patch edited in the database after it was approved', () => {
  it('is refused by every agent as tampered: nothing written, nothing journaled', async () => {
    const { patchId, specFile } = await createPatch();
    const rolloutId = await signedAndApproved(patchId, specFile, ['--hosts', HOSTS.join(',')]);
    const journaledBefore = await Promise.all(HOSTS.map(async (h) => (await readJournal(dataOf(h))).length));

    // Whoever holds the database (or the coordinator's process) edits the approved patch.
    await fleet.coordinator.stop();
    const db = new Database(join(work, 'coordinator', 'fleetpatch.db'));
    const row = db.prepare('SELECT spec FROM patches WHERE id = ?').get(patchId) as { spec: string };
    const spec = JSON.parse(row.spec) as Omit<Patch, 'id' | 'createdBy' | 'createdAt'>;
    if (spec.change.kind !== 'file') throw new Error('a file patch was expected');
    spec.change.content = 'listen = 8080\nworkers = 8\n# and a little something else\n';
    db.prepare('UPDATE patches SET spec = ? WHERE id = ?').run(JSON.stringify(spec), patchId);
    db.close();
    await fleet.restart();
    await fleet.waitOnline(HOSTS);

    await ok(['rollout', 'start', rolloutId], { token: ADMIN_TOKEN });
    // Every host answers (a halt lets in-flight hosts finish), and the rollout halts on the refusals.
    const settled = await waitFor('every host to refuse the tampered order', async () => {
      const status = await fleet.status(rolloutId);
      return status.rollout.state === 'halted' && hostsOf(status).every((h) => h.state === 'failed')
        ? status
        : undefined;
    });
    for (const host of hostsOf(settled)) {
      expect(host.state, host.hostId).toBe('failed');
      expect(host.errorCode).toBe('policy_denied');
      expect(host.reason).toMatch(/^tampered: /);
      expect(host.changed).toBe(false);
    }
    for (const [i, host] of HOSTS.entries()) {
      expect(await onDisk(host)).toBe(OLD);
      const journal = await readJournal(dataOf(host));
      expect(journal).toHaveLength(journaledBefore[i] ?? -1);
      expect(journal.filter((e) => e.order?.rolloutId === rolloutId)).toEqual([]);
      const refusals = JSON.parse(await readFile(join(dataOf(host), 'refusals.json'), 'utf8')) as {
        byCode: Record<string, number>;
      };
      expect(refusals.byCode.tampered).toBeGreaterThanOrEqual(1);
    }

    // Each refusal is a security event in the coordinator's audit trail, shown as such by the CLI.
    const trail = JSON.parse(await ok(['events', '--json'], { token: ADMIN_TOKEN })) as Pick<EventPage, 'events'>;
    const refused = trail.events.filter((e) => e.type === ORDER_REFUSED_EVENT && e.rolloutId === rolloutId);
    expect(refused.map((e) => [e.hostId, e.data?.code, e.data?.order]).sort()).toEqual(
      HOSTS.map((host) => [host, 'tampered', 'apply']),
    );
    for (const event of refused) expect(String(event.data?.reason)).toMatch(/^tampered: /);
    const shown = await ok(['events', rolloutId], { token: ADMIN_TOKEN });
    for (const host of HOSTS) {
      expect(shown).toMatch(
        new RegExp(`${host} security\\.order_refused \\[${host}\\] SECURITY: refused apply order \\S+ — tampered: `),
      );
    }
  });
});
