// Registers agents with a coordinator and writes each token to <TOKEN_DIR>/<id> (mode 0600).
// Idempotent: an agent whose token file exists is left alone. Used by docker-compose.yml.
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const url = process.env.FLEETPATCH_COORDINATOR_URL;
const admin = process.env.FLEETPATCH_ADMIN_TOKEN;
const ids = (process.env.AGENT_IDS ?? '').split(',').filter(Boolean);
const dir = process.env.TOKEN_DIR ?? '.';
if (!url || !admin || ids.length === 0) {
  process.stderr.write('register-agents: set FLEETPATCH_COORDINATOR_URL, FLEETPATCH_ADMIN_TOKEN and AGENT_IDS\n');
  process.exit(2);
}
await mkdir(dir, { recursive: true });
for (const id of ids) {
  const file = join(dir, id);
  if (
    await access(file).then(
      () => true,
      () => false,
    )
  )
    continue;
  const res = await fetch(`${url}/v1/agents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id, labels: { env: 'compose' } }),
  });
  const body = await res.json();
  if (!res.ok) {
    process.stderr.write(`register-agents: ${id}: ${res.status} ${body.error?.message}\n`);
    process.exit(1);
  }
  await writeFile(file, `${body.token}\n`, { mode: 0o600 });
  process.stdout.write(`registered ${id}\n`);
}
