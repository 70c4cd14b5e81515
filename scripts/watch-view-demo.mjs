// @ts-check
// A live rollout to watch: a coordinator and six local agents (scratch roots, as in `npm run demo`),
// one of them holding another version of the file than the patch expects, so it fails (inside the
// failure budget) with a reason.
// Prints the commands to watch it, then keeps everything running until Ctrl-C. Used to capture
// docs/watch-view.txt in tmux (see the README's CLI section): `node scripts/watch-view-demo.mjs`.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiClient, issueJoinToken, startAgent, startCoordinator, waitForAgentsOnline } from './lib/local-fleet.mjs';
import { samplePatch, sha256Of } from './lib/sample-specs.mjs';

/** @import { Patch, RolloutStatus } from '@fleetpatch/shared' */

const HOSTS = ['web-1', 'web-2', 'web-3', 'web-4', 'web-5', 'web-6'];
/** The host that fails: its file is not the one the patch expects to replace. */
const BROKEN = 'web-4';
const token = 'watch-demo-admin-token-01';
const work = await mkdtemp(join(tmpdir(), 'fleetpatch-watch-demo-'));
const coordinator = await startCoordinator({
  dataDir: join(work, 'coordinator'),
  apiTokens: [{ name: 'admin', token, role: 'admin' }],
  extraConfig: { minApprovals: 0 },
});
/** @type {{ stop(): Promise<unknown> }[]} */
const processes = [coordinator];
const stop = async () => {
  for (const p of processes.reverse()) await p.stop();
  await rm(work, { recursive: true, force: true });
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
process.on('SIGHUP', stop);

const api = apiClient(coordinator.url, token);
for (const host of HOSTS) {
  const root = join(work, host, 'root');
  await mkdir(join(root, 'etc/app'), { recursive: true });
  await writeFile(join(root, 'etc/app/app.conf'), host === BROKEN ? 'workers = 3 # edited by hand\n' : 'workers = 2\n');
  const joinToken = await issueJoinToken(api, host, { role: 'web' });
  const agent = startAgent({
    coordinatorUrl: coordinator.url,
    hostId: host,
    joinToken,
    dataDir: join(work, host, 'data'),
    rootDir: root,
    labels: { role: 'web' },
  });
  processes.push(agent);
}
await waitForAgentsOnline(api, HOSTS, 90_000);

const patch = /** @type {Patch} */ (
  await api.post(
    '/v1/patches',
    samplePatch({
      title: 'Raise app workers to 8 for the peak',
      ticket: 'OPS-1423',
      expectedPriorSha256: sha256Of('workers = 2\n'),
    }),
  )
);
const created = /** @type {RolloutStatus} */ (
  await api.post('/v1/rollouts', {
    patchId: patch.id,
    target: { labels: { role: 'web' } },
    waves: [1, '50%', '100%'],
    maxParallel: 2,
    maxFailures: 1,
    bakeSeconds: 10,
    requiredApprovals: 0,
  })
);
const id = created.rollout.id;
process.stdout.write(
  `export FLEETPATCH_URL=${coordinator.url} FLEETPATCH_TOKEN=${token}\nfleetpatch rollout status ${id} --watch\n`,
);
await writeFile(
  join(tmpdir(), 'fleetpatch-watch-demo.env'),
  `export FLEETPATCH_URL=${coordinator.url} FLEETPATCH_TOKEN=${token} ROLLOUT=${id}\n`,
);
// Started once the watcher had a moment to attach (the demo is for watching it from the start).
setTimeout(() => void api.post(`/v1/rollouts/${id}/start`), 3000);
