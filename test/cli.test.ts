import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentList, EventPage, JoinTokenCreated, PatchList } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_BIN } from '../scripts/lib/local-fleet.mjs';
import { type SamplePatchOptions, samplePatch, sha256Of } from '../scripts/lib/sample-specs.mjs';
import { CLI, type CliCall, type CliResult, runCli, runNode } from './support/cli-process.js';
import { ADMIN_TOKEN, FleetHarness } from './support/fleet-harness.js';

// The fleetpatch CLI as ops staff type it: the built binary as a child process against a real
// coordinator and two real agents on 127.0.0.1, each agent confined to its own scratch root.

const PATH = '/etc/app/app.conf';
const OLD = 'listen = 8080\nworkers = 2\n';
const NEW = 'listen = 8080\nworkers = 8\n';
const HOSTS = ['web-1', 'web-2'];
const TOKENS = { admin: ADMIN_TOKEN, alice: 'cli-alice-token-00001', bob: 'cli-bob-token-0000001' };

let work: string;
let fleet: FleetHarness;

const rootOf = (host: string) => join(work, host, 'root');

/** Runs `fleetpatch …`; the connection comes from the environment unless `env` says otherwise. */
function fleetpatch(args: string[], call: CliCall = {}): Promise<CliResult> {
  return runCli(fleet.coordinator.url, args, call);
}

/** OLD → NEW at PATH, owned by root:root (as `patch show` prints it), with a quick health check. */
function patchSpec(options: SamplePatchOptions = {}) {
  return samplePatch({
    path: PATH,
    content: NEW,
    owner: 'root',
    group: 'root',
    expectedPriorSha256: sha256Of(OLD),
    health: {
      checks: [{ kind: 'file', name: 'config present', path: PATH }],
      intervalSeconds: 0.2,
      minHealthySeconds: 0.4,
      healthyDeadlineSeconds: 10,
    },
    ...options,
  });
}

async function writeSpec(name: string, spec: unknown): Promise<string> {
  const file = join(work, name);
  await writeFile(file, JSON.stringify(spec, null, 2));
  return file;
}

async function patchCount(): Promise<number> {
  const { patches } = await fleet.api.get<PatchList>('/v1/patches');
  return patches.length;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-cli-'));
  for (const host of HOSTS) {
    await mkdir(join(rootOf(host), 'etc/app'), { recursive: true, mode: 0o755 });
    await writeFile(join(rootOf(host), PATH), OLD, { mode: 0o644 });
    await chmod(join(rootOf(host), PATH), 0o644);
  }
  fleet = await FleetHarness.start(join(work, 'coordinator'), {
    tokens: [
      { name: 'alice', token: TOKENS.alice, role: 'operator' },
      { name: 'bob', token: TOKENS.bob, role: 'approver' },
    ],
    tickIntervalMs: 100,
  });
});

