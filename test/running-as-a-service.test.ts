/**
 * Running fleetpatch as a service: the systemd units in packaging/systemd pass `systemd-analyze
 * verify` and say what they must (a hardened coordinator; an agent whose dpkg survives it), the
 * example configurations under packaging/config load, and `--check-config` of both programs (real
 * processes) exits 0 with a summary or non-zero naming the bad fields — never printing a secret.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_BIN, COORDINATOR_BIN } from '../scripts/lib/local-fleet.mjs';
import { itNeeding, type Requirement, requirement } from './support/requirements.js';
import { createTestCa, LOOPBACK_SANS, openssl } from './support/test-ca.js';

const REPO = join(import.meta.dirname, '..');
const UNITS = join(REPO, 'packaging/systemd');
const CONFIGS = join(REPO, 'packaging/config');
const JOIN_TOKEN = `fpj_${'a'.repeat(43)}`;

const systemdAnalyze: Requirement = requirement(
  'systemd-analyze',
  spawnSync('systemd-analyze', ['--version']).status === 0
    ? { available: true }
    : { available: false, reason: 'systemd-analyze is not installed (Debian package systemd)' },
);

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'fleetpatch-service-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(bin: string, args: string[], env: Record<string, string> = {}) {
  // A clean environment: a FLEETPATCH_* of the machine running the tests must not leak in.
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FLEETPATCH_')));
  const result = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...clean, ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function file(name: string, text: string): string {
  const path = join(work, name);
  writeFileSync(path, text);
  return path;
}

/** A unit's `Key=value` lines, comments left out. */
function directives(unit: string): string[] {
  return readFileSync(join(UNITS, unit), 'utf8')
    .split('\n')
    .filter((line) => /^[A-Za-z]+=/.test(line));
}

describe('the systemd units', () => {
  itNeeding([systemdAnalyze], 'both pass systemd-analyze verify', () => {
    // ExecStart names /usr/bin/node and /opt/fleetpatch: verify checks they exist, so here they are
    // this Node and this checkout. Nothing else in the units is changed.
    const dir = join(work, 'units');
    mkdirSync(dir, { recursive: true });
    for (const unit of ['fleetpatch-coordinator.service', 'fleetpatch-agent.service']) {
      const text = readFileSync(join(UNITS, unit), 'utf8')
        .replaceAll('/usr/bin/node', process.execPath)
        .replaceAll('/opt/fleetpatch', REPO);
      writeFileSync(join(dir, unit), text);
    }
    const verify = spawnSync(
      'systemd-analyze',
      ['verify', '--man=no', join(dir, 'fleetpatch-coordinator.service'), join(dir, 'fleetpatch-agent.service')],
      { encoding: 'utf8' },
    );
    expect({ status: verify.status, stderr: verify.stderr }).toEqual({ status: 0, stderr: '' });
  });

  it('the coordinator is hardened, without MemoryDenyWriteExecute (V8 JIT)', () => {
    const lines = directives('fleetpatch-coordinator.service');
    expect(lines).toEqual(
      expect.arrayContaining([
        'ProtectSystem=strict',
        'StateDirectory=fleetpatch-coordinator',
        'NoNewPrivileges=yes',
        'PrivateTmp=yes',
        'ProtectHome=yes',
        'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
        'CapabilityBoundingSet=',
        'User=fleetpatch',
      ]),
    );
    expect(lines.filter((line) => line.startsWith('MemoryDenyWriteExecute'))).toEqual([]);
    expect(lines).toContainEqual(expect.stringMatching(/^ExecStartPre=.* --check-config /));
  });

  it('the agent always comes back, leaves the dpkg it started running, and is not sandboxed', () => {
    const lines = directives('fleetpatch-agent.service');
    expect(lines).toEqual(expect.arrayContaining(['Restart=always', 'KillMode=process']));
    const sandboxing =
      /^(?:Protect\w+|Private\w+|ReadOnlyPaths|NoNewPrivileges|SystemCallFilter|CapabilityBoundingSet|User)=/;
    expect(lines.filter((line) => sandboxing.test(line))).toEqual([]);
  });
});

describe('fleetpatch-coordinator --check-config', () => {
  it('loads a YAML file and prints what it will run with: token names and roles, never a token', () => {
    const config = file(
      'coordinator.yaml',
      'port: 7431\napiTokens:\n  - name: alice\n    role: operator\n    token: alice-secret-token-0001\nmetrics:\n  token: scraper-secret-token-01\n',
    );
    const out = run(COORDINATOR_BIN, ['--check-config', '--config', config], { FLEETPATCH_DATA_DIR: work });
    expect(out.status).toBe(0);
    expect(out.stdout).toContain('configuration OK');
    expect(out.stdout).toContain('http://127.0.0.1:7431');
    expect(out.stdout).toContain('alice (operator)');
    expect(out.stdout).toContain('/metrics needs its bearer token');
    expect(out.stdout).toContain(join(work, 'fleetpatch.db'));
    expect(`${out.stdout}${out.stderr}`).not.toMatch(/secret-token/);
    // Nothing was created: a check is not a start.
    expect(existsSync(join(work, 'fleetpatch.db'))).toBe(false);
  });

  it('exits 2 naming each bad field', () => {
    const config = file(
      'bad-coordinator.yaml',
      'port: 99999\napiTokens:\n  - name: eve\n    role: root\n    token: eve-secret-token-00001\n',
    );
    const out = run(COORDINATOR_BIN, ['--check-config', '--config', config]);
    expect(out.status).toBe(2);
    expect(out.stderr).toMatch(/port/);
    expect(out.stderr).toMatch(/apiTokens\[0\]\.role/);
    expect(out.stderr).not.toContain('eve-secret-token');
  });

  it('exits 2 on a YAML syntax error, with the file, line and column, without quoting the file', () => {
    const config = file('broken.yaml', 'port: 7420\napiTokens: [ { name: a, token: hunter2-secret-0001\n');
    const out = run(COORDINATOR_BIN, ['--check-config', '--config', config]);
    expect(out.status).toBe(2);
    expect(out.stderr).toMatch(new RegExp(`${config}: .* at line \\d+, column \\d+`));
    expect(out.stderr).not.toContain('hunter2');
  });
});

