/**
 * A real Prometheus for the analysis tests: Debian's `/usr/bin/prometheus`, started by the test on
 * 127.0.0.1 with its own config and data directory (never the package's service), scraping small
 * metric services every second; and those services, one per test host, each exporting
 * `http_requests_total{code}` whose 5xx share follows the host's config file.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createTcpServer } from 'node:net';
import { join } from 'node:path';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { type Requirement, requirement } from './requirements.js';

export const PROMETHEUS_BIN = '/usr/bin/prometheus';

function prometheusInstalled(): { available: true } | { available: false; reason: string } {
  try {
    accessSync(PROMETHEUS_BIN, constants.X_OK);
    return { available: true };
  } catch {
    return { available: false, reason: `${PROMETHEUS_BIN} is missing (apt-get install prometheus)` };
  }
}

export const prometheus: Requirement = requirement('prometheus', prometheusInstalled());

/** A port free now on 127.0.0.1 (Prometheus takes no port 0 and would not say which it got). */
async function freePort(): Promise<number> {
  const server = createTcpServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface ScrapeTarget {
  /** `127.0.0.1:<port>` */
  address: string;
  /** Target labels, e.g. `{ host: 'web-1' }`: what the analyses' host matchers select. */
  labels: Record<string, string>;
}

export interface PrometheusServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** The last lines it wrote (stderr), for a failing test's message. */
  logs: string[];
  /** Instant query; the scalar or the single sample's value, NaN when the answer is empty. */
  value(query: string): Promise<number>;
  /** Stops it (SIGTERM, then SIGKILL after 10 s) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port, config and data: a monitoring outage that ends. */
  restart(): Promise<void>;
}

/** Starts Prometheus scraping `targets` every second; resolves once it is ready. */
export async function startPrometheus(dir: string, targets: readonly ScrapeTarget[]): Promise<PrometheusServer> {
  await mkdir(join(dir, 'data'), { recursive: true });
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  evaluation_interval: 1s',
    'scrape_configs:',
    '  - job_name: fleet',
    '    static_configs:',
    ...targets.flatMap((t) => [
      `      - targets: ['${t.address}']`,
      '        labels:',
      ...Object.entries(t.labels).map(([k, v]) => `          ${k}: '${v}'`),
    ]),
  ].join('\n');
  await writeFile(join(dir, 'prometheus.yml'), `${config}\n`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logs: string[] = [];
  let child: ChildProcess | undefined;

  const launch = async () => {
    const started = spawn(
      PROMETHEUS_BIN,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    started.stderr?.on('data', (chunk: Buffer) => {
      logs.push(chunk.toString().trimEnd());
      if (logs.length > 200) logs.shift();
    });
    started.on('error', (err) => logs.push(`spawn error: ${err.message}`));
    child = started;
    await waitFor(
      `prometheus ready on ${url}`,
      async () => {
        if (started.exitCode !== null) throw new Error(`prometheus exited ${started.exitCode}: ${logs.join('\n')}`);
        return (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  };

  const stop = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, 'exit');
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  await launch();
  return {
    url,
    logs,
    async value(query: string): Promise<number> {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(query)}`);
      const body = (await res.json()) as {
        data?: { resultType: string; result: unknown };
      };
      const result = body.data?.result;
      if (body.data?.resultType === 'scalar') return Number((result as [number, string])[1]);
      const vector = result as { value: [number, string] }[] | undefined;
      return vector?.length === 1 ? Number(vector[0]?.value[1]) : Number.NaN;
    },
    stop,
    async restart() {
      await stop();
      await launch();
    },
  };
}

/**
 * A host's metrics: on every scrape it counts 100 more requests, of which the share its config
 * file names (`error_rate = 0.5`) answered 500, so the 5xx rate Prometheus computes is that share.
 * Both series exist from the first scrape, so a rate of 5xx is 0 (not "no data") on a good host.
 */
export interface MetricService {
  address: string;
  close(): Promise<void>;
}

export async function startMetricService(configFile: string): Promise<MetricService> {
  const counts = { ok: 0, errors: 0 };
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    readFile(configFile, 'utf8')
      .catch(() => '')
      .then((text) => {
        const share = Number(/error_rate = ([0-9.]+)/.exec(text)?.[1] ?? '0');
        const errors = Math.round(100 * share);
        counts.errors += errors;
        counts.ok += 100 - errors;
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(
          [
            '# TYPE http_requests_total counter',
            `http_requests_total{code="200"} ${counts.ok}`,
            `http_requests_total{code="500"} ${counts.errors}`,
            '',
          ].join('\n'),
        );
      });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
