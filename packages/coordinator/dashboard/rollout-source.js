import { api, seg } from './api.js';
import { hostGroup } from './format.js';
import { healthResultsOf } from './host-grid.js';

/**
 * A rollout of more hosts than this is read through its summary (`GET /v1/rollouts/:id/summary`,
 * ~1 KB at any size) instead of its full status (~2 MB at 10,000 hosts, tens of milliseconds of the
 * coordinator's time at every refresh): the same line as `rollout status --watch` draws. The page
 * then draws each wave's bar from its counts, and the failed and failing hosts the summary names.
 */
export const FULL_STATUS_HOSTS = 1000;

/**
 * One read of the rollout: its full status when it was last seen with 1 to FULL_STATUS_HOSTS hosts;
 * otherwise (the first read, a large rollout, one not started yet) its summary first, and its full
 * status too when that shows it small.
 */
export async function readRollout(id, lastHostCount, signal) {
  const full = async () => viewOfStatus(await api(`/v1/rollouts/${seg(id)}`, { signal }));
  if (lastHostCount !== undefined && lastHostCount > 0 && lastHostCount <= FULL_STATUS_HOSTS) return await full();
  const summary = await api(`/v1/rollouts/${seg(id)}/summary`, { signal });
  return summary.rollout.hostCount <= FULL_STATUS_HOSTS ? await full() : viewOfSummary(summary);
}

/** What the page draws, from the full status: every host of every wave. */
export function viewOfStatus(status) {
  const hosts = status.waves.flatMap((wave) => wave.hosts.map((host) => ({ ...host, wave: wave.wave })));
  const failed = hosts.filter((host) => hostGroup(host.state) === 'failed');
  return {
    rollout: status.rollout,
    failures: status.failures,
    toleratedFailures: status.toleratedFailures,
    haltsOn: status.haltsOn,
    waves: status.waves,
    everyHost: true,
    failedHosts: failed,
    moreFailed: 0,
    failingHosts: hosts.filter((host) => hostGroup(host.state) !== 'failed' && healthResultsOf(host).length > 0),
    signed: status.signing !== null,
    compliance: status.compliance,
  };
}

/**
 * What the page draws from a large rollout's summary: each wave's counts (no host list), the first
 * failed hosts and how many more, the first hosts whose health checks fail. Whether the rollout is
 * signed is not in a summary (null): the coordinator refuses a verb a signed rollout needs a signature for.
 */
export function viewOfSummary(summary) {
  const failed = summary.failedHosts.filter((host) => hostGroup(host.state) === 'failed');
  return {
    rollout: summary.rollout,
    failures: summary.failures,
    toleratedFailures: summary.toleratedFailures,
    haltsOn: summary.haltsOn,
    waves: summary.waves,
    everyHost: false,
    failedHosts: failed,
    moreFailed: Math.max(0, countFailed(summary.counts) - failed.length),
    failingHosts: summary.failingHosts ?? [],
    signed: null,
    compliance: undefined,
  };
}

function countFailed(counts) {
  return Object.entries(counts).reduce((n, [state, count]) => n + (hostGroup(state) === 'failed' ? count : 0), 0);
}
