import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ApplyStatement,
  type ApproveRequest,
  type AttachStatementRequest,
  applyStatementFor,
  keyIdOf,
  type Patch,
  PatchSchema,
  type PatchSpecInput,
  patchSpecOf,
  type RevertSignatureRequest,
  type RevertStatement,
  type RolloutRequest,
  RolloutRequestSchema,
  type RolloutStatus,
  rawPublicKey,
  revertStatementFor,
  type StatementView,
  signedPatchOf,
  signStatement,
  statementDigest,
  storedPatch,
  verifyStatementSignature,
} from '@fleetpatch/shared';
import { CommanderError } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ApiClient } from '../src/api-client.js';
import type { CliContext } from '../src/cli-context.js';
import { describeError, ExitCode } from '../src/cli-errors.js';
import { defaultKeyFile, type KeyEnvironment } from '../src/commands/key-commands.js';
import { buildProgram } from '../src/program.js';

// `--sign-key` on rollout create, approve, revert and revert-host, against a fake coordinator that
// answers as the real one does (the real one is exercised end to end in test/signed-rollout.test.ts):
// what is signed, what is posted, and what the CLI refuses to sign.

const NOW = new Date('2030-01-07T12:00:00.000Z');
const HOUR = 3600_000;

const SPEC: PatchSpecInput = {
  title: 'Raise app workers to 8',
  problem: 'Requests queue at peak.',
  rootCause: 'workers was sized for last year.',
  intendedFix: 'workers = 8',
  ticket: 'OPS-1',
  change: {
    kind: 'file',
    path: '/etc/app/app.conf',
    content: 'workers = 8\n',
    mode: '644',
    owner: 'root',
    group: 'root',
  },
};
const PATCH: Patch = storedPatch(SPEC, { id: 'pat_1', createdBy: 'alice', createdAt: NOW.toISOString() });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetpatch-sign-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface Person {
  file: string;
  publicKey: string;
  keyId: string;
  sign: (statement: Parameters<typeof signStatement>[1]) => ReturnType<typeof signStatement>;
}

/** A key file as `fleetpatch key generate` writes it (encrypted with `passphrase` if given). */
function person(name: string, passphrase?: string): Person {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const file = join(dir, `${name}.pem`);
  const pem = privateKey.export({
    format: 'pem',
    type: 'pkcs8',
    ...(passphrase ? { cipher: 'aes-256-cbc', passphrase } : {}),
  });
  writeFileSync(file, pem, { mode: 0o600 });
  const raw = rawPublicKey(publicKey);
  return { file, publicKey: raw, keyId: keyIdOf(raw), sign: (s) => signStatement(privateKey, s) };
}

function request(input: Record<string, unknown> = {}): RolloutRequest {
  return RolloutRequestSchema.parse({ patchId: 'pat_1', target: { all: true }, ...input });
}

function statusOf(req: RolloutRequest, signing: RolloutStatus['signing'] = null, state = 'draft'): RolloutStatus {
  return {
    rollout: {
      id: 'ro_1',
      patchId: 'pat_1',
      request: req,
      state: state as RolloutStatus['rollout']['state'],
      createdBy: 'alice',
      hostCount: 0,
      waveCount: 0,
      currentWave: 0,
      bakeUntil: null,
      stateReason: null,
      createdAt: NOW.toISOString(),
      updatedAt: NOW.toISOString(),
      startedAt: null,
      finishedAt: null,
    },
    approvals: [],
    signing,
    failures: 0,
    toleratedFailures: 0,
    haltsOn: 'halts on the 1st failure',
    counts: {},
    waves: [],
    analyses: [],
  };
}

function viewOf(
  statement: ApplyStatement | RevertStatement,
  signers: { who: Person; name: string; role: 'author' | 'approver' }[],
  extra: Partial<StatementView> = {},
): StatementView {
  return {
    digest: statementDigest(statement),
    hostId: null,
    statement,
    signatures: signers.map(({ who, name, role }) => ({
      keyId: who.keyId,
      publicKey: who.publicKey,
      signature: who.sign(statement).signature,
      signer: name,
      role,
      at: NOW.toISOString(),
    })),
    createdAt: NOW.toISOString(),
    usedAt: null,
    ...extra,
  };
}

/**
 * The CLI against a fake coordinator: `answers` says what each API method returns (by default the
 * `status` given); every call is recorded.
 */
