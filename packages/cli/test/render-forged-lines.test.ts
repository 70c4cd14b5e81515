import type {
  AgentDetail,
  HostPackages,
  PatchHistory,
  PreflightResult,
  RolloutPlan,
  RolloutStatus,
  Statement,
} from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderAgentDetail } from '../src/render-agents.js';
import { renderHostPackages } from '../src/render-packages.js';
import { renderPatchHistory } from '../src/render-patches.js';
import { renderPlan } from '../src/render-plan.js';
import { renderPreflight } from '../src/render-rollouts.js';
import { describeStatement } from '../src/render-statement.js';
import { renderStatus } from '../src/render-status.js';
import { renderWatchFrame } from '../src/render-watch.js';
import { describeWatchChanges } from '../src/render-watch-log.js';
import { createStyle } from '../src/terminal-style.js';
import { viewOfStatus } from '../src/watch-view.js';
import { WaveTimings } from '../src/wave-timings.js';
import { host, NOW, status } from './status-fixture.js';

// A malicious agent writes its reason, its health and precondition observations, its rehearsal's
// differences, its restart details and stale units; a server writes the rest. Whatever string it is,
// a newline in it must stay inside the line the CLI put it in: `rollout status --watch` off a
// terminal timestamps every line, so a forged line would look exactly like one of the CLI's.

/** Two lines the agent would like the operator to read as the CLI's own, behind a CR, LF and tab. */
const FORGERY = '\r\nwave 9  passed   db-1:healthy\tdb-2:healthy\nrollout ro_1  succeeded (approved by security-team)';
const FORGED_LINE = /^(\S+Z )?(wave 9|rollout \S+ {2}succeeded)/;

/**
 * Fields the renderers branch on or compute with: states, phases, verdicts, timestamps. The
 * coordinator's response schemas hold them to their enums and ISO times, so a forgery there changes
 * which lines are written rather than hiding in one; `everyString` forges them too, separately.
 */
const BRANCHED_ON = /^(state|phase|outcome|verdict|when|role|kind|at|notBefore|bakeUntil|.+At)$/;

/** The same data with FORGERY appended to every string (but the fields above, unless `everyString`). */
function forged<T>(value: T, everyString = false, key = ''): T {
  if (typeof value === 'string') return (everyString || !BRANCHED_ON.test(key) ? value + FORGERY : value) as T;
  if (Array.isArray(value)) return value.map((item) => forged(item, everyString, key)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, forged(v, everyString, k)])) as T;
  }
  return value;
}

/** What a hostile text must leave: the same lines as the honest one, none forged, no raw CR or tab. */
function expectSameLines(render: (data: never) => string, honest: unknown) {
  const text = render(forged(honest) as never);
  expect(text.split('\n')).toHaveLength(render(honest as never).split('\n').length);
  expect(text.split('\n').filter((line) => FORGED_LINE.test(line))).toEqual([]);
  expect(text).not.toMatch(/[\r\t]/);
  // Escaped, not dropped: the operator still sees what the agent sent.
  expect(text).toContain('\\u000d\\u000awave 9  passed   db-1:healthy\\u0009db-2:healthy\\u000arollout ro_1');

  const everything = render(forged(honest, true) as never);
  expect(everything.split('\n').filter((line) => FORGED_LINE.test(line))).toEqual([]);
  expect(everything).not.toMatch(/[\r\t]/);
}

const signature = (signer: string, role: 'author' | 'approver') => ({
  keyId: '1111111111111111',
  publicKey: 'k'.repeat(43),
  signature: 's'.repeat(86),
  signer,
  role,
  at: '2025-06-01T11:00:00.000Z',
});
const statementWindow = { notBefore: '2025-06-01T10:00:00.000Z', expiresAt: '2025-06-02T10:00:00.000Z', sequence: 1 };

