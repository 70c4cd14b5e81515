import type { UndoLog } from './undo-log.js';

/** What an `agent.connected` audit row says beyond who and when. */
export interface ConnectedRow {
  agentVersion: string;
  /** Set when the version differs from the one in this agent's previous row. */
  previousVersion?: string;
  /** Hellos (reconnects) since the previous row that were counted instead of written. */
  reconnectsCoalesced: number;
}

interface Last {
  at: number;
  version: string;
  byVersionChange: boolean;
  coalesced: number;
}

/**
 * Decides which hellos become an `agent.connected` audit row, so an agent reconnecting in a loop
 * (or someone replaying its credential) cannot grow the audit log without bound:
 * - the first hello of an agent since the coordinator started is written (it was offline to us);
 * - after that, one row per agent per window; the hellos in between are counted and the count goes
 *   into the next row (`reconnectsCoalesced`), so a reconnect after a real disconnect is never lost;
 * - a changed agent version is news and is written at once, but only once per window beyond the
 *   regular row: at most two rows per agent per window, whatever the agent sends.
 * In memory on purpose: a coordinator restart writes one row per agent, which is what happened.
 */
export class ConnectedAudit {
  private readonly last = new Map<string, Last>();

  constructor(private readonly windowMs: number) {}

  /**
   * The row to write for this hello, or undefined when it is only counted. What it changes is undone
   * by `undo` (the transaction that was to write the row rolled back: see `UndoLog`).
   */
  note(agentId: string, agentVersion: string, now: number, undo?: UndoLog): ConnectedRow | undefined {
    const last = this.last.get(agentId);
    const saved = last === undefined ? undefined : { ...last };
    undo?.push(() => (saved === undefined ? this.last.delete(agentId) : this.last.set(agentId, saved)));
    const windowOver = !last || now - last.at >= this.windowMs;
    const versionChanged = last !== undefined && last.version !== agentVersion;
    const versionNews = versionChanged && !(last.byVersionChange && now - last.at < this.windowMs);
    if (!windowOver && !versionNews) {
      if (last) last.coalesced++;
      return undefined;
    }
    this.last.set(agentId, { at: now, version: agentVersion, byVersionChange: !windowOver, coalesced: 0 });
    return {
      agentVersion,
      ...(versionChanged ? { previousVersion: last.version } : {}),
      reconnectsCoalesced: last?.coalesced ?? 0,
    };
  }
}
