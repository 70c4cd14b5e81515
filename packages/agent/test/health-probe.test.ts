import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { HealthCheckResultSchema, HealthCheckSchema } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SystemHealthProbe } from '../src/health/health-probe.js';
import { runProcessCheck } from '../src/health/process-check.js';
import { AgentPolicy } from '../src/policy/agent-policy.js';

let root: string;
let probe: SystemHealthProbe;
const live = new AbortController().signal;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'fleetpatch-health-'));
  // Patch paths are absolute host paths; this agent's "host" is the temp dir.
  probe = new SystemHealthProbe({ rootDir: root });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function run(input: unknown, signal: AbortSignal = live) {
  const result = await probe.run(HealthCheckSchema.parse(input), signal);
  // Every result must be fit for the wire, whatever the check saw.
  expect(HealthCheckResultSchema.parse(result)).toEqual(result);
  expect(new Date(result.at).toISOString()).toBe(result.at);
  return result;
}

async function listen(server: Server | TcpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function closedPort(): Promise<number> {
  const server = createTcpServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** SIGKILL is sent before the check returns; the kernel may take a moment to show it. */
async function isGoneOrZombie(pid: number): Promise<boolean> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined || /\) Z /.test(stat)) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return false;
}

describe('command check', () => {
  it('is healthy when the command exits 0 and shows its output', async () => {
    const result = await run({ kind: 'command', argv: [process.execPath, '-e', 'console.log("all good")'] });
    expect(result).toMatchObject({ ok: true, kind: 'command' });
    expect(result.observed).toBe('exit 0; stdout: all good');
  });

  it('fails on a non-zero exit and reports the code and stderr', async () => {
    const result = await run({
      kind: 'command',
      name: 'exit-3',
      argv: [process.execPath, '-e', 'console.error("broken"); process.exit(3)'],
    });
    expect(result).toMatchObject({ ok: false, check: 'exit-3' });
    expect(result.observed).toBe('exit 3; stderr: broken');
  });

  it('never runs a shell: metacharacters are plain arguments', async () => {
    const result = await run({
      kind: 'command',
      argv: [process.execPath, '-e', 'console.log(process.argv[1])', '$(id); exit 9'],
    });
    expect(result.ok).toBe(true);
    expect(result.observed).toContain('$(id); exit 9');
  });

  it('closes stdin so a command that reads it does not wait forever', async () => {
    const script =
      'let n = 0; process.stdin.on("data", (d) => { n += d.length }); process.stdin.on("end", () => console.log("eof", n))';
    const result = await run({ kind: 'command', argv: [process.execPath, '-e', script], timeoutMs: 10_000 });
    expect(result).toMatchObject({ ok: true, observed: 'exit 0; stdout: eof 0' });
  });

  it('caps captured output', async () => {
    const result = await run({
      kind: 'command',
      argv: [process.execPath, '-e', 'process.stdout.write("x".repeat(100000))'],
    });
    expect(result.ok).toBe(true);
    expect(result.observed.length).toBeLessThan(2200);
    expect(result.observed).toMatch(/… \(97952 more bytes\)$/);
  });

  it('kills a command that outlives its timeout', async () => {
    const result = await run({
      kind: 'command',
      argv: [process.execPath, '-e', 'setTimeout(() => {}, 60000)'],
      timeoutMs: 200,
    });
    expect(result).toMatchObject({ ok: false, observed: 'no exit within 200 ms (killed)' });
  });

  it('does not hang on, or leave behind, a child that keeps stdout open', async () => {
    const script =
      'const c = require("node:child_process").spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "inherit" }); console.log(c.pid); c.unref()';
    const result = await run({ kind: 'command', argv: [process.execPath, '-e', script], timeoutMs: 30_000 });
    expect(result.ok).toBe(true);
    const pid = Number(/stdout: (\d+)/.exec(result.observed)?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(await isGoneOrZombie(pid)).toBe(true);
  });

  it('says so when the program does not exist', async () => {
    const result = await run({ kind: 'command', argv: ['/nonexistent/fleetpatch-check'] });
    expect(result).toMatchObject({ ok: false, observed: 'cannot run /nonexistent/fleetpatch-check: not found' });
  });

  it('stops the command when the order is cancelled', async () => {
    const controller = new AbortController();
    const pending = run(
      { kind: 'command', argv: [process.execPath, '-e', 'setTimeout(() => {}, 60000)'], timeoutMs: 60_000 },
      controller.signal,
    );
    setImmediate(() => controller.abort(new Error('order cancelled')));
    expect(await pending).toMatchObject({ ok: false, observed: 'aborted' });
  });
});

describe('http check', () => {
  let server: Server;
  let base: string;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/ok') res.writeHead(200).end('ready: yes');
      else if (req.url === '/broken') res.writeHead(500).end('database down');
      else if (req.url === '/moved') res.writeHead(302, { location: '/login' }).end();
      else if (req.url === '/slow') setTimeout(() => res.writeHead(200).end('late'), 5_000).unref();
      else res.writeHead(404).end();
    });
    base = `http://127.0.0.1:${await listen(server)}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('is healthy on a 200', async () => {
    expect(await run({ kind: 'http', url: `${base}/ok` })).toMatchObject({
      ok: true,
      observed: expect.stringMatching(/^HTTP 200 \(\d+ ms\)$/),
      check: `${base}/ok`,
    });
  });

  it('fails on a 500', async () => {
    expect(await run({ kind: 'http', name: 'web', url: `${base}/broken` })).toMatchObject({
      ok: false,
      check: 'web',
      observed: expect.stringMatching(/^HTTP 500 \(expected 200-399, \d+ ms\)$/),
    });
  });

  it('judges the status against expectStatus', async () => {
    const result = await run({ kind: 'http', url: `${base}/broken`, expectStatus: { min: 500, max: 503 } });
    expect(result).toMatchObject({ ok: true, observed: expect.stringMatching(/^HTTP 500 /) });
  });

  it('does not follow redirects: the 3xx itself is judged, and its Location is not reported', async () => {
    const strict = await run({ kind: 'http', url: `${base}/moved`, expectStatus: { min: 200, max: 299 } });
    expect(strict).toMatchObject({
      ok: false,
      observed: expect.stringMatching(/^HTTP 302 \(expected 200-299, \d+ ms\)$/),
    });
    expect(await run({ kind: 'http', url: `${base}/moved` })).toMatchObject({
      ok: true,
      observed: expect.stringMatching(/^HTTP 302 /),
    });
  });

  it('checks the body when asked, and never reports any of it', async () => {
    const found = await run({ kind: 'http', url: `${base}/ok`, bodyContains: 'ready: yes' });
    expect(found).toMatchObject({
      ok: true,
      observed: expect.stringMatching(/^HTTP 200, body contains the expected text \(\d+ ms\)$/),
    });
    const missing = await run({ kind: 'http', url: `${base}/ok`, bodyContains: 'ready: no' });
    expect(missing).toMatchObject({
      ok: false,
      observed: expect.stringMatching(/^HTTP 200, body lacks the expected text \(\d+ ms\)$/),
    });
    const broken = await run({ kind: 'http', url: `${base}/broken`, bodyContains: 'x' });
    for (const result of [found, missing, broken]) {
      expect(result.observed).not.toContain('ready');
      expect(result.observed).not.toContain('database');
    }
  });

  it('connects only to allowed destinations, even when the order got past the executor', async () => {
    const refused = await run({ kind: 'http', url: 'http://10.255.255.1:8080/' });
    expect(refused).toMatchObject({ ok: false, observed: expect.stringContaining('refused by the agent policy') });
    // A name resolving elsewhere: checked at connection time as well (DNS rebinding gains nothing).
    const rebinding = new SystemHealthProbe({
      rootDir: root,
      policy: new AgentPolicy(undefined, { resolveAll: async () => [{ address: '10.255.255.1', family: 4 }] }),
    });
    for (const check of [
      { kind: 'http', url: `http://localhost:${new URL(base).port}/ok` },
      { kind: 'tcp', host: 'localhost', port: 22 },
    ]) {
      const result = await rebinding.run(HealthCheckSchema.parse(check), live);
      expect(result).toMatchObject({
        ok: false,
        observed: expect.stringContaining('10.255.255.1, not an allowed destination'),
      });
    }
  });

  it('says "connection refused" for a closed port', async () => {
    const port = await closedPort();
    expect(await run({ kind: 'http', url: `http://127.0.0.1:${port}/` })).toMatchObject({
      ok: false,
      observed: 'connection refused',
    });
  });

  it('gives up after its timeout', async () => {
    expect(await run({ kind: 'http', url: `${base}/slow`, timeoutMs: 200 })).toMatchObject({
      ok: false,
      observed: 'no response within 200 ms',
    });
  });

  it('reports an abort as such', async () => {
    const controller = new AbortController();
    controller.abort(new Error('order cancelled'));
    expect(await run({ kind: 'http', url: `${base}/ok` }, controller.signal)).toMatchObject({
      ok: false,
      observed: 'aborted',
    });
  });
});

