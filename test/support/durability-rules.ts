/**
 * DESIGN.md's durability and ordering promises, checked against the system calls the agent and the
 * coordinator really made (an strace log read by strace-log.ts and websocket-frames.ts):
 *
 * Agent, for every file it writes durably (journal entries, snapshots, the files it manages, its
 * credential, refusals.json, applied-sequences.json):
 * - `synced-before-rename`: the temp file is fsync'd after its last write and before it is renamed
 *   over its target;
 * - `not-written-in-place`: the file itself is never opened for writing nor truncated (a crash would
 *   leave it half written) — snapshots excepted, which nothing points at until they are durable, and
 *   journal entries opened to append (`O_APPEND`, never `O_TRUNC`): a line appended to an entry file
 *   is read as the write it records only once whole (journal.ts);
 * - `appended-synced`: a line is appended only to a journal entry this trace renamed into place,
 *   durably (its directory synced), that ends with a whole line; the line is a change to the entry
 *   (journal.ts `changeLine`: the members a write changes, its position and time), and it is synced
 *   (`fdatasync` or `fsync` of the file) before the step is acknowledged or the next begins, as a
 *   rename's directory is. The line that only marks a result acknowledged needs no sync, as its
 *   rename needs no directory sync (below);
 * - `directory-synced`: after the rename (or a removal) its directory is fsync'd, and before the step
 *   is acknowledged or the next begins: before the next journal entry is renamed into place and
 *   before the next report goes to the coordinator. One write is exempt: the journal entry that only
 *   marks a result acknowledged (`acked`), which may be lost in a power cut — the entry it replaces
 *   holds the same result, which the agent reports again and the coordinator acks again;
 * - `new-directory-synced`: a directory made to hold such a file is itself made durable (its parent
 *   fsync'd) by then too;
 * - `journal-before-change`: a managed file changes only while the journal durably says the order
 *   is `applying` or `reverting` (after a restart: any phase in which recovery restores the snapshot);
 * - `snapshot-before-journal`: the snapshot is durable before the entry that points at it first
 *   (`applying`; `snapshotted` from agents that journaled that phase);
 * - `sequence-before-journal`: a signed order's sequence is durable in applied-sequences.json before
 *   the order is journaled (else a replay after a crash would find the sequence unused);
 * - `journal-before-report`: what the agent reports (progress, results, the orders in `hello`) is
 *   what its journal durably says — or, for a refused order, what refusals.json durably counts. The
 *   progress an apply makes after `applying` (`applied`, `verifying`) is backed by the durable
 *   `applying`: recovery treats those phases alike, so the agent no longer journals them (nor
 *   `snapshotted`, which recovery treats like `accepted`, and which it therefore no longer reports).
 *
 * Coordinator:
 * - `committed-before-sent`: an `order.apply` or `order.revert` goes out only after a WAL write
 *   holding its order id and a sync of the WAL (the commit, with `synchronous = FULL`);
 * - `committed-before-ack`: an `order.ack` goes out only after the result it acknowledges was
 *   received and then committed (a WAL write naming the order, and a WAL sync).
 *
 * One step at a time: an acknowledgement is "the next journal write or report after the rename",
 * whichever order it belongs to, so the traced scenarios run one order at a time.
 */
import { basename, dirname, join, relative } from 'node:path';
import { type EventOf, isSocket, opensForWriting, type StraceEvent } from './strace-log.js';
import { type SocketMessage, webSocketMessages } from './websocket-frames.js';

export type RuleName =
  | 'synced-before-rename'
  | 'not-written-in-place'
  | 'appended-synced'
  | 'directory-synced'
  | 'new-directory-synced'
  | 'journal-before-change'
  | 'snapshot-before-journal'
  | 'sequence-before-journal'
  | 'journal-before-report'
  | 'committed-before-sent'
  | 'committed-before-ack'
  | 'trace-readable';

export interface Violation {
  rule: RuleName;
  /** The log line of the call (or message) that broke the rule. */
  line: number;
  message: string;
}

export function formatViolations(violations: readonly Violation[]): string {
  return violations.map((v) => `[${v.rule}] line ${v.line}: ${v.message}`).join('\n');
}

// ---- the agent ---------------------------------------------------------------------------------

export type DurableKind =
  | 'journal entry'
  | 'snapshot'
  | 'managed file'
  | 'credential'
  | 'refusal counter'
  | 'applied sequences';

