import {
  type Clock,
  type InstalledPackage,
  type InventoryDiff,
  type InventoryFull,
  type InventoryReport,
  type InventorySummary,
  inventoryDigest,
  isoAt,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { AgentChannel } from '../engine/engine-interfaces.js';
import type { Store } from '../store/store.js';

export interface InventorySyncOptions {
  store: Store;
  channel: Pick<AgentChannel, 'send'>;
  clock: Pick<Clock, 'now'>;
  log: Logger;
  /**
   * Full inventories asked for at once (default 16); the other agents wait their turn. After a
   * fresh install, or a restore from an old backup, every agent of the fleet needs one: asking them
   * all at once would have every agent send its inventory in the same second.
   */
  maxFullRequests?: number;
  /** An agent that has not sent the full inventory it was asked for this long gives its turn up (default 60 s). */
  fullRequestTimeoutMs?: number;
}

/** At most one full inventory nobody asked for per agent per this long (see `onFull`). */
export const UNASKED_FULL_INTERVAL_MS = 60_000;

/** A full inventory arriving in parts. */
interface PartialFull {
  seq: number;
  parts: number;
  digest: string;
  count: number;
  /** Parts in so far: the next one must be this. */
  received: number;
  packages: InstalledPackage[];
}

/** Where one live agent's inventory stands, on its current connection. */
interface AgentSync {
  /** The `seq` of the last report accepted; null until the stored copy is known to match the agent's. */
  seq: number | null;
  full: PartialFull | null;
  /** Accepted reports not written yet: the copy is current only once they are. */
  unwritten: number;
  /** When the last full inventory nobody asked for began, on this connection (see `onFull`). */
  unaskedFullAt?: number;
  /** The `seq` of the full inventory last dropped at its first part: its other parts are dropped too. */
  droppedFullSeq?: number;
}

/** An accepted report waiting for the next batch of writes. */
interface PendingWrite {
  agentId: string;
  /** The connection's state it was accepted on (a reconnect replaces it). */
  sync: AgentSync;
  /** Package rows it writes, roughly: what sizes a batch. */
  rows: number;
  /** Writes; false when the stored copy does not reach what the agent has (a diff on a different base). */
  write(at: string): Promise<boolean>;
  /** Releases the agent's turn for a full inventory once written. */
  finishesRequest: boolean;
}

/**
 * Writes are batched (one transaction per event-loop turn, or sooner past this many rows): a host's
 * inventory touches a page of the by-version index for nearly every package it has, and one
 * transaction for many hosts writes each page once instead of once per host.
 */
const MAX_BATCH_ROWS = 20_000;

/**
 * Keeps each host's stored inventory in step with its agent (the exchange is in shared's
 * inventory.ts): checks every summary against the stored digest, applies diffs only in sequence and
 * only when they lead to the agent's digest, assembles full inventories from their parts, and asks
 * for a full one whenever anything does not add up. A host is `current` while its agent is
 * connected and its copy is known to match; the compliance view trusts nothing else.
 */
export class InventorySync {
  private readonly agents = new Map<string, AgentSync>();
  /** Agents asked for a full inventory, and when. */
  private readonly requested = new Map<string, number>();
  /** Agents waiting for their turn to be asked, and why. */
  private readonly waiting = new Map<string, string>();
  private readonly maxFullRequests: number;
  private readonly fullRequestTimeoutMs: number;
  private pending: PendingWrite[] = [];
  private pendingRows = 0;
  private flushScheduled = false;
  /** Reports are handled one after another, in the order they came: each may read what the last wrote. */
  private handling: Promise<void> = Promise.resolve();

  constructor(private readonly options: InventorySyncOptions) {
    this.maxFullRequests = options.maxFullRequests ?? 16;
    this.fullRequestTimeoutMs = options.fullRequestTimeoutMs ?? 60_000;
  }

  /** Whether the stored inventory of `hostId` is known to be what its connected agent has now. */
  isCurrent(hostId: string): boolean {
    const sync = this.agents.get(hostId);
    return sync !== undefined && sync.seq !== null && sync.unwritten === 0;
  }

  /** A new connection: nothing is known to match until its summary says so. */
  agentConnected(agentId: string): void {
    this.forget(agentId);
    this.agents.set(agentId, { seq: null, full: null, unwritten: 0 });
  }

  agentGone(agentId: string): void {
    this.forget(agentId);
    this.pump();
  }

  /** Handles `report` after every report before it; resolves once it is handled (not always written). */
  onReport(agentId: string, report: InventoryReport): Promise<void> {
    const handled = this.handling.then(() => this.handle(agentId, report));
    this.handling = handled.catch(() => {});
    return handled;
  }

  /** Exhaustive: a new inventory message fails to compile until it is handled. */
  private async handle(agentId: string, report: InventoryReport): Promise<void> {
    let sync = this.agents.get(agentId);
    if (!sync) {
      sync = { seq: null, full: null, unwritten: 0 };
      this.agents.set(agentId, sync);
    }
    switch (report.type) {
      case 'inventory.summary':
        await this.onSummary(agentId, sync, report);
        return;
      case 'inventory.full':
        await this.onFull(agentId, sync, report);
        return;
      case 'inventory.diff':
        await this.onDiff(agentId, sync, report);
        return;
      case 'inventory.unavailable':
        await this.accept(agentId, sync, report.seq, {
          rows: 1,
          write: async (at) => {
            await this.options.store.inventory.markUnavailable(agentId, report.reason, at);
            return true;
          },
          finishesRequest: true,
        });
        return;
      default: {
        const unreachable: never = report;
        throw new Error(`unhandled inventory report ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Writes every accepted report now, in one transaction (otherwise done on the next turn of the event loop). */
  async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    this.pendingRows = 0;
    if (batch.length === 0) return;
    const at = isoAt(this.options.clock);
    let outcomes: boolean[];
    try {
      outcomes = await this.options.store.transaction(async () => {
        const written: boolean[] = [];
        for (const item of batch) written.push(await item.write(at));
        return written;
      });
    } catch (err) {
      this.options.log.error({ err, reports: batch.length }, 'writing inventory reports failed; asking again');
      outcomes = batch.map(() => false);
    }
    batch.forEach((item, i) => {
      item.sync.unwritten -= 1;
      const live = this.agents.get(item.agentId) === item.sync;
      if (!outcomes[i]) {
        if (!live) return;
        item.sync.seq = null;
        this.log(item.agentId).warn('stored inventory does not match the agent’s after a write; asking for all of it');
        this.askForFull(item.agentId, 'the stored inventory differs from the agent’s after a diff');
      } else if (live && item.finishesRequest) this.finishRequest(item.agentId);
    });
  }

  private async onSummary(agentId: string, sync: AgentSync, summary: InventorySummary): Promise<void> {
    await this.flush(); // compare with what is stored once everything accepted is
    const stored = await this.options.store.inventory.get(agentId);
    if (stored?.state === 'reported' && stored.digest === summary.digest) {
      await this.options.store.transaction(
        async () => await this.options.store.inventory.confirm(agentId, isoAt(this.options.clock)),
      );
      sync.seq = summary.seq;
      this.finishRequest(agentId);
      return;
    }
    sync.seq = null;
    this.askForFull(agentId, stored ? 'the stored inventory differs from the agent’s' : 'no inventory stored yet');
  }

  private async onFull(agentId: string, sync: AgentSync, part: InventoryFull): Promise<void> {
    // An agent sends a full inventory when asked, and unasked after a change too large for a diff
    // (a release upgrade). Unasked, one a minute per connection is taken: more would let a host have
    // 100,000 rows rewritten every few seconds. One dropped leaves the copy not current (`unknown` in
    // compliance) until the agent's next report asks for everything again.
    const now = this.options.clock.now();
    // The rest of a full inventory dropped at its first part goes the same way, unread and unanswered.
    if (part.part > 0 && sync.droppedFullSeq === part.seq) return;
    if (part.part === 0 && !this.requested.has(agentId)) {
      if (sync.unaskedFullAt !== undefined && now - sync.unaskedFullAt < UNASKED_FULL_INTERVAL_MS) {
        sync.seq = null;
        sync.full = null;
        sync.droppedFullSeq = part.seq;
        this.log(agentId).warn({ seq: part.seq }, 'a second full inventory unasked within a minute; dropped');
        return;
      }
      sync.unaskedFullAt = now;
    }
    sync.seq = null;
    if (part.part === 0) {
      sync.full = {
        seq: part.seq,
        parts: part.parts,
        digest: part.digest,
        count: part.count,
        received: 0,
        packages: [],
      };
    }
    const full = sync.full;
    if (!full || !continues(full, part)) {
      sync.full = null;
      this.log(agentId).warn({ seq: part.seq, part: part.part }, 'inventory part out of order; asking again');
      // The request this answered is over: the agent is asked anew (else the ask would find it outstanding).
      this.requested.delete(agentId);
      this.askForFull(agentId, 'a part of the full inventory was missing or out of order');
      return;
    }
    full.packages.push(...part.packages);
    full.received += 1;
    if (full.received < full.parts) return;
    sync.full = null;
    const digest = inventoryDigest(full.packages);
    if (full.packages.length !== full.count || digest !== full.digest) {
      // Not asked again: the same agent would send the same. Its next connection starts over.
      this.finishRequest(agentId);
      this.log(agentId).error(
        { count: full.count, received: full.packages.length },
        'full inventory does not match its own digest; not stored',
      );
      return;
    }
    await this.accept(agentId, sync, full.seq, {
      rows: full.packages.length,
      write: async (at) => {
        await this.options.store.inventory.replace(agentId, full.packages, digest, at);
        return true;
      },
      finishesRequest: true,
    });
  }

  private async onDiff(agentId: string, sync: AgentSync, diff: InventoryDiff): Promise<void> {
    if (sync.seq === null || diff.seq !== sync.seq + 1) {
      const expected = sync.seq === null ? 'none before a summary or full inventory' : sync.seq + 1;
      sync.seq = null;
      if (!this.requested.has(agentId) && !this.waiting.has(agentId)) {
        this.log(agentId).warn({ seq: diff.seq, expected }, 'inventory diff out of sequence; asking for all of it');
      }
      this.askForFull(agentId, 'an inventory diff was missed');
      return;
    }
    await this.accept(agentId, sync, diff.seq, {
      rows: diff.changed.length + diff.removed.length,
      // Checked against what is stored after it: a diff applied to a copy that was not the agent's is caught.
      write: async (at) => (await this.options.store.inventory.applyDiff(agentId, diff, at)) === diff.digest,
      finishesRequest: false,
    });
  }

  /** The report follows what is accepted so far: it is the agent's state at `seq` once written. */
  private async accept(
    agentId: string,
    sync: AgentSync,
    seq: number,
    write: Omit<PendingWrite, 'agentId' | 'sync'>,
  ): Promise<void> {
    sync.seq = seq;
    sync.unwritten += 1;
    this.pending.push({ agentId, sync, ...write });
    this.pendingRows += write.rows;
    if (this.pendingRows >= MAX_BATCH_ROWS) {
      await this.flush();
      return;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      // flush() logs a failed write itself and asks the agents again; nothing is left to reject.
      void this.flush();
    });
  }

  private askForFull(agentId: string, reason: string): void {
    if (this.requested.has(agentId) || this.waiting.has(agentId)) return;
    this.waiting.set(agentId, reason);
    this.pump();
  }

  private finishRequest(agentId: string): void {
    if (this.requested.delete(agentId) || this.waiting.delete(agentId)) this.pump();
  }

  /** Asks waiting agents, oldest first, while fewer than `maxFullRequests` are outstanding. */
  private pump(): void {
    const now = this.options.clock.now();
    for (const [agentId, at] of this.requested) {
      if (now - at > this.fullRequestTimeoutMs) this.requested.delete(agentId);
    }
    for (const [agentId, reason] of this.waiting) {
      if (this.requested.size >= this.maxFullRequests) return;
      this.waiting.delete(agentId);
      if (this.options.channel.send(agentId, { type: 'inventory.request', reason })) this.requested.set(agentId, now);
    }
  }

  private forget(agentId: string): void {
    this.agents.delete(agentId);
    this.requested.delete(agentId);
    this.waiting.delete(agentId);
  }

  private log(agentId: string): Logger {
    return this.options.log.child({ agentId });
  }
}

/** Whether `part` is the next part of the full inventory being assembled. */
function continues(full: PartialFull, part: InventoryFull): boolean {
  return (
    full.seq === part.seq &&
    full.parts === part.parts &&
    full.digest === part.digest &&
    full.count === part.count &&
    full.received === part.part
  );
}