describe('tcp check', () => {
  let listener: TcpServer;
  let port: number;

  beforeAll(async () => {
    listener = createTcpServer((socket) => socket.destroy());
    port = await listen(listener);
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  });

  it('is healthy when the port accepts', async () => {
    expect(await run({ kind: 'tcp', host: '127.0.0.1', port })).toMatchObject({
      ok: true,
      check: `127.0.0.1:${port}`,
      observed: `connected to 127.0.0.1:${port}`,
    });
  });

  it('fails with "connection refused" on a closed port', async () => {
    const closed = await closedPort();
    expect(await run({ kind: 'tcp', host: '127.0.0.1', port: closed })).toMatchObject({
      ok: false,
      observed: `connection refused (127.0.0.1:${closed})`,
    });
  });
});

describe('systemd check', () => {
  it('passes, or says why it cannot', async () => {
    const result = await run({ kind: 'systemd', unit: 'fleetpatch-surely-absent.service' });
    // No such unit is never active; whether systemd runs here or not, the reason must be explicit.
    expect(result.ok).toBe(false);
    expect(result.observed).toMatch(/^fleetpatch-surely-absent\.service (is \w+|state unknown)|systemctl not found/);
    if (result.observed.includes('state unknown')) expect(result.observed).toMatch(/systemctl exit \d+\): \S/);
  });
});