/** What the journal said about an order, from an entry written in the trace or found on disk before it. */
export interface JournalRecord {
  orderId: string;
  kind: 'apply' | 'revert';
  phase: string;
  /** The path the order changes, as the order names it (`/etc/app.conf`); apply entries. */
  changePath?: string;
  revertsOrderId?: string;
  /** `result.finishedAt`, once the entry holds a result. */
  finishedAt?: string;
  snapshot?: unknown;
  /** The sequence of the signed statement the order carries, if it is signed. */
  signedSequence?: number;
}

export interface AgentTraceSpec {
  dataDir: string;
  /** The agent's root dir: managed files are `rootDir + change.path`. */
  rootDir: string;
  /** The journal on disk when the trace began (a restart after a crash): durable already. */
  journalBefore?: readonly JournalRecord[];
}

export interface AgentTraceReport {
  violations: Violation[];
  /** What the rules looked at: a test insists the trace held what it had to prove. */
  checked: {
    /** Renames into place (and removals) of durable files, by kind. */
    placements: Record<DurableKind, number>;
    /** Lines appended to journal entries. */
    appends: number;
    /** Changes to managed files checked against the journal. */
    managedChanges: number;
    /** Messages to the coordinator checked against the journal, by type. */
    reports: Record<string, number>;
  };
}

/** What the agent tells the coordinator about its orders (heartbeats and facts are not about a step). */
const REPORTS = new Set(['hello', 'order.progress', 'order.result']);
/** Outcomes of dry runs: a preflight changes nothing and is not journaled. */
const PREFLIGHT_OUTCOMES = new Set(['would_apply', 'already_applied', 'would_fail', 'blocked']);
/** Phases in which recovery after a restart restores the snapshot (order-executor.ts `recoverApply`). */
const MAY_HAVE_CHANGED = new Set(['applying', 'applied', 'verifying', 'reverting']);
/** Progress phases an apply reports but does not journal: the durable `applying` stands for them. */
const REPORTED_UNDER_APPLYING = new Set(['applied', 'verifying']);
/** Phases under which a running order changes a managed file. */
const ANNOUNCES_CHANGE = new Set(['applying', 'reverting']);
/** The entry that points at an apply's snapshot first: `applying`; older agents journaled `snapshotted` before it. */
const POINTS_AT_SNAPSHOT = new Set(['snapshotted', 'applying']);
/** `.<name>.fleetpatch-tmp-<16 hex>`: the atomic writer's temp files (fs/atomic-file.ts). */
const TEMP_FILE = /\.fleetpatch-tmp-[0-9a-f]{16}$/;

/** A durable file put in place (renamed over its target, written in place) or removed. */
interface Placement {
  kind: DurableKind;
  path: string;
  how: 'rename' | 'in place' | 'removal' | 'append';
  /** The rename, the unlink, the append or (in place) the last write. */
  event: StraceEvent;
  /** What the file holds, when every byte of it is in the trace. */
  content: Buffer | undefined;
  /** Return line of the last sync that made it durable; undefined when it never became so. */
  durableAt: number | undefined;
}

interface JournalWrite extends JournalRecord {
  /** Line of the rename; 0 for an entry found on disk before the trace. */
  line: number;
  durableAt: number | undefined;
}

export function checkAgentTrace(events: readonly StraceEvent[], spec: AgentTraceSpec): AgentTraceReport {
  return new AgentTraceCheck(events, spec).run();
}

class AgentTraceCheck {
  private readonly violations: Violation[] = [];
  private readonly files: FileHistory;
  private readonly sent: SocketMessage[];
  /** Journal renames and reports: the points by which a step must be durable. */
  private readonly acknowledgements: { line: number; what: string }[];
  private readonly placements: Placement[] = [];
  private readonly journal: JournalWrite[] = [];
  /** Lines of the mkdirs already reported, so a directory never synced is one violation, not one per write. */
  private readonly reportedDirectories = new Set<number>();
  private readonly checked: AgentTraceReport['checked'] = {
    placements: {
      'journal entry': 0,
      snapshot: 0,
      'managed file': 0,
      credential: 0,
      'refusal counter': 0,
      'applied sequences': 0,
    },
    appends: 0,
    managedChanges: 0,
    reports: {},
  };

  constructor(
    private readonly events: readonly StraceEvent[],
    private readonly spec: AgentTraceSpec,
  ) {
    this.files = new FileHistory(events);
    const traffic = webSocketMessages(events);
    for (const problem of traffic.problems) this.violate('trace-readable', 0, problem);
    this.sent = traffic.messages.filter((m) => m.direction === 'sent');
    this.acknowledgements = [
      ...events
        .filter(
          (e) =>
            e.ok &&
            ((e.kind === 'rename' && this.kindOf(e.to) === 'journal entry') ||
              (e.kind === 'write' && this.appendedEntry(e) !== undefined)),
        )
        .map((e) => ({ line: e.startLine, what: `the journal write at line ${e.startLine}` })),
      ...this.sent
        .filter((m) => REPORTS.has(String(m.json?.type)))
        .map((m) => ({ line: m.startLine, what: `the ${describeMessage(m)} sent at line ${m.startLine}` })),
    ].sort((a, b) => a.line - b.line);
  }

