// @ts-check
// Issues one single-use join token per agent and writes each to <JOIN_DIR>/<id>/join-token (0600),
// so that every agent container can be given its own directory and nothing else. Idempotent: an
// agent whose file exists is left alone (once enrolled it keeps its own key and needs no token).
// Used by docker-compose.yml.
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** @import { ErrorBody, JoinTokenCreated } from '@fleetpatch/shared' */

const url = process.env.FLEETPATCH_COORDINATOR_URL;
const admin = process.env.FLEETPATCH_ADMIN_TOKEN;
const ids = (process.env.AGENT_IDS ?? '').split(',').filter(Boolean);
const dir = process.env.JOIN_DIR ?? '.';
const labels = Object.fromEntries(
  (process.env.AGENT_LABELS ?? '')
    .split(',')
    .filter(Boolean)
    .map((pair) => pair.split('=')),
);
if (!url || !admin || ids.length === 0) {
  process.stderr.write('issue-join-tokens: set FLEETPATCH_COORDINATOR_URL, FLEETPATCH_ADMIN_TOKEN and AGENT_IDS\n');
  process.exit(2);
}
for (const id of ids) {
  const file = join(dir, id, 'join-token');
  const exists = await access(file).then(
    () => true,
    () => false,
  );
  if (exists) continue;
  const res = await fetch(`${url}/v1/join-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ hostId: id, labels, uses: 1, expiresInSeconds: 3600, description: 'docker compose' }),
  });
  const answer = await res.json();
  if (!res.ok) {
    const refusal = /** @type {Partial<ErrorBody>} */ (answer);
    process.stderr.write(`issue-join-tokens: ${id}: ${res.status} ${refusal.error?.message}\n`);
    process.exit(1);
  }
  const body = /** @type {JoinTokenCreated} */ (answer);
  await mkdir(join(dir, id), { recursive: true, mode: 0o700 });
  await writeFile(file, `${body.token}\n`, { mode: 0o600 });
  process.stdout.write(`issued a join token for ${id} (${body.id})\n`);
}
