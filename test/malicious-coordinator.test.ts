/**
 * Issue 10, "tests that try it": a stolen coordinator (test/support/malicious-coordinator.ts, which
 * speaks the real protocol) drives a real agent process that requires orders signed by an author and
 * an approver, through every attack the issue lists. Each one must be refused before anything runs:
 * - the result is `policy_denied` and its reason names the refusal (`unsigned: …`, `tampered: …`,
 *   or the policy rule that refused);
 * - nothing is written: the agent's whole directory (its throwaway root, its data dir, its config)
 *   compares equal before and after, bytes, modes, owners, inodes and times — except
 *   `refusals.json`, which counts the refusal under its code;
 * - no health check runs: listeners on 127.0.0.1 count every connection, and the count stays put;
 * - the agent reports no progress for it (an admitted order reports `accepted` first).
 * Then what must work still works: a correctly signed order applies, a correctly signed revert
 * reverts. One agent process per describe.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type FileChange,
  type HealthCheck,
  MAX_FRAME_BYTES,
  type OrderApply,
  type OrderRevert,
  type StatementInput,
  statementDigest,
} from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOURNAL_RESERVE_BYTES, RESERVE_FILE } from '../packages/agent/src/journal.js';
import { sampleApplyOrder, sampleFileChange } from '../packages/agent/test/support/sample-orders.js';
import {
  applyStatement,
  expiredWindow,
  futureWindow,
  newSigner,
  revertStatement,
  signed,
  trustedKey,
  withOneBitFlipped,
} from '../packages/agent/test/support/signed-statements.js';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { ConfinedAgent } from './support/confined-agent.js';
import { CountingListener } from './support/counting-listeners.js';
import { fileBytesUnder, treeOf } from './support/file-tree.js';
import { findNames, readJournal } from './support/fleet-harness.js';
import { MaliciousCoordinator } from './support/malicious-coordinator.js';

const HOST = 'host-1';
/** The file the honest orders patch. */
const APP = '/etc/app/app.conf';
const me = { owner: String(process.getuid?.() ?? 0), group: String(process.getgid?.() ?? 0) };

const author = newSigner();
const secondAuthor = newSigner();
const approver = newSigner();
const strangers = [newSigner(), newSigner()];
const authorAndApprover = [author, approver];

/** The host as the attacks find it: files they aim at, and a place outside the allowed roots. */
const HOST_FILES: { path: string; content: string; mode: number }[] = [
  { path: APP, content: 'v0\n', mode: 0o644 },
  { path: '/etc/sudoers.d/x', content: '# managed by hand\n', mode: 0o440 },
  { path: '/etc/cron.d/x', content: '# managed by hand\n', mode: 0o644 },
  { path: '/etc/ld.so.preload', content: '', mode: 0o644 },
  { path: '/var/lib/secret', content: 's3cret\n', mode: 0o600 },
];

interface Scene {
  work: string;
  coordinator: MaliciousCoordinator;
  agent: ConfinedAgent;
  /** The one destination health checks may reach (`health.allowedDestinations`). */
  allowed: CountingListener;
  /** Another local HTTP service, not allowed. */
  forbidden: CountingListener;
  /** An open TCP port, not allowed: what a port scan would find. */
  open: CountingListener;
}