  run(): AgentTraceReport {
    for (const event of this.events) {
      if (!event.ok) continue;
      if (event.kind === 'rename') this.checkRename(event);
      else if (event.kind === 'unlink') this.checkRemoval(event);
      else if (event.kind === 'open') this.checkOpen(event);
      else if (event.kind === 'write') this.checkAppend(event);
      else if (event.kind === 'truncate') this.checkTruncate(event);
    }
    this.collectInPlaceSnapshots();
    this.readJournal();
    this.checkManagedChanges();
    this.checkSnapshots();
    this.checkSequences();
    this.checkReports();
    return { violations: this.violations, checked: this.checked };
  }

  /** Which durable file `path` is, if any. Temp files are not: they become one by their rename. */
  private kindOf(path: string): DurableKind | undefined {
    if (TEMP_FILE.test(path)) return undefined;
    const data = relative(this.spec.dataDir, path);
    if (data === 'credential.json') return 'credential';
    if (data === 'refusals.json') return 'refusal counter';
    if (data === 'applied-sequences.json') return 'applied sequences';
    if (/^orders\/[^/]+\/entry\.json$/.test(data)) return 'journal entry';
    if (/^orders\/[^/]+\/snapshot\/./.test(data)) return 'snapshot';
    if (isInside(this.spec.rootDir, path)) return 'managed file';
    return undefined;
  }

  private checkRename(rename: EventOf<'rename'>): void {
    const kind = this.kindOf(rename.to);
    if (!kind) return;
    this.checked.placements[kind]++;
    const temp = this.files.lastModification(rename.from, rename.startLine);
    let synced = false;
    if (!temp) {
      this.violate(
        'synced-before-rename',
        rename.startLine,
        `${kind} ${rename.to}: ${rename.from} was renamed over it but never written in this trace`,
      );
    } else {
      synced = this.files.syncOf(rename.from, temp.endLine, rename.startLine) !== undefined;
      if (!synced)
        this.violate(
          'synced-before-rename',
          rename.startLine,
          `${kind} ${rename.to}: temp file ${rename.from} (last written at line ${temp.endLine}) was not fsync'd before its rename`,
        );
    }
    const content = this.files.contentOf(rename.from, rename.startLine);
    const durableAt =
      kind === 'journal entry' && content && isAckOnly(content)
        ? this.files.syncOf(dirname(rename.to), rename.endLine, Number.POSITIVE_INFINITY)?.endLine
        : this.checkDirectorySynced(kind, rename, rename.to, 'renamed into place');
    this.placements.push({
      kind,
      path: rename.to,
      how: 'rename',
      event: rename,
      content,
      durableAt: synced ? durableAt : undefined,
    });
  }

  /** A managed file removed (restoring its absence) is a step like a rename; pruning the journal is not. */
  private checkRemoval(unlink: EventOf<'unlink'>): void {
    const kind = this.kindOf(unlink.path);
    if (kind !== 'managed file') return;
    this.checked.placements[kind]++;
    const durableAt = this.checkDirectorySynced(kind, unlink, unlink.path, 'removed');
    this.placements.push({ kind, path: unlink.path, how: 'removal', event: unlink, content: undefined, durableAt });
  }

  private checkOpen(open: EventOf<'open'>): void {
    const kind = this.kindOf(open.path);
    if (!kind || kind === 'snapshot' || !opensForWriting(open.flags)) return;
    if (kind === 'journal entry' && open.flags.includes('O_APPEND') && !open.flags.includes('O_TRUNC')) return;
    this.violate(
      'not-written-in-place',
      open.startLine,
      `${kind} ${open.path} was opened for writing (${open.flags.join('|')}): a crash would leave it half written`,
    );
  }

  private checkTruncate(truncate: EventOf<'truncate'>): void {
    const kind = this.kindOf(truncate.path);
    if (!kind || kind === 'snapshot') return;
    this.violate(
      'not-written-in-place',
      truncate.startLine,
      `${kind} ${truncate.path} was truncated: a crash would leave it half written`,
    );
  }

  /**
   * The journal entry `write` appends to, if it does: one written through a descriptor not opened
   * to append is not an append (`not-written-in-place` reports it).
   */
  private appendedEntry(write: EventOf<'write'>): string | undefined {
    const path = write.fd.target;
    if (path === undefined || isSocket(write.fd) || this.kindOf(path) !== 'journal entry') return undefined;
    return this.files.openedToAppend(path, write.startLine) ? path : undefined;
  }