describe('process check', () => {
  it("finds the test's own node process by name", async () => {
    const name = basename(process.execPath);
    const result = await run({ kind: 'process', processName: name });
    expect(result).toMatchObject({ ok: true, check: name });
    expect(result.observed).toMatch(new RegExp(`named "${name}" \\(pid `));
  });

  it('fails when nothing by that name runs', async () => {
    const result = await run({ kind: 'process', processName: 'fleetpatch-no-such-process' });
    expect(result).toMatchObject({ ok: false });
    expect(result.observed).toMatch(/^no process named "fleetpatch-no-such-process" among \d+$/);
  });

  it('matches argv[0] when comm is truncated to 15 bytes', async () => {
    const proc = join(root, 'proc');
    await mkdir(join(proc, '4242'), { recursive: true });
    await writeFile(join(proc, '4242', 'comm'), 'fleetpatch-heal\n');
    await writeFile(join(proc, '4242', 'cmdline'), '/usr/sbin/fleetpatch-healthd\0--flag\0');
    const check = HealthCheckSchema.parse({ kind: 'process', processName: 'fleetpatch-healthd' });
    if (check.kind !== 'process') throw new Error('unreachable');
    expect(await runProcessCheck(check, live, proc)).toEqual({
      ok: true,
      observed: '1 process named "fleetpatch-healthd" (pid 4242)',
    });
  });
});

