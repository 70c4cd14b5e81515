// @ts-check
// `npm run demo`: a coordinator and three local agents, each confined to its own scratch root
// standing in for `/`, each obeying only orders signed by an author and an approver (throwaway keys
// made here for alice and bob). Rolls a signed file patch out in waves [1, "50%", "100%"], shows the
// files on disk, reverts under a revert statement both signed, shows them restored, and exits 0.

import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  APPLY_END_STATES,
  applyStatementFor,
  patchSpecOf,
  revertStatementFor,
  statementDigest,
} from '@fleetpatch/shared';
import {
  apiClient,
  issueJoinToken,
  startAgent,
  startCoordinator,
  waitFor,
  waitForAgentsOnline,
  waitForRolloutState,
} from './lib/local-fleet.mjs';
import { samplePatch, sampleRollout, sha256Of } from './lib/sample-specs.mjs';
import { authorAndApproverSigning, throwawayKey } from './lib/signing.mjs';

/**
 * @import { EventPage, Patch, RolloutPlan, RolloutState, RolloutStatus } from '@fleetpatch/shared'
 * @import { AgentProcess, CoordinatorProcess } from './lib/local-fleet.mjs'
 */

const CONFIG_PATH = '/etc/demo-app/app.conf';
const OLD = 'greeting = hello\nworkers = 2\n';
const NEW = 'greeting = hello, fleet\nworkers = 4\n';
const say = (line = '') => process.stdout.write(`${line}\n`);

