import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type HealthCheck,
  type OrderApply,
  type OrderRevert,
  type StatementInput,
  statementDigest,
} from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { Agent } from '../src/agent.js';
import { AgentConfigSchema } from '../src/config.js';
import { collectFacts } from '../src/facts.js';
import { sendWelcome, writeTestCredential } from './support/fake-coordinator.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';
import {
  expiredWindow,
  newSigner,
  revertStatement as revertStatementFor,
  type Signer,
  signed as signedBy,
  applyStatement as statementFor,
  trustedKey,
} from './support/signed-statements.js';

// A coordinator that forwards whatever it likes (here: a plain WebSocketServer) against an agent with
// `signing` configured: only what the author and the approver signed, for this host, now, and newer
// than what it applied before, runs. Everything else is refused before it is journaled or checked.

let base: string;
let dataDir: string;
let rootDir: string;
let server: WebSocketServer;
let socket: WebSocket | undefined;
let frames: { type: string; orderId?: string; outcome?: string; errorCode?: string; reason?: string }[];
let hits: number;
/** What /etc/x.conf held at each health check, in order. */
let seen: string[];
let service: ReturnType<typeof createServer>;
let agent: Agent | undefined;

const author = newSigner();
const approver = newSigner();
const stranger = newSigner();
const stranger2 = newSigner();
const me = { owner: String(process.getuid?.() ?? 0), group: String(process.getgid?.() ?? 0) };

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'signed-orders-e2e-'));
  dataDir = join(base, 'data');
  rootDir = join(base, 'root');
  await mkdir(join(rootDir, 'etc'), { recursive: true });
  await writeFile(join(rootDir, 'etc', 'x.conf'), 'old\n');
  await writeTestCredential(dataDir, 'web-1');
  frames = [];
  hits = 0;
  seen = [];
  service = createServer((_req, res) => {
    hits++;
    seen.push(readFileSync(join(rootDir, 'etc', 'x.conf'), 'utf8'));
    res.writeHead(200).end('ok');
  });
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  server.on('connection', (ws) => {
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      frames.push(frame);
      if (frame.type !== 'hello') return;
      sendWelcome(ws);
      socket = ws;
    });
    ws.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
  });
  const config = AgentConfigSchema.parse({
    coordinatorUrl: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    allowInsecure: true,
    dataDir,
    rootDir,
    signing: {
      trustedKeys: [trustedKey(author, ['author']), trustedKey(approver, ['approver'])],
    },
  });
  agent = new Agent({ config, log: pino({ level: 'silent' }), facts: collectFacts() });
  await agent.start();
  await expect.poll(() => socket !== undefined, { timeout: 10_000 }).toBe(true);
});

afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  socket = undefined;
  for (const client of server.clients) client.terminate();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  service.closeAllConnections();
  await new Promise<void>((resolve) => service.close(() => resolve()));
  await rm(base, { recursive: true, force: true });
});

const send = (order: OrderApply | OrderRevert) => socket?.send(JSON.stringify(order));
const resultsOf = (orderId: string) => frames.filter((f) => f.type === 'order.result' && f.orderId === orderId);
const counted = async () =>
  (JSON.parse(await readFile(join(dataDir, 'refusals.json'), 'utf8')) as { byCode: Record<string, number> }).byCode;
const journaled = () => readdir(join(dataDir, 'orders'));
const onDisk = () => readFile(join(rootDir, 'etc', 'x.conf'), 'utf8');

/** An order for /etc/x.conf whose health check hits the counting server. */
function order(orderId: string, content: string): OrderApply {
  const check: HealthCheck = {
    kind: 'http',
    url: `http://127.0.0.1:${(service.address() as AddressInfo).port}/`,
    expectStatus: { min: 200, max: 299 },
    timeoutMs: 1000,
  };
  return sampleApplyOrder(orderId, {
    change: sampleFileChange({ content, ...me }),
    health: { checks: [check], intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 5 },
    failIfUnhealthyBefore: true,
  });
}