/** A fresh host and a coordinator that owns it, for the describe this is called in; returns the scene. */
function hostOwnedByAStolenCoordinator(options: { speaks?: { min: number; max: number } } = {}): () => Scene {
  let scene: Scene | undefined;
  beforeAll(async () => {
    const work = await mkdtemp(join(tmpdir(), 'fleetpatch-malicious-'));
    const [allowed, forbidden, open] = await Promise.all([
      CountingListener.http('internal secret'),
      CountingListener.http('another service'),
      CountingListener.tcp(),
    ]);
    const coordinator = await MaliciousCoordinator.start();
    if (options.speaks) coordinator.speaks = options.speaks;
    const agent = await ConfinedAgent.prepare({
      work,
      hostId: HOST,
      allowRoots: ['/etc', '/opt'],
      config: {
        signing: {
          trustedKeys: [
            trustedKey(author, ['author']),
            trustedKey(secondAuthor, ['author']),
            trustedKey(approver, ['approver']),
          ],
          requiredSignatures: 2,
          requireRoles: ['author', 'approver'],
        },
        health: {
          allowedDestinations: [`127.0.0.1:${allowed.port}`],
          allowedCommands: [['/usr/bin/curl', '-fsS', allowed.url]],
        },
      },
    });
    for (const file of HOST_FILES) {
      const hostPath = join(agent.rootDir, file.path);
      await mkdir(join(hostPath, '..'), { recursive: true, mode: 0o755 });
      await writeFile(hostPath, file.content, { mode: file.mode });
    }
    await mkdir(join(agent.rootDir, 'opt', 'app'), { recursive: true, mode: 0o755 });
    // Inside the allowed roots by name, outside them in fact.
    await symlink('../var/lib', join(agent.rootDir, 'etc', 'app-link'));
    coordinator.enroll(HOST, agent.publicKey);
    coordinator.explain = () => `agent log:\n${agent.logs.slice(-20).join('\n')}`;
    scene = { work, coordinator, agent, allowed, forbidden, open };
    agent.start(coordinator.url);
    await coordinator.helloNumber(1);
  });
  afterAll(async () => {
    if (!scene) return;
    const exit = await scene.agent.stop();
    await scene.coordinator.stop();
    await Promise.all([scene.allowed.close(), scene.forbidden.close(), scene.open.close()]);
    await rm(scene.work, { recursive: true, force: true });
    // Every frame the agent sent was valid protocol, and it drained and exited cleanly.
    expect(scene.coordinator.protocolErrors).toEqual([]);
    expect(exit).toEqual({ code: 0, signal: null });
  });
  return () => {
    if (!scene) throw new Error('the scene did not start');
    return scene;
  };
}

const quickHealth = (checks: HealthCheck[]) => ({
  checks,
  intervalSeconds: 0.1,
  minHealthySeconds: 0,
  healthyDeadlineSeconds: 5,
});

/** An http check of the one allowed service: had the order run, its connection count would move. */
const allowedCheck = (s: Scene): HealthCheck => ({
  kind: 'http',
  url: s.allowed.url,
  expectStatus: { min: 200, max: 299 },
  timeoutMs: 1000,
});

/** An order for `APP` (unless `change` says otherwise), checked by the allowed service and `extraChecks`. */
function order(
  s: Scene,
  orderId: string,
  options: {
    content?: string;
    mode?: string;
    change?: Partial<FileChange>;
    extraChecks?: HealthCheck[];
  } = {},
): OrderApply {
  return sampleApplyOrder(orderId, {
    change: sampleFileChange({
      path: APP,
      content: options.content ?? 'v1\n',
      mode: options.mode ?? '0644',
      ...me,
      ...options.change,
    }),
    health: quickHealth([allowedCheck(s), ...(options.extraChecks ?? [])]),
    failIfUnhealthyBefore: true,
  });
}

/** `unsignedOrder` with the statement its author and approver signed for this host. */
function signedByBoth<T extends OrderApply>(
  unsignedOrder: T,
  sequence: number,
  overrides: Partial<StatementInput> = {},
): T {
  return signed(unsignedOrder, applyStatement(unsignedOrder, HOST, sequence, overrides), authorAndApprover);
}

const revertOf = (orderId: string, revertsOrderId: string): OrderRevert => ({
  type: 'order.revert',
  orderId,
  revertsOrderId,
});

/**
 * The coordinator acks each result, as the hub does, and the agent records the ack in the order's
 * journal entry: wait until every entry is finished and acknowledged, so a snapshot taken now is not
 * overtaken by the last order's bookkeeping.
 */
async function journalAtRest(s: Scene): Promise<void> {
  await waitFor(
    'the agent to record every ack in its journal',
    async () =>
      (await findNames(join(s.agent.dataDir, 'orders'), /^\./)).length === 0 &&
      (await readJournal(s.agent.dataDir)).every((entry) => entry.phase === 'done' && entry.acked),
    { timeoutMs: 10_000, intervalMs: 20 },
  );
}