  /**
   * A line appended to a journal entry: synced before the next step, unless it only marks a result
   * acknowledged. Its record is read in `readJournal`, with the entry's lines before it.
   */
  private checkAppend(write: EventOf<'write'>): void {
    const path = this.appendedEntry(write);
    if (path === undefined) return;
    this.checked.appends++;
    const content = write.complete ? write.data : undefined;
    const sync = this.files.syncOf(path, write.endLine, Number.POSITIVE_INFINITY);
    const ack = this.acknowledgements.find((a) => a.line > write.endLine);
    const ackOnly = content !== undefined && isAckOnly(content);
    const appendTo = (problem: string) =>
      this.violate('appended-synced', write.startLine, `journal entry ${path}: a line was appended ${problem}`);
    if (!ackOnly && (!sync || sync.endLine >= (ack?.line ?? Number.POSITIVE_INFINITY))) {
      appendTo(
        `at line ${write.startLine} but ${sync ? `synced only at line ${sync.startLine}, after ${ack?.what}` : 'never synced'}`,
      );
    }
    // The file it goes to: put in place by a rename of this trace, durably, and ending with a whole
    // line since — else a power cut may take the line with a name or a line before it.
    const renamed = this.placements.filter((p) => p.path === path && p.how === 'rename').at(-1);
    const since = this.placements.filter(
      (p) => p.path === path && p.how === 'append' && p.event.startLine > (renamed?.event.startLine ?? 0),
    );
    const before = since.at(-1)?.content ?? renamed?.content;
    if (!renamed) appendTo('to an entry file this trace did not put in place');
    else if (renamed.durableAt === undefined || renamed.durableAt > write.startLine)
      appendTo(`to an entry file whose rename (line ${renamed.event.startLine}) was not durable before it`);
    else if (before !== undefined && !before.toString().endsWith('\n'))
      appendTo('after bytes that do not end with a whole line');
    this.placements.push({
      kind: 'journal entry',
      path,
      how: 'append',
      event: write,
      content,
      durableAt: sync && renamed?.durableAt !== undefined ? Math.max(sync.endLine, renamed.durableAt) : undefined,
    });
  }

  /**
   * After a rename or removal in `dir`, the directory must be fsync'd — and any directory made for
   * the file must be fsync'd into its parent — before the next step. Returns when it was durable.
   */
  private checkDirectorySynced(kind: DurableKind, event: StraceEvent, path: string, what: string): number | undefined {
    const dir = dirname(path);
    const ack = this.acknowledgements.find((a) => a.line > event.endLine);
    const deadline = ack?.line ?? Number.POSITIVE_INFINITY;
    const dirSync = this.files.syncOf(dir, event.endLine, Number.POSITIVE_INFINITY);
    if (!dirSync) {
      this.violate('directory-synced', event.startLine, `${kind} ${path} was ${what} but ${dir} was never fsync'd`);
      return undefined;
    }
    if (dirSync.endLine >= deadline) {
      this.violate(
        'directory-synced',
        event.startLine,
        `${kind} ${path} was ${what}, but ${dir} was fsync'd only at line ${dirSync.startLine}, after ${ack?.what}`,
      );
    }
    let durableAt = dirSync.endLine;
    for (const made of this.files.directoriesMade(dir, event.startLine)) {
      const parentSync = this.files.syncOf(dirname(made.path), made.endLine, Number.POSITIVE_INFINITY);
      if ((!parentSync || parentSync.endLine >= deadline) && !this.reportedDirectories.has(made.startLine)) {
        this.reportedDirectories.add(made.startLine);
        this.violate(
          'new-directory-synced',
          made.startLine,
          `${made.path} was made to hold ${kind} ${path}, but ${dirname(made.path)} was not fsync'd ${
            parentSync ? `before ${ack?.what}` : 'after it'
          }`,
        );
      }
      durableAt = Math.max(durableAt, parentSync?.endLine ?? Number.POSITIVE_INFINITY);
    }
    return Number.isFinite(durableAt) ? durableAt : undefined;
  }