afterAll(async () => {
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('the fleetpatch CLI', () => {
  it('issues join tokens, printing each once, that agents enroll with; and lists them', async () => {
    for (const host of HOSTS) {
      const issued = await fleetpatch(['join-token', 'create', '--host', host, '--label', 'role=web'], {
        token: TOKENS.admin,
      });
      expect(issued.code, issued.stderr).toBe(0);
      const token = issued.stdout.trim();
      expect(token).toMatch(/^fpj_\S+$/);
      expect(issued.stderr).toContain('shown once');
      fleet.spawnAgent({
        id: host,
        joinToken: token,
        dataDir: join(work, host, 'data'),
        rootDir: rootOf(host),
        labels: { role: 'web' },
      });
    }
    await fleet.waitOnline(HOSTS);

    const listed = await fleetpatch(['agents'], { token: TOKENS.alice });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^ID\s+ONLINE\s+LABELS\s+REPORTED\s+OS\/ARCH\s+LAST SEEN/);
    // The agent reports what its join token fixed: nothing beyond the admin's labels.
    expect(listed.stdout).toMatch(/web-1\s+yes\s+role=web\s+-\s+\S+\/\S+\s+\d+s ago/);
    const json = await fleetpatch(['agents', '--json'], { token: TOKENS.alice });
    expect((JSON.parse(json.stdout) as AgentList).agents.map((a) => a.id)).toEqual(HOSTS);
  });

  it('refuses an invalid patch file locally with the failing paths: exit 2 (bad input), nothing sent', async () => {
    const before = await patchCount();
    const file = await writeSpec('bad-patch.json', patchSpec({ mode: '999', path: 'etc/app' }));
    const result = await fleetpatch(['patch', 'create', '--file', file], { token: TOKENS.alice });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('is not a valid patch; nothing was sent');
    expect(result.stderr).toMatch(/change\.mode: must be an octal mode/);
    expect(result.stderr).toMatch(/change\.path: must be an absolute, normalized path/);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(await patchCount()).toBe(before);
  });

  it('creates, plans, approves with a second token, starts, watches to success, and reverts', async () => {
    const file = await writeSpec('patch.json', patchSpec());
    const patch = await fleetpatch(['patch', 'create', '--file', file], { token: TOKENS.alice });
    expect(patch.code, patch.stderr).toBe(0);
    const patchId = patch.stdout.trim();
    expect(patchId).toMatch(/^pat_/);
    const shown = await fleetpatch(['patch', 'show', patchId], { token: TOKENS.alice });
    expect(shown.stdout).toContain(`file ${PATH} (mode 0644, root:root`);

    const created = await fleetpatch(
      ['rollout', 'create', '--patch', patchId, '--labels', 'role=web', '--waves', '1,100%', '--max-failures', '0'],
      { token: TOKENS.alice },
    );
    expect(created.code, created.stderr).toBe(0);
    const [rolloutId] = created.stdout.split('\n');
    expect(rolloutId).toMatch(/^ro_/);
    expect(created.stdout).toContain('awaiting_approval');
    expect(created.stdout).toContain('2 hosts in 2 waves [1, 1]; halts on the 1st failure');

    const plan = await fleetpatch(['rollout', 'plan', rolloutId!], { token: TOKENS.alice });
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/wave 1 {2}1 host {2}web-1\n {2}wave 2 {2}1 host {2}web-2/);

    const approved = await fleetpatch(['rollout', 'approve', rolloutId!], { token: TOKENS.bob });
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toMatch(/scheduled .*approved by bob/);

    const started = await fleetpatch(['--token', TOKENS.alice, 'rollout', 'start', rolloutId!]);
    expect(started.code, started.stderr).toBe(0);

    const watched = await fleetpatch(['rollout', 'status', rolloutId!, '--watch'], { token: TOKENS.alice });
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stdout).toMatch(/rollout ro_\S+ {2}succeeded/);
    expect(watched.stdout).toMatch(/wave 1 {2}passed +web-1:healthy/);
    expect(watched.stdout).toMatch(/wave 2 {2}passed +web-2:healthy/);
    for (const host of HOSTS) expect(await readFile(join(rootOf(host), PATH), 'utf8')).toBe(NEW);

    const reverted = await fleetpatch(['rollout', 'revert', rolloutId!], { token: TOKENS.alice });
    expect(reverted.code, reverted.stderr).toBe(0);
    const afterRevert = await fleetpatch(['rollout', 'status', rolloutId!, '--watch'], { token: TOKENS.alice });
    expect(afterRevert.code, afterRevert.stderr).toBe(9); // reverted: its own exit code
    expect(afterRevert.stdout).toMatch(/rollout ro_\S+ {2}reverted/);
    for (const host of HOSTS) expect(await readFile(join(rootOf(host), PATH), 'utf8')).toBe(OLD);

    const events = await fleetpatch(['events', rolloutId!], { token: TOKENS.alice });
    expect(events.code, events.stderr).toBe(0);
    expect(events.stdout).toMatch(/^#\d+ \S+ bob rollout\.approved$/m);
    expect(events.stdout).toContain('rollout.reverted');
  });

  it('watches a rollout that halts and exits 7, naming the failed host and why', async () => {
    const file = await writeSpec(
      'drifted.json',
      patchSpec({ title: 'expects a prior file that is not there', expectedPriorSha256: sha256Of('other') }),
    );
    const patchId = (await fleetpatch(['patch', 'create', '--file', file], { token: TOKENS.alice })).stdout.trim();
    const created = await fleetpatch(['rollout', 'create', '--patch', patchId, '--hosts', 'web-1', '--waves', '1'], {
      token: TOKENS.alice,
    });
    const rolloutId = created.stdout.split('\n')[0]!;
    expect((await fleetpatch(['rollout', 'approve', rolloutId], { token: TOKENS.bob })).code).toBe(0);
    expect((await fleetpatch(['rollout', 'start', rolloutId], { token: TOKENS.alice })).code).toBe(0);
    const watched = await fleetpatch(['rollout', 'status', rolloutId, '--watch'], { token: TOKENS.alice });
    expect(watched.code, watched.stdout).toBe(7);
    expect(watched.stdout).toMatch(/rollout ro_\S+ {2}halted/);
    expect(watched.stdout).toMatch(/web-1 failed: precondition_failed/);
    expect(await readFile(join(rootOf('web-1'), PATH), 'utf8')).toBe(OLD);
  });

  it("shows one host's history, the whole audit trail, join tokens, and revokes an agent", async () => {
    const show = await fleetpatch(['agent', 'show', 'web-1'], { token: TOKENS.alice });
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/web-1\s+online/);
    expect(show.stdout).toMatch(/^labels {4}role=web$/m);
    expect(show.stdout).toMatch(/^reported {2}role=web {2}\(the host's word/m);
    expect(show.stdout).toMatch(/rollout\s+wave\s+state/i);

    const audit = await fleetpatch(['events', '--json'], { token: TOKENS.alice });
    expect(audit.code).toBe(0);
    const types = (JSON.parse(audit.stdout) as EventPage).events.map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining(['join_token.created', 'agent.enrolled', 'patch.created', 'rollout.created']),
    );
    expect((await fleetpatch(['events', '--follow'], { token: TOKENS.alice })).code).toBe(2);

    // `fleetpatch-agent enroll` enrolls and exits; the join token is then used up.
    const joinToken = (await fleetpatch(['join-token', 'create', '--host', 'spare-1'], { token: TOKENS.admin })).stdout;
    const enrolled = await runNode(
      [
        AGENT_BIN,
        'enroll',
        '--coordinator',
        fleet.coordinator.url,
        '--host-id',
        'spare-1',
        '--data-dir',
        join(work, 'spare-1'),
      ],
      { FLEETPATCH_JOIN_TOKEN: joinToken.trim(), FLEETPATCH_ALLOW_INSECURE: '1' },
    );
    expect(enrolled.code, enrolled.stderr).toBe(0);
    expect(enrolled.stdout).toContain('enrolled spare-1');
    const tokens = await fleetpatch(['join-token', 'list'], { token: TOKENS.admin });
    expect(tokens.code).toBe(0);
    expect(tokens.stdout).toMatch(/^ID\s+STATE\s+USES/);
    expect(tokens.stdout).toMatch(/jt_\S+\s+used_up\s+1\/1\s+\S+\s+spare-1/);
    expect(tokens.stdout).not.toContain('fpj_');
    const spare = JSON.parse(
      (await fleetpatch(['join-token', 'create', '--uses', '5', '--json'], { token: TOKENS.admin })).stdout,
    ) as JoinTokenCreated;
    const revokedToken = await fleetpatch(['join-token', 'revoke', spare.id], { token: TOKENS.admin });
    expect(revokedToken.stdout).toContain(`join token ${spare.id} revoked`);

    expect((await fleetpatch(['agent', 'revoke', 'spare-1'], { token: TOKENS.alice })).code).toBe(1);
    const revoked = await fleetpatch(['agent', 'revoke', 'spare-1'], { token: TOKENS.admin });
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/agent spare-1 revoked/);
    expect((await fleetpatch(['agents'], { token: TOKENS.alice })).stdout).toMatch(/spare-1\s+revoked/);
  });

  it('reads a patch from stdin with "-"', async () => {
    const result = await fleetpatch(['patch', 'create', '--file', '-'], {
      token: TOKENS.alice,
      input: JSON.stringify(patchSpec({ title: 'from stdin' })),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim()).toMatch(/^pat_/);
  });

  it('prints the server refusal for a self-approval (403) and exits 1', async () => {
    const patchId = (
      await fleetpatch(['patch', 'create', '--file', '-'], { token: TOKENS.admin, input: JSON.stringify(patchSpec()) })
    ).stdout.trim();
    const created = await fleetpatch(['rollout', 'create', '--patch', patchId, '--all'], { token: TOKENS.admin });
    const rolloutId = created.stdout.split('\n')[0]!;
    const self = await fleetpatch(['rollout', 'approve', rolloutId], { token: TOKENS.admin });
    expect(self.code).toBe(1);
    expect(self.stderr.trim()).toBe('error: four eyes: a rollout cannot be approved by the person who created it');
    const operator = await fleetpatch(['rollout', 'approve', rolloutId], { token: TOKENS.alice });
    expect(operator.code).toBe(1);
    expect(operator.stderr.trim()).toBe('error: alice (operator) may not approve');
    const unknown = await fleetpatch(['rollout', 'status', 'ro_nope'], { token: TOKENS.alice });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim()).toBe('error: rollout ro_nope does not exist');
  });

  it("prints the server's refusal of a hostTimeoutSeconds the patch's health deadline outlasts, and exits 2", async () => {
    const patchId = (
      await fleetpatch(['patch', 'create', '--file', '-'], { token: TOKENS.admin, input: JSON.stringify(patchSpec()) })
    ).stdout.trim();
    const refused = await fleetpatch(['rollout', 'create', '--patch', patchId, '--all', '--file', '-'], {
      token: TOKENS.alice,
      input: JSON.stringify({ hostTimeoutSeconds: 5 }),
    });
    expect(refused.code).toBe(2);
    const why =
      `must be at least 10.2 (got 5): patch ${patchId} gives each host up to healthyDeadlineSeconds 10s to pass ` +
      "its health checks, polled every intervalSeconds 0.2s; the patch's health deadline plus one interval must " +
      'fit in hostTimeoutSeconds, or a host still verifying would be timed out and reverted';
    expect(refused.stderr).toBe(
      `error: invalid request: body.hostTimeoutSeconds: ${why}\n  body.hostTimeoutSeconds: ${why}\n`,
    );
  });

  it('exits 2 with a clear message when no token is given', async () => {
    const result = await fleetpatch(['rollout', 'list']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe(
      'error: no API token: pass --token TOKEN or set FLEETPATCH_TOKEN, or choose a context (fleetpatch config use-context NAME)',
    );
    expect(result.stdout).toBe('');
  });

  it('exits 2 on a malformed flag, naming it', async () => {
    const result = await fleetpatch(['rollout', 'create', '--patch', 'pat_x', '--all', '--waves', '1,ten'], {
      token: TOKENS.alice,
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("option '--waves <steps>' argument '1,ten' is invalid");
  });

  it('says in one line when the coordinator cannot be reached, and exits 5', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    const result = await fleetpatch(['agents', '--url', `http://127.0.0.1:${port}`], { token: TOKENS.alice });
    expect(result.code).toBe(5);
    expect(result.stderr).toBe(
      `error: cannot reach the coordinator at http://127.0.0.1:${port}: connection refused (ECONNREFUSED)\n`,
    );
  });

  it('connects through a named context of the config file, and refuses a token file others can read', async () => {
    const dir = join(work, 'cli-config');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'alice.token'), `${TOKENS.alice}\n`, { mode: 0o600 });
    await chmod(join(dir, 'alice.token'), 0o600);
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      `# two coordinators\ncontexts:\n  lab:\n    url: ${fleet.coordinator.url}\n    tokenFile: alice.token\n  elsewhere:\n    url: http://127.0.0.1:9\n    tokenFile: alice.token\n`,
    );
    const env = { FLEETPATCH_CONFIG: config };
    const none = await runNode([CLI, 'agents'], env);
    expect(none.code).toBe(2);
    const used = await runNode([CLI, 'config', 'use-context', 'lab'], env);
    expect(used.code, used.stderr).toBe(0);
    expect(await readFile(config, 'utf8')).toMatch(/^# two coordinators\ncontexts:/); // comments kept
    expect((await runNode([CLI, 'config', 'current-context'], env)).stdout).toBe('lab\n');
    const listed = await runNode([CLI, 'agents'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/web-1\s+yes/);
    // --context picks another one for one command: port 9 answers nobody.
    expect((await runNode([CLI, '--context', 'elsewhere', 'agents'], env)).code).toBe(5);
    const unknown = await runNode([CLI, '--context', 'prod', 'agents', '--json'], env);
    expect(unknown.code).toBe(2);
    expect(JSON.parse(unknown.stderr)).toMatchObject({ error: { code: 'usage', exitCode: 2 } });
    expect(unknown.stderr).toContain('no context \\"prod\\"');

    await chmod(join(dir, 'alice.token'), 0o644);
    const open = await runNode([CLI, 'agents'], env);
    expect(open.code).toBe(2);
    expect(open.stderr).toBe(
      `error: token file ${join(dir, 'alice.token')} is readable by others (mode 0644): chmod 600 ${join(dir, 'alice.token')}\n`,
    );
  });
});
