import type { HostRunState, RolloutHostPage } from '@fleetpatch/shared';
import type { ApiClient } from './api-client.js';

/** Hosts asked for per request: the most the coordinator gives in one page. */
const HOSTS_PAGE = 1000;

/**
 * A rollout's hosts in wave order, optionally one state or wave (0-based, as the API counts), read
 * page by page up to `limit` (undefined: every one). `next` is the cursor after the last host read
 * when more match, else null: the coordinator gives a cursor after every full page, whether or not
 * another host follows, so a list cut by `limit` is checked with a read of one host more.
 */
export async function readRolloutHosts(
  api: ApiClient,
  rolloutId: string,
  filter: { state?: HostRunState | undefined; wave?: number | undefined },
  limit: number | undefined,
): Promise<RolloutHostPage> {
  const hosts: RolloutHostPage['hosts'] = [];
  let cursor: string | undefined;
  for (;;) {
    const want = limit === undefined ? HOSTS_PAGE : Math.min(HOSTS_PAGE, limit - hosts.length);
    const page = await api.rolloutHosts(rolloutId, { ...filter, limit: want, cursor });
    hosts.push(...page.hosts);
    if (page.next === null) return { hosts, next: null };
    cursor = page.next;
    if (limit !== undefined && hosts.length >= limit) {
      const beyond = await api.rolloutHosts(rolloutId, { ...filter, limit: 1, cursor });
      return { hosts, next: beyond.hosts.length > 0 ? cursor : null };
    }
  }
}
