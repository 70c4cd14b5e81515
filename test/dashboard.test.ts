import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentList, ComplianceReport, EventPage, JoinTokenCreated, RolloutStatus } from '@fleetpatch/shared';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sha256Of } from '../scripts/lib/sample-specs.mjs';
import { type AgentIdentity, connectAs, enrollWith } from './support/agent-identity.js';
import { chromiumBrowser, launchChromium, pageProblems } from './support/browser.js';
import { ADMIN_TOKEN, FleetHarness, hostOf, sampleFilePatch } from './support/fleet-harness.js';
import { describeNeeding } from './support/requirements.js';

// The dashboard at /ui, in a real browser (Debian's chromium through playwright-core) against a real
// coordinator and real agents: a rollout's grid changes colour live as hosts finish, a halted
// rollout names its failed host and why, a viewer sees no buttons, and server text never becomes
// markup. The screenshots in docs/ come from here: taken at every run, written over docs/ only with
// FLEETPATCH_UPDATE_SCREENSHOTS=1 (else into the run's temp dir), so a test run leaves the checkout as it was.

const HOSTS = ['web-1', 'web-2', 'web-3', 'web-4'];
const VIEWER_TOKEN = 'e2e-viewer-token-0000001';
const OPERATOR_TOKEN = 'e2e-operator-token-00001';
const APPROVER_TOKEN = 'e2e-approver-token-00001';
/** A patch title that would run script if the page ever rendered server text as HTML. */
const RUNNING_TITLE = 'Raise nginx workers for the spring peak';
const HALTED_TITLE = 'Raise the open file limit';
const HOSTILE_TITLE = 'Raise workers <img src=x onerror="window.__xss=1"> for the spring peak';
const HOSTILE_LABEL = '<script>window.__xss=2</script>';
/** The dashboard's rollout-source.js, as a test calls it in the page (it is plain JavaScript). */
interface RolloutSourceModule {
  viewOfStatus(status: unknown): {
    failingHosts: unknown[];
    failedHosts: { hostId: string }[];
  };
  viewOfSummary(summary: unknown): {
    failedHosts: { hostId: string }[];
    moreFailed: [string, number][];
    failingHosts: { hostId: string; moreChecks: number }[];
    compliance: unknown;
    everyHost: boolean;
    signed: boolean | null;
  };
}
/** What the page's globals look like to the functions run in it (the tests compile without the DOM's types). */
interface InPage {
  getComputedStyle(element: unknown): { backgroundColor: string };
  sessionStorage: { length: number; setItem(key: string, value: string): void };
  __xss?: number;
}
const DOCS = join(import.meta.dirname, '..', 'docs');
/** Where a screenshot goes: docs/ when asked to update them, else beside the run's other temp files. */
const screenshotPath = (work: string, name: string) =>
  join(process.env.FLEETPATCH_UPDATE_SCREENSHOTS === '1' ? DOCS : work, name);