function harness(options: { status?: RolloutStatus; patch?: Patch; answers?: Partial<Record<string, unknown>> }) {
  const calls: { method: string; args: unknown[] }[] = [];
  const out: string[] = [];
  const err: string[] = [];
  const env: Record<string, string> = { SIGN_PASS: 'correct horse battery' };
  const status = options.status ?? statusOf(request());
  const fake = new Proxy(
    {},
    {
      get:
        (_, method: string) =>
        async (...args: unknown[]) => {
          calls.push({ method, args });
          if (options.answers && method in options.answers) {
            const answer = options.answers[method];
            return typeof answer === 'function' ? answer(...args) : answer;
          }
          if (method === 'getPatch') return options.patch ?? PATCH;
          if (method === 'rolloutPlan')
            return {
              rolloutId: 'ro_1',
              frozen: false,
              hostCount: 2,
              waveSizes: [2],
              waves: [{ wave: 0, hosts: ['web-2', 'web-1'] }],
              toleratedFailures: 0,
              haltsOn: 'halts on the 1st failure',
            };
          return status;
        },
    },
  ) as ApiClient;
  const ctx: CliContext = {
    output: { out: (t) => out.push(t), err: (t) => err.push(t), interactive: false },
    api: () => fake,
    readStdin: async () => '',
    now: () => NOW,
    setExitCode: () => undefined,
  };
  const keys = (): KeyEnvironment => ({ defaultKeyFile: defaultKeyFile({}, dir), env: (name) => env[name] });
  const run = (...argv: string[]) => buildProgram(ctx, keys).parseAsync(['node', 'fleetpatch', ...argv]);
  const fail = async (...argv: string[]) => {
    const error = await run(...argv).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error, `${argv.join(' ')} should fail`).toBeDefined();
    return { error, ...describeError(error) };
  };
  const callsOf = (method: string) => calls.filter((c) => c.method === method);
  /** The arguments of the first call of `method`; fails the test if there was none. */
  const argsOf = (method: string): unknown[] => {
    const call = callsOf(method)[0];
    if (!call) throw new Error(`${method} was not called`);
    return call.args;
  };
  return { calls, callsOf, argsOf, out, err, run, fail };
}