const work = await mkdtemp(join(tmpdir(), 'fleetpatch-demo-'));
/** @type {(CoordinatorProcess | AgentProcess)[]} */
const processes = [];
try {
  const tokens = { admin: 'demo-admin-token-0001', alice: 'demo-alice-token-0001', bob: 'demo-bob-token-00001' };
  const coordinator = await startCoordinator({
    dataDir: join(work, 'coordinator'),
    apiTokens: [
      { name: 'admin', token: tokens.admin, role: 'admin' },
      { name: 'alice', token: tokens.alice, role: 'operator' },
      { name: 'bob', token: tokens.bob, role: 'approver' },
    ],
  });
  processes.push(coordinator);
  say(`coordinator listening on ${coordinator.url}`);
  say(`dashboard while the demo runs: ${coordinator.url}/ui/ (log in with ${tokens.admin})`);
  const admin = apiClient(coordinator.url, tokens.admin);
  const alice = apiClient(coordinator.url, tokens.alice);
  const bob = apiClient(coordinator.url, tokens.bob);

  // Keys live with people: alice authors, bob approves. Every agent trusts both public keys and
  // needs both signatures on every order — four eyes enforced on each host, not only here.
  const keys = {
    alice: await throwawayKey(join(work, 'keys'), 'alice'),
    bob: await throwawayKey(join(work, 'keys'), 'bob'),
  };
  const agentConfig = join(work, 'agent.json');
  await writeFile(agentConfig, JSON.stringify(authorAndApproverSigning(keys.alice.publicKey, keys.bob.publicKey)));
  say(
    `throwaway signing keys in ${join(work, 'keys')}: alice ${keys.alice.keyId} (author), bob ${keys.bob.keyId} (approver)`,
  );

  const hosts = ['web-1', 'web-2', 'web-3'];
  for (const id of hosts) {
    const root = join(work, id, 'root');
    await mkdir(join(root, 'etc/demo-app'), { recursive: true });
    await writeFile(join(root, CONFIG_PATH), OLD, { mode: 0o644 });
    // Each agent enrolls on its first start with a single-use join token and keeps its own key.
    const token = await issueJoinToken(admin, id, { role: 'web' });
    processes.push(
      startAgent({
        coordinatorUrl: coordinator.url,
        hostId: id,
        joinToken: token,
        dataDir: join(work, id, 'data'),
        rootDir: root,
        labels: { role: 'web', env: 'demo' },
        configExtra: agentConfig,
      }),
    );
  }
  await waitForAgentsOnline(admin, hosts);
  say(`agents online: ${hosts.join(', ')} (each confined to ${join(work, '<host>', 'root')})`);
  say('each agent obeys only orders signed by an author and an approver it trusts');

  /** @type {Patch} */
  const patch = await alice.post(
    '/v1/patches',
    samplePatch({
      title: 'Raise demo-app workers to 4',
      problem: 'demo-app queues requests at peak: 2 workers are not enough.',
      rootCause: 'workers was sized for last year’s traffic.',
      intendedFix: 'Set workers = 4 in /etc/demo-app/app.conf.',
      ticket: 'OPS-1234',
      path: CONFIG_PATH,
      content: NEW,
      expectedPriorSha256: sha256Of(OLD),
      health: {
        checks: [{ kind: 'file', name: 'config present', path: CONFIG_PATH }],
        intervalSeconds: 0.2,
        minHealthySeconds: 0.4,
        healthyDeadlineSeconds: 10,
      },
    }),
  );
  say(`\npatch ${patch.id} by alice: "${patch.title}" (${patch.ticket})`);

  /** @type {RolloutStatus} */
  const created = await alice.post(
    '/v1/rollouts',
    sampleRollout(patch.id, {
      target: { labels: { role: 'web' } },
      waves: [1, '50%', '100%'],
      maxFailures: 0,
      bakeSeconds: 1,
      draft: true,
    }),
  );
  const rolloutId = created.rollout.id;
  /** @type {RolloutPlan} */
  const plan = await alice.get(`/v1/rollouts/${rolloutId}/plan`);
  say(
    `rollout ${rolloutId} (a draft): waves ${JSON.stringify(plan.waveSizes)} → ${plan.waves.map((w) => `[${w.hosts.join(', ')}]`).join(' ')}; ${plan.haltsOn}`,
  );

  // What alice signs on her machine: the whole order (the content by its sha256, mode, owner, health
  // checks, revert plan), the hosts (a label target is the coordinator's word, so its planned host
  // ids are signed), a one-hour window and a sequence. The coordinator cannot change a byte of it.
  const planned = plan.waves.flatMap((w) => w.hosts);
  const statement = applyStatementFor(patchSpecOf(patch), created.rollout.request, planned, {
    now: new Date(),
    validForSeconds: 3600,
  });
  await alice.post(`/v1/rollouts/${rolloutId}/statement`, keys.alice.signed(statement));
  await alice.post(`/v1/rollouts/${rolloutId}/submit`);
  say(
    `signed by alice as author: statement ${statementDigest(statement).slice(0, 16)} (the patch with content sha256 ${sha256Of(NEW).slice(0, 16)}…, hosts ${planned.join(', ')}, valid 1h)`,
  );
  await bob.post(`/v1/rollouts/${rolloutId}/approve`, {
    signature: keys.bob.sign(statement),
    publicKey: keys.bob.publicKey,
  });
  say('approved by bob: his signature on the same statement (four eyes, checked again by every agent)');
  await alice.post(`/v1/rollouts/${rolloutId}/start`);
  say('started by alice: each order carries the statement and both signatures\n');

  // Polls like waitForRolloutState, printing each change of the waves as it goes.
  const finished = APPLY_END_STATES;
  let last = '';
  const final = await waitFor(
    `rollout ${rolloutId} to reach ${finished.join('|')}`,
    async () => {
      /** @type {RolloutStatus} */
      const status = await alice.get(`/v1/rollouts/${rolloutId}`);
      const line = status.waves
        .map((w) => `wave ${w.wave + 1} ${w.phase.padEnd(7)} ${w.hosts.map((h) => `${h.hostId}:${h.state}`).join(' ')}`)
        .join(' | ');
      if (line !== last) say(`  ${status.rollout.state.padEnd(9)} ${line}`);
      last = line;
      return finished.includes(status.rollout.state) ? status : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 50 },
  );
  say(`\nrollout ${final.rollout.state}`);
  if (final.rollout.state !== 'succeeded')
    throw new Error(`rollout ended ${final.rollout.state}: ${final.rollout.stateReason}`);

  const show = async (/** @type {string} */ label) => {
    say(label);
    for (const id of hosts) {
      const file = join(work, id, 'root', CONFIG_PATH);
      const [content, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
      say(`  ${id}: ${JSON.stringify(content)} mode ${(info.mode & 0o7777).toString(8)} uid ${info.uid}`);
    }
  };
  await show('files on disk after the rollout:');

  // Undoing an approved fix is never one person's call: a revert statement naming the apply
  // statement, signed by alice and then bob; the second signature starts the revert.
  const revert = revertStatementFor(statement, null, { now: new Date(), validForSeconds: 3600 });
  await alice.post(`/v1/rollouts/${rolloutId}/revert-statement`, keys.alice.signed(revert));
  await bob.post(`/v1/rollouts/${rolloutId}/revert-statement`, keys.bob.signed(revert));
  const reverted = await waitForRolloutState(alice, rolloutId, ['reverted', 'revert_failed']);
  say(
    `\nrevert statement ${statementDigest(revert).slice(0, 16)} signed by alice and bob → rollout ${reverted.rollout.state}`,
  );
  await show('files on disk after the revert:');
  for (const id of hosts) {
    if ((await readFile(join(work, id, 'root', CONFIG_PATH), 'utf8')) !== OLD)
      throw new Error(`${id} was not restored`);
  }
  /** @type {EventPage} */
  const events = await alice.get(`/v1/rollouts/${rolloutId}/events?limit=1000`);
  say(`\naudit trail: ${events.events.length} events (GET /v1/rollouts/${rolloutId}/events)`);
  say(
    'demo finished: every host changed in waves, only as alice and bob signed, and came back under a revert statement both signed',
  );
} finally {
  await Promise.all(processes.map((p) => p.stop()));
  await rm(work, { recursive: true, force: true });
}