describeNeeding([chromiumBrowser], 'the dashboard in a real browser', () => {
  let work: string;
  let fleet: FleetHarness;
  let browser: Browser;
  let page: Page | undefined;
  let problems: string[] = [];
  /** The path of every request the tab made, in order; and with its query. */
  let requested: string[] = [];
  let requestedWithQueries: string[] = [];

  const rootOf = (host: string) => join(work, host, 'root');

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-dashboard-'));
    fleet = await FleetHarness.start(join(work, 'coordinator'), {
      tokens: [
        { name: 'vera', token: VIEWER_TOKEN, role: 'viewer' },
        { name: 'olga', token: OPERATOR_TOKEN, role: 'operator' },
        { name: 'abe', token: APPROVER_TOKEN, role: 'approver' },
      ],
      tickIntervalMs: 100,
    });
    for (const host of HOSTS) {
      await mkdir(join(rootOf(host), 'etc/app'), { recursive: true, mode: 0o755 });
      const labels = { role: 'web', note: HOSTILE_LABEL };
      const joinToken = await fleet.register(host, labels);
      fleet.spawnAgent({ id: host, joinToken, labels, dataDir: join(work, host, 'data'), rootDir: rootOf(host) });
    }
    await fleet.waitOnline(HOSTS);
    browser = await launchChromium();
    await mkdir(DOCS, { recursive: true });
  });

  afterEach(async () => {
    await page?.close();
    page = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await fleet?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** A fresh tab, logged in with `token`, on `hash` (e.g. `#/agents`). */
  async function openDashboard(token: string, hash = '#/rollouts'): Promise<Page> {
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    problems = pageProblems(page);
    const paths: string[] = [];
    const withQueries: string[] = [];
    page.on('request', (request) => {
      const url = new URL(request.url());
      paths.push(url.pathname);
      withQueries.push(`${url.pathname}${url.search}`);
    });
    requested = paths;
    requestedWithQueries = withQueries;
    await page.goto(`${fleet.coordinator.url}/ui/${hash}`);
    await page.locator('#token').fill(token);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByTestId('who').waitFor();
    return page;
  }

  const backgroundOf = (tab: Page, host: string) =>
    tab
      .locator(`[data-host="${host}"]`)
      .evaluate((el) => (globalThis as unknown as InPage).getComputedStyle(el).backgroundColor);

  it("shows a running rollout's hosts change colour as they finish, live over its event stream", async () => {
    const patchId = await fleet.createPatch(
      sampleFilePatch('/etc/app/app.conf', 'workers = 8\n', { title: RUNNING_TITLE, ticket: 'OPS-42' }),
    );
    // The canary passes, then the rollout bakes for an hour: the page is opened mid-rollout, and the
    // admin ends the bake from the page itself.
    const id = await fleet.startRollout({
      patchId,
      target: { hostIds: HOSTS },
      waves: [1, '100%'],
      bakeSeconds: 3600,
    });
    await waitFor('the canary wave to bake', async () => (await fleet.status(id)).rollout.bakeUntil !== null);

    const tab = await openDashboard(ADMIN_TOKEN, `#/rollouts/${id}`);
    // When the page fetched the status, by the browser's clock: the refreshes are paced.
    const statusFetchedAt: number[] = [];
    tab.on('requestfinished', (request) => {
      if (new URL(request.url()).pathname === `/v1/rollouts/${id}`) statusFetchedAt.push(request.timing().startTime);
    });
    await tab.locator('[data-host="web-1"][data-state="healthy"]').waitFor();
    await tab.getByTestId('stream').getByText('live').waitFor();
    const canaryColour = await backgroundOf(tab, 'web-1');
    const waitingColour = await backgroundOf(tab, 'web-4');
    expect(await tab.locator('[data-host="web-4"]').getAttribute('data-state')).toBe('queued');
    expect(waitingColour).not.toBe(canaryColour);
    const countdown = tab.locator('[data-wave="1"] .countdown');
    await expect.poll(() => countdown.textContent()).toMatch(/^bake ends in \d+ min \d+ s$/);
    const shownFirst = await countdown.textContent();
    // It ticks every second: a deadline of one second (expect.poll's default) would be a coin toss.
    await expect.poll(() => countdown.textContent(), { timeout: 5_000 }).not.toBe(shownFirst);
    await tab.screenshot({ path: screenshotPath(work, 'dashboard-rollout.png'), fullPage: true });

    await tab.locator('button[data-verb="promote"]').click();
    for (const host of HOSTS) await tab.locator(`[data-host="${host}"][data-state="healthy"]`).waitFor();
    // The last wave bakes too: ended the same way.
    await tab.locator('[data-wave="2"] .countdown').waitFor();
    await tab.locator('button[data-verb="promote"]').click();
    await tab.getByTestId('rollout-state').getByText('succeeded', { exact: true }).waitFor();
    for (const host of HOSTS) expect(await backgroundOf(tab, host)).toBe(canaryColour);
    const final = await fleet.status(id);
    expect(final.rollout.state).toBe('succeeded');
    expect(await tab.locator('[data-wave] .counts').allTextContents()).toEqual(['1 done', '3 done']);
    // The stream delivered every event of the audit trail, the promotion among them.
    const { events } = await fleet.api.get<{ events: { type: string }[] }>(`/v1/rollouts/${id}/events?limit=500`);
    await expect.poll(() => tab.locator('[data-testid="timeline"] li').count()).toBe(events.length);
    expect(await tab.locator('[data-testid="timeline"] li[data-type="rollout.promoted"]').count()).toBe(
      events.filter((e) => e.type === 'rollout.promoted').length,
    );
    expect(await tab.getByTestId('patch-title').textContent()).toBe(RUNNING_TITLE);
    // Three waves of changes came through, each refresh about 250 ms or more after the one before (the
    // page paces by its own clock; the browser stamps a request's start a moment after the page asks,
    // by up to tens of ms on a loaded machine). Unpaced, they came ~50 ms apart.
    expect(statusFetchedAt.length).toBeGreaterThanOrEqual(3);
    const gaps = statusFetchedAt.slice(1).map((at, i) => at - (statusFetchedAt[i] as number));
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(200);
    // The title came from the patch's summary: the page never downloaded the patch's content.
    expect(requested.filter((path) => path.startsWith('/v1/patches/'))).toEqual([`/v1/patches/${patchId}/summary`]);
    expect(problems).toEqual([]);
  });

  it('shows a halted rollout with its failed host and the reason it failed', async () => {
    const path = '/etc/app/limits.conf';
    const prior = 'nofile = 1024\n';
    for (const host of HOSTS) await writeFile(join(rootOf(host), path), host === 'web-3' ? 'edited by hand\n' : prior);
    // Every host must hold the prior content the patch expects; web-3's was edited by hand.
    const patchId = await fleet.createPatch(
      samplePatch({ path, content: 'nofile = 65536\n', title: HALTED_TITLE, expectedPriorSha256: sha256Of(prior) }),
    );
    const id = await fleet.startRollout({ patchId, target: { hostIds: HOSTS }, waves: ['100%'], maxParallel: 4 });
    const halted = await fleet.waitForState(id, ['halted']);
    const failed = hostOf(halted, 'web-3');
    expect(failed.state).toBe('failed');
    expect(failed.reason).toBeTruthy();

    const tab = await openDashboard(ADMIN_TOKEN, `#/rollouts/${id}`);
    await tab.getByTestId('rollout-state').getByText('halted', { exact: true }).waitFor();
    const entry = tab.locator('[data-failed-host="web-3"]');
    await entry.waitFor();
    expect(await entry.locator('.reason').textContent()).toBe(failed.reason);
    expect(await tab.locator('[data-host="web-3"]').getAttribute('data-state')).toBe('failed');
    expect(await tab.locator('[data-failed-host]').count()).toBe(1);
    expect(await tab.getByTestId('state-reason').textContent()).toBe(halted.rollout.stateReason);
    expect(await tab.getByTestId('failure-budget').textContent()).toContain(`${halted.failures} failed of 0 tolerated`);
    // The admin may revert it: the button is there.
    expect(await tab.locator('button[data-verb="revert"]').count()).toBe(1);
    await tab.screenshot({ path: screenshotPath(work, 'dashboard-halted.png'), fullPage: true });
    expect(problems).toEqual([]);
  });

  it('lists every rollout with its state, patch, progress, failures and age', async () => {
    const statuses = (await fleet.api.get<{ rollouts: { id: string; patchId: string }[] }>('/v1/rollouts')).rollouts;
    const tab = await openDashboard(ADMIN_TOKEN, '#/rollouts');
    await tab.locator('table.rollouts tbody tr').first().waitFor();
    expect(await tab.locator('table.rollouts tbody tr').count()).toBe(statuses.length);
    for (const { id } of statuses) {
      const status = await fleet.status(id);
      const row = tab.locator(`tr[data-rollout="${id}"]`);
      expect(await row.locator('.badge').textContent()).toBe(status.rollout.state);
      expect(await row.locator('td').nth(4).textContent()).toBe(
        `${status.failures} / ${status.toleratedFailures} tolerated`,
      );
    }
    expect(await tab.locator('td.title').allTextContents()).toEqual([HALTED_TITLE, RUNNING_TITLE]);
    // Each title from its patch's summary, asked for once: no patch whole, with its content, was fetched.
    const patchReads = requested.filter((path) => path.startsWith('/v1/patches/'));
    expect(patchReads.toSorted()).toEqual(statuses.map(({ patchId }) => `/v1/patches/${patchId}/summary`).toSorted());
    await tab.screenshot({ path: screenshotPath(work, 'dashboard-rollouts.png'), fullPage: true });
    expect(problems).toEqual([]);
  });

  it('lets a viewer look but shows no verbs, and lists the agents with their facts and labels', async () => {
    const { rollouts } = await fleet.api.get<{ rollouts: RolloutStatus['rollout'][] }>('/v1/rollouts');
    const halted = rollouts.find((r) => r.state === 'halted');
    expect(halted).toBeDefined();
    const tab = await openDashboard(VIEWER_TOKEN, `#/rollouts/${halted?.id}`);
    expect(await tab.getByTestId('who').textContent()).toBe('vera (viewer)');
    await tab.locator('[data-failed-host="web-3"]').waitFor();
    expect(await tab.locator('button[data-verb]').count()).toBe(0);

    await tab.getByRole('link', { name: 'Agents' }).click();
    await tab.locator('table.agents tbody tr').first().waitFor();
    const { agents } = await fleet.api.get<AgentList>('/v1/agents');
    expect(await tab.locator('table.agents tbody tr').count()).toBe(agents.length);
    for (const agent of agents) {
      const row = tab.locator(`tr[data-agent="${agent.id}"]`);
      expect(await row.locator('.badge').textContent()).toBe('online');
      expect(await row.locator('td').nth(2).textContent()).toContain(agent.facts?.hostname ?? '?');
      expect(await row.locator('td').nth(3).textContent()).toContain(`note=${HOSTILE_LABEL}`);
    }
    expect(await tab.locator('script:not([src])').count()).toBe(0);
    expect(await tab.evaluate(() => (globalThis as unknown as InPage).__xss)).toBeUndefined();
    expect(problems).toEqual([]);
  });

  it('offers each role only its verbs: an approver approves from the page, an operator aborts after confirming', async () => {
    const patchId = await fleet.createPatch(sampleFilePatch('/etc/app/approved.conf', 'y = 2\n'));
    const id = await fleet.createRollout({ patchId, target: { hostIds: ['web-1'] }, requiredApprovals: 1 });
    const verbsOf = (tab: Page) =>
      tab.locator('button[data-verb]').evaluateAll((buttons) => buttons.map((b) => b.getAttribute('data-verb')));

    const operator = await openDashboard(OPERATOR_TOKEN, `#/rollouts/${id}`);
    await operator.getByTestId('rollout-state').getByText('awaiting_approval').waitFor();
    expect(await verbsOf(operator)).toEqual(['abort']);
    await operator.close();

    const approver = await openDashboard(APPROVER_TOKEN, `#/rollouts/${id}`);
    await approver.getByTestId('rollout-state').getByText('awaiting_approval').waitFor();
    expect(await verbsOf(approver)).toEqual(['approve']);
    await approver.locator('button[data-verb="approve"]').click();
    await approver.getByTestId('rollout-state').getByText('scheduled', { exact: true }).waitFor();
    expect(await verbsOf(approver)).toEqual([]);
    expect((await fleet.status(id)).approvals.map((a) => a.approver)).toEqual(['abe']);
    expect(problems).toEqual([]);
    await approver.close();

    const again = await openDashboard(OPERATOR_TOKEN, `#/rollouts/${id}`);
    await again.getByTestId('rollout-state').getByText('scheduled', { exact: true }).waitFor();
    expect(await verbsOf(again)).toEqual(['start', 'abort']);
    // Dismissed, the confirmation changes nothing; accepted, the rollout is aborted.
    const posted: string[] = [];
    again.on('request', (request) => {
      if (request.method() === 'POST') posted.push(new URL(request.url()).pathname);
    });
    again.once('dialog', (dialog) => void dialog.dismiss());
    await again.locator('button[data-verb="abort"]').click();
    expect(posted).toEqual([]);
    again.once('dialog', (dialog) => void dialog.accept());
    await again.locator('button[data-verb="abort"]').click();
    await again.getByTestId('rollout-state').getByText('aborted', { exact: true }).waitFor();
    expect((await fleet.status(id)).rollout.state).toBe('aborted');
    expect(posted).toEqual([`/v1/rollouts/${id}/abort`]);
    expect(problems).toEqual([]);
  });

  it('renders server text as text: a hostile patch title runs nothing, in the table or on its page', async () => {
    const patchId = await fleet.createPatch(
      sampleFilePatch('/etc/app/other.conf', 'x = 1\n', { title: HOSTILE_TITLE }),
    );
    const id = await fleet.createRollout({ patchId, target: { hostIds: HOSTS }, draft: true });
    const tab = await openDashboard(VIEWER_TOKEN, '#/rollouts');
    await tab.locator(`tr[data-rollout="${id}"] td.title`).getByText(HOSTILE_TITLE, { exact: true }).waitFor();
    await tab.locator(`tr[data-rollout="${id}"] a`).click();
    await tab.getByTestId('patch-title').getByText(HOSTILE_TITLE, { exact: true }).waitFor();
    await tab.getByTestId('stream').getByText('live').waitFor();
    // On screen as the text it is: no element was made of it, no script ran, the CSP refused nothing.
    expect(await tab.locator('img').count()).toBe(0);
    expect(await tab.evaluate(() => (globalThis as unknown as InPage).__xss)).toBeUndefined();
    expect(problems).toEqual([]);
  });

  it('shows the compliance of a source package across the fleet', async () => {
    const query = { source: 'openssl', fixed: '3.0.15-1~deb12u1' };
    const report = await fleet.api.get<ComplianceReport>(`/v1/compliance?${new URLSearchParams(query)}`);
    const tab = await openDashboard(VIEWER_TOKEN, '#/compliance');
    await tab.locator('input[name="source"]').fill(query.source);
    await tab.locator('input[name="fixed"]').fill(query.fixed);
    await tab.getByRole('button', { name: 'Check the fleet' }).click();
    await tab.getByTestId('compliance-counts').waitFor();
    for (const host of report.hosts) {
      expect(await tab.locator(`tr[data-host="${host.hostId}"]`).getAttribute('data-status')).toBe(host.status);
    }
    expect(await tab.getByTestId('compliance-counts').textContent()).toContain(`${report.counts.unknown} unknown`);
    expect(problems).toEqual([]);
  });

  it('draws a rollout of more than 1,000 hosts from its summary: bars from counts, no grid, never its full status', async () => {
    // 1,001 hosts enrolled with one multi-use token. The canary is the one connected (a socket that
    // never answers its order); the others never connect.
    const crowd = Array.from({ length: 1001 }, (_, i) => `crowd-${String(i).padStart(4, '0')}`);
    const { token } = await fleet.api.post<JoinTokenCreated>('/v1/join-tokens', {
      uses: crowd.length,
      labels: { role: 'crowd' },
    });
    const identities: AgentIdentity[] = [];
    for (let i = 0; i < crowd.length; i += 50)
      identities.push(
        ...(await Promise.all(crowd.slice(i, i + 50).map((id) => enrollWith(fleet.coordinator.url, token, id)))),
      );
    const canary = await connectAs(fleet.coordinator.url, identities[0] as AgentIdentity);
    onTestFinished(() => void canary.close());
    const patchId = await fleet.createPatch(sampleFilePatch('/etc/app/app.conf', 'workers = 1001\n'));
    const id = await fleet.startRollout({ patchId, target: { labels: { role: 'crowd' } }, waves: [1, '100%'] });

    const tab = await openDashboard(ADMIN_TOKEN, `#/rollouts/${id}`);
    await tab.getByTestId('hosts-counted').waitFor();
    expect(await tab.getByTestId('hosts-counted').textContent()).toMatch(/^1001 hosts: /);
    // The canary's order goes out just after the start: read again until the page shows it (its refreshes
    // are paced, see the summary reads below).
    await expect
      .poll(() => tab.locator('[data-wave] .counts').allTextContents(), { timeout: 10_000 })
      .toEqual(['1 in flight', '1000 pending']);
    expect(await tab.getByTestId('host-grid').count()).toBe(0);
    // Aborted from the page: the verb answers with the summary (`?view=summary`), which is drawn.
    tab.once('dialog', (dialog) => void dialog.accept());
    await tab.locator('button[data-verb="abort"]').click();
    await tab.getByTestId('rollout-state').getByText('aborted', { exact: true }).waitFor();
    expect(requestedWithQueries).toContain(`/v1/rollouts/${id}/abort?view=summary`);
    await tab.getByTestId('stream').getByText('live').waitFor();
    // Its stream says that hosts moved instead of sending their events: the timeline has none of them.
    const streams = requestedWithQueries.filter((path) => path.startsWith(`/v1/rollouts/${id}/events/stream`));
    expect(streams).toEqual([`/v1/rollouts/${id}/events/stream?hostEvents=coalesced`]);
    await tab.getByTestId('host-events-counted').waitFor();
    await tab.locator('[data-testid="timeline"] li[data-type="rollout.aborted"]').waitFor();
    // Every read of the rollout was of its summary (the verb's POST aside), and the page drew no host:
    // the first read, and the one the abort's event set going (it may still be on its way here). That one
    // waits out the page's refresh pacing, ten times the last read's time: on a loaded machine more than
    // expect.poll's default second, hence the longer deadline.
    const reads = () => requested.filter((path) => path.startsWith(`/v1/rollouts/${id}`) && !path.includes('/events'));
    await expect
      .poll(() => reads().filter((path) => path === `/v1/rollouts/${id}/summary`).length, { timeout: 10_000 })
      .toBeGreaterThanOrEqual(2);
    expect(
      reads()
        .filter((path) => path !== `/v1/rollouts/${id}/abort`)
        .every((path) => path === `/v1/rollouts/${id}/summary`),
    ).toBe(true);
    expect(await tab.locator('[data-host]').count()).toBe(0);
    const listed = await tab
      .locator('[data-testid="timeline"] li')
      .evaluateAll((items) => items.map((item) => (item as unknown as { dataset: { type: string } }).dataset.type));
    expect(listed.filter((type) => type.startsWith('host.'))).toEqual([]);
    expect(problems).toEqual([]);
  });

  it('makes one view of a full status and of a summary: failing checks, failed hosts not named, the compliance link', async () => {
    const tab = await openDashboard(VIEWER_TOKEN);
    // The page's own module, in the page: what it draws from each answer. (Loaded by a string: the test's
    // own transform would rewrite an import() written in a function.)
    await tab.evaluate('import("/ui/rollout-source.js").then((module) => { globalThis.__rolloutSource = module; })');
    const views = await tab.evaluate(() => {
      const source = (globalThis as unknown as { __rolloutSource: RolloutSourceModule }).__rolloutSource;
      const check = (name: string, ok: boolean) => ({
        check: name,
        kind: 'http',
        ok,
        observed: ok ? '200' : 'HTTP 500',
        at: 't',
        since: 't',
      });
      const host = (hostId: string, state: string, liveHealth?: unknown) => ({
        hostId,
        state,
        online: true,
        health: null,
        ...(liveHealth ? { liveHealth } : {}),
      });
      const status = {
        rollout: { id: 'ro_1', hostCount: 3 },
        failures: 1,
        toleratedFailures: 1,
        haltsOn: 'halts on the 2nd failure',
        waves: [
          {
            wave: 0,
            phase: 'running',
            hosts: [
              host('web-1', 'verifying', {
                phase: 'verifying',
                checks: [check('api', false), check('db', true)],
                failingPolls: 3,
              }),
              host('web-2', 'verifying', { phase: 'verifying', checks: [check('api', true)], failingPolls: 0 }),
              host('web-3', 'failed'),
            ],
          },
        ],
        signing: null,
      };
      const failed = (hostId: string, state: string) => ({
        hostId,
        wave: 1,
        state,
        errorCode: 'health_failed',
        reason: 'HTTP 500',
      });
      const summary = {
        rollout: {
          id: 'ro_2',
          hostCount: 5000,
          request: { target: { exposedTo: { source: 'openssl', fixed: '3.0.15-1' } } },
        },
        failures: 13,
        toleratedFailures: 50,
        haltsOn: 'halts on the 51st failure',
        counts: { healthy: 4000, failed: 11, timed_out: 2, queued: 987 },
        waves: [],
        // The first failures counted, whatever became of them since: one was reverted.
        failedHosts: [
          ...Array.from({ length: 9 }, (_, i) => failed(`web-${i}`, 'failed')),
          failed('web-9', 'reverted'),
        ],
        failingHosts: [
          {
            hostId: 'web-77',
            wave: 1,
            state: 'verifying',
            failingPolls: 2,
            checks: [check('api', false)],
            moreChecks: 4,
          },
        ],
      };
      const fromStatus = source.viewOfStatus(status);
      const fromSummary = source.viewOfSummary(summary);
      return {
        fromStatus: {
          failing: fromStatus.failingHosts,
          failed: fromStatus.failedHosts.map((h: { hostId: string }) => h.hostId),
        },
        fromSummary: {
          failed: fromSummary.failedHosts.map((h) => h.hostId),
          more: fromSummary.moreFailed,
          failing: fromSummary.failingHosts.map((h: { hostId: string; moreChecks: number }) => [
            h.hostId,
            h.moreChecks,
          ]),
          compliance: fromSummary.compliance,
          everyHost: fromSummary.everyHost,
          signed: fromSummary.signed,
        },
      };
    });
    // A full status: the verifying host whose latest poll fails, with only its failing check.
    expect(views.fromStatus.failing).toEqual([
      {
        hostId: 'web-1',
        wave: 0,
        state: 'verifying',
        failingPolls: 3,
        checks: [expect.objectContaining({ check: 'api', ok: false })],
      },
    ]);
    expect(views.fromStatus.failed).toEqual(['web-3']);
    // A summary: the named failed hosts still failed, the others counted by state.
    expect(views.fromSummary).toEqual({
      failed: Array.from({ length: 9 }, (_, i) => `web-${i}`),
      more: [
        ['failed', 2],
        ['timed_out', 2],
      ],
      failing: [['web-77', 4]],
      compliance: { source: 'openssl', fixed: '3.0.15-1' },
      everyHost: false,
      signed: null,
    });
    expect(problems).toEqual([]);
  });

  it('follows a rollout across a coordinator restart: the stream resumes where it left off', async () => {
    const { rollouts } = await fleet.api.get<{ rollouts: RolloutStatus['rollout'][] }>('/v1/rollouts');
    const halted = rollouts.find((r) => r.state === 'halted');
    if (!halted) throw new Error('the halted rollout of an earlier test is missing');
    const tab = await openDashboard(ADMIN_TOKEN, `#/rollouts/${halted.id}`);
    await tab.getByTestId('stream').getByText('live').waitFor();
    const before = (await fleet.api.get<EventPage>(`/v1/rollouts/${halted.id}/events?limit=500`)).events.length;
    await expect.poll(() => tab.locator('[data-testid="timeline"] li').count()).toBe(before);
    // The status reads answered: none can be while the coordinator is down, so those after it are the new one's.
    let statusReads = 0;
    tab.on('requestfinished', (request) => {
      if (new URL(request.url()).pathname === `/v1/rollouts/${halted.id}`) statusReads += 1;
    });
    const readsBeforeRestart = statusReads;
    await fleet.restart();
    await fleet.waitOnline(HOSTS);
    await tab.getByTestId('stream').getByText('live').waitFor({ timeout: 20_000 });
    // Live again, the page reads the rollout again (a host's phases meanwhile are not events), and
    // shows no error from a read refused while the coordinator was down.
    await expect.poll(() => statusReads, { timeout: 10_000 }).toBeGreaterThan(readsBeforeRestart);
    await expect.poll(() => tab.getByRole('alert').count(), { timeout: 10_000 }).toBe(0);
    // Something happens after the restart: the page sees it, once, with nothing replayed twice.
    await fleet.api.post(`/v1/rollouts/${halted.id}/revert`);
    const reverted = await fleet.waitForState(halted.id, ['reverted']);
    await tab.getByTestId('rollout-state').getByText('reverted', { exact: true }).waitFor();
    const after = (await fleet.api.get<EventPage>(`/v1/rollouts/${halted.id}/events?limit=500`)).events;
    await expect.poll(() => tab.locator('[data-testid="timeline"] li').count()).toBe(after.length);
    expect(after.length).toBeGreaterThan(before);
    expect(
      await tab.locator('[data-host]').evaluateAll((cells) => cells.map((c) => c.getAttribute('data-state'))),
    ).toEqual(reverted.waves.flatMap((wave) => wave.hosts.map((host) => host.state)));
    // While the coordinator went down and came back, the page's stream was cut and its reconnects
    // refused, and so was any read of the status then (the page reads again once live): a connection's
    // failure (net::ERR_…), or the 503 a closing server answers a request that reaches it while it
    // closes (fastify's return503OnClosing) — and nothing else: no other error, no script error.
    const closing = (p: string) => p.includes('status of 503') && p.includes(`/v1/rollouts/${halted.id})`);
    const expected = (p: string) => p.includes('/events/stream') || p.includes('net::ERR_CONNECTION_') || closing(p);
    expect(problems.filter((p) => !expected(p))).toEqual([]);
  });

  it('goes back to the login form when the kept token stops working', async () => {
    const tab = await openDashboard(VIEWER_TOKEN, '#/agents');
    await tab.locator('table.agents tbody tr').first().waitFor();
    // As if the token were removed from the coordinator's config: the next poll is refused.
    await tab.evaluate(() =>
      (globalThis as unknown as InPage).sessionStorage.setItem('fleetpatch.token', 'a-token-no-longer-known'),
    );
    await tab.locator('#token').waitFor();
    expect(await tab.evaluate(() => (globalThis as unknown as InPage).sessionStorage.length)).toBe(0);
    // The refused poll is the one failure the browser reports.
    expect(problems.filter((p) => !p.includes('401'))).toEqual([]);
  });

  it('refuses an unknown token at the login form', async () => {
    page = await browser.newPage();
    problems = pageProblems(page);
    await page.goto(`${fleet.coordinator.url}/ui/`);
    await page.locator('#token').fill('not-a-token-of-this-coordinator');
    await page.getByRole('button', { name: 'Log in' }).click();
    expect(await page.getByRole('alert').textContent()).toBe('That token is not known to this coordinator.');
    expect(await page.evaluate(() => (globalThis as unknown as InPage).sessionStorage.length)).toBe(0);
    // The browser logs the 401 of the check itself as a failed resource load: nothing else.
    expect(problems.filter((p) => !p.includes('401'))).toEqual([]);
  });
});

