/**
 * The change record and the promotion order through the HTTP API (the real app, `inject`): the
 * record's validation (hostile bytes included), its export as JSON and Markdown, approval refused
 * while a required field is empty, patch history, and the override (admins only).
 */
import {
  type ChangeRecordView,
  type NewPatchInput,
  type PatchHistory,
  type RolloutStatus,
  renderChangeRecord,
} from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

const RECORD: NonNullable<NewPatchInput['record']> = {
  validation: [{ title: 'CI run 4711 (integration suite)', url: 'https://ci.example.com/runs/4711' }],
  rollbackPlan: {
    steps: ['fleetpatch rollout revert <id>', 'check /etc/app/app.conf is back to workers = 4'],
    irreversible: ['none of the application data is touched'],
  },
  risk: { level: 'medium', impact: 'app restarts on each host; a bad value stops serving' },
};

let coordinator: TestCoordinator | undefined;
afterEach(async () => {
  await coordinator?.close();
  coordinator = undefined;
});

async function start(config: Record<string, unknown> = {}): Promise<TestCoordinator> {
  coordinator = await startTestCoordinator({ minApprovals: 1, ...config });
  const at = new Date().toISOString();
  const { store } = coordinator.app.fleet;
  await store.agents.enroll(
    { id: 'stg-1', publicKey: 'A'.repeat(43), labels: { env: 'staging' }, mayReplace: false },
    at,
  );
  await store.agents.enroll(
    { id: 'prod-1', publicKey: 'B'.repeat(43), labels: { env: 'prod' }, mayReplace: false },
    at,
  );
  // Seen once, as though their agents had connected: a host never seen is never a canary.
  await store.transaction(async () => {
    await store.agents.recordSightings([['stg-1', at]]);
    await store.agents.recordSightings([['prod-1', at]]);
  });
  return coordinator;
}

function issuesOf(body: unknown): { path: string; message: string }[] {
  return (body as { error: { details: { issues: { path: string; message: string }[] } } }).error.details.issues;
}

async function createPatch(app: TestCoordinator['app'], patch: NewPatchInput) {
  return callApi(app, 'POST', '/v1/patches', patch, TOKENS.operator);
}

async function patchId(app: TestCoordinator['app'], patch: NewPatchInput): Promise<string> {
  const created = await createPatch(app, patch);
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return (created.body as { id: string }).id;
}

async function rolloutOn(app: TestCoordinator['app'], patch: string, env: string): Promise<string> {
  const created = await callApi(
    app,
    'POST',
    '/v1/rollouts',
    { patchId: patch, target: { labels: { env } }, waves: ['100%'], requiredApprovals: 1 },
    TOKENS.operator,
  );
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return (created.body as RolloutStatus).rollout.id;
}

describe('the change record on a patch', () => {
  it('is stored with the patch, outside its content digest', async () => {
    const { app } = await start();
    const bare = await createPatch(app, SAMPLE_PATCH_SPEC);
    const recorded = await createPatch(app, { ...SAMPLE_PATCH_SPEC, title: 'other words', record: RECORD });
    expect(recorded.status).toBe(201);
    expect(recorded.body).toMatchObject({ record: RECORD });
    const digest = (body: unknown) => (body as { contentDigest: string }).contentDigest;
    expect(digest(recorded.body)).toMatch(/^[0-9a-f]{64}$/);
    // Prose and record are not what the agent executes: the same content, the same digest.
    expect(digest(recorded.body)).toBe(digest(bare.body));
    const changed = await createPatch(app, {
      ...SAMPLE_PATCH_SPEC,
      change: { ...(SAMPLE_PATCH_SPEC.change as object), content: 'workers = 9\n' } as NewPatchInput['change'],
    });
    expect(digest(changed.body)).not.toBe(digest(bare.body));
  });

  it('refuses ANSI escapes and other control characters in any record text, naming the field; nothing stored', async () => {
    const { app } = await start();
    const before = (await app.fleet.patches.list(500)).length;
    const hostile = await createPatch(app, {
      ...SAMPLE_PATCH_SPEC,
      record: {
        validation: [{ title: 'CI \u001b[2J\u001b[31mPASSED', url: 'https://ci.example.com/1' }],
        rollbackPlan: { steps: ['revert\u001b]8;;http://evil\u0007here'] },
        risk: { level: 'low', impact: 'none\u009b31m' },
      },
    });
    expect(hostile.status).toBe(400);
    expect(issuesOf(hostile.body).map((i) => i.path)).toEqual([
      'body.record.validation.0.title',
      'body.record.rollbackPlan.steps.0',
      'body.record.risk.impact',
    ]);
    expect((await app.fleet.patches.list(500)).length).toBe(before);
  });

  it('refuses oversized records and links that are not http(s)', async () => {
    const { app } = await start();
    const tooMany = await createPatch(app, {
      ...SAMPLE_PATCH_SPEC,
      record: {
        rollbackPlan: { steps: Array.from({ length: 51 }, (_, i) => `step ${i}`) },
        risk: { level: 'low', impact: 'x'.repeat(4001) },
        validation: [{ title: 'evidence', url: 'javascript:alert(1)' }],
      },
    });
    expect(tooMany.status).toBe(400);
    expect(issuesOf(tooMany.body).map((i) => i.path)).toEqual([
      'body.record.validation.0.url',
      'body.record.rollbackPlan.steps',
      'body.record.risk.impact',
    ]);
    const huge = await app.inject({
      method: 'POST',
      url: '/v1/patches',
      headers: { authorization: `Bearer ${TOKENS.operator}`, 'content-type': 'application/json' },
      payload: JSON.stringify({
        ...SAMPLE_PATCH_SPEC,
        record: { risk: { level: 'low', impact: 'x'.repeat(5_000_000) } },
      }),
    });
    expect(huge.statusCode).toBe(413);
  });
});