describe('fleetpatch-agent --check-config', () => {
  it('not yet enrolled, with a join token: OK, and says it will enroll', () => {
    const tokenFile = file('join-token', `${JOIN_TOKEN}\n`);
    chmodSync(tokenFile, 0o600);
    const config = file(
      'agent.yaml',
      `coordinatorUrl: http://127.0.0.1:7420\nallowInsecure: true\njoinTokenFile: ${tokenFile}\nhostId: web-9\ndataDir: ${join(work, 'agent-data')}\nmetrics:\n  textfile: ${join(work, 'agent.prom')}\n`,
    );
    const out = run(AGENT_BIN, ['--check-config', '--config', config]);
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    expect(out.stdout).toContain('configuration OK');
    expect(out.stdout).toContain('enrolls at start as web-9');
    expect(out.stdout).toContain(join(work, 'agent.prom'));
    expect(out.stdout).not.toContain(JOIN_TOKEN);
  });

  it('--coordinator given twice: both coordinators, in the order they are tried', () => {
    const tokenFile = file('join-token-two', `${JOIN_TOKEN}\n`);
    chmodSync(tokenFile, 0o600);
    const config = file('agent-two.yaml', `coordinatorUrl: https://old:7420\njoinTokenFile: ${tokenFile}\n`);
    const coordinators = ['--coordinator', 'https://coord-1:7420', '--coordinator', 'https://coord-2:7420'];
    const out = run(AGENT_BIN, [
      '--check-config',
      '--config',
      config,
      ...coordinators,
      '--data-dir',
      join(work, 'two'),
    ]);
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    expect(out.stdout).toContain('coordinators:  https://coord-1:7420\n               https://coord-2:7420\n');
    expect(out.stdout).not.toContain('old');
  });

  it('coordinatorUrl and coordinatorUrls both: exits 2 naming the field', () => {
    const config = file('agent-both.yaml', 'coordinatorUrl: https://a:7420\ncoordinatorUrls: [https://b:7420]\n');
    const out = run(AGENT_BIN, ['--check-config', '--config', config]);
    expect(out.status).toBe(2);
    expect(out.stderr).toMatch(/not both\s+→ at coordinatorUrls/);
  });

  it('not enrolled and no join token: exits 2 naming joinToken', () => {
    const config = file('agent-no-token.yaml', 'coordinatorUrl: http://127.0.0.1:7420\nallowInsecure: true\n');
    const out = run(AGENT_BIN, ['--check-config', '--config', config, '--data-dir', join(work, 'empty')]);
    expect(out.status).toBe(2);
    expect(out.stderr).toMatch(/joinToken: not enrolled yet/);
  });

  it('a bad field: exits 2 naming it', () => {
    const config = file(
      'agent-bad.yaml',
      'coordinatorUrl: http://127.0.0.1:7420\nallowInsecure: true\nmetrics:\n  textfile: /tmp/agent.txt\n',
    );
    const out = run(AGENT_BIN, ['--check-config', '--config', config]);
    expect(out.status).toBe(2);
    expect(out.stderr).toMatch(/metrics\.textfile/);
    expect(out.stderr).toMatch(/must end in \.prom/);
  });
});

describe('the example configurations in packaging/config', () => {
  itNeeding([openssl], 'load with --check-config once their files exist', () => {
    // The examples name files under /etc/fleetpatch; here that directory is a temp one.
    const etc = join(work, 'etc-fleetpatch');
    mkdirSync(etc, { recursive: true });
    const ca = createTestCa(etc, 'ca');
    const certificate = ca.issue('coordinator', { sans: LOOPBACK_SANS });
    copyFileSync(ca.caFile, join(etc, 'ca.pem'));
    copyFileSync(certificate.certFile, join(etc, 'coordinator.pem'));
    copyFileSync(certificate.keyFile, join(etc, 'coordinator.key'));
    writeFileSync(join(etc, 'join-token'), `${JOIN_TOKEN}\n`, { mode: 0o600 });
    const local = (name: string) => {
      const text = readFileSync(join(CONFIGS, name), 'utf8')
        .replaceAll('/etc/fleetpatch/', `${etc}/`)
        .replaceAll('/var/lib/prometheus/node-exporter/', `${work}/`);
      return file(`example-${name}`, text);
    };
    const coordinator = run(COORDINATOR_BIN, ['--check-config', '--config', local('coordinator.yaml')], {
      FLEETPATCH_DATA_DIR: join(work, 'coordinator-state'),
    });
    expect(coordinator.stderr).toBe('');
    expect(coordinator.status).toBe(0);
    expect(coordinator.stdout).toContain('https://0.0.0.0:7420');
    const agent = run(AGENT_BIN, ['--check-config', '--config', local('agent.yaml')], {
      FLEETPATCH_DATA_DIR: join(work, 'agent-state'),
    });
    expect(agent.stderr).toBe('');
    expect(agent.status).toBe(0);
  });
});
