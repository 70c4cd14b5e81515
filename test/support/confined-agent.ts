/**
 * A real agent process (the built `packages/agent/dist/bin/fleetpatch-agent.js`, run with node) set up as on a host:
 * an enrolled credential in its own data dir, its own JSON config file (policy, signing) and a
 * throwaway directory standing for `/`. Nothing it is ordered to do can reach outside `work`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfigSchema } from '@fleetpatch/agent';
import type { z } from 'zod';
import { writeTestCredential } from '../../packages/agent/test/support/fake-coordinator.js';
import { type AgentExit, type AgentProcess, startAgent } from '../../scripts/lib/local-fleet.mjs';

/** What the agent's config file holds beyond what the harness sets itself (where it dials, its dirs, its id). */
export type AgentPolicyConfig = Omit<
  z.input<typeof AgentConfigSchema>,
  'coordinatorUrl' | 'coordinatorUrls' | 'dataDir' | 'rootDir' | 'hostId' | 'allowInsecure'
>;

export interface ConfinedAgentOptions {
  /** A fresh directory: the agent's `data/`, `root/` and `agent.json` go under it. */
  work: string;
  hostId: string;
  /** `file.allowedRoots`, given as `--allow-root` as an operator would. */
  allowRoots: string[];
  config: AgentPolicyConfig;
}

export class ConfinedAgent {
  readonly dataDir: string;
  readonly rootDir: string;
  readonly configFile: string;
  private running: AgentProcess | undefined;
  private readonly allLogs: string[][] = [];

  private constructor(
    private readonly options: ConfinedAgentOptions,
    /** The public half of the key in its credential: what the coordinator it dials has on record. */
    readonly publicKey: string,
  ) {
    this.dataDir = join(options.work, 'data');
    this.rootDir = join(options.work, 'root');
    this.configFile = join(options.work, 'agent.json');
  }

  /** Enrolled (a credential written as enrollment would), configured, with an empty root; not started. */
  static async prepare(options: ConfinedAgentOptions): Promise<ConfinedAgent> {
    const publicKey = await writeTestCredential(join(options.work, 'data'), options.hostId);
    await mkdir(join(options.work, 'root'), { recursive: true, mode: 0o755 });
    await writeFile(join(options.work, 'agent.json'), JSON.stringify(options.config, null, 2), { mode: 0o600 });
    return new ConfinedAgent(options, publicKey);
  }

  get hostId(): string {
    return this.options.hostId;
  }

  /** Every log line of every run, oldest first. */
  get logs(): string[] {
    return this.allLogs.flat();
  }

  /** Starts the process, dialling `coordinatorUrl` (ws://, so with --allow-insecure). */
  start(coordinatorUrl: string): void {
    if (this.running && this.running.child.exitCode === null) throw new Error(`agent ${this.hostId} is running`);
    this.running = startAgent({
      coordinatorUrl,
      hostId: this.hostId,
      dataDir: this.dataDir,
      rootDir: this.rootDir,
      allowRoots: this.options.allowRoots,
      configExtra: this.configFile,
    });
    this.allLogs.push(this.running.logs);
  }

  /** SIGTERM, and the exit it ended with (code 0 when it drained cleanly). */
  async stop(): Promise<AgentExit | undefined> {
    const running = this.running;
    if (!running) return undefined;
    await running.stop();
    return running.exited;
  }
}