describe('GET /v1/patches/:id/record', () => {
  it('answers JSON by default, Markdown with Accept: text/markdown or ?format=md', async () => {
    const { app } = await start();
    const id = await patchId(app, { ...SAMPLE_PATCH_SPEC, record: RECORD });
    const json = await callApi(app, 'GET', `/v1/patches/${id}/record`, undefined, TOKENS.viewer);
    expect(json.status).toBe(200);
    const view = json.body as ChangeRecordView;
    expect(view).toMatchObject({
      patch: { id, title: SAMPLE_PATCH_SPEC.title, change: 'file /etc/app/app.conf (mode 0644, root:root)' },
      validation: RECORD.validation,
      validatedBy: [],
      rollbackPlan: RECORD.rollbackPlan,
      risk: RECORD.risk,
      missing: [],
    });

    for (const request of [
      { url: `/v1/patches/${id}/record`, accept: 'text/markdown' },
      { url: `/v1/patches/${id}/record?format=md`, accept: 'application/json' },
    ]) {
      const md = await app.inject({
        method: 'GET',
        url: request.url,
        headers: { authorization: `Bearer ${TOKENS.viewer}`, accept: request.accept },
      });
      expect(md.statusCode).toBe(200);
      expect(md.headers['content-type']).toBe('text/markdown; charset=utf-8');
      expect(md.body).toBe(renderChangeRecord(view, 'markdown'));
      expect(md.body).toContain('# Change request: Raise app workers to 8');
      expect(md.body).toContain('- [CI run 4711 (integration suite)](https://ci.example.com/runs/4711)');
      expect(md.body).toContain('1. fleetpatch rollout revert \\<id\\>');
      expect(md.body).toContain('**Cannot be reversed:**\n- none of the application data is touched');
    }
  });

  it('fills the rollback triggers from the health checks and the rollouts, and lists required fields left empty', async () => {
    const { app } = await start({ changeRecord: { required: ['validation', 'risk'] } });
    const id = await patchId(app, {
      ...SAMPLE_PATCH_SPEC,
      health: { checks: [{ kind: 'http', name: 'api', url: 'http://127.0.0.1:8080/health' }] },
      record: { rollbackPlan: RECORD.rollbackPlan },
    });
    const rollout = await rolloutOn(app, id, 'staging');
    const view = (await callApi(app, 'GET', `/v1/patches/${id}/record`)).body as ChangeRecordView;
    expect(view.missing).toEqual(['validation', 'risk']);
    expect(view.rollbackTriggers).toEqual([
      {
        source: 'health',
        description:
          'http check "api" (http://127.0.0.1:8080/health answers 200-399) must pass on each host within 60 s of apply',
      },
      { source: 'autoRevert', rolloutId: rollout, description: 'a failure reverts the host (autoRevert host)' },
    ]);
  });

  it('escapes markup an author typed, so an export cannot carry a link or HTML it did not mean', async () => {
    const { app } = await start();
    const id = await patchId(app, {
      ...SAMPLE_PATCH_SPEC,
      problem: 'see <img src=x onerror=alert(1)> and [this](http://evil.example)',
      record: { validation: [{ title: '](http://evil.example) [x', url: 'https://ci.example.com/a(b)c' }] },
    });
    const md = await app.inject({
      method: 'GET',
      url: `/v1/patches/${id}/record?format=md`,
      headers: { authorization: `Bearer ${TOKENS.viewer}` },
    });
    expect(md.body).toContain('see \\<img src=x onerror=alert(1)\\> and \\[this\\](http://evil.example)');
    expect(md.body).toContain('- [\\](http://evil.example) \\[x](https://ci.example.com/a%28b%29c)');
  });

  it('refuses an unknown format (400) and answers 404 for an unknown patch', async () => {
    const { app } = await start();
    const id = await patchId(app, SAMPLE_PATCH_SPEC);
    expect((await callApi(app, 'GET', `/v1/patches/${id}/record?format=html`)).status).toBe(400);
    expect((await callApi(app, 'GET', '/v1/patches/pat_nope/record')).status).toBe(404);
  });
});