describe('the dashboard as served', () => {
  let work: string;
  let fleet: FleetHarness;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-dashboard-http-'));
    fleet = await FleetHarness.start(join(work, 'coordinator'));
  });
  afterAll(async () => {
    await fleet?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('serves its files with a strict content security policy, and nothing outside them', async () => {
    const index = await fetch(`${fleet.coordinator.url}/ui/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = index.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(index.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await index.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script: the CSP would refuse it
    expect(html).not.toMatch(/https?:\/\//); // nothing fetched from anywhere else

    const vendored = await fetch(`${fleet.coordinator.url}/ui/vendor/preact-htm.mjs`);
    expect(vendored.status).toBe(200);
    expect(vendored.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await vendored.text()).toContain('export{');

    const redirect = await fetch(`${fleet.coordinator.url}/ui`, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe('/ui/');

    for (const attempt of ['/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/..%2fmain.js', '/ui/nope.js']) {
      const res = await fetch(`${fleet.coordinator.url}${attempt}`);
      expect(res.status, attempt).toBe(404);
    }
  });

  it('tells a token who it is and what its role may do', async () => {
    const who = await fleet.api.get<{ name: string; role: string; permissions: string[] }>('/v1/whoami');
    expect(who).toEqual({
      name: 'admin',
      role: 'admin',
      permissions: ['read', 'write', 'approve', 'sign-revert', 'admin'],
    });
    const anonymous = await fetch(`${fleet.coordinator.url}/v1/whoami`);
    expect(anonymous.status).toBe(401);
  });
});
