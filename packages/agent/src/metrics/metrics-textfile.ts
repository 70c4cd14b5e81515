import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { writeAll, writeFileAtomically } from '../fs/atomic-file.js';
import type { AgentMetrics } from './agent-metrics.js';

/**
 * Writes the agent's metrics for node_exporter's textfile collector
 * (`--collector.textfile.directory`), replacing the file atomically so the collector never reads
 * half of it: a temp file beside it (a name not ending in `.prom`, which the collector skips), then
 * a rename. A file rather than a port because the agent runs as root on every server: a listener
 * would be one more thing on the network to authenticate and firewall, for data node_exporter
 * already serves. Mode 0644: node_exporter runs as its own user and must read it.
 */
export class MetricsTextfile {
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly metrics: AgentMetrics,
    private readonly path: string,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.schedule();
    this.timer = setInterval(() => this.schedule(), this.intervalMs);
    this.timer.unref();
  }

  /** Writes once more (the last state: not connected) and stops. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.schedule();
    await this.writing;
  }

  /** Now, after any write still running: one at a time, never two temp files racing to the rename. */
  writeNow(): Promise<void> {
    this.schedule();
    return this.writing;
  }

  private schedule(): void {
    this.writing = this.writing.then(() =>
      this.write().catch((err: unknown) => this.log.warn({ err, path: this.path }, 'writing the metrics file failed')),
    );
  }

  private async write(): Promise<void> {
    const text = await this.metrics.registry.metrics();
    await writeFileAtomically(dirname(this.path), basename(this.path), { mode: 0o644 }, (fd) =>
      writeAll(fd, Buffer.from(text)),
    );
  }
}
