import { api, seg } from './api.js';
import { hostGroup } from './format.js';

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
  return {
    rollout: status.rollout,
    failures: status.failures,
    toleratedFailures: status.toleratedFailures,
    haltsOn: status.haltsOn,
    waves: status.waves,
    everyHost: true,
    failedHosts: hosts.filter((host) => hostGroup(host.state) === 'failed'),
    moreFailed: [],
    // As a summary names them: hosts in flight whose latest poll fails a check, with those checks.
    failingHosts: hosts.flatMap((host) => {
      const checks = (host.liveHealth?.checks ?? []).filter((check) => !check.ok);
      if (hostGroup(host.state) === 'failed' || checks.length === 0) return [];
      return [
        { hostId: host.hostId, wave: host.wave, state: host.state, failingPolls: host.liveHealth.failingPolls, checks },
      ];
    }),
    signed: status.signing !== null,
    compliance: status.compliance,
  };
}

/**
 * What the page draws from a large rollout's summary: each wave's counts (no host list), the first
 * failed hosts and how many more by state, the first hosts whose health checks fail. Whether the rollout is
 * signed is not in a summary (null): the coordinator refuses a verb a signed rollout needs a signature for.
 */
export function viewOfSummary(summary) {
  const failed = summary.failedHosts.filter((host) => hostGroup(host.state) === 'failed');
  // The failed hosts the summary does not name, by state: `[state, count]`.
  const moreFailed = Object.entries(summary.counts).flatMap(([state, count]) => {
    const more = hostGroup(state) === 'failed' ? count - failed.filter((host) => host.state === state).length : 0;
    return more > 0 ? [[state, more]] : [];
  });
  return {
    rollout: summary.rollout,
    failures: summary.failures,
    toleratedFailures: summary.toleratedFailures,
    haltsOn: summary.haltsOn,
    waves: summary.waves,
    everyHost: false,
    failedHosts: failed,
    moreFailed,
    failingHosts: summary.failingHosts ?? [],
    signed: null,
    // The target says it: a rollout to the hosts exposed to a source below a fixed version.
    compliance: summary.rollout.request.target.exposedTo,
  };
}