describe('file check', () => {
  const content = 'listen 8080\n';
  const sha256 = createHash('sha256').update(content).digest('hex');

  beforeAll(async () => {
    await mkdir(join(root, 'etc/app'), { recursive: true });
    await writeFile(join(root, 'etc/app/app.conf'), content);
    await symlink('app.conf', join(root, 'etc/app/link.conf'));
  });

  it('is healthy when the file exists', async () => {
    expect(await run({ kind: 'file', path: '/etc/app/app.conf' })).toMatchObject({
      ok: true,
      check: '/etc/app/app.conf',
      observed: '/etc/app/app.conf exists (regular file, 12 bytes)',
    });
  });

  it('fails when the file is missing', async () => {
    expect(await run({ kind: 'file', path: '/etc/app/missing.conf' })).toMatchObject({
      ok: false,
      observed: '/etc/app/missing.conf does not exist',
    });
  });

  it('matches the sha256 when given', async () => {
    const result = await run({ kind: 'file', path: '/etc/app/app.conf', sha256 });
    expect(result).toMatchObject({ ok: true });
    expect(result.observed).toContain('sha256 matches');
  });

  it('fails on a different sha256', async () => {
    const result = await run({ kind: 'file', path: '/etc/app/app.conf', sha256: 'a'.repeat(64) });
    expect(result).toMatchObject({ ok: false });
    expect(result.observed).toBe(`/etc/app/app.conf sha256 is ${sha256.slice(0, 12)}…, expected aaaaaaaaaaaa…`);
  });

  it('looks only under the allowed roots, never at a sensitive path, never through a symlinked parent', async () => {
    await mkdir(join(root, 'var/secret'), { recursive: true });
    await writeFile(join(root, 'var/secret/key'), 'secret');
    await symlink(join(root, 'var/secret'), join(root, 'etc/linked'));
    await mkdir(join(root, 'etc/ssh'), { recursive: true });
    await writeFile(join(root, 'etc/shadow'), 'root:x');
    for (const path of ['/var/secret/key', '/etc/shadow']) {
      expect(await run({ kind: 'file', path })).toMatchObject({
        ok: false,
        observed: expect.stringContaining('refused by the agent policy'),
      });
    }
    const viaLink = await run({
      kind: 'file',
      path: '/etc/linked/key',
      sha256: createHash('sha256').update('secret').digest('hex'),
    });
    expect(viaLink).toMatchObject({ ok: false, observed: expect.stringContaining('symbolic link') });
  });

  it('does not follow a symlink to compare its target', async () => {
    expect(await run({ kind: 'file', path: '/etc/app/link.conf' })).toMatchObject({
      ok: true,
      observed: '/etc/app/link.conf exists (symlink)',
    });
    expect(await run({ kind: 'file', path: '/etc/app/link.conf', sha256 })).toMatchObject({
      ok: false,
      observed: '/etc/app/link.conf is a symlink, not a regular file; cannot compare sha256',
    });
  });
});

describe('metric check', () => {
  it.each(['cpu_load_percent', 'memory_used_percent', 'disk_used_percent'] as const)(
    '%s ≤ 100 always passes',
    async (metric) => {
      const result = await run({ kind: 'metric', metric, max: 100 });
      expect(result).toMatchObject({ ok: true });
      expect(result.observed).toMatch(new RegExp(`^${metric}( of /)? = \\d+(\\.\\d)? \\(max 100\\)$`));
    },
  );

  it('fails when disk use of / exceeds max 0', async () => {
    const result = await run({ kind: 'metric', name: 'root-disk', metric: 'disk_used_percent', mount: '/', max: 0 });
    expect(result).toMatchObject({ ok: false, check: 'root-disk' });
    expect(result.observed).toMatch(/^disk_used_percent of \/ = \d+(\.\d)? \(max 0\)$/);
  });

  it('fails for a mount that is not mounted, never falling back to /', async () => {
    const result = await run({
      kind: 'metric',
      metric: 'disk_used_percent',
      mount: '/fleetpatch/not/mounted',
      max: 100,
    });
    expect(result).toMatchObject({ ok: false, observed: 'no filesystem mounted at /fleetpatch/not/mounted' });
  });
});