  /**
   * Snapshot files written in place (a package snapshot's .deb, copied by deb-snapshot.ts
   * `durableCopy`): durable once the file is synced after its last write and its directory after
   * its creation.
   */
  private collectInPlaceSnapshots(): void {
    const renamed = new Set(this.placements.map((p) => p.path));
    for (const path of this.files.writtenPaths()) {
      if (this.kindOf(path) !== 'snapshot' || renamed.has(path)) continue;
      const last = this.files.lastModification(path, Number.POSITIVE_INFINITY);
      if (!last) continue;
      const fileSync = this.files.syncOf(path, last.endLine, Number.POSITIVE_INFINITY);
      const dirSync = this.files.syncOf(
        dirname(path),
        this.files.creationOf(path)?.endLine ?? 0,
        Number.POSITIVE_INFINITY,
      );
      this.checked.placements.snapshot++;
      this.placements.push({
        kind: 'snapshot',
        path,
        how: 'in place',
        event: last,
        content: this.files.contentOf(path, Number.POSITIVE_INFINITY),
        durableAt: fileSync && dirSync ? Math.max(fileSync.endLine, dirSync.endLine) : undefined,
      });
    }
  }

  private readJournal(): void {
    for (const record of this.spec.journalBefore ?? []) this.journal.push({ ...record, line: 0, durableAt: 0 });
    // In the order the trace made them: an appended line changes the entry as its lines before it left it.
    const writes = this.placements
      .filter((p) => p.kind === 'journal entry' && (p.how === 'rename' || p.how === 'append'))
      .sort((a, b) => a.event.startLine - b.event.startLine);
    for (const placement of writes) {
      const orderId = basename(dirname(placement.path));
      const before = this.journal.filter((r) => r.orderId === orderId).at(-1);
      const record = !placement.content
        ? undefined
        : placement.how === 'rename'
          ? parseJournalEntry(placement.content)
          : before && changedRecord(before, placement.content);
      if (!record) {
        this.violate('trace-readable', placement.event.startLine, `cannot read the journal entry ${placement.path}`);
        continue;
      }
      this.journal.push({ ...record, line: placement.event.startLine, durableAt: placement.durableAt });
    }
  }

  /** The managed path an order changes, for its apply entry or the apply entry a revert restores. */
  private hostPathOf(record: JournalRecord): string | undefined {
    const changePath =
      record.kind === 'apply'
        ? record.changePath
        : this.journal.find((r) => r.orderId === record.revertsOrderId && r.kind === 'apply')?.changePath;
    return changePath === undefined ? undefined : join(this.spec.rootDir, changePath);
  }

  private checkManagedChanges(): void {
    for (const placement of this.placements) {
      if (placement.kind !== 'managed file' || placement.how === 'in place') continue;
      this.checked.managedChanges++;
      const at = placement.event.startLine;
      const about = this.journal.filter((r) => this.hostPathOf(r) === placement.path);
      const durable = about.filter((r) => r.durableAt !== undefined && r.durableAt < at);
      const latest = durable.at(-1);
      const pending = about.filter((r) => r.line > (latest?.line ?? -1) && r.line < at);
      const pendingNote =
        pending.length > 0
          ? ` (the ${pending.map((r) => `'${r.phase}' entry of line ${r.line}`).join(', ')} was not durable yet)`
          : '';
      if (!latest) {
        this.violate(
          'journal-before-change',
          at,
          `${placement.path} was changed with no durable journal entry announcing it${pendingNote}`,
        );
        continue;
      }
      const allowed = latest.line === 0 ? MAY_HAVE_CHANGED : ANNOUNCES_CHANGE;
      if (!allowed.has(latest.phase)) {
        this.violate(
          'journal-before-change',
          at,
          `${placement.path} was changed while the journal durably said ${latest.kind} order ${latest.orderId} is '${latest.phase}'${pendingNote}`,
        );
      }
    }
  }

  private checkSnapshots(): void {
    for (const record of this.journal) {
      if (record.line === 0 || !POINTS_AT_SNAPSHOT.has(record.phase) || record.snapshot === undefined) continue;
      const dir = join(this.spec.dataDir, 'orders', record.orderId, 'snapshot');
      const files = this.placements.filter((p) => p.kind === 'snapshot' && isInside(dir, p.path));
      const expected = contentFileOf(record.snapshot);
      if (expected !== undefined && !files.some((p) => p.path === join(dir, expected))) {
        this.violate(
          'snapshot-before-journal',
          record.line,
          `the '${record.phase}' entry of ${record.orderId} names ${expected}, which was not written in this trace`,
        );
      }
      for (const file of files) {
        if (file.durableAt !== undefined && file.durableAt < record.line) continue;
        this.violate(
          'snapshot-before-journal',
          record.line,
          `the '${record.phase}' entry of ${record.orderId} was written before its snapshot ${file.path} was durable`,
        );
      }
    }
  }

