/**
 * The package inventory API over a coordinator on 127.0.0.1:0, fed by hand-driven agents on real
 * sockets (protocol 3, and one of protocol 2): bad queries are 400s naming the field, and the
 * packages and compliance answers follow what the agents report — including going `unknown` when
 * one leaves.
 */
import type { KeyObject } from 'node:crypto';
import {
  type ComplianceReport,
  type ErrorBody,
  type HostPackages,
  type InstalledPackage,
  inventoryDigest,
  type PackageVersions,
} from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAsAgent, OPCODE, type RawPeer, sampleHello } from '../../../test/support/raw-agent-socket.js';
import { type HubUnderTest, startHub } from './support/hub-under-test.js';
import { FIXED, opensslHost, VULNERABLE } from './support/sample-inventory.js';

let hub: HubUnderTest;
const peers: RawPeer[] = [];

beforeAll(async () => {
  hub = await startHub();
});

afterAll(async () => {
  for (const peer of peers) peer.destroy();
  await hub.close();
});

const keys = new Map<string, KeyObject>();

/** Connects `id` (enrolled on its first connection) speaking protocols 1 to `max`. */
async function connect(id: string, max = 3): Promise<RawPeer> {
  const { protocolVersion: _v1, ...hello } = sampleHello();
  const key = keys.get(id) ?? (await hub.register(id));
  keys.set(id, key);
  const { peer, welcomed } = await connectAsAgent(hub.port, id, key, {
    hello: { ...hello, protocolVersions: { min: 1, max } },
  });
  if (!welcomed) throw new Error(`${id} was not welcomed`);
  peers.push(peer);
  return peer;
}

/** Plays an agent's side: summary, then the full inventory once asked. */
async function report(peer: RawPeer, packages: InstalledPackage[]): Promise<void> {
  peer.sendJson({ type: 'inventory.summary', seq: 1, digest: inventoryDigest(packages), count: packages.length });
  await peer.waitMessage('inventory.request');
  peer.sendJson({
    type: 'inventory.full',
    seq: 2,
    part: 0,
    parts: 1,
    digest: inventoryDigest(packages),
    count: packages.length,
    packages,
  });
}

async function get<T>(url: string): Promise<T> {
  const { status, body } = await hub.api('GET', url);
  if (status !== 200) throw new Error(`GET ${url}: ${status} ${JSON.stringify(body)}`);
  return body as T;
}

const compliance = () => get<ComplianceReport>(`/v1/compliance?source=openssl&fixed=${encodeURIComponent(FIXED)}`);
const statusOf = async (hostId: string) => (await compliance()).hosts.find((h) => h.hostId === hostId);

describe('bad queries', () => {
  it.each([
    ['/v1/packages', 'querystring.name', /exactly one of name or source/],
    ['/v1/packages?name=openssl&source=openssl', 'querystring.name', /exactly one of name or source/],
    ['/v1/packages?name=Open_SSL', 'querystring.name', /Debian package name/],
    ['/v1/packages?name=openssl&limit=5', 'querystring', /limit/],
    ['/v1/compliance?source=openssl', 'querystring.fixed', /expected string/],
    ['/v1/compliance?source=openssl&fixed=3.0-', 'querystring.fixed', /revision number is empty/],
    ['/v1/compliance?source=openssl&fixed=v3.0', 'querystring.fixed', /does not start with digit/],
    ['/v1/compliance?source=openssl&fixed=1%3A', 'querystring.fixed', /nothing after colon/],
    ['/v1/compliance?source=../etc&fixed=1.0', 'querystring.source', /Debian package name/],
    ['/v1/compliance?source=openssl&fixed=1.0&status=safe', 'querystring.status', /fixed|exposed/],
    ['/v1/hosts/bad%20host/packages', 'params.id', /host ids/],
  ])('GET %s → 400 naming %s', async (url, path, message) => {
    const { status, body } = await hub.api('GET', url);
    expect(status).toBe(400);
    const { error } = body as ErrorBody;
    expect(error.code).toBe('validation_failed');
    const issues = error.details?.issues as { path: string; message: string }[];
    expect(issues.find((i) => i.path === path)?.message ?? JSON.stringify(issues)).toMatch(message);
  });

  it('answers 404 for a host that is not registered', async () => {
    const { status, body } = await hub.api('GET', '/v1/hosts/nobody/packages');
    expect(status).toBe(404);
    expect((body as ErrorBody).error.message).toBe('host nobody is not registered');
  });

  it('needs a token that may read', async () => {
    const res = await fetch(`http://127.0.0.1:${hub.port}/v1/packages?name=openssl`);
    expect(res.status).toBe(401);
  });
});

