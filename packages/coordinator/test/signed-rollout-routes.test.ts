/**
 * The HTTP side of signed rollouts: `POST /v1/rollouts/:id/statement`, `/revert-statement` and a
 * signed `/approve`. Every bad body is refused with the status and the field (or the reason) that is
 * wrong, and leaves the database exactly as it was.
 */
import {
  type ApplyStatement,
  applyStatementFor,
  ErrorBodySchema,
  type Patch,
  patchSpecOf,
  type RevertStatement,
  type RolloutRequest,
  RolloutStatusSchema,
  revertStatementFor,
  type StatementInput,
} from '@fleetpatch/shared';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { API_REFUSED_EVENT } from '../src/http/refusal-audit.js';
import { enrollAgent } from './support/enroll-agent.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { statementSigner } from './support/statement-signer.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

// alice is the admin token, olga an operator, bob an approver, vic a viewer (test-coordinator.ts).
const olgaKey = statementSigner();
const bobKey = statementSigner();
const aliceKey = statementSigner();
const mallory = statementSigner();

let coordinator: TestCoordinator;
let app: FastifyInstance;
let patch: Patch;

beforeEach(async () => {
  coordinator = await startTestCoordinator();
  app = coordinator.app;
  await enrollAgent(app, TOKENS.admin, 'web-1', { role: 'web' });
  await enrollAgent(app, TOKENS.admin, 'web-2', { role: 'web' });
  await enrollAgent(app, TOKENS.admin, 'db-1', { role: 'db' });
  patch = (await callApi(app, 'POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body as Patch;
});

afterEach(async () => {
  await coordinator.close();
});

/** Everything a refused request must leave as it was — but for its own trace: a 403 is a security event. */
function dump(): string {
  const tables = ['rollouts', 'approvals', 'statements', 'statement_signatures', 'events'];
  const rows = (t: string) =>
    app.fleet.store.db
      .prepare(`SELECT * FROM ${t} ${t === 'events' ? `WHERE type <> '${API_REFUSED_EVENT}' ` : ''}ORDER BY rowid`)
      .all();
  return JSON.stringify(tables.map(rows));
}

/** A draft by olga (the operator); returns its id and request. */
async function draft(request: Record<string, unknown> = {}): Promise<{ id: string; request: RolloutRequest }> {
  const created = await callApi(
    app,
    'POST',
    '/v1/rollouts',
    { patchId: patch.id, target: { all: true }, draft: true, requiredApprovals: 1, ...request },
    TOKENS.operator,
  );
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const { rollout } = RolloutStatusSchema.parse(created.body);
  return { id: rollout.id, request: rollout.request };
}

function statementOf(request: RolloutRequest, hosts: string[] = [], now = new Date()): ApplyStatement {
  return applyStatementFor(patchSpecOf(patch), request, hosts, { now, validForSeconds: 3600 });
}

/** Posts and expects a refusal: its status, and the field path or message it names; nothing stored. */
async function refused(
  url: string,
  body: unknown,
  token: string,
  status: number,
  names: { path?: string; message?: RegExp },
): Promise<void> {
  const before = dump();
  const res = await callApi(app, 'POST', url, body, token);
  const { error } = ErrorBodySchema.parse(res.body);
  expect(res.status, `${JSON.stringify(error)}`).toBe(status);
  const issues = (error.details?.issues ?? []) as { path: string }[];
  if (names.path) expect(issues.map((i) => i.path)).toContain(names.path);
  if (names.message) expect(error.message).toMatch(names.message);
  // Compared as a boolean: a diff of two database dumps helps nobody read the failure.
  expect(dump() === before, `${url} stored something though refused`).toBe(true);
}

describe('POST /v1/rollouts/:id/statement', () => {
  it('attaches the author’s signed statement to their draft; the status shows it', async () => {
    const { id, request } = await draft();
    const statement = statementOf(request);
    const res = await callApi(
      app,
      'POST',
      `/v1/rollouts/${id}/statement`,
      olgaKey.submission(statement),
      TOKENS.operator,
    );
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const { signing } = RolloutStatusSchema.parse(res.body);
    expect(signing?.apply.statement).toEqual(statement);
    expect(signing?.apply.signatures).toEqual([
      expect.objectContaining({ keyId: olgaKey.keyId, publicKey: olgaKey.publicKey, signer: 'olga', role: 'author' }),
    ]);
    expect(signing?.revertSignaturesNeeded).toBe(2);
  });

  it('refuses every statement that is not this rollout’s, or not signed by the key it names, storing nothing', async () => {
    const { id, request } = await draft();
    const good = statementOf(request);
    const url = `/v1/rollouts/${id}/statement`;
    const tamper = (patchFields: Record<string, unknown>): StatementInput =>
      ({ ...good, patch: { ...good.patch, ...patchFields } }) as StatementInput;
    const cases: { name: string; body: unknown; path: string }[] = [
      { name: 'no public key', body: { statement: good, signature: olgaKey.sign(good) }, path: 'body.publicKey' },
      {
        name: 'a statement of another version',
        body: { ...olgaKey.submission(good), statement: { ...good, statementVersion: 2 } },
        path: 'body.statement.statementVersion',
      },
      {
        name: 'a revert statement',
        body: olgaKey.submission(revertStatementFor(good, null, { now: new Date(), validForSeconds: 60 })),
        path: 'body.statement.kind',
      },
      {
        name: 'other content (its sha256)',
        body: olgaKey.submission(tamper({ change: { ...good.patch.change, contentSha256: 'cd'.repeat(32) } }) as never),
        path: 'body.statement.patch.change',
      },
      {
        name: 'other health checks',
        body: olgaKey.submission(tamper({ health: { ...good.patch.health, healthyDeadlineSeconds: 5 } }) as never),
        path: 'body.statement.patch.health',
      },
      {
        name: 'other prose',
        body: olgaKey.submission(tamper({ title: 'Something else' }) as never),
        path: 'body.statement.patch.title',
      },
      {
        name: 'another revert plan',
        body: olgaKey.submission({ ...good, revertOnHealthFailure: false }),
        path: 'body.statement.revertOnHealthFailure',
      },
      {
        name: 'host ids for an all-hosts rollout',
        body: olgaKey.submission({ ...good, target: { kind: 'hosts', hostIds: ['web-1'] } }),
        path: 'body.statement.target',
      },
      {
        name: 'a key id that is not the public key’s',
        body: { ...olgaKey.submission(good), publicKey: mallory.publicKey },
        path: 'body.signature.keyId',
      },
      {
        name: 'a signature by another key',
        body: {
          statement: good,
          signature: { keyId: olgaKey.keyId, signature: mallory.sign(good).signature },
          publicKey: olgaKey.publicKey,
        },
        path: 'body.signature.signature',
      },
      {
        name: 'a signature of another statement',
        body: { ...olgaKey.submission(good), signature: olgaKey.sign({ ...good, sequence: good.sequence + 1 }) },
        path: 'body.signature.signature',
      },
      {
        name: 'expired',
        body: olgaKey.submission(statementOf(request, [], new Date(Date.now() - 2 * 3600_000))),
        path: 'body.statement.expiresAt',
      },
    ];
    for (const { name, body, path } of cases) {
      await expect(refused(url, body, TOKENS.operator, 400, { path }), name).resolves.toBeUndefined();
    }
  });

  it('signs the rollout’s analyses and its rehearsal exactly: dropped, changed or added, they are refused', async () => {
    const analysis = {
      kind: 'prometheus',
      name: 'error-rate',
      address: 'http://127.0.0.1:9090',
      query: 'sum(rate(http_requests_total{code=~"5..",$wave_hosts}[1m]))',
      condition: '< 0.01',
    };
    const { id, request } = await draft({ analyses: [analysis], rehearseRevert: true });
    const good = statementOf(request);
    expect(good.analyses?.[0]).toMatchObject({ name: 'error-rate', count: 3, inconclusive: 'pause' });
    expect(good.rehearseRevert).toBe(true);
    const url = `/v1/rollouts/${id}/statement`;
    const { analyses: _analyses, ...withoutAnalyses } = good;
    const { rehearseRevert: _rehearse, ...withoutRehearsal } = good;
    const cases: { name: string; statement: StatementInput; path: string }[] = [
      // A statement that drops the gate: the coordinator would then run none the signers saw.
      { name: 'analyses dropped', statement: withoutAnalyses, path: 'body.statement.analyses' },
      {
        name: 'a looser threshold',
        statement: { ...good, analyses: [{ ...good.analyses?.[0], condition: '< 0.5' }] } as StatementInput,
        path: 'body.statement.analyses',
      },
      { name: 'the rehearsal dropped', statement: withoutRehearsal, path: 'body.statement.rehearseRevert' },
    ];
    for (const { name, statement, path } of cases) {
      await expect(
        refused(url, olgaKey.submission(statement as never), TOKENS.operator, 400, { path }),
        name,
      ).resolves.toBeUndefined();
    }
    // And the other way: a rollout without them refuses a statement that adds them.
    const plain = await draft();
    const added = { ...statementOf(plain.request), analyses: good.analyses, rehearseRevert: true } as StatementInput;
    await refused(`/v1/rollouts/${plain.id}/statement`, olgaKey.submission(added as never), TOKENS.operator, 400, {
      path: 'body.statement.analyses',
    });
    expect((await callApi(app, 'POST', url, olgaKey.submission(good), TOKENS.operator)).status).toBe(200);
  });

  it('is the creator’s, of a draft, of a known rollout', async () => {
    const { id, request } = await draft();
    const body = olgaKey.submission(statementOf(request));
    await refused(`/v1/rollouts/${id}/statement`, body, TOKENS.approver, 403, {
      message: /bob \(approver\) may not write/,
    });
    await refused(`/v1/rollouts/${id}/statement`, aliceKey.submission(statementOf(request)), TOKENS.admin, 403, {
      message: /only the rollout's creator \(olga\) signs it/,
    });
    await refused('/v1/rollouts/ro_nope/statement', body, TOKENS.operator, 404, { message: /does not exist/ });
    expect((await callApi(app, 'POST', `/v1/rollouts/${id}/submit`, {}, TOKENS.operator)).status).toBe(200);
    await refused(`/v1/rollouts/${id}/statement`, body, TOKENS.operator, 409, {
      message: /attached to a draft only; rollout .* is awaiting_approval/,
    });
  });

  it('a label target is signed for host ids it selects: a selector, or a host it does not select, is refused', async () => {
    const { id, request } = await draft({ target: { labels: { role: 'web' } } });
    const url = `/v1/rollouts/${id}/statement`;
    await refused(
      url,
      olgaKey.submission({
        ...statementOf(request, ['web-1']),
        target: { kind: 'selector', selector: request.target },
      }),
      TOKENS.operator,
      400,
      {
        path: 'body.statement.target.kind',
      },
    );
    await refused(url, olgaKey.submission(statementOf(request, ['web-1', 'db-1'])), TOKENS.operator, 400, {
      path: 'body.statement.target.hostIds',
      message: /does not select: db-1/,
    });
    const ok = await callApi(
      app,
      'POST',
      url,
      olgaKey.submission(statementOf(request, ['web-1', 'web-2'])),
      TOKENS.operator,
    );
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
  });

  it('a draft may be signed again: the new statement replaces the old', async () => {
    const { id, request } = await draft();
    const first = statementOf(request);
    const second = statementOf(request, [], new Date(Date.now() + 1000));
    const url = `/v1/rollouts/${id}/statement`;
    expect((await callApi(app, 'POST', url, olgaKey.submission(first), TOKENS.operator)).status).toBe(200);
    await refused(url, olgaKey.submission(first), TOKENS.operator, 409, { message: /attached to rollout .* already/ });
    const res = await callApi(app, 'POST', url, olgaKey.submission(second), TOKENS.operator);
    expect(RolloutStatusSchema.parse(res.body).signing?.apply.statement).toEqual(second);
    expect(app.fleet.store.db.prepare('SELECT count(*) AS n FROM statements').get()).toEqual({ n: 1 });
  });
});

/** A signed rollout, submitted and awaiting bob's approval. */
async function signedAwaitingApproval(): Promise<{ id: string; statement: ApplyStatement }> {
  const { id, request } = await draft();
  const statement = statementOf(request);
  expect(
    (await callApi(app, 'POST', `/v1/rollouts/${id}/statement`, olgaKey.submission(statement), TOKENS.operator)).status,
  ).toBe(200);
  expect((await callApi(app, 'POST', `/v1/rollouts/${id}/submit`, {}, TOKENS.operator)).status).toBe(200);
  return { id, statement };
}

describe('POST /v1/rollouts/:id/approve of a signed rollout', () => {
  it('needs the approver’s signature of the statement, by a key other than the author’s', async () => {
    const { id, statement } = await signedAwaitingApproval();
    const url = `/v1/rollouts/${id}/approve`;
    await refused(url, {}, TOKENS.approver, 409, { message: /is signed: approve with --sign-key/ });
    await refused(url, { signature: bobKey.sign(statement) }, TOKENS.approver, 400, { path: 'body.publicKey' });
    await refused(url, olgaKey.approval(statement), TOKENS.approver, 403, {
      message: /four eyes: key .* is the author's key/,
    });
    await refused(
      url,
      { signature: bobKey.sign({ ...statement, sequence: 7 }), publicKey: bobKey.publicKey },
      TOKENS.approver,
      400,
      {
        path: 'body.signature.signature',
      },
    );
    await refused(url, { signature: mallory.sign(statement), publicKey: bobKey.publicKey }, TOKENS.approver, 400, {
      path: 'body.signature.keyId',
    });
    const ok = await callApi(app, 'POST', url, bobKey.approval(statement), TOKENS.approver);
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    const status = RolloutStatusSchema.parse(ok.body);
    expect(status.rollout.state).toBe('scheduled');
    expect(status.signing?.apply.signatures.map((s) => [s.signer, s.role, s.keyId])).toEqual([
      ['olga', 'author', olgaKey.keyId],
      ['bob', 'approver', bobKey.keyId],
    ]);
  });
});

describe('POST /v1/rollouts/:id/revert-statement', () => {
  /** Signed, approved by bob, started (its agents are offline: it stays running, which may revert). */
  async function running(): Promise<{ id: string; statement: ApplyStatement; revert: RevertStatement }> {
    const { id, statement } = await signedAwaitingApproval();
    expect(
      (await callApi(app, 'POST', `/v1/rollouts/${id}/approve`, bobKey.approval(statement), TOKENS.approver)).status,
    ).toBe(200);
    const started = await callApi(app, 'POST', `/v1/rollouts/${id}/start`, {}, TOKENS.operator);
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    await app.fleet.engine.whenIdle(); // the first wave's dispatch, so nothing moves under the checks below
    return { id, statement, revert: revertStatementFor(statement, null, { now: new Date(), validForSeconds: 3600 }) };
  }

  it('collects two people’s signatures of one revert statement; the second starts the revert; before that, revert says how many are missing', async () => {
    const { id, revert } = await running();
    const url = `/v1/rollouts/${id}/revert-statement`;
    await refused(`/v1/rollouts/${id}/revert`, {}, TOKENS.operator, 409, {
      message: /needs a revert statement signed by 2 people/,
    });
    const first = await callApi(app, 'POST', url, olgaKey.submission(revert), TOKENS.operator);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(RolloutStatusSchema.parse(first.body).signing?.reverts).toEqual([
      expect.objectContaining({
        statement: revert,
        usedAt: null,
        signatures: [expect.objectContaining({ signer: 'olga' })],
      }),
    ]);
    await refused(`/v1/rollouts/${id}/revert`, {}, TOKENS.operator, 409, {
      message: /has 1 of 2 signatures: 1 more person must run/,
    });
    await refused(url, olgaKey.submission(revert), TOKENS.approver, 409, {
      message: /has signed this revert statement already/,
    });
    await refused(url, aliceKey.submission(revert), TOKENS.operator, 403, { message: /four eyes: olga has signed/ });
    await refused(url, bobKey.submission({ ...revert, sequence: revert.sequence + 1 }), TOKENS.approver, 409, {
      message: /is pending with 1 of 2 signatures: sign that one/,
    });
    const second = await callApi(app, 'POST', url, bobKey.submission(revert), TOKENS.approver);
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    const status = RolloutStatusSchema.parse(second.body);
    expect(status.rollout.state).toBe('reverting');
    expect(status.signing?.reverts[0]?.usedAt).not.toBeNull();
  });

  it('refuses what does not take back this rollout, or is not signed as it says, storing nothing', async () => {
    const { id, statement, revert } = await running();
    const url = `/v1/rollouts/${id}/revert-statement`;
    const cases: { name: string; body: unknown; token?: string; status?: number; path?: string; message?: RegExp }[] = [
      {
        name: 'a viewer',
        body: olgaKey.submission(revert),
        token: TOKENS.viewer,
        status: 403,
        message: /may not sign-revert/,
      },
      { name: 'an apply statement', body: olgaKey.submission(statement), path: 'body.statement.kind' },
      {
        name: 'another apply statement',
        body: olgaKey.submission({ ...revert, revertsStatementDigest: 'ef'.repeat(32) }),
        path: 'body.statement.revertsStatementDigest',
      },
      {
        name: 'another target',
        body: olgaKey.submission({ ...revert, target: { kind: 'hosts', hostIds: ['web-1'] } }),
        path: 'body.statement.target',
      },
      {
        name: 'a host statement without its host',
        body: olgaKey.submission(revertStatementFor(statement, 'web-1', { now: new Date(), validForSeconds: 60 })),
        path: 'body.statement.target',
      },
      {
        name: 'a host not in the rollout',
        body: {
          ...olgaKey.submission(revertStatementFor(statement, 'nope-9', { now: new Date(), validForSeconds: 60 })),
          hostId: 'nope-9',
        },
        status: 404,
        message: /host nope-9 is not part of rollout/,
      },
      {
        name: 'a key id not the key’s',
        body: { ...olgaKey.submission(revert), publicKey: mallory.publicKey },
        path: 'body.signature.keyId',
      },
      {
        name: 'a bad signature',
        body: {
          ...olgaKey.submission(revert),
          signature: { keyId: olgaKey.keyId, signature: mallory.sign(revert).signature },
        },
        path: 'body.signature.signature',
      },
      {
        name: 'expired',
        body: olgaKey.submission(
          revertStatementFor(statement, null, { now: new Date(Date.now() - 7200_000), validForSeconds: 60 }),
        ),
        path: 'body.statement.expiresAt',
      },
    ];
    for (const c of cases) {
      await expect(
        refused(url, c.body, c.token ?? TOKENS.operator, c.status ?? 400, {
          ...(c.path ? { path: c.path } : {}),
          ...(c.message ? { message: c.message } : {}),
        }),
        c.name,
      ).resolves.toBeUndefined();
    }
  });

  it('an unsigned rollout takes no revert statement', async () => {
    const { id, request } = await draft({ draft: false });
    const anyRevert = revertStatementFor(statementOf(request), null, { now: new Date(), validForSeconds: 60 });
    await refused(`/v1/rollouts/${id}/revert-statement`, olgaKey.submission(anyRevert), TOKENS.operator, 409, {
      message: /is not signed: revert it without --sign-key/,
    });
  });
});