/** Everything an order could leave behind, but the refusal counter. */
async function footprint(s: Scene) {
  return {
    files: await treeOf(s.work, (relative) => relative === 'data/refusals.json'),
    journal: await readdir(join(s.agent.dataDir, 'orders')),
    connections: { allowed: s.allowed.connections, forbidden: s.forbidden.connections, open: s.open.connections },
  };
}

async function refusalCounts(s: Scene): Promise<Record<string, number>> {
  try {
    return (
      JSON.parse(await readFile(join(s.agent.dataDir, 'refusals.json'), 'utf8')) as { byCode: Record<string, number> }
    ).byCode;
  } catch {
    return {};
  }
}

/** How the agent must answer: the code it counts the refusal under, and what the reason says. */
interface Refusal {
  counted: string;
  reason: RegExp;
}
/** A signed-order refusal: counted under its own code, which starts the reason. */
const signedRefusal = (code: string): Refusal => ({ counted: code, reason: new RegExp(`^${code}: `) });
/** A refusal by the agent's local policy: counted as `policy_denied`, the reason names the rule. */
const policyRefusal = (reason: RegExp): Refusal => ({ counted: 'policy_denied', reason });

interface Attack {
  name: string;
  /** The frame the stolen coordinator sends; built when the case runs, so the scene's ports are known. */
  frame: (s: Scene) => OrderApply | OrderRevert;
  refusal: Refusal;
}

