/**
 * Enrollment: join tokens issued by admins and stored hashed; an agent enrolls once with one and a
 * key pair it made; nothing secret is ever stored or logged; re-enrolling a host needs `replace`.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  enrollProofPayload,
  generateAgentKeyPair,
  JoinTokenCreatedSchema,
  JoinTokenListSchema,
  loadPrivateKey,
  signPayload,
} from '@fleetpatch/shared';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildApp } from '../src/app.js';
import { CoordinatorConfigSchema } from '../src/config.js';

const ADMIN = 'admin-token-0123456789';
const OPERATOR = 'operator-token-0123456789';

let now = Date.parse('2030-01-01T00:00:00Z');
const apps: { app: FastifyInstance; dataDir: string; logs: string[] }[] = [];

afterEach(async () => {
  for (const { app, dataDir } of apps.splice(0)) {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

async function coordinator(config: Record<string, unknown> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'fleetpatch-enroll-'));
  const logs: string[] = [];
  const app = await buildApp(
    CoordinatorConfigSchema.parse({
      dataDir,
      apiTokens: [
        { name: 'alice', token: ADMIN, role: 'admin' },
        { name: 'olga', token: OPERATOR, role: 'operator' },
      ],
      ...config,
    }),
    { logger: pino({ level: 'info' }, { write: (line: string) => void logs.push(line) }), clock: { now: () => now } },
  );
  apps.push({ app, dataDir, logs });
  return { app, logs };
}

async function issue(app: FastifyInstance, body: Record<string, unknown> = {}, token = ADMIN) {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/join-tokens',
    headers: { authorization: `Bearer ${token}` },
    payload: body,
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> };
}

function keyFor(hostId: string) {
  const pair = generateAgentKeyPair();
  const proof = signPayload(loadPrivateKey(pair.privateKeyPem), enrollProofPayload(hostId, pair.publicKey));
  return { hostId, publicKey: pair.publicKey, proof };
}

async function enroll(app: FastifyInstance, secret: string, body: unknown) {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/enroll',
    headers: { authorization: `Bearer ${secret}` },
    payload: body as Record<string, unknown>,
  });
  return { status: res.statusCode, body: res.json() as { error?: { message: string }; labels?: unknown } };
}

async function agentIds(app: FastifyInstance): Promise<string[]> {
  const res = await app.inject({ method: 'GET', url: '/v1/agents', headers: { authorization: `Bearer ${ADMIN}` } });
  return (res.json() as { agents: { id: string }[] }).agents.map((a) => a.id);
}

describe('join tokens', () => {
  it('are for admins only, shown once, listed without the secret, and revocable', async () => {
    const { app } = await coordinator();
    expect((await issue(app, {}, OPERATOR)).status).toBe(403);
    const created = JoinTokenCreatedSchema.parse((await issue(app, { uses: 3, labels: { env: 'prod' } })).body);
    expect(created).toMatchObject({
      maxUses: 3,
      uses: 0,
      state: 'active',
      labels: { env: 'prod' },
      createdBy: 'alice',
    });
    const listed = await app.inject({
      method: 'GET',
      url: '/v1/join-tokens',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(listed.body).not.toContain(created.token);
    expect(JoinTokenListSchema.parse(listed.json()).joinTokens).toEqual([expect.objectContaining({ id: created.id })]);
    const revoke = () =>
      app.inject({
        method: 'POST',
        url: `/v1/join-tokens/${created.id}/revoke`,
        headers: { authorization: `Bearer ${ADMIN}` },
      });
    expect((await revoke()).json()).toMatchObject({ id: created.id, state: 'revoked' });
    expect((await revoke()).statusCode).toBe(409);
    expect((await enroll(app, created.token, keyFor('web-1'))).status).toBe(401);
    expect(await agentIds(app)).toEqual([]);
  });

  it('refuse replace without a host id, naming the field', async () => {
    const { app } = await coordinator();
    const res = await issue(app, { replace: true });
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain('body.replace');
  });
});

describe('enrolling', () => {
  it('with a join token creates the agent with the fixed labels, once per use', async () => {
    const { app } = await coordinator();
    const { token } = JoinTokenCreatedSchema.parse((await issue(app, { uses: 2, labels: { role: 'web' } })).body);
    expect((await enroll(app, token, keyFor('web-1'))).body).toMatchObject({
      hostId: 'web-1',
      labels: { role: 'web' },
    });
    expect((await enroll(app, token, keyFor('web-2'))).status).toBe(201);
    const third = await enroll(app, token, keyFor('web-3'));
    expect(third.status).toBe(401);
    expect(third.body.error?.message).toMatch(/used_up/);
    expect(await agentIds(app)).toEqual(['web-1', 'web-2']);
  });

  it('refuses, and writes nothing, when another coordinator claimed the last use after this one read it', async () => {
    const { app } = await coordinator();
    const { token } = JoinTokenCreatedSchema.parse((await issue(app, { uses: 1 })).body);
    // On PostgreSQL two coordinators' enrollments can both read the token with a use left; the update
    // that claims it is what decides. Here the other one's claim lands between this one's read and update.
    const claim = vi.spyOn(app.fleet.store.joinTokens, 'use').mockResolvedValueOnce(false);
    const raced = await enroll(app, token, keyFor('web-1'));
    expect(claim).toHaveBeenCalledTimes(1);
    expect(raced.status).toBe(401);
    expect(raced.body.error?.message).toMatch(/is used_up/);
    expect(await agentIds(app)).toEqual([]);
    const events = await app.fleet.store.allEvents(0, 100);
    expect(events.filter((e) => e.type.startsWith('agent.'))).toEqual([]);
    // The use was not spent by the refused enrollment: the next one takes it.
    claim.mockRestore();
    expect((await enroll(app, token, keyFor('web-2'))).status).toBe(201);
    expect(await agentIds(app)).toEqual(['web-2']);
  });

  it('answers a repeat of an enrollment whose answer was lost: same key, same answer, no use spent, nothing written', async () => {
    const { app, logs } = await coordinator();
    const { token } = JoinTokenCreatedSchema.parse((await issue(app, { uses: 1, labels: { role: 'web' } })).body);
    const key = keyFor('web-1');
    expect((await enroll(app, token, key)).status).toBe(201);
    const eventsBefore = await app.fleet.store.allEvents(0, 1000);
    // The token is used up now, and the host enrolled: the repeat with the very same key still gets its answer.
    const repeat = await enroll(app, token, key);
    expect(repeat.status).toBe(201);
    expect(repeat.body).toEqual({ hostId: 'web-1', labels: { role: 'web' }, replaced: false });
    expect(await app.fleet.store.allEvents(0, 1000)).toEqual(eventsBefore);
    expect(logs.some((line) => line.includes('agent enrollment repeated'))).toBe(true);
    const [listed] = JoinTokenListSchema.parse(
      (
        await app.inject({ method: 'GET', url: '/v1/join-tokens', headers: { authorization: `Bearer ${ADMIN}` } })
      ).json(),
    ).joinTokens;
    expect(listed).toMatchObject({ uses: 1, state: 'used_up' });
    // Anything else with the spent token is refused as before: another key for the same host, another host.
    const otherKey = await enroll(app, token, keyFor('web-1'));
    expect(otherKey.status).toBe(401);
    expect(otherKey.body.error?.message).toMatch(/used_up/);
    expect((await enroll(app, token, keyFor('web-2'))).status).toBe(401);
    expect(await agentIds(app)).toEqual(['web-1']);
  });

  it('does not answer a repeat through a revoked join token, nor for a revoked agent', async () => {
    const { app } = await coordinator();
    const created = JoinTokenCreatedSchema.parse((await issue(app, { uses: 5 })).body);
    const key = keyFor('web-1');
    expect((await enroll(app, created.token, key)).status).toBe(201);
    const revokeAgent = await app.inject({
      method: 'POST',
      url: '/v1/agents/web-1/revoke',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(revokeAgent.statusCode).toBeLessThan(300);
    // Revoked: its key is gone, so the same enrollment is a new one, and the host is taken (409).
    expect((await enroll(app, created.token, key)).status).toBe(409);
    await app.inject({
      method: 'POST',
      url: `/v1/join-tokens/${created.id}/revoke`,
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    const viaRevoked = await enroll(app, created.token, key);
    expect(viaRevoked.status).toBe(401);
    expect(viaRevoked.body.error?.message).toMatch(/revoked/);
  });

  it('refuses an expired join token, a token for another host, and a bad proof; nothing is stored', async () => {
    const { app } = await coordinator();
    const short = JoinTokenCreatedSchema.parse((await issue(app, { expiresInSeconds: 60 })).body);
    now += 61_000;
    expect((await enroll(app, short.token, keyFor('web-1'))).body.error?.message).toMatch(/expired/);
    const pinned = JoinTokenCreatedSchema.parse((await issue(app, { hostId: 'web-9' })).body);
    expect((await enroll(app, pinned.token, keyFor('web-1'))).status).toBe(403);
    const forged = { ...keyFor('web-9'), publicKey: generateAgentKeyPair().publicKey };
    const bad = await enroll(app, pinned.token, forged);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('body.proof');
    expect(await agentIds(app)).toEqual([]);
  });

  it('checks the join token before reading the body: no token or a wrong one is a 401, not a list of fields', async () => {
    const { app } = await coordinator();
    for (const headers of [{}, { authorization: 'Bearer fpj_nope' }]) {
      const res = await app.inject({ method: 'POST', url: '/v1/enroll', headers, payload: {} });
      expect(res.statusCode).toBe(401);
      expect(res.body).not.toContain('hostId');
    }
  });

  it('counts wrong join tokens against the address like wrong API tokens: then 429, even with a good one', async () => {
    const { app } = await coordinator({ authFailures: { maxFailures: 3, windowSeconds: 60 } });
    const { token } = JoinTokenCreatedSchema.parse((await issue(app, {})).body);
    for (let i = 0; i < 3; i++) expect((await enroll(app, `fpj_${'g'.repeat(43)}`, keyFor('web-1'))).status).toBe(401);
    const blocked = await enroll(app, token, keyFor('web-1'));
    expect(blocked.status).toBe(429);
    // The whole address is blocked for now, API tokens included: read the store itself.
    expect(await app.fleet.store.agents.list()).toEqual([]);
  });

  it('throttles a join token holder who keeps retrying a refused enrollment (each refusal is an audit row)', async () => {
    const { app } = await coordinator({ authFailures: { maxFailures: 5, windowSeconds: 60 } });
    const first = JoinTokenCreatedSchema.parse((await issue(app, { hostId: 'web-1' })).body);
    await enroll(app, first.token, keyFor('web-1'));
    const plain = JoinTokenCreatedSchema.parse((await issue(app, { uses: 1000 })).body);
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await enroll(app, plain.token, keyFor('web-1'))).status);
    expect(statuses.slice(0, 5)).toEqual([409, 409, 409, 409, 409]);
    expect(statuses.slice(5).every((s) => s === 429)).toBe(true);
    const refused = (await app.fleet.store.allEvents(0, 1000)).filter((e) => e.type === 'agent.enroll_refused');
    expect(refused).toHaveLength(5);
  });

  it('does not count the coordinator’s own failures against the address: a store that fails is a 500, not a throttle', async () => {
    const { app } = await coordinator({ authFailures: { maxFailures: 3, windowSeconds: 60 } });
    const { token } = JoinTokenCreatedSchema.parse((await issue(app, { uses: 10 })).body);
    const failing = vi.spyOn(app.fleet.store, 'transaction').mockRejectedValue(new Error('disk I/O error'));
    for (let i = 0; i < 5; i++) expect((await enroll(app, token, keyFor(`web-${i}`))).status).toBe(500);
    failing.mockRestore();
    expect((await enroll(app, token, keyFor('web-9'))).status).toBe(201);
    expect(await agentIds(app)).toEqual(['web-9']);
  });

  it('refuses a join token with more labels than a host can carry', async () => {
    const { app } = await coordinator();
    const labels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    const res = await issue(app, { labels });
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain('body.labels');
  });

  it('needs replace to take an enrolled host id; with it the old key stops working and it is audited', async () => {
    const { app } = await coordinator();
    const first = JoinTokenCreatedSchema.parse((await issue(app, { hostId: 'web-1', labels: { role: 'web' } })).body);
    await enroll(app, first.token, keyFor('web-1'));
    const plain = JoinTokenCreatedSchema.parse((await issue(app, { uses: 5 })).body);
    const taken = await enroll(app, plain.token, keyFor('web-1'));
    expect(taken.status).toBe(409);
    expect(taken.body.error?.message).toMatch(/replace/);
    const before = await app.fleet.store.agents.publicKeyOf('web-1');
    const replace = JoinTokenCreatedSchema.parse((await issue(app, { hostId: 'web-1', replace: true })).body);
    // Labels fixed at the first enrollment stay; the replace token's are laid over them.
    const key = keyFor('web-1');
    expect((await enroll(app, replace.token, key)).body).toMatchObject({ replaced: true });
    expect(await app.fleet.store.agents.publicKeyOf('web-1')).toBe(key.publicKey);
    expect((await app.fleet.store.agents.get('web-1'))?.labels).toEqual({ role: 'web' });
    expect(key.publicKey).not.toBe(before);
    const types = (await app.fleet.store.allEvents(0, 100)).map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining(['join_token.created', 'agent.enrolled', 'agent.enroll_refused', 'agent.reenrolled']),
    );
  });

  it('enrollments at once, good and bad mixed, each get their own answer: the refused write nothing, a token enrolls no more than its uses', async () => {
    // Enrollments whose proofs check out in the same turn share a transaction (SharedCommit), each in a
    // savepoint: a refusal, or an attacker's enrollment, must not take anyone else's with it.
    const { app } = await coordinator();
    const three = JoinTokenCreatedSchema.parse((await issue(app, { uses: 3, labels: { role: 'web' } })).body);
    const pinned = JoinTokenCreatedSchema.parse((await issue(app, { hostId: 'db-1' })).body);
    const first = JoinTokenCreatedSchema.parse((await issue(app, { hostId: 'old-1' })).body);
    expect((await enroll(app, first.token, keyFor('old-1'))).status).toBe(201);
    const plenty = JoinTokenCreatedSchema.parse((await issue(app, { uses: 10 })).body);
    const forged = { ...keyFor('web-9'), publicKey: generateAgentKeyPair().publicKey };
    const answers = await Promise.all([
      enroll(app, three.token, keyFor('web-1')),
      enroll(app, pinned.token, keyFor('web-2')),
      enroll(app, three.token, keyFor('web-3')),
      enroll(app, plenty.token, keyFor('old-1')),
      enroll(app, three.token, keyFor('web-4')),
      enroll(app, plenty.token, forged),
      enroll(app, three.token, keyFor('web-5')),
      enroll(app, pinned.token, keyFor('db-1')),
    ]);
    expect(answers[1]?.status).toBe(403); // a token for another host
    expect(answers[3]?.status).toBe(409); // already enrolled, no replace
    expect(answers[5]?.status).toBe(400); // a forged proof
    expect(answers[7]?.status).toBe(201);
    // Four asked with a token of three uses: three enrolled, one told it is used up.
    const web = [0, 2, 4, 6].map((i) => answers[i]);
    expect(web.filter((a) => a?.status === 201)).toHaveLength(3);
    const late = web.find((a) => a?.status !== 201);
    expect(late?.status).toBe(401);
    expect(late?.body.error?.message).toMatch(/used_up/);
    const enrolledWeb = ['web-1', 'web-3', 'web-4', 'web-5'].filter((_, k) => web[k]?.status === 201);
    expect((await agentIds(app)).sort()).toEqual(['db-1', ...enrolledWeb, 'old-1'].sort());
    const tokens = JoinTokenListSchema.parse(
      (
        await app.inject({ method: 'GET', url: '/v1/join-tokens', headers: { authorization: `Bearer ${ADMIN}` } })
      ).json(),
    ).joinTokens;
    expect(tokens.find((t) => t.id === three.id)?.uses).toBe(3);
    expect(tokens.find((t) => t.id === plenty.id)?.uses).toBe(0);
    const events = await app.fleet.store.allEvents(0, 1000);
    expect(
      events
        .filter((e) => e.type === 'agent.enrolled')
        .map((e) => e.hostId)
        .sort(),
    ).toEqual(['db-1', ...enrolledWeb, 'old-1'].sort());
    expect(events.filter((e) => e.type === 'agent.enroll_refused').map((e) => e.hostId)).toEqual(['old-1']);
  });

  it('never writes a join token secret to the database, the audit log or the logs', async () => {
    const { app, logs } = await coordinator();
    const { token } = JoinTokenCreatedSchema.parse((await issue(app, {})).body);
    await enroll(app, token, keyFor('web-1'));
    await enroll(app, token, keyFor('web-2'));
    const secretPart = token.slice(4);
    expect(logs.join('\n')).not.toContain(secretPart);
    expect(JSON.stringify(await app.fleet.store.allEvents(0, 100))).not.toContain(secretPart);
    const rows = app.fleet.store.db.prepare('SELECT * FROM join_tokens').all();
    expect(JSON.stringify(rows)).not.toContain(secretPart);
  });
});