/** A status with every line renderStatus can write: each one carries strings an agent or the server chose. */
const EVERY_LINE: RolloutStatus = status(
  { state: 'halted', stateReason: 'failure budget exceeded', bakeUntil: '2025-06-01T12:00:30.000Z', currentWave: 0 },
  {
    approvals: [{ approver: 'bob', at: '2025-06-01T11:00:00.000Z' }],
    failures: 2,
    compliance: { source: 'openssl', fixed: '3.0.15-1', url: '/v1/compliance?source=openssl' },
    promotion: {
      label: 'env',
      order: ['staging', 'prod'],
      minSoakMinutes: 60,
      environments: [{ env: 'prod', hosts: 2 }],
      unlabeled: 1,
      requirements: [
        { env: 'prod', needs: 'staging', passedBy: null, missing: 'no rollout of this content on staging yet' },
        {
          env: 'staging',
          needs: 'dev',
          passedBy: { rolloutId: 'ro_0', finishedAt: '2025-06-01T10:00:00.000Z' },
          missing: null,
        },
      ],
      override: { by: 'root', at: '2025-06-01T10:00:00.000Z', reason: 'hotfix for the outage' },
    } as RolloutStatus['promotion'],
    window: {
      open: false,
      opensAt: '2025-06-01T13:00:00.000Z',
      cutoffAt: '2025-06-01T14:00:00.000Z',
      closesAt: '2025-06-01T15:00:00.000Z',
    },
    signing: {
      apply: {
        digest: 'a'.repeat(64),
        hostId: null,
        statement: {
          kind: 'apply',
          statementVersion: 1,
          patch: {
            title: 't',
            problem: 'p',
            rootCause: 'r',
            intendedFix: 'f',
            ticket: 'T-1',
            change: { kind: 'package', manager: 'apt', name: 'openssl', version: '3.0.1', revertable: true },
            health: { checks: [], intervalSeconds: 2, minHealthySeconds: 0, healthyDeadlineSeconds: 60 },
          },
          revertOnHealthFailure: true,
          target: { kind: 'selector', selector: { all: true } },
          ...statementWindow,
        },
        signatures: [signature('alice', 'author'), signature('bob', 'approver')],
        createdAt: '2025-06-01T10:00:00.000Z',
        usedAt: null,
      },
      reverts: [
        {
          digest: 'b'.repeat(64),
          hostId: 'web-2',
          statement: {
            kind: 'revert',
            statementVersion: 1,
            revertsStatementDigest: 'a'.repeat(64),
            target: { kind: 'selector', selector: { all: true } },
            ...statementWindow,
          },
          signatures: [signature('alice', 'author')],
          createdAt: '2025-06-01T11:30:00.000Z',
          usedAt: null,
        },
      ],
      revertSignaturesNeeded: 2,
    },
    waves: [
      {
        wave: 0,
        phase: 'stopped',
        hosts: [
          host('web-1', 'failed', {
            errorCode: 'health_failed',
            reason: 'disk full',
            changed: 'unknown',
            rehearsal: {
              ok: false,
              prior: { exists: true, sha256: 'a'.repeat(64), mode: '0644', owner: 'root', group: 'root', bytes: 3 },
              differences: ['mode: 0640 → 0666'],
              healthyAfterRevert: false,
              reason: 'not the same',
            },
          } as Partial<RolloutStatus['waves'][number]['hosts'][number]>),
          host('web-2', 'healthy', {
            afterChange: {
              restarts: [
                { unit: 'app.service', when: 'apply', ok: true, detail: '', ms: 420 },
                { unit: 'worker.service', when: 'revert', ok: false, detail: 'timed out', ms: 90_000 },
              ],
              staleSource: 'proc-maps',
              staleProcesses: [{ pid: 812, command: 'cron', unit: 'cron.service', files: ['/usr/lib/libssl.so.3'] }],
              moreStaleProcesses: 1,
              staleUnits: ['cron.service', 'ssh.service'],
              reboot: { required: true, causedByThisChange: true, packages: ['libssl3'] },
            },
            packages: [{ name: 'libssl3', from: '3.0.14-1', to: '3.0.15-1', snapshot: 'apt-cache' }],
          }),
          host('web-3', 'not_applicable', {
            reason: 'no binary package of source openssl',
            rehearsal: {
              ok: false,
              prior: { exists: true, sha256: 'a'.repeat(64), mode: '0644', owner: 'root', group: 'root', bytes: 3 },
              differences: [],
              reason: 'the revert did not restore the file',
            },
          } as Partial<RolloutStatus['waves'][number]['hosts'][number]>),
        ],
      },
    ],
    analyses: [
      {
        wave: 0,
        name: 'error-rate',
        attempt: 2,
        condition: '< 0.01',
        verdict: 'running',
        taken: 1,
        count: 3,
        failed: 0,
        failureLimit: 0,
        inconclusive: 1,
        measurements: [
          {
            at: '2025-06-01T11:59:00.000Z',
            phase: 'bake',
            value: null,
            baseline: null,
            threshold: null,
            verdict: 'inconclusive',
            reason: 'no answer within 10000 ms',
          },
        ],
      },
    ],
    warnings: ['succeeded, but some hosts were reverted since'],
  },
);

