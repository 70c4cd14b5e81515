// @ts-check
// The bench's head-to-head: the same file change, to the same hosts' roots, with the same waves, done
// by Ansible's `copy` module. Ansible is what ops people would otherwise reach for; the issue asks for
// the ratio from one run on the same machine. Every host is `ansible_connection=local` (no SSH: that
// would only make Ansible slower), its root a variable, and the play's `serial` is the rollout's waves,
// which Ansible reads the same way: a wave's size, a share of all hosts, the last repeating.
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Whether `ansible-playbook` can be run here (Debian: `apt-get install ansible-core`). */
export function hasAnsible() {
  return spawnSync('ansible-playbook', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * Runs one play that writes `content` to `path` under each host's root, `serial` waves at a time
 * with `forks` processes, and times it from the command's start to its exit.
 * @param {{ workDir: string, hosts: { id: string, root: string }[], path: string, content: string,
 *   serial: readonly (number | string)[], forks: number }} options
 * @returns {Promise<{ wallMs: number, exitCode: number | null, output: string }>}
 */
export async function runAnsibleCopy({ workDir, hosts, path, content, serial, forks }) {
  await mkdir(workDir, { recursive: true });
  const inventory = join(workDir, 'inventory.ini');
  const playbook = join(workDir, 'copy.yml');
  await writeFile(
    inventory,
    [
      '[bench]',
      ...hosts.map((h) => `${h.id} ansible_connection=local host_root=${h.root}`),
      '',
      '[bench:vars]',
      // The interpreter named: no discovery round per host, no warning.
      'ansible_python_interpreter=/usr/bin/python3',
      '',
    ].join('\n'),
  );
  // JSON is YAML: the playbook's values are quoted exactly as JSON.stringify writes them.
  const play = {
    hosts: 'bench',
    gather_facts: false,
    serial: [...serial],
    tasks: [
      {
        name: 'the bench change',
        'ansible.builtin.copy': { content, dest: `{{ host_root }}${path}`, mode: '0644' },
      },
    ],
  };
  await writeFile(playbook, `${JSON.stringify([play], null, 2)}\n`);
  const started = performance.now();
  const child = spawn('ansible-playbook', ['-i', inventory, '-f', String(forks), playbook], {
    cwd: workDir,
    env: {
      ...process.env,
      ANSIBLE_HOST_KEY_CHECKING: 'False',
      ANSIBLE_RETRY_FILES_ENABLED: 'False',
      ANSIBLE_LOCAL_TEMP: join(workDir, 'tmp'),
      ANSIBLE_REMOTE_TEMP: join(workDir, 'remote-tmp'),
      ANSIBLE_NOCOLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output += chunk;
  });
  const exitCode = await new Promise((resolve) => child.on('close', resolve));
  return { wallMs: performance.now() - started, exitCode: /** @type {number | null} */ (exitCode), output };
}
