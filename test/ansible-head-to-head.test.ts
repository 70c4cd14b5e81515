/**
 * The bench's head-to-head (scripts/lib/ansible-head-to-head.mjs) runs the real `ansible-playbook`:
 * Ansible's `copy` module writes the change under each host's root, in the rollout's waves (`serial`),
 * and nothing else. Small here (four hosts): the bench runs it at 50.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { hasAnsible, runAnsibleCopy } from '../scripts/lib/ansible-head-to-head.mjs';
import { itNeeding, requirement } from './support/requirements.js';

const ansible = requirement(
  'ansible-playbook',
  hasAnsible()
    ? { available: true }
    : { available: false, reason: 'ansible-playbook is not installed (Debian: ansible-core)' },
);
const PATH = '/etc/bench/app.conf';

describe('the Ansible head-to-head', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-ansible-'));
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  itNeeding(
    [ansible],
    'copies the change under every host root, in the waves given as serial, and times the play',
    async () => {
      const hosts = ['h1', 'h2', 'h3', 'h4'].map((id) => ({ id, root: join(work, id) }));
      for (const host of hosts) {
        await mkdir(join(host.root, 'etc/bench'), { recursive: true });
        await writeFile(join(host.root, PATH), 'workers = 2\n');
      }
      const run = await runAnsibleCopy({
        workDir: join(work, 'ansible'),
        hosts,
        path: PATH,
        content: 'workers = 4\n',
        serial: [1, '50%'],
        forks: 4,
      });
      expect(run.exitCode, run.output).toBe(0);
      expect(run.wallMs).toBeGreaterThan(0);
      for (const host of hosts) expect(await readFile(join(host.root, PATH), 'utf8')).toBe('workers = 4\n');
      // The waves as Ansible ran them: one host, then two (50 % of four), then the last one.
      expect(run.output.match(/^PLAY \[bench\]/gm)).toHaveLength(3);
      expect(run.output).toMatch(/h1 +: ok=1 +changed=1/);
    },
    60_000,
  );
});