const PREFLIGHT: PreflightResult = {
  rolloutId: 'ro_1',
  revertable: false,
  summary: { would_apply: 1, would_fail: 2 },
  results: [
    {
      hostId: 'web-1',
      outcome: 'would_apply',
      reason: 'replace /etc/app/app.conf',
      errorCode: null,
      packages: [{ name: 'libssl3', from: null, to: '3.0.15-1', snapshot: 'not-installed' }],
    },
    {
      hostId: 'web-2',
      outcome: 'would_fail',
      reason: 'host preconditions not met',
      errorCode: 'precondition_failed',
      preconditions: [
        { precondition: 'package libfoo >= 1.2-3', ok: false, observed: 'libfoo:amd64 1.0-1 installed' },
        { precondition: 'command /bin/true', ok: true, observed: 'exit 0' },
      ],
    },
    {
      hostId: 'web-3',
      outcome: 'would_fail',
      reason: 'unhealthy before patch',
      errorCode: 'health_failed',
      health: [{ check: 'app-port', kind: 'tcp', ok: false, observed: 'connection refused', at: NOW.toISOString() }],
    },
  ],
} as PreflightResult;

const PLAN = {
  rolloutId: 'ro_1',
  frozen: false,
  hostCount: 3,
  waveSizes: [1, 2],
  haltsOn: 'halts on the 1st failure',
  toleratedFailures: 0,
  revertable: false,
  waves: [
    { wave: 0, hosts: ['web-1'] },
    { wave: 1, hosts: ['web-2', 'web-3'] },
  ],
  exposedTo: { source: 'openssl', fixed: '3.0.15-1', withoutInventory: ['web-7'] },
  incompatible: [{ hostId: 'web-9', reason: 'upgrade the agent' }],
} as unknown as RolloutPlan;

describe('a value with a newline stays inside its line', () => {
  it('in `rollout status`: reasons, rehearsal differences, restart details, stale units, measurements, promotion, signing', () => {
    // Every kind of line is there to be forged.
    expect(renderStatus(EVERY_LINE, NOW).split('\n')).toHaveLength(16);
    expectSameLines((view: RolloutStatus) => renderStatus(view, NOW), EVERY_LINE);
  });

  it("in `rollout preflight`: a host's precondition and health observations below the table", () => {
    expect(renderPreflight(PREFLIGHT).split('\n')).toHaveLength(10);
    expectSameLines(renderPreflight, PREFLIGHT);
  });

  it('in `rollout plan`: host ids, the reason a host is sent nothing, the hosts left out', () => {
    expectSameLines(renderPlan, PLAN);
  });

  it('in the lines `--watch` writes off a terminal, each of which gets a timestamp', () => {
    const before = status({}, { waves: [{ wave: 0, phase: 'running', hosts: [host('web-1', 'applying')] }] });
    const patch = { title: 'Raise workers', ticket: 'OPS-7' };
    const lines = (previous: RolloutStatus | undefined) => (next: RolloutStatus) =>
      describeWatchChanges(previous && viewOfStatus(previous), viewOfStatus(next), patch).join('\n');
    expectSameLines(lines(undefined), EVERY_LINE);
    expectSameLines(lines(before), EVERY_LINE);
  });

  it('in the live view `--watch` redraws on a terminal, coloured or not', () => {
    for (const colour of [false, true]) {
      const frame = (view: RolloutStatus) =>
        renderWatchFrame(
          {
            view: viewOfStatus(view),
            patch: { title: 'Raise workers', ticket: 'OPS-7' },
            timings: new WaveTimings(),
            now: NOW,
          },
          createStyle(colour),
        );
      expectSameLines(frame, EVERY_LINE);
    }
  });
});