  private checkSequences(): void {
    for (const record of this.journal) {
      if (record.line === 0 || record.phase !== 'accepted' || record.signedSequence === undefined) continue;
      const recorded = this.placements.some((p) => {
        if (p.kind !== 'applied sequences' || p.durableAt === undefined || p.durableAt >= record.line) return false;
        const applied = p.content ? parseObject(p.content) : undefined;
        return Object.values(applied ?? {}).some(
          (entry) => (entry as { sequence?: unknown } | null)?.sequence === record.signedSequence,
        );
      });
      if (!recorded)
        this.violate(
          'sequence-before-journal',
          record.line,
          `signed order ${record.orderId} (sequence ${record.signedSequence}) was journaled before applied-sequences.json durably recorded its sequence`,
        );
    }
  }

  private checkReports(): void {
    for (const message of this.sent) {
      const json = message.json;
      const type = typeof json?.type === 'string' ? json.type : undefined;
      if (!json || !type) continue;
      if (type === 'order.progress') {
        this.count(type);
        const phase = String(json.phase);
        const journaled = REPORTED_UNDER_APPLYING.has(phase) ? 'applying' : phase;
        this.requireJournal(message, String(json.orderId), journaled, undefined);
      } else if (type === 'order.result') {
        if (PREFLIGHT_OUTCOMES.has(String(json.outcome))) continue;
        this.count(type);
        const finishedAt = String(json.finishedAt);
        if (this.refusalCounted(finishedAt, message.startLine)) continue;
        this.requireJournal(message, String(json.orderId), 'done', finishedAt);
      } else if (type === 'hello') {
        this.count(type);
        for (const order of Array.isArray(json.orders) ? (json.orders as Record<string, unknown>[]) : []) {
          const result = order.result as { finishedAt?: string } | undefined;
          this.requireJournal(message, String(order.orderId), String(order.phase), result?.finishedAt);
        }
      }
    }
  }

  private requireJournal(message: SocketMessage, orderId: string, phase: string, finishedAt: string | undefined): void {
    const backed = this.journal.some(
      (r) =>
        r.orderId === orderId &&
        r.phase === phase &&
        (finishedAt === undefined || r.finishedAt === finishedAt) &&
        r.durableAt !== undefined &&
        r.durableAt < message.startLine,
    );
    if (backed) return;
    const written = this.journal.find((r) => r.orderId === orderId && r.phase === phase && r.line < message.startLine);
    this.violate(
      'journal-before-report',
      message.startLine,
      `${describeMessage(message)} reports ${orderId} '${phase}'${finishedAt ? ` (finished ${finishedAt})` : ''}, but no such journal entry was durable${
        written
          ? ` (one was renamed at line ${written.line}, durable ${written.durableAt ? `at line ${written.durableAt}` : 'never'})`
          : ''
      }`,
    );
  }

  /** A refused order is not journaled: refusals.json, durably counting it, backs its result. */
  private refusalCounted(finishedAt: string, before: number): boolean {
    return this.placements.some((p) => {
      if (p.kind !== 'refusal counter' || p.durableAt === undefined || p.durableAt >= before || !p.content)
        return false;
      const lastAt = parseObject(p.content)?.lastAt;
      return typeof lastAt === 'string' && lastAt >= finishedAt;
    });
  }

  private count(type: string): void {
    this.checked.reports[type] = (this.checked.reports[type] ?? 0) + 1;
  }

  private violate(rule: RuleName, line: number, message: string): void {
    this.violations.push({ rule, line, message });
  }
}

/** What the trace shows happening to each path: writes, syncs, creations, directories made. */
class FileHistory {
  private readonly byPath = new Map<string, StraceEvent[]>();
  private readonly mkdirs: EventOf<'mkdir'>[] = [];

  constructor(events: readonly StraceEvent[]) {
    for (const event of events) {
      if (!event.ok) continue;
      if (event.kind === 'mkdir') this.mkdirs.push(event);
      const path =
        event.kind === 'open'
          ? event.path
          : (event.kind === 'write' || event.kind === 'sync') && !isSocket(event.fd)
            ? event.fd.target
            : undefined;
      if (path === undefined) continue;
      const list = this.byPath.get(path) ?? [];
      list.push(event);
      this.byPath.set(path, list);
    }
  }

  /** Paths written, or opened for writing (a copy made in the kernel shows no write of its own). */
  writtenPaths(): string[] {
    return [...this.byPath]
      .filter(([, list]) => list.some((e) => e.kind === 'write' || (e.kind === 'open' && opensForWriting(e.flags))))
      .map(([path]) => path);
  }

