import type { HostView, RolloutStatus, RolloutSummary } from '@fleetpatch/shared';

/** A rollout status to render, as the API answers it; tests override what they look at. */
export const NOW = new Date('2025-06-01T12:00:00.000Z');

export function host(hostId: string, state: HostView['state'], extra: Partial<HostView> = {}): HostView {
  return {
    hostId,
    state,
    online: true,
    changed: false,
    orderId: null,
    errorCode: null,
    reason: null,
    health: null,
    rehearsal: null,
    afterChange: null,
    ...extra,
  };
}

export function status(overrides: Partial<RolloutStatus['rollout']> = {}, rest: Partial<RolloutStatus> = {}) {
  const view: RolloutStatus = {
    rollout: {
      id: 'ro_1',
      patchId: 'pat_1',
      request: {
        patchId: 'pat_1',
        target: { labels: { role: 'web' } },
        waves: [1, '100%'],
        maxParallel: 10,
        maxFailures: 0,
        bakeSeconds: 0,
        hostTimeoutSeconds: 600,
        offline: { mode: 'wait', deliveryDeadlineSeconds: 300 },
        autoRevert: 'host',
        failUnhealthyBefore: false,
        staleServices: 'report',
        revertParallel: 50,
        requiredApprovals: 1,
        draft: false,
        analyses: [],
        rehearseRevert: false,
      },
      state: 'running',
      createdBy: 'alice',
      hostCount: 3,
      waveCount: 2,
      currentWave: 1,
      bakeUntil: null,
      stateReason: null,
      createdAt: '2025-06-01T11:00:00.000Z',
      updatedAt: '2025-06-01T11:00:00.000Z',
      startedAt: '2025-06-01T11:00:00.000Z',
      finishedAt: null,
      ...overrides,
    },
    approvals: [{ approver: 'bob', at: '2025-06-01T11:00:00.000Z' }],
    signing: null,
    failures: 0,
    toleratedFailures: 0,
    haltsOn: 'halts on the 1st failure',
    counts: {},
    waves: [],
    analyses: [],
    ...rest,
  };
  return view;
}

/** A large rollout's summary as the API answers it (counts, no host list); tests override what they look at. */
export function summary(overrides: Partial<RolloutStatus['rollout']> = {}, rest: Partial<RolloutSummary> = {}) {
  const { rollout } = status({ hostCount: 5000, waveCount: 3, ...overrides });
  const view: RolloutSummary = {
    rollout: { ...rollout, request: { ...rollout.request, target: { labels: { role: 'web' } } } },
    failures: 0,
    toleratedFailures: 50,
    haltsOn: 'halts on the 51st failure',
    counts: {},
    waves: [],
    failedHosts: [],
    failingHosts: [],
    analyses: [],
    ...rest,
  };
  return view;
}

/** A maintenance window closed at NOW, opening two hours later. */
export function closedWindow() {
  return {
    open: false,
    opensAt: '2025-06-01T14:00:00.000Z',
    cutoffAt: '2025-06-01T14:45:00.000Z',
    closesAt: '2025-06-01T15:00:00.000Z',
  };
}