describe('a value with a newline stays inside its line, in the other views', () => {
  it("in `agent show`: the host's facts, version and labels, and its part in rollouts", () => {
    const detail: AgentDetail = {
      agent: {
        id: 'db-1',
        labels: { role: 'db' },
        reportedLabels: { role: 'web' },
        facts: {
          hostname: 'db-1',
          os: 'linux',
          distro: 'debian',
          release: '12',
          arch: 'x64',
          kernel: '6.1.0',
          cpus: 4,
          memoryBytes: 2 ** 33,
        },
        agentVersion: '1.0.0',
        lastSeenAt: '2025-06-01T11:59:30.000Z',
        createdAt: '2025-06-01T11:00:00.000Z',
        enrolledAt: '2025-06-01T11:00:00.000Z',
        revokedAt: '2025-06-01T11:30:00.000Z',
        online: false,
      },
      hostRuns: [
        { rolloutId: 'ro_1', wave: 0, state: 'failed', changed: false, orderId: null, errorCode: null, reason: 'x' },
      ],
    } as AgentDetail;
    expectSameLines((d: AgentDetail) => renderAgentDetail(d, NOW), detail);
  });

  it("in `agent packages`: the agent's reason for having no inventory", () => {
    const packages = {
      hostId: 'web-1',
      online: true,
      inventory: {
        state: 'unavailable',
        current: true,
        reason: 'dpkg-query is missing',
        reportedAt: null,
        confirmedAt: null,
        packageCount: 0,
      },
      packages: [],
    } as unknown as HostPackages;
    expectSameLines((p: HostPackages) => renderHostPackages(p, NOW), packages);
  });

  it('in `patch history`: the promotion label and its environments', () => {
    const history = {
      patchId: 'pat_1',
      contentDigest: 'a'.repeat(64),
      label: 'env',
      order: ['staging', 'prod'],
      environments: [
        {
          env: 'staging',
          rollouts: [
            {
              rolloutId: 'ro_1',
              patchId: 'pat_1',
              state: 'succeeded',
              hostCount: 2,
              finishedAt: '2025-06-01T11:00:00.000Z',
              reverted: false,
              overridden: false,
            },
          ],
        },
      ],
    } as unknown as PatchHistory;
    expectSameLines(renderPatchHistory, history);
  });

  it('in what a signer reads before signing: the title, the path, each precondition, the target', () => {
    const statement = {
      kind: 'apply',
      statementVersion: 1,
      patch: {
        title: 'Load module 2',
        problem: 'p',
        rootCause: 'r',
        intendedFix: 'f',
        ticket: 'OPS-13',
        change: {
          kind: 'file',
          path: '/etc/app/app.conf',
          contentSha256: 'c'.repeat(64),
          contentBytes: 11,
          mode: '0644',
          owner: 'root',
          group: 'root',
          requires: [{ package: 'libfoo', version: '>= 1.2-3' }],
        },
        health: { checks: [], intervalSeconds: 2, minHealthySeconds: 0, healthyDeadlineSeconds: 60 },
      },
      revertOnHealthFailure: true,
      analyses: [
        {
          name: 'error-rate',
          query: 'rate(errors[5m])',
          condition: '< 0.01',
          count: 3,
          intervalSeconds: 60,
          address: 'http://prometheus:9090',
        },
      ],
      target: { kind: 'hosts', hostIds: ['web-1'] },
      ...statementWindow,
    } as unknown as Statement;
    expectSameLines((s: Statement) => describeStatement(s, 'd'.repeat(64)).join('\n'), statement);
  });
});