  /** Whether the last open of `path` before `before` was to append (O_APPEND). */
  openedToAppend(path: string, before: number): boolean {
    const opens = (this.byPath.get(path) ?? []).filter((e) => e.kind === 'open' && e.endLine < before);
    const last = opens.at(-1);
    return last?.kind === 'open' && last.flags.includes('O_APPEND');
  }

  /** The open that created `path` (O_CREAT), if the trace has it. */
  creationOf(path: string): StraceEvent | undefined {
    return this.byPath.get(path)?.find((e) => e.kind === 'open' && e.flags.includes('O_CREAT'));
  }

  /** The last write to `path` before `before` — or, for a file created empty, its creation. */
  lastModification(path: string, before: number): StraceEvent | undefined {
    const list = (this.byPath.get(path) ?? []).filter((e) => e.endLine < before);
    return (
      list.filter((e) => e.kind === 'write').at(-1) ??
      list.filter((e) => e.kind === 'open' && opensForWriting(e.flags)).at(-1)
    );
  }

  /** The first successful fsync/fdatasync of `path` that began after `after` and returned before `before`. */
  syncOf(path: string, after: number, before: number): StraceEvent | undefined {
    return this.byPath.get(path)?.find((e) => e.kind === 'sync' && e.startLine > after && e.endLine < before);
  }

  /** The bytes written to `path` before `before`, in order; undefined when strace cut any of them. */
  contentOf(path: string, before: number): Buffer | undefined {
    const writes = (this.byPath.get(path) ?? []).filter(
      (e): e is EventOf<'write'> => e.kind === 'write' && e.endLine < before,
    );
    if (writes.some((w) => !w.complete)) return undefined;
    return Buffer.concat(writes.map((w) => w.data));
  }

  /** Directories the trace made (`mkdir`) that are `dir` or hold it, latest making of each, before `before`. */
  directoriesMade(dir: string, before: number): EventOf<'mkdir'>[] {
    const made = new Map<string, EventOf<'mkdir'>>();
    for (const m of this.mkdirs) if (m.endLine < before && isInside(m.path, dir)) made.set(m.path, m);
    return [...made.values()];
  }
}

// ---- the coordinator ---------------------------------------------------------------------------

export interface CoordinatorTraceSpec {
  /** The SQLite file (`<dataDir>/fleetpatch.db`); its WAL is `<file>-wal`. */
  databaseFile: string;
}

export interface CoordinatorTraceReport {
  violations: Violation[];
  checked: { sent: Record<string, number>; acks: number };
}

/** Orders the coordinator records before it sends them. */
const COMMITTED_ORDERS = new Set(['order.apply', 'order.revert']);

export function checkCoordinatorTrace(
  events: readonly StraceEvent[],
  spec: CoordinatorTraceSpec,
): CoordinatorTraceReport {
  const wal = `${spec.databaseFile}-wal`;
  const violations: Violation[] = [];
  const checked: CoordinatorTraceReport['checked'] = { sent: {}, acks: 0 };
  const walWrites = events.filter((e): e is EventOf<'write'> => e.kind === 'write' && e.ok && e.fd.target === wal);
  const walSyncs = events.filter((e) => e.kind === 'sync' && e.ok && e.fd.target === wal);
  /** A WAL write naming `id` after `after`, then a WAL sync, both done before `before`. */
  const committed = (id: string, after: number, before: number) =>
    walWrites.some(
      (w) =>
        w.startLine > after &&
        w.data.includes(id) &&
        walSyncs.some((s) => s.startLine > w.endLine && s.endLine < before),
    );

  const traffic = webSocketMessages(events);
  for (const problem of traffic.problems) violations.push({ rule: 'trace-readable', line: 0, message: problem });
  const received = traffic.messages.filter((m) => m.direction === 'received');
  for (const message of traffic.messages) {
    if (message.direction !== 'sent' || !message.json) continue;
    const { type, orderId, finishedAt } = message.json;
    if (typeof type !== 'string' || typeof orderId !== 'string') continue;
    if (COMMITTED_ORDERS.has(type)) {
      checked.sent[type] = (checked.sent[type] ?? 0) + 1;
      if (!committed(orderId, 0, message.startLine))
        violations.push({
          rule: 'committed-before-sent',
          line: message.startLine,
          message: `${type} ${orderId} was sent before a commit (WAL write naming it, then a sync of ${wal})`,
        });
    } else if (type === 'order.ack') {
      checked.acks++;
      const receipt = received.find(
        (m) => m.startLine < message.startLine && carriesResult(m, orderId, String(finishedAt)),
      );
      if (!receipt) {
        violations.push({
          rule: 'committed-before-ack',
          line: message.startLine,
          message: `order.ack ${orderId} (${String(finishedAt)}) acknowledges a result this trace never received`,
        });
      } else if (!committed(orderId, receipt.endLine, message.startLine)) {
        violations.push({
          rule: 'committed-before-ack',
          line: message.startLine,
          message: `order.ack ${orderId} was sent before the result received at line ${receipt.endLine} was committed (WAL write naming it, then a sync of ${wal})`,
        });
      }
    }
  }
  return { violations, checked };
}