describe('approval and start while a required record field is empty', () => {
  it('is refused (409 naming the fields), and allowed for a patch whose record is complete', async () => {
    const { app } = await start({ changeRecord: { required: ['rollbackPlan', 'validation'] } });
    const bare = await rolloutOn(
      app,
      await patchId(app, { ...SAMPLE_PATCH_SPEC, record: { validation: [] } }),
      'staging',
    );
    const refused = await callApi(app, 'POST', `/v1/rollouts/${bare}/approve`, undefined, TOKENS.approver);
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({
      error: { code: 'conflict', details: { missing: ['rollbackPlan', 'validation'] } },
    });
    expect((refused.body as { error: { message: string } }).error.message).toContain(
      'leaves required field(s) empty: rollbackPlan, validation',
    );
    expect(await app.fleet.store.rollouts.approvals(bare)).toEqual([]);

    const complete = await rolloutOn(app, await patchId(app, { ...SAMPLE_PATCH_SPEC, record: RECORD }), 'staging');
    const approved = await callApi(app, 'POST', `/v1/rollouts/${complete}/approve`, undefined, TOKENS.approver);
    expect(approved.status).toBe(200);
    expect((approved.body as RolloutStatus).rollout.state).toBe('scheduled');
  });

  it('refuses the start of a rollout that needed no approval', async () => {
    const { app } = await start({ minApprovals: 0, changeRecord: { required: ['risk'] } });
    const id = await patchId(app, SAMPLE_PATCH_SPEC);
    const created = await callApi(app, 'POST', '/v1/rollouts', {
      patchId: id,
      target: { labels: { env: 'staging' } },
      requiredApprovals: 0,
    });
    const rollout = (created.body as RolloutStatus).rollout.id;
    const refused = await callApi(app, 'POST', `/v1/rollouts/${rollout}/start`);
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ error: { details: { missing: ['risk'] } } });
    expect((await app.fleet.store.rollouts.get(rollout))?.state).toBe('scheduled');
  });
});

describe('promotion through the API', () => {
  const promotion = { order: ['staging', 'prod'], minSoakMinutes: 30 };

  it('refuses prod with 409; an operator may not override (403); an admin may, and the status shows it', async () => {
    const { app } = await start({ promotion });
    const id = await patchId(app, { ...SAMPLE_PATCH_SPEC, record: RECORD });
    const prod = await rolloutOn(app, id, 'prod');
    await callApi(app, 'POST', `/v1/rollouts/${prod}/approve`, undefined, TOKENS.approver);

    const refused = await callApi(app, 'POST', `/v1/rollouts/${prod}/start`, undefined, TOKENS.operator);
    expect(refused.status).toBe(409);
    expect((refused.body as { error: { message: string } }).error.message).toMatch(
      /^promotion order: hosts in prod need staging passed first: no rollout of this content on staging yet/,
    );

    const byOperator = await callApi(
      app,
      'POST',
      `/v1/rollouts/${prod}/start`,
      { overridePromotion: { reason: 'I am in a hurry' } },
      TOKENS.operator,
    );
    expect(byOperator.status).toBe(403);
    expect((byOperator.body as { error: { message: string } }).error.message).toBe(
      'olga (operator) may not override the promotion order: admins only',
    );
    expect((await app.fleet.store.rollouts.get(prod))?.state).toBe('scheduled');

    const noReason = await callApi(app, 'POST', `/v1/rollouts/${prod}/start`, { overridePromotion: { reason: ' ' } });
    expect(noReason.status).toBe(400);
    expect(issuesOf(noReason.body).map((i) => i.path)).toEqual(['body.overridePromotion.reason']);

    const byAdmin = await callApi(app, 'POST', `/v1/rollouts/${prod}/start`, {
      overridePromotion: { reason: 'CVE-2026-1234 is exploited; staging is down' },
    });
    expect(byAdmin.status).toBe(200);
    const status = byAdmin.body as RolloutStatus;
    expect(status.rollout.state).toBe('running');
    expect(status.promotion?.override).toMatchObject({
      by: 'alice',
      reason: 'CVE-2026-1234 is exploited; staging is down',
    });

    const history = (await callApi(app, 'GET', `/v1/patches/${id}/history`, undefined, TOKENS.viewer))
      .body as PatchHistory;
    expect(history).toMatchObject({
      patchId: id,
      label: 'env',
      order: ['staging', 'prod'],
      environments: [
        { env: 'prod', rollouts: [{ rolloutId: prod, state: 'running', reverted: false, overridden: true }] },
      ],
    });
  });
});