describe('rollout create --sign-key', () => {
  it('creates a draft, signs the statement of its patch, target and window, attaches it and submits', async () => {
    const alice = person('alice');
    const h = harness({});
    await h.run('rollout', 'create', '--patch', 'pat_1', '--all', '--approvals', '1', '--sign-key', alice.file);

    expect(h.calls.map((c) => c.method)).toEqual([
      'getPatch',
      'createRollout',
      'attachStatement',
      'rolloutVerb',
      'rolloutPlan',
    ]);
    expect(h.callsOf('createRollout')[0]?.args[0]).toMatchObject({ draft: true, requiredApprovals: 1 });
    const [id, body] = h.argsOf('attachStatement') as [string, AttachStatementRequest];
    expect(id).toBe('ro_1');
    expect(body.publicKey).toBe(alice.publicKey);
    expect(body.signature.keyId).toBe(alice.keyId);
    expect(body.statement).toEqual({
      kind: 'apply',
      statementVersion: 1,
      patch: signedPatchOf(patchSpecOf(PATCH)),
      revertOnHealthFailure: true,
      target: { kind: 'selector', selector: { all: true } },
      notBefore: NOW.toISOString(),
      expiresAt: new Date(NOW.getTime() + 24 * HOUR).toISOString(),
      sequence: NOW.getTime(),
    });
    expect(verifyStatementSignature(alice.publicKey, body.statement, body.signature.signature)).toBe(true);
    expect(h.argsOf('rolloutVerb')).toEqual(['ro_1', 'submit']);
    const summary = h.err.join('\n');
    expect(summary).toContain(`statement ${statementDigest(body.statement)}`);
    expect(summary).toMatch(/sha256 [0-9a-f]{64} \(12 bytes\)/);
    expect(summary).toContain('target    selector {"all":true}');
    expect(summary).toContain(`key       ${alice.keyId}`);
  });

  it('signs a label target for the hosts it selects now; --draft leaves it a draft; --valid-for sets the window', async () => {
    const alice = person('alice');
    const h = harness({ status: statusOf(request({ target: { labels: { role: 'web' } }, autoRevert: 'none' })) });
    await h.run(
      'rollout',
      'create',
      '--patch',
      'pat_1',
      '--labels',
      'role=web',
      '--auto-revert',
      'none',
      '--draft',
      '--valid-for',
      '7d',
      '--sign-key',
      alice.file,
    );
    const body = h.argsOf('attachStatement')[1] as AttachStatementRequest;
    expect(body.statement).toMatchObject({
      target: { kind: 'hosts', hostIds: ['web-1', 'web-2'] },
      revertOnHealthFailure: false,
      expiresAt: new Date(NOW.getTime() + 7 * 24 * HOUR).toISOString(),
    });
    expect(h.callsOf('rolloutVerb')).toEqual([]);
  });

  it('refuses a validity over 30 days, or an encrypted key without its passphrase, before anything is sent', async () => {
    const alice = person('alice');
    const tooLong = await harness({}).fail(
      'rollout',
      'create',
      '--patch',
      'p',
      '--all',
      '--valid-for',
      '31d',
      '--sign-key',
      alice.file,
    );
    expect(tooLong.error).toBeInstanceOf(CommanderError);
    const locked = person('locked', 'correct horse battery');
    const h = harness({});
    const noPass = await h.fail('rollout', 'create', '--patch', 'p', '--all', '--sign-key', locked.file);
    expect(noPass.exitCode).toBe(ExitCode.failed);
    expect(noPass.lines.join('\n')).toMatch(/is encrypted: give --passphrase-env VAR/);
    expect(h.calls).toEqual([]);
    await h.run(
      'rollout',
      'create',
      '--patch',
      'p',
      '--all',
      '--sign-key',
      locked.file,
      '--passphrase-env',
      'SIGN_PASS',
    );
    expect(h.callsOf('attachStatement')).toHaveLength(1);
  });

  it('--patch-file: refuses to sign (and creates nothing) when the coordinator’s patch is not the local file', async () => {
    const alice = person('alice');
    const local = join(dir, 'patch.json');
    writeFileSync(local, JSON.stringify(SPEC));
    const same = harness({});
    await same.run('rollout', 'create', '--patch', 'pat_1', '--all', '--sign-key', alice.file, '--patch-file', local);
    expect(same.callsOf('attachStatement')).toHaveLength(1);

    const swapped = PatchSchema.parse({ ...PATCH, change: { ...PATCH.change, content: 'workers = 64\n' } });
    const h = harness({ patch: swapped });
    const refused = await h.fail(
      'rollout',
      'create',
      '--patch',
      'pat_1',
      '--all',
      '--sign-key',
      alice.file,
      '--patch-file',
      local,
    );
    expect(refused.exitCode).toBe(ExitCode.failed);
    expect(refused.lines.join('\n')).toMatch(
      /differs from .*patch\.json in change: refusing to sign \(nothing was created\)/,
    );
    expect(h.calls.map((c) => c.method)).toEqual(['getPatch']);

    const alone = await h.fail('rollout', 'create', '--patch', 'pat_1', '--all', '--patch-file', local);
    expect(alone.exitCode).toBe(ExitCode.usage);
    expect(alone.lines.join('\n')).toMatch(/--patch-file .* goes with --sign-key/);
    expect(h.calls).toHaveLength(1);
  });
});

/** A signed rollout awaiting approval, as the coordinator shows it, signed by `author`. */
function signedStatus(author: Person, req = request({ requiredApprovals: 1 })) {
  const statement = applyStatementFor(patchSpecOf(PATCH), req, [], { now: NOW, validForSeconds: 3600 });
  const apply = viewOf(statement, [{ who: author, name: 'alice', role: 'author' }]);
  return { statement, status: statusOf(req, { apply, reverts: [], revertSignaturesNeeded: 2 }, 'awaiting_approval') };
}

