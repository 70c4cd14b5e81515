import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HealthCheck, OrderApply } from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentPolicy } from '../src/policy/agent-policy.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';

// A name under an allowed root can lead elsewhere on the host. Knowing the host's root, the policy
// walks the path at admission, so such an order is refused before it is journaled or checked.

let rootDir: string;
let policy: AgentPolicy;

beforeEach(async () => {
  rootDir = await mkdtemp(join(tmpdir(), 'host-paths-'));
  await mkdir(join(rootDir, 'etc', 'app'), { recursive: true, mode: 0o755 });
  await mkdir(join(rootDir, 'var', 'lib'), { recursive: true, mode: 0o755 });
  await writeFile(join(rootDir, 'var', 'lib', 'secret'), 's3cret\n', { mode: 0o600 });
  await symlink('../var/lib', join(rootDir, 'etc', 'app-link'));
  await symlink('../../var/lib/secret', join(rootDir, 'etc', 'app', 'linked.conf'));
  policy = new AgentPolicy({ file: { allowedRoots: ['/etc'] }, health: {} }, { rootDir });
});

afterEach(async () => {
  await rm(rootDir, { recursive: true, force: true });
});

const changeTo = (path: string): OrderApply => ({ ...sampleApplyOrder('o1'), change: sampleFileChange({ path }) });
const checking = (path: string): OrderApply => {
  const order = sampleApplyOrder('o1', { change: sampleFileChange({ path: '/etc/app/app.conf' }) });
  const check: HealthCheck = { kind: 'file', path };
  return { ...order, health: { ...order.health, checks: [check] } };
};
const reasonOf = async (order: OrderApply) => {
  const verdict = await policy.checkOrder(order);
  return verdict.ok ? 'allowed' : `${verdict.code}: ${verdict.reason}`;
};

describe('agent policy: where paths lead on the host', () => {
  it('refuses a file change through a symlinked directory', async () => {
    expect(await reasonOf(changeTo('/etc/app-link/secret'))).toMatch(
      /^policy_denied: parent \/etc\/app-link is a symbolic link/,
    );
  });

  it('refuses a file change whose target is a symlink', async () => {
    expect(await reasonOf(changeTo('/etc/app/linked.conf'))).toMatch(
      /^policy_denied: \/etc\/app\/linked\.conf is a symbolic link/,
    );
  });

  it('refuses a file change into a directory others can write', async () => {
    await chmod(join(rootDir, 'etc', 'app'), 0o777);
    expect(await reasonOf(changeTo('/etc/app/app.conf'))).toMatch(/^policy_denied: parent \/etc\/app is writable/);
  });

  it('refuses a file check through a symlinked directory', async () => {
    expect(await reasonOf(checking('/etc/app-link/secret'))).toMatch(
      /^policy_denied: parent \/etc\/app-link is a symbolic link/,
    );
  });

  it('allows a file check of a symlink itself: it is looked at, never read through', async () => {
    expect(await reasonOf(checking('/etc/app/linked.conf'))).toBe('allowed');
  });

  it('leaves a missing directory to the order (a precondition, not the policy)', async () => {
    expect(await reasonOf(changeTo('/etc/absent/app.conf'))).toBe('allowed');
    expect(await reasonOf(checking('/etc/absent/app.conf'))).toBe('allowed');
  });

  it('judges names only when it does not know the host’s root', async () => {
    const namesOnly = new AgentPolicy({ file: { allowedRoots: ['/etc'] }, health: {} });
    expect(await namesOnly.checkOrder(changeTo('/etc/app-link/secret'))).toEqual({ ok: true });
  });
});