/** Sends the attack, then proves it was refused before anything ran. */
async function expectRefusedBeforeAnythingRan(s: Scene, attack: Attack): Promise<void> {
  const frame = attack.frame(s);
  await journalAtRest(s);
  const before = await footprint(s);
  const countsBefore = await refusalCounts(s);

  const result = await s.coordinator.order(frame);

  expect(result).toMatchObject({
    outcome: frame.type === 'order.revert' ? 'revert_failed' : 'failed',
    changed: false,
    errorCode: 'policy_denied',
  });
  expect(result.reason).toMatch(attack.refusal.reason);
  expect(s.coordinator.progressOf(frame.orderId)).toEqual([]);
  expect(await footprint(s)).toEqual(before);
  const { counted } = attack.refusal;
  expect(await refusalCounts(s)).toEqual({ ...countsBefore, [counted]: (countsBefore[counted] ?? 0) + 1 });
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** A file in the agent's root as a reviewer would check it: content, mode, owner. */
async function fileOnHost(s: Scene, path: string) {
  const hostPath = join(s.agent.rootDir, path);
  const stat = await lstat(hostPath);
  return { content: await readFile(hostPath, 'utf8'), mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid };
}

let orderNumber = 0;
/** A fresh order id: the agent judges every delivery, so no attack rides on an id seen before. */
const nextId = (prefix: string) => `${prefix}-${++orderNumber}`;
let sequence = 100;
/**
 * A sequence above any the agent accepted: so each attack is refused for what it is, not as a
 * rollback, even when a check has been disabled to watch these tests fail.
 */
const nextSequence = () => ++sequence;

describe('a stolen coordinator sends what nobody signed as sent', () => {
  const scene = hostOwnedByAStolenCoordinator();
  const attacks: Attack[] = [
    { name: 'an unsigned order', frame: (s) => order(s, nextId('unsigned')), refusal: signedRefusal('unsigned') },
    {
      name: 'content other than the statement’s contentSha256',
      frame: (s) => {
        const honest = order(s, nextId('content'));
        return { ...signedByBoth(honest, nextSequence()), change: { ...honest.change, content: 'evil\n' } };
      },
      refusal: signedRefusal('tampered'),
    },
    {
      name: 'health checks other than the signed ones',
      frame: (s) => {
        const honest = order(s, nextId('checks'));
        const alwaysUp: HealthCheck = { kind: 'tcp', host: '127.0.0.1', port: s.allowed.port, timeoutMs: 1000 };
        return { ...signedByBoth(honest, nextSequence()), health: quickHealth([alwaysUp]) };
      },
      refusal: signedRefusal('tampered'),
    },
    {
      name: 'revertOnHealthFailure flipped',
      frame: (s) => {
        const honest = order(s, nextId('no-revert'));
        return { ...signedByBoth(honest, nextSequence()), revertOnHealthFailure: false };
      },
      refusal: signedRefusal('tampered'),
    },
    {
      name: 'one flipped bit in the approver’s signature',
      frame: (s) => {
        const sent = signedByBoth(order(s, nextId('bit')), nextSequence());
        const [byAuthor, byApprover] = sent.signed?.signatures ?? [];
        if (!byAuthor || !byApprover) throw new Error('two signatures expected');
        const flipped = { ...byApprover, signature: withOneBitFlipped(byApprover.signature, 77) };
        return {
          ...sent,
          signed: { statement: sent.signed?.statement, signatures: [byAuthor, flipped] },
        } as OrderApply;
      },
      refusal: signedRefusal('bad_signature'),
    },
    {
      name: 'signed by keys the agent does not trust',
      frame: (s) => {
        const honest = order(s, nextId('strangers'));
        return signed(honest, applyStatement(honest, HOST, nextSequence()), strangers);
      },
      refusal: signedRefusal('unknown_signer'),
    },
    {
      name: 'signed by the author alone',
      frame: (s) => {
        const honest = order(s, nextId('author-only'));
        return signed(honest, applyStatement(honest, HOST, nextSequence()), [author]);
      },
      refusal: signedRefusal('too_few_signatures'),
    },
    {
      name: 'signed by two authors and no approver',
      frame: (s) => {
        const honest = order(s, nextId('two-authors'));
        return signed(honest, applyStatement(honest, HOST, nextSequence()), [author, secondAuthor]);
      },
      refusal: signedRefusal('missing_role'),
    },
    {
      name: 'expired',
      frame: (s) => signedByBoth(order(s, nextId('expired')), nextSequence(), expiredWindow()),
      refusal: signedRefusal('expired'),
    },
    {
      name: 'not yet valid',
      frame: (s) => signedByBoth(order(s, nextId('early')), nextSequence(), futureWindow()),
      refusal: signedRefusal('not_yet_valid'),
    },
    {
      name: 'signed for another host',
      frame: (s) =>
        signedByBoth(order(s, nextId('other-host')), nextSequence(), {
          target: { kind: 'hosts', hostIds: ['host-2'] },
        }),
      refusal: signedRefusal('not_in_target'),
    },
    {
      name: 'signed for a label selector (the coordinator decides who has a label)',
      frame: (s) =>
        signedByBoth(order(s, nextId('labels')), nextSequence(), {
          target: { kind: 'selector', selector: { labels: { role: 'web' } } },
        }),
      refusal: signedRefusal('not_in_target'),
    },
  ];

  it.each(attacks)('refuses $name before anything runs', async (attack) => {
    await expectRefusedBeforeAnythingRan(scene(), attack);
  });
});

describe('a correctly signed order still meets the agent’s own policy', () => {
  const scene = hostOwnedByAStolenCoordinator();
  /** Correctly signed orders making `change`, or checked by `extraChecks` too: only the policy stands in the way. */
  const signedChange = (s: Scene, name: string, change: Partial<FileChange>) =>
    signedByBoth(order(s, nextId(name), { change }), nextSequence());
  const signedChecks = (s: Scene, name: string, extraChecks: HealthCheck[]) =>
    signedByBoth(order(s, nextId(name), { extraChecks }), nextSequence());

  const attacks: Attack[] = [
    {
      name: 'a file in /etc/sudoers.d',
      frame: (s) => signedChange(s, 'sudoers', { path: '/etc/sudoers.d/x', content: 'ALL ALL=(ALL) NOPASSWD: ALL\n' }),
      refusal: policyRefusal(/^path \/etc\/sudoers\.d\/x is under \/etc\/sudoers\.d\/\*\*, which can hand out root/),
    },
    {
      name: 'a file in /etc/cron.d',
      frame: (s) => signedChange(s, 'cron', { path: '/etc/cron.d/x', content: '* * * * * root /opt/app/evil\n' }),
      refusal: policyRefusal(/^path \/etc\/cron\.d\/x is under \/etc\/cron\*, which can hand out root/),
    },
    {
      name: '/etc/ld.so.preload',
      frame: (s) => signedChange(s, 'preload', { path: '/etc/ld.so.preload', content: '/opt/app/evil.so\n' }),
      refusal: policyRefusal(/^path \/etc\/ld\.so\.preload is under \/etc\/ld\.so\.\*, which can hand out root/),
    },
    {
      name: 'a setuid-root file (mode 4755, owner 0, the statement allowing special modes)',
      frame: (s) =>
        signedChange(s, 'setuid', {
          path: '/opt/app/tool',
          content: '#!/bin/sh\nexec /bin/sh -p\n',
          mode: '4755',
          owner: '0',
          group: '0',
          allowSpecialModes: true,
        }),
      refusal: policyRefusal(/^mode 4755 of \/opt\/app\/tool has setuid, setgid or sticky bits/),
    },
    {
      name: 'a file change through a symlinked directory that leads outside the allowed roots',
      frame: (s) => signedChange(s, 'change-via-link', { path: '/etc/app-link/secret', content: 'overwritten\n' }),
      refusal: policyRefusal(/^parent \/etc\/app-link is a symbolic link; fleetpatch never follows symlinks/),
    },
    {
      name: 'an http check to an address not allowed (SSRF)',
      frame: (s) =>
        signedChecks(s, 'ssrf', [
          { kind: 'http', url: 'http://10.255.255.1:8080/', expectStatus: { min: 200, max: 299 }, timeoutMs: 1000 },
        ]),
      refusal: policyRefusal(/^http health check: 10\.255\.255\.1:8080 is not an allowed destination/),
    },
    {
      name: 'an http check to a local port not allowed',
      frame: (s) =>
        signedChecks(s, 'local-port', [
          { kind: 'http', url: s.forbidden.url, expectStatus: { min: 200, max: 299 }, timeoutMs: 1000 },
        ]),
      refusal: policyRefusal(/^http health check: 127\.0\.0\.1:\d+ is not an allowed destination/),
    },
    {
      name: 'tcp checks scanning ports',
      frame: (s) =>
        signedChecks(
          s,
          'scan',
          [s.open.port, s.forbidden.port, 22, 25, 3306, 5432, 6379].map(
            (port): HealthCheck => ({ kind: 'tcp', host: '127.0.0.1', port, timeoutMs: 1000 }),
          ),
        ),
      refusal: policyRefusal(/^tcp health check: 127\.0\.0\.1:\d+ is not an allowed destination/),
    },
    {
      name: 'a file check outside the allowed roots',
      frame: (s) =>
        signedChecks(s, 'file-outside', [{ kind: 'file', path: '/var/lib/secret', sha256: sha256('s3cret\n') }]),
      refusal: policyRefusal(/^path \/var\/lib\/secret is outside the allowed roots .*health\.allowedFileRoots/),
    },
    {
      name: 'a file check through a symlink that leads outside the allowed roots',
      frame: (s) =>
        signedChecks(s, 'file-via-link', [{ kind: 'file', path: '/etc/app-link/secret', sha256: sha256('s3cret\n') }]),
      refusal: policyRefusal(/^parent \/etc\/app-link is a symbolic link; fleetpatch never follows symlinks/),
    },
    {
      name: 'a command check of an allowed program with arguments not allowed (curl -o)',
      frame: (s) =>
        signedChecks(s, 'curl', [
          {
            kind: 'command',
            argv: ['/usr/bin/curl', '-o', join(s.work, 'written-by-curl'), s.allowed.url],
            timeoutMs: 5000,
          },
        ]),
      refusal: policyRefusal(/^command health check \[.*\] is not allowed on this agent/),
    },
  ];

  it.each(attacks)('refuses $name before anything runs', async (attack) => {
    await expectRefusedBeforeAnythingRan(scene(), attack);
  });
});

describe('what the author and the approver signed applies and reverts; nothing else does', () => {
  const scene = hostOwnedByAStolenCoordinator();
  const APPLIED_SEQUENCE = 1000;
  let applied: OrderApply | undefined;
  const appliedOrder = () => {
    if (!applied) throw new Error('the signed apply did not run');
    return applied;
  };
  const appliedDigest = () => statementDigest(appliedOrder().signed?.statement as StatementInput);
  let before: Awaited<ReturnType<typeof fileOnHost>> | undefined;

  it('applies a correctly signed order: content and mode as signed, its health check run', async () => {
    const s = scene();
    before = await fileOnHost(s, APP);
    applied = signedByBoth(order(s, 'signed-apply', { content: 'v1: the fix\n', mode: '0640' }), APPLIED_SEQUENCE);

    const result = await s.coordinator.order(applied);

    expect(result).toMatchObject({ outcome: 'healthy', changed: true });
    expect(await fileOnHost(s, APP)).toEqual({
      content: 'v1: the fix\n',
      mode: 0o640,
      uid: Number(me.owner),
      gid: Number(me.group),
    });
    expect(s.allowed.connections).toBeGreaterThan(0);
    expect(await readdir(join(s.agent.dataDir, 'orders'))).toEqual(['signed-apply']);
  });

  const attacks: Attack[] = [
    {
      name: 'the applied statement again under a fresh order id (replay)',
      frame: () => ({ ...appliedOrder(), orderId: nextId('replay') }),
      refusal: signedRefusal('replayed'),
    },
    {
      name: 'an older, validly signed version of the file (rollback)',
      frame: (s) => signedByBoth(order(s, nextId('rollback'), { content: 'v0: vulnerable\n' }), APPLIED_SEQUENCE - 1),
      refusal: signedRefusal('rollback'),
    },
    {
      name: 'an unsigned revert of the journaled order',
      frame: () => revertOf(nextId('unsigned-revert'), 'signed-apply'),
      refusal: signedRefusal('unsigned'),
    },
    {
      name: 'a signed revert naming another apply statement',
      frame: (s) => {
        const other = applyStatement(order(s, 'other'), HOST, APPLIED_SEQUENCE);
        return signed(
          revertOf(nextId('other-revert'), 'signed-apply'),
          revertStatement(statementDigest(other), HOST, APPLIED_SEQUENCE + 1),
          authorAndApprover,
        );
      },
      refusal: signedRefusal('tampered'),
    },
    {
      name: 'a revert signed by the author alone',
      frame: () =>
        signed(
          revertOf(nextId('lone-revert'), 'signed-apply'),
          revertStatement(appliedDigest(), HOST, APPLIED_SEQUENCE + 1),
          [author],
        ),
      refusal: signedRefusal('too_few_signatures'),
    },
    {
      name: 'a revert signed for another host',
      frame: () =>
        signed(
          revertOf(nextId('elsewhere-revert'), 'signed-apply'),
          revertStatement(appliedDigest(), 'host-2', APPLIED_SEQUENCE + 1),
          authorAndApprover,
        ),
      refusal: signedRefusal('not_in_target'),
    },
  ];

  it.each(attacks)('refuses $name before anything runs', async (attack) => {
    await expectRefusedBeforeAnythingRan(scene(), attack);
  });

  it('reverts on a revert statement the author and the approver signed', async () => {
    const s = scene();
    const revert = signed(
      revertOf('signed-revert', 'signed-apply'),
      revertStatement(appliedDigest(), HOST, APPLIED_SEQUENCE + 1),
      authorAndApprover,
    );

    const result = await s.coordinator.order(revert);

    expect(result).toMatchObject({ outcome: 'reverted' });
    expect(before).toMatchObject({ content: 'v0\n', mode: 0o644 });
    expect(await fileOnHost(s, APP)).toEqual(before);
  });

  it('refuses the reverted statement applied again (its sequence is spent)', async () => {
    await expectRefusedBeforeAnythingRan(scene(), {
      name: 'the reverted statement again',
      frame: () => ({ ...appliedOrder(), orderId: nextId('reapply') }),
      refusal: signedRefusal('rollback'),
    });
  });
});

describe('a flood of refused orders', () => {
  const scene = hostOwnedByAStolenCoordinator();
  const FLOOD = 300;
  /** Credential, refusal counter, an empty journal: a few hundred bytes, whatever the flood (the reserve apart). */
  const DATA_DIR_BOUND_BYTES = 4 * 1024;

  it(`keeps nothing of ${FLOOD} refused orders but the counter, and the agent comes back online`, async () => {
    const s = scene();
    const before = await footprint(s);
    const kinds = [
      (id: string) => order(s, id),
      (id: string) => ({
        ...signedByBoth(order(s, id), nextSequence()),
        change: sampleFileChange({ path: APP, content: 'evil\n', ...me }),
      }),
      (id: string) =>
        signedByBoth(
          order(s, id, { change: { path: '/etc/sudoers.d/x', content: 'ALL ALL=(ALL) ALL\n' } }),
          nextSequence(),
        ),
    ];
    const ids = Array.from({ length: FLOOD }, (_, i) => `flood-${i}`);
    for (const [i, id] of ids.entries()) s.coordinator.send(kinds[i % kinds.length]?.(id) as OrderApply);
    await s.coordinator.until(
      `results for all ${FLOOD} orders`,
      () => (ids.every((id) => s.coordinator.resultsOf(id).length > 0) ? true : undefined),
      60_000,
    );

    for (const id of ids)
      expect(s.coordinator.resultsOf(id)[0]).toMatchObject({ outcome: 'failed', errorCode: 'policy_denied' });
    expect(await refusalCounts(s)).toEqual({ unsigned: FLOOD / 3, tampered: FLOOD / 3, policy_denied: FLOOD / 3 });
    expect(await footprint(s)).toEqual(before);
    expect(await readdir(join(s.agent.dataDir, 'orders'))).toEqual([]);
    // Besides the journal's reserve for a full disk, made once at its fixed size whatever comes.
    const reserve = await stat(join(s.agent.dataDir, RESERVE_FILE));
    expect(reserve.size).toBe(JOURNAL_RESERVE_BYTES);
    expect((await fileBytesUnder(s.agent.dataDir)) - reserve.size).toBeLessThan(DATA_DIR_BOUND_BYTES);

    // The socket cut: the agent dials again, and its hello fits the frame with room to spare.
    s.coordinator.dropAgent();
    const hello = await s.coordinator.helloNumber(2);
    expect(hello.bytes).toBeLessThan(MAX_FRAME_BYTES);
    expect(hello.hello.orders).toEqual([]);
    const result = await s.coordinator.order(
      signedByBoth(order(s, 'after-flood', { content: 'v2\n' }), nextSequence()),
    );
    expect(result).toMatchObject({ outcome: 'healthy', changed: true });
  });
});

describe('no downgrade: talked down to protocol 1, the agent still requires signatures', () => {
  const scene = hostOwnedByAStolenCoordinator({ speaks: { min: 1, max: 1 } });

  it('speaks protocol 1 with this coordinator', () => {
    expect(scene().coordinator.hellos.map((h) => h.protocolVersion)).toEqual([1]);
  });

  it('refuses an unsigned order in protocol 1', async () => {
    await expectRefusedBeforeAnythingRan(scene(), {
      name: 'unsigned, protocol 1',
      frame: (s) => order(s, nextId('v1-unsigned')),
      refusal: signedRefusal('unsigned'),
    });
  });

  it('applies a correctly signed order in protocol 1: the refusal above is the signature’s, not the version’s', async () => {
    const s = scene();
    const result = await s.coordinator.order(
      signedByBoth(order(s, 'v1-signed', { content: 'v1 over protocol 1\n' }), nextSequence()),
    );
    expect(result).toMatchObject({ outcome: 'healthy', changed: true });
    expect(await readFile(join(s.agent.rootDir, APP), 'utf8')).toBe('v1 over protocol 1\n');
  });
});
