import { readFileSync } from 'node:fs';
import { writeAll, writeFileAtomically } from '../fs/atomic-file.js';

const FILE = 'refusals.json';
/** A reason kept for the operator is cut here: the file stays small whatever an order says. */
const MAX_REASON_CHARS = 500;

export interface RefusalCounts {
  /** Refused orders by error code (a fixed set, so the file is bounded). */
  byCode: Record<string, number>;
  lastAt?: string;
  lastReason?: string;
}

/**
 * Orders refused before they were journaled leave only this behind: a count per error code and the
 * last reason, in `<dataDir>/refusals.json`. A flood of refused orders costs a counter, never disk.
 */
export class RefusalCounter {
  private counts: RefusalCounts;
  private writing: Promise<void> | null = null;
  private dirty = false;

  private constructor(
    private readonly dataDir: string,
    counts: RefusalCounts,
  ) {
    this.counts = counts;
  }

  static async open(dataDir: string): Promise<RefusalCounter> {
    let counts: RefusalCounts = { byCode: {} };
    try {
      // Synchronous, as the journal's entries at start (journal.ts): a small file read once, before anything runs.
      const parsed = JSON.parse(readFileSync(`${dataDir}/${FILE}`, 'utf8')) as Partial<RefusalCounts>;
      const byCode = Object.fromEntries(
        Object.entries(parsed.byCode ?? {}).filter(
          (e): e is [string, number] => typeof e[1] === 'number' && /^[a-z_]{1,40}$/.test(e[0]),
        ),
      );
      counts = { ...parsed, byCode };
    } catch (err) {
      // Missing or unreadable: counting starts again; a counter is not worth refusing to start over.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') counts = { byCode: {} };
    }
    return new RefusalCounter(dataDir, counts);
  }

  get snapshot(): RefusalCounts {
    return { ...this.counts, byCode: { ...this.counts.byCode } };
  }

  /** Counts one refusal; the write to disk is coalesced with those that follow it. */
  record(code: string, reason: string, at: string): Promise<void> {
    const previous = this.counts.byCode[code] ?? 0;
    this.counts = {
      byCode: { ...this.counts.byCode, [code]: Math.min(previous + 1, Number.MAX_SAFE_INTEGER) },
      lastAt: at,
      lastReason: reason.slice(0, MAX_REASON_CHARS),
    };
    this.dirty = true;
    this.writing ??= this.flush().finally(() => {
      this.writing = null;
    });
    return this.writing;
  }

  private async flush(): Promise<void> {
    while (this.dirty) {
      this.dirty = false;
      const body = Buffer.from(JSON.stringify(this.counts));
      await writeFileAtomically(this.dataDir, FILE, { mode: 0o600 }, (fd) => writeAll(fd, body));
    }
  }
}