describe('rollout approve --sign-key', () => {
  it('re-derives the statement from the patch shown, checks the author’s signature, and posts its own signature', async () => {
    const alice = person('alice');
    const bob = person('bob');
    const { statement, status } = signedStatus(alice);
    const h = harness({ status });
    await h.run('rollout', 'approve', 'ro_1', '--sign-key', bob.file, '--reason', 'looks right');
    const [id, body] = h.argsOf('approveSigned') as [string, ApproveRequest];
    expect(id).toBe('ro_1');
    expect(body).toMatchObject({ publicKey: bob.publicKey, reason: 'looks right', signature: { keyId: bob.keyId } });
    expect(verifyStatementSignature(bob.publicKey, statement, body.signature?.signature ?? '')).toBe(true);
    expect(h.err.join('\n')).toContain(`statement ${statementDigest(statement)}`);
  });

  it('refuses to sign a statement whose patch is not the patch the coordinator shows', async () => {
    const alice = person('alice');
    const bob = person('bob');
    const { status } = signedStatus(alice);
    const shown = PatchSchema.parse({ ...PATCH, change: { ...PATCH.change, content: 'workers = 9\n' } });
    const h = harness({ status, patch: shown });
    const refused = await h.fail('rollout', 'approve', 'ro_1', '--sign-key', bob.file);
    expect(refused.exitCode).toBe(ExitCode.failed);
    expect(refused.lines.join('\n')).toMatch(/patch\.change is not patch pat_1 as the coordinator shows it: refusing/);
    expect(h.callsOf('approveSigned')).toEqual([]);
  });

  it('refuses when the author’s signature does not verify, when the plan differs, and when the rollout is not signed', async () => {
    const alice = person('alice');
    const bob = person('bob');
    const mallory = person('mallory');
    const { statement, status } = signedStatus(alice);
    const forged = structuredClone(status);
    const apply = forged.signing?.apply;
    if (apply?.signatures[0]) apply.signatures[0].signature = mallory.sign(statement).signature;
    const h = harness({ status: forged });
    expect((await h.fail('rollout', 'approve', 'ro_1', '--sign-key', bob.file)).lines.join('\n')).toMatch(
      /signature of alice \(key [0-9a-f]{16}\) does not verify: refusing to sign/,
    );
    const noRevert = statusOf(request({ requiredApprovals: 1, autoRevert: 'none' }), status.signing);
    expect(
      (await harness({ status: noRevert }).fail('rollout', 'approve', 'ro_1', '--sign-key', bob.file)).lines.join('\n'),
    ).toMatch(/revertOnHealthFailure is true, the rollout's autoRevert none: refusing to sign/);
    const unsigned = harness({ status: statusOf(request()) });
    expect((await unsigned.fail('rollout', 'approve', 'ro_1', '--sign-key', bob.file)).lines.join('\n')).toMatch(
      /is not signed: approve it without --sign-key/,
    );
    expect([...h.calls, ...unsigned.calls].filter((c) => c.method === 'approveSigned')).toEqual([]);
  });
});

describe('rollout approve --sign-key: analyses and the rehearsal', () => {
  const gate = {
    kind: 'prometheus',
    name: 'error-rate',
    address: 'http://127.0.0.1:9090',
    query: 'sum(rate(errors{$wave_hosts}[1m]))',
    condition: '< 0.01',
  };

  it('shows the analyses and the rehearsal it signs, and signs when they are the rollout’s', async () => {
    const alice = person('alice');
    const bob = person('bob');
    const { status } = signedStatus(alice, request({ requiredApprovals: 1, analyses: [gate], rehearseRevert: true }));
    const h = harness({ status });
    await h.run('rollout', 'approve', 'ro_1', '--sign-key', bob.file);
    expect(h.callsOf('approveSigned')).toHaveLength(1);
    const shown = h.err.join('\n');
    expect(shown).toContain(
      'analysis  error-rate: sum(rate(errors{$wave_hosts}[1m]))  < 0.01  (3 × 30s, http://127.0.0.1:9090)',
    );
    expect(shown).toContain('rehearse  a host may revert and apply again once');
  });

  it('refuses a statement whose analyses or rehearsal are not the rollout’s as the coordinator shows it', async () => {
    const alice = person('alice');
    const bob = person('bob');
    // Signed without the gate; the rollout shown has it (or the reverse): not what the approver is shown.
    const { status: withoutGate } = signedStatus(alice);
    const gated = statusOf(request({ requiredApprovals: 1, analyses: [gate] }), withoutGate.signing);
    expect(
      (await harness({ status: gated }).fail('rollout', 'approve', 'ro_1', '--sign-key', bob.file)).lines.join('\n'),
    ).toMatch(/the statement's analyses are not the rollout's: refusing to sign/);
    const rehearsing = statusOf(request({ requiredApprovals: 1, rehearseRevert: true }), withoutGate.signing);
    const h = harness({ status: rehearsing });
    expect((await h.fail('rollout', 'approve', 'ro_1', '--sign-key', bob.file)).lines.join('\n')).toMatch(
      /the statement does not allow a rehearsed revert, the rollout asks for one: refusing to sign/,
    );
    expect(h.callsOf('approveSigned')).toEqual([]);
  });
});

describe('rollout revert --sign-key, revert-host --sign-key', () => {
  function succeeded(alice: Person, bob: Person, reverts: StatementView[] = []) {
    const { statement, status } = signedStatus(alice);
    const apply = viewOf(statement, [
      { who: alice, name: 'alice', role: 'author' },
      { who: bob, name: 'bob', role: 'approver' },
    ]);
    return { statement, status: { ...status, signing: { apply, reverts, revertSignaturesNeeded: 2 } } };
  }

  it('the first signer makes the revert statement; it is not enough alone, and the CLI says who runs next (exit 0)', async () => {
    const alice = person('alice');
    const bob = person('bob');
    const { statement, status } = succeeded(alice, bob);
    const answered = (_id: string, body: RevertSignatureRequest) => ({
      ...status,
      signing: {
        ...status.signing,
        reverts: [viewOf(body.statement as RevertStatement, [{ who: alice, name: 'alice', role: 'author' }])],
      },
    });
    const h = harness({ status, answers: { signRevert: answered } });
    await h.run('rollout', 'revert', 'ro_1', '--sign-key', alice.file);
    const body = h.argsOf('signRevert')[1] as RevertSignatureRequest;
    expect(body.statement).toEqual({
      kind: 'revert',
      statementVersion: 1,
      revertsStatementDigest: statementDigest(statement),
      target: statement.target,
      notBefore: NOW.toISOString(),
      expiresAt: new Date(NOW.getTime() + 24 * HOUR).toISOString(),
      sequence: NOW.getTime(),
    });
    expect(body.hostId).toBeUndefined();
    expect(verifyStatementSignature(alice.publicKey, body.statement, body.signature.signature)).toBe(true);
    expect(h.err.at(-1)).toBe('signed 1 of 2; a second person runs the same command');
    expect(h.callsOf('rolloutVerb')).toEqual([]);
  });

  it('a second person signs the pending statement (not a new one); the coordinator starts the revert', async () => {
    const alice = person('alice');
    const bob = person('bob');
    const { statement } = succeeded(alice, bob);
    const pendingStatement = revertStatementFor(statement, null, {
      now: new Date(NOW.getTime() - 60_000),
      validForSeconds: 3600,
    });
    const pending = viewOf(pendingStatement, [{ who: alice, name: 'alice', role: 'author' }]);
    const { status } = succeeded(alice, bob, [pending]);
    const done = {
      ...status,
      signing: {
        ...status.signing,
        reverts: [
          viewOf(
            pendingStatement,
            [
              { who: alice, name: 'alice', role: 'author' },
              { who: bob, name: 'bob', role: 'approver' },
            ],
            { usedAt: NOW.toISOString() },
          ),
        ],
      },
    };
    const h = harness({ status, answers: { signRevert: done } });
    await h.run('rollout', 'revert', 'ro_1', '--sign-key', bob.file);
    const body = h.argsOf('signRevert')[1] as RevertSignatureRequest;
    expect(body.statement).toEqual(pendingStatement);
    expect(h.err.at(-1)).toBe('signed 2 of 2: the revert has started');
  });

  it('refuses to co-sign a pending statement that does not take back this rollout', async () => {
    const alice = person('alice');
    const bob = person('bob');
    const { statement } = succeeded(alice, bob);
    const other = {
      ...revertStatementFor(statement, null, { now: NOW, validForSeconds: 3600 }),
      revertsStatementDigest: 'ab'.repeat(32),
    };
    const { status } = succeeded(alice, bob, [viewOf(other, [{ who: alice, name: 'alice', role: 'author' }])]);
    const h = harness({ status });
    const refused = await h.fail('rollout', 'revert', 'ro_1', '--sign-key', bob.file);
    expect(refused.lines.join('\n')).toMatch(/does not take back this rollout's statement: refusing to sign/);
    expect(h.callsOf('signRevert')).toEqual([]);
  });

  it('revert-host signs a statement for that host alone', async () => {
    const alice = person('alice');
    const bob = person('bob');
    const { status } = succeeded(alice, bob);
    const h = harness({ status });
    await h.run('rollout', 'revert-host', 'ro_1', 'web-2', '--sign-key', alice.file, '--valid-for', '2h');
    const body = h.argsOf('signRevert')[1] as RevertSignatureRequest;
    expect(body.hostId).toBe('web-2');
    expect(body.statement).toMatchObject({
      target: { kind: 'hosts', hostIds: ['web-2'] },
      expiresAt: new Date(NOW.getTime() + 2 * HOUR).toISOString(),
    });
  });
});