/** The apply statement people would sign for `of` on web-1. */
const applyStatement = (of: OrderApply, sequence: number, overrides: Partial<StatementInput> = {}) =>
  statementFor(of, 'web-1', sequence, overrides);

function signed<T extends OrderApply | OrderRevert>(
  unsignedOrder: T,
  statement: StatementInput,
  signers?: Signer[],
): T {
  return signedBy(unsignedOrder, statement, signers ?? [author, approver]);
}

describe('signed orders, end to end against a fake coordinator', () => {
  it('answers a dry run of an unsigned rollout would_fail (unsigned), as its apply would be refused; a signed one is judged', async () => {
    const dryRun = (orderId: string, signedFlag?: boolean) =>
      socket?.send(
        JSON.stringify({
          type: 'order.preflight',
          orderId,
          change: order('o', 'new\n').change,
          ...(signedFlag === undefined ? {} : { signed: signedFlag }),
        }),
      );
    dryRun('pf_unsigned', false);
    dryRun('pf_signed', true);
    dryRun('pf_older_coordinator');
    await expect
      .poll(() => ['pf_unsigned', 'pf_signed', 'pf_older_coordinator'].map((id) => resultsOf(id).length))
      .toEqual([1, 1, 1]);
    expect(resultsOf('pf_unsigned')[0]).toMatchObject({
      outcome: 'would_fail',
      errorCode: 'policy_denied',
      changed: false,
      reason: expect.stringMatching(/^unsigned: this agent requires signed orders/),
    });
    // Signed (or not said, as an older coordinator does): the change itself is judged.
    expect(resultsOf('pf_signed')[0]).toMatchObject({ outcome: 'would_apply' });
    expect(resultsOf('pf_older_coordinator')[0]).toMatchObject({ outcome: 'would_apply' });
    expect(await onDisk()).toBe('old\n');
  });

  it('refuses what was not signed as sent, by whom, for this host and now: nothing written, checked or journaled', async () => {
    const honest = order('o', 'new\n');
    const cases: { name: string; order: OrderApply; code: string }[] = [
      { name: 'unsigned', order: honest, code: 'unsigned' },
      {
        name: 'content changed after signing',
        order: {
          ...signed(honest, applyStatement(honest, 10)),
          change: sampleFileChange({ content: 'evil\n', ...me }),
        },
        code: 'tampered',
      },
      {
        name: 'restart list changed after signing (a stolen coordinator asking for sshd)',
        order: (() => {
          const restarting: OrderApply = {
            ...honest,
            change: { ...honest.change, restart: { afterApply: ['app.service'], afterRevert: [] } },
          };
          const tampered = { afterApply: ['app.service', 'ssh.service'], afterRevert: [] };
          const sent = signed(restarting, applyStatement(restarting, 10));
          return { ...sent, change: { ...sent.change, restart: tampered } };
        })(),
        code: 'tampered',
      },
      {
        name: 'a host precondition dropped after signing (a stolen coordinator skipping the check)',
        order: (() => {
          const requiring: OrderApply = {
            ...honest,
            change: { ...honest.change, requires: [{ package: 'libfoo', version: '>= 1.2-3' }] },
          };
          const sent = signed(requiring, applyStatement(requiring, 10));
          return { ...sent, change: { ...sent.change, requires: [{ package: 'libfoo', version: '>= 0' }] } };
        })(),
        code: 'tampered',
      },
      {
        name: 'health changed after signing',
        order: { ...signed(honest, applyStatement(honest, 10)), health: { ...honest.health, checks: [] } },
        code: 'tampered',
      },
      {
        name: 'one signature',
        order: signed(honest, applyStatement(honest, 10), [author]),
        code: 'too_few_signatures',
      },
      {
        name: 'unknown keys',
        order: signed(honest, applyStatement(honest, 10), [stranger, stranger2]),
        code: 'unknown_signer',
      },
      {
        name: 'expired',
        order: signed(honest, applyStatement(honest, 10, expiredWindow())),
        code: 'expired',
      },
      {
        name: 'another host',
        order: signed(honest, applyStatement(honest, 10, { target: { kind: 'hosts', hostIds: ['web-2'] } })),
        code: 'not_in_target',
      },
      {
        name: 'a label selector (labels are the coordinator’s word)',
        order: signed(
          honest,
          applyStatement(honest, 10, { target: { kind: 'selector', selector: { labels: { env: 'prod' } } } }),
        ),
        code: 'not_in_target',
      },
    ];
    const expected: Record<string, number> = {};
    for (const [i, c] of cases.entries()) {
      const orderId = `refused-${i}`;
      send({ ...c.order, orderId });
      await expect.poll(() => resultsOf(orderId).length, { timeout: 10_000 }).toBe(1);
      expect(resultsOf(orderId)[0], c.name).toMatchObject({ outcome: 'failed', errorCode: 'policy_denied' });
      expect(resultsOf(orderId)[0]?.reason, c.name).toMatch(new RegExp(`^${c.code}: `));
      expected[c.code] = (expected[c.code] ?? 0) + 1;
      expect(await counted(), c.name).toEqual(expected);
      expect(await onDisk(), c.name).toBe('old\n');
      expect(await journaled(), c.name).toEqual([]);
      expect(hits, c.name).toBe(0);
    }
    expect(await readdir(join(rootDir, 'etc'))).toEqual(['x.conf']);
  });

  it('applies what the author and the approver signed, then refuses it replayed and an older one as a rollback', async () => {
    const first = order('first', 'new\n');
    const statement = applyStatement(first, 20);
    send(signed(first, statement));
    await expect.poll(() => resultsOf('first').length, { timeout: 15_000 }).toBe(1);
    expect(resultsOf('first')[0]).toMatchObject({ outcome: 'healthy' });
    expect(await onDisk()).toBe('new\n');
    expect(JSON.parse(await readFile(join(dataDir, 'applied-sequences.json'), 'utf8'))).toEqual({
      'file:/etc/x.conf': { sequence: 20, statementDigest: statementDigest(statement) },
    });
    const checksSoFar = hits;
    expect(checksSoFar).toBeGreaterThan(0);

    // The same signed statement under a new order id: a replay.
    send({ ...signed(first, statement), orderId: 'again' });
    await expect.poll(() => resultsOf('again').length, { timeout: 10_000 }).toBe(1);
    expect(resultsOf('again')[0]?.reason).toMatch(/^replayed: /);

    // An older, properly signed version of the file: a rollback.
    const older = order('older', 'older\n');
    send(signed(older, applyStatement(older, 19)));
    await expect.poll(() => resultsOf('older').length, { timeout: 10_000 }).toBe(1);
    expect(resultsOf('older')[0]).toMatchObject({ outcome: 'failed', errorCode: 'policy_denied' });
    expect(resultsOf('older')[0]?.reason).toMatch(/^rollback: /);

    expect(await counted()).toEqual({ replayed: 1, rollback: 1 });
    expect(await onDisk()).toBe('new\n');
    expect(await journaled()).toEqual(['first']);
    expect(hits).toBe(checksSoFar);
  });

  it('reverts a signed order only on a signed revert naming its statement', async () => {
    const applied = order('applied', 'new\n');
    const statement = applyStatement(applied, 30);
    send(signed(applied, statement));
    await expect.poll(() => resultsOf('applied').length, { timeout: 15_000 }).toBe(1);
    expect(resultsOf('applied')[0]).toMatchObject({ outcome: 'healthy' });

    const revert = (orderId: string): OrderRevert => ({ type: 'order.revert', orderId, revertsOrderId: 'applied' });
    const revertStatement = (sequence: number, revertsStatementDigest: string) =>
      revertStatementFor(revertsStatementDigest, 'web-1', sequence);

    send(revert('unsigned-revert'));
    await expect.poll(() => resultsOf('unsigned-revert').length, { timeout: 10_000 }).toBe(1);
    expect(resultsOf('unsigned-revert')[0]).toMatchObject({ outcome: 'revert_failed', errorCode: 'policy_denied' });
    expect(resultsOf('unsigned-revert')[0]?.reason).toMatch(/^unsigned: /);

    send(signed(revert('other-revert'), revertStatement(31, 'a'.repeat(64))));
    await expect.poll(() => resultsOf('other-revert').length, { timeout: 10_000 }).toBe(1);
    expect(resultsOf('other-revert')[0]?.reason).toMatch(/^tampered: /);
    expect(await onDisk()).toBe('new\n');
    expect(await journaled()).toEqual(['applied']);

    send(signed(revert('signed-revert'), revertStatement(31, statementDigest(statement))));
    await expect.poll(() => resultsOf('signed-revert').length, { timeout: 10_000 }).toBe(1);
    expect(resultsOf('signed-revert')[0]).toMatchObject({ outcome: 'reverted' });
    expect(await onDisk()).toBe('old\n');
    expect(await counted()).toEqual({ unsigned: 1, tampered: 1 });
  });

  it('rehearses a revert only where people signed for one, once: a stolen coordinator cannot ask for it, repeat it, or revert with it', async () => {
    // Asked for under a statement that does not allow it: tampered, nothing runs.
    const sneaky = order('sneaky', 'new\n');
    send({ ...signed(sneaky, applyStatement(sneaky, 40)), rehearseRevert: true });
    await expect.poll(() => resultsOf('sneaky').length, { timeout: 10_000 }).toBe(1);
    expect(resultsOf('sneaky')[0]).toMatchObject({ outcome: 'failed', errorCode: 'policy_denied' });
    expect(resultsOf('sneaky')[0]?.reason).toMatch(/^tampered: .*rehearsed revert/);
    expect(await onDisk()).toBe('old\n');
    expect(hits).toBe(0);

    // Signed for: applied, healthy, reverted to the old bytes, healthy there, applied again.
    const rehearsed = order('rehearsed', 'new\n');
    const statement = applyStatement(rehearsed, 41, { rehearseRevert: true });
    send({ ...signed(rehearsed, statement), rehearseRevert: true });
    await expect.poll(() => resultsOf('rehearsed').length, { timeout: 15_000 }).toBe(1);
    const result = resultsOf('rehearsed')[0] as unknown as { outcome: string; rehearsal?: { ok: boolean } };
    expect(result).toMatchObject({ outcome: 'healthy', rehearsal: { ok: true } });
    expect(await onDisk()).toBe('new\n');
    // Checked on the old file (before), on the new, on the old again (the rehearsal), on the new again.
    expect(seen.filter((text, i) => i === 0 || text !== seen[i - 1])).toEqual(['old\n', 'new\n', 'old\n', 'new\n']);

    // The same statement again, asking for another rehearsal: a replay, refused.
    const checks = hits;
    send({ ...signed(rehearsed, statement), orderId: 'rehearse-again', rehearseRevert: true });
    await expect.poll(() => resultsOf('rehearse-again').length, { timeout: 10_000 }).toBe(1);
    expect(resultsOf('rehearse-again')[0]?.reason).toMatch(/^replayed: /);

    // The statement allows a rehearsal within its order, never a revert on its own.
    send({ type: 'order.revert', orderId: 'plain-revert', revertsOrderId: 'rehearsed' });
    await expect.poll(() => resultsOf('plain-revert').length, { timeout: 10_000 }).toBe(1);
    expect(resultsOf('plain-revert')[0]?.reason).toMatch(/^unsigned: /);

    expect(await onDisk()).toBe('new\n');
    expect(hits).toBe(checks);
    expect(await journaled()).toEqual(['rehearsed']);
    expect(await counted()).toEqual({ tampered: 1, replayed: 1, unsigned: 1 });
  });
});