describe('what agents report, through the API', () => {
  it('a host that reports nothing yet is unknown; its full inventory makes it exposed, a diff fixed', async () => {
    const peer = await connect('web-1');
    expect(await peer.waitMessage('welcome')).toMatchObject({ protocolVersion: 3 });
    await expect
      .poll(statusOf.bind(null, 'web-1'))
      .toMatchObject({ status: 'unknown', reason: 'no inventory received yet' });

    await report(peer, opensslHost(VULNERABLE));
    await expect.poll(statusOf.bind(null, 'web-1')).toMatchObject({ status: 'exposed', online: true });
    const packages = await get<HostPackages>('/v1/hosts/web-1/packages');
    expect(packages.inventory).toMatchObject({ state: 'reported', current: true, packageCount: 4 });
    expect(packages.packages.map((p) => p.name)).toEqual(['bash', 'libssl3', 'openssl', 'tzdata']);

    const fixed = opensslHost(FIXED);
    peer.sendJson({
      type: 'inventory.diff',
      seq: 3,
      digest: inventoryDigest(fixed),
      count: fixed.length,
      changed: fixed.slice(0, 2),
      removed: [],
    });
    await expect.poll(statusOf.bind(null, 'web-1')).toMatchObject({ status: 'fixed' });
    const versions = await get<PackageVersions>('/v1/packages?source=openssl');
    expect(versions.versions.map((v) => `${v.name} ${v.version} ${v.hosts}`)).toEqual([
      `libssl3 ${FIXED} 1`,
      `openssl ${FIXED} 1`,
    ]);
    expect(versions.hostsWithInventory).toBeGreaterThanOrEqual(1);

    // Gone: the last inventory said fixed, but nobody can vouch for it now.
    peer.destroy();
    await expect.poll(statusOf.bind(null, 'web-1')).toMatchObject({
      status: 'unknown',
      online: false,
      lastKnown: 'fixed',
      reason: expect.stringMatching(/^offline since /),
    });
  });

  it('a reconnecting agent whose inventory did not change is current again on its summary alone', async () => {
    const first = await connect('web-2');
    const packages = opensslHost(VULNERABLE);
    await report(first, packages);
    await expect.poll(statusOf.bind(null, 'web-2')).toMatchObject({ status: 'exposed' });
    first.destroy();
    await expect.poll(statusOf.bind(null, 'web-2')).toMatchObject({ status: 'unknown' });

    const again = await connect('web-2');
    again.sendJson({ type: 'inventory.summary', seq: 1, digest: inventoryDigest(packages), count: packages.length });
    await expect.poll(statusOf.bind(null, 'web-2')).toMatchObject({ status: 'exposed' });
    expect(texts(again).some((m) => m.type === 'inventory.request')).toBe(false);
  });

  it('an agent of protocol 2 is never asked for packages, its inventory frames are unsupported, and it shows why', async () => {
    const peer = await connect('old-1', 2);
    expect(await peer.waitMessage('welcome')).toMatchObject({ protocolVersion: 2 });
    peer.sendJson({ type: 'inventory.summary', seq: 1, digest: 'a'.repeat(64), count: 0 });
    expect(await peer.waitMessage('unsupported')).toMatchObject({ inReplyTo: 'inventory.summary' });
    expect(texts(peer).some((m) => m.type === 'inventory.request')).toBe(false);
    await expect.poll(statusOf.bind(null, 'old-1')).toMatchObject({
      status: 'unknown',
      reason: 'its agent speaks protocol 2, which reports no packages: upgrade the agent',
    });
    expect(peer.frames.some((f) => f.opcode === OPCODE.close)).toBe(false);
  });
});

function texts(peer: RawPeer): Record<string, unknown>[] {
  return peer.frames
    .filter((f) => f.opcode === OPCODE.text)
    .map((f) => JSON.parse(f.payload.toString()) as Record<string, unknown>);
}
