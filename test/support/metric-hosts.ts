/**
 * Hosts whose 5xx rate Prometheus sees: for each, a scratch root holding the app's config file and a
 * metric service whose error share follows that file; one real Prometheus scraping them all every
 * second (labelled `host`). Shared by the end-to-end tests of metric analysis gates.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PrometheusAnalysisInput } from '@fleetpatch/shared';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { type MetricService, type PrometheusServer, startMetricService, startPrometheus } from './prometheus-server.js';

/** The app's config file, in each host's root: `error_rate = 0.5` makes half its requests 5xx. */
export const APP_CONF = '/etc/app/app.conf';

/** The 5xx share of the requests of the hosts a matcher selects, over the last 4 s. */
export const errorRate = (matcher: string) =>
  `sum(rate(http_requests_total{code=~"5..",${matcher}}[4s])) / sum(rate(http_requests_total{${matcher}}[4s]))`;

/** The wave's error rate may be at most 1.5 × the unpatched hosts' (plus 1 %, as theirs is 0). */
export function errorRateComparison(
  prometheusUrl: string,
  overrides: Partial<PrometheusAnalysisInput> = {},
): PrometheusAnalysisInput {
  return {
    kind: 'prometheus',
    name: 'error-rate',
    address: prometheusUrl,
    query: errorRate('$wave_hosts'),
    baselineQuery: errorRate('$unpatched_hosts'),
    condition: '<= 1.5 * baseline + 0.01',
    intervalSeconds: 1,
    count: 2,
    failureLimit: 0,
    timeoutSeconds: 2,
    hostLabel: 'host',
    ...overrides,
  };
}

export interface MetricHosts {
  prom: PrometheusServer;
  rootOf(host: string): string;
  /** Every host's config back at `content`, and Prometheus seeing no 5xx anywhere over its rate window. */
  quiet(content: string): Promise<void>;
  stop(): Promise<void>;
}

/** Roots under `work/<host>/root` with APP_CONF at `content`, their metric services, and Prometheus. */
export async function startMetricHosts(work: string, hosts: readonly string[], content: string): Promise<MetricHosts> {
  const rootOf = (host: string) => join(work, host, 'root');
  const services: MetricService[] = [];
  for (const host of hosts) {
    await mkdir(join(rootOf(host), 'etc/app'), { recursive: true, mode: 0o755 });
    await writeFile(join(rootOf(host), APP_CONF), content);
    services.push(await startMetricService(join(rootOf(host), APP_CONF)));
  }
  const prom = await startPrometheus(
    join(work, 'prometheus'),
    hosts.map((host, i) => ({ address: (services[i] as MetricService).address, labels: { host } })),
  );
  return {
    prom,
    rootOf,
    async quiet(reset: string) {
      for (const host of hosts) await writeFile(join(rootOf(host), APP_CONF), reset);
      await waitFor(
        'every host scraped, with no 5xx in the rate window',
        async () =>
          (await prom.value('count(rate(http_requests_total{code="200"}[4s]) > 0)')) === hosts.length &&
          (await prom.value('sum(rate(http_requests_total{code="500"}[4s]))')) === 0,
        { timeoutMs: 30_000, intervalMs: 200 },
      );
    },
    async stop() {
      await prom.stop();
      for (const service of services) await service.close();
    },
  };
}