/** Whether an agent message carries the result of `orderId` that finished at `finishedAt`. */
function carriesResult(message: SocketMessage, orderId: string, finishedAt: string): boolean {
  const json = message.json;
  if (json?.type === 'order.result') return json.orderId === orderId && json.finishedAt === finishedAt;
  if (json?.type === 'hello' && Array.isArray(json.orders)) {
    return (json.orders as { orderId?: unknown; result?: { finishedAt?: unknown } }[]).some(
      (order) => order.orderId === orderId && order.result?.finishedAt === finishedAt,
    );
  }
  return false;
}

// ---- shared --------------------------------------------------------------------------------------

/**
 * A journal entry file (journal.ts: the entry whole on its first line, a change on each later one,
 * a last line without its newline not written) as the rules need it; undefined when it is not one.
 */
export function parseJournalEntry(bytes: Buffer | string): JournalRecord | undefined {
  const lines = bytes.toString().split('\n');
  const tail = lines.pop() as string;
  if (lines.length === 0) lines.push(tail);
  let json = parseObject(lines[0] as string);
  for (const line of lines.slice(1)) {
    const change = parseObject(line);
    if (!json || !change) return undefined;
    json = { ...json, ...change };
  }
  if (!json || typeof json.orderId !== 'string' || typeof json.phase !== 'string') return undefined;
  if (json.kind !== 'apply' && json.kind !== 'revert') return undefined;
  const order = json.order as
    | { change?: { path?: unknown }; signed?: { statement?: { sequence?: unknown } } }
    | undefined;
  const sequence = order?.signed?.statement?.sequence;
  const result = json.result as { finishedAt?: unknown } | undefined;
  return {
    orderId: json.orderId,
    kind: json.kind,
    phase: json.phase,
    ...(typeof order?.change?.path === 'string' ? { changePath: order.change.path } : {}),
    ...(typeof json.revertsOrderId === 'string' ? { revertsOrderId: json.revertsOrderId } : {}),
    ...(typeof result?.finishedAt === 'string' ? { finishedAt: result.finishedAt } : {}),
    ...(json.snapshot !== undefined ? { snapshot: json.snapshot } : {}),
    ...(typeof sequence === 'number' ? { signedSequence: sequence } : {}),
  };
}

/**
 * A finished entry marked acknowledged, or a line appended that marks it so and changes nothing
 * else: the write that may be lost (see `directory-synced` and `appended-synced`).
 */
function isAckOnly(bytes: Buffer): boolean {
  const json = parseObject(bytes);
  if (json?.acked !== true) return false;
  const changes = Object.keys(json).filter((key) => key !== 'seq' && key !== 'updatedAt' && key !== 'acked');
  return json.phase === 'done' || changes.length === 0;
}

/** The members a line appended to an entry may carry (journal.ts `EntryChangeSchema`). */
const CHANGE_MEMBERS = new Set(['seq', 'updatedAt', 'phase', 'snapshot', 'changed', 'result', 'acked']);

/**
 * The record `before` becomes with a line appended to its entry (journal.ts `changeLine`); undefined
 * when the line is not one: cut short, not JSON, or carrying a member no write changes.
 */
function changedRecord(before: JournalRecord, line: Buffer): JournalRecord | undefined {
  if (!line.toString().endsWith('\n')) return undefined;
  const change = parseObject(line);
  if (!change || Object.keys(change).some((key) => !CHANGE_MEMBERS.has(key))) return undefined;
  const result = change.result as { finishedAt?: unknown } | undefined;
  return {
    ...before,
    ...(typeof change.phase === 'string' ? { phase: change.phase } : {}),
    ...(change.snapshot !== undefined ? { snapshot: change.snapshot } : {}),
    ...(typeof result?.finishedAt === 'string' ? { finishedAt: result.finishedAt } : {}),
  };
}

function contentFileOf(snapshot: unknown): string | undefined {
  const file = (snapshot as { contentFile?: unknown } | undefined)?.contentFile;
  return typeof file === 'string' ? basename(file) : undefined;
}

function describeMessage(message: SocketMessage): string {
  return typeof message.json?.type === 'string' ? `'${message.json.type}' message` : 'message';
}

function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'));
}

function parseObject(bytes: Buffer | string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString());
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
