import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type OrderApply,
  OrderApplySchema,
  OrderPhaseSchema,
  type OrderReport,
  type OrderResultBody,
  OrderResultBodySchema,
} from '@fleetpatch/shared';
import { z } from 'zod';
import {
  appendToFile,
  fsyncDirectory,
  isTempFileFor,
  makeDirectoryDurably,
  syncFileAndDirectory,
  writeAll,
  writeFileAtomically,
} from './fs/atomic-file.js';
import { SpaceReserve } from './fs/space-reserve.js';

/** What every journal entry records, whatever its kind. */
const EntryBase = {
  orderId: z.string(),
  /** Position in this agent's journal: grows with every write. */
  seq: z.number().int().min(0),
  /**
   * The position of the order's first write, kept by every later one: which of two orders on the same
   * file or package came later (see `supersedingOrder`). Absent from entries written before it existed.
   */
  startedSeq: z.number().int().min(0).optional(),
  phase: OrderPhaseSchema,
  /** The driver's snapshot record, once the snapshot is durable and verified (apply entries). */
  snapshot: z.unknown().optional(),
  /** Whether the host carries this apply order's change, as far as the journal knows. */
  changed: z.boolean().default(false),
  result: OrderResultBodySchema.optional(),
  /** The coordinator confirmed it stored the result; no need to report it again. */
  acked: z.boolean().default(false),
  /**
   * How many times this order id was started: written with the entry that starts it, so it is 1 for
   * ever unless something runs a re-delivered id a second time — which at most once forbids, and
   * which this makes visible to tests and to whoever reads the journal after an incident. Entries
   * written before the count existed were started once (an id was never started twice).
   */
  executions: z.number().int().min(1).default(1),
  updatedAt: z.string(),
};

export const ApplyEntrySchema = z
  .object({
    ...EntryBase,
    kind: z.literal('apply'),
    /** The apply order as received. */
    order: OrderApplySchema,
  })
  .strict();
export type ApplyEntry = z.infer<typeof ApplyEntrySchema>;

export const RevertEntrySchema = z
  .object({
    ...EntryBase,
    kind: z.literal('revert'),
    /** The apply order this revert restores. */
    revertsOrderId: z.string(),
  })
  .strict();
export type RevertEntry = z.infer<typeof RevertEntrySchema>;

/**
 * One order as the agent's journal records it, durable before the step it guards, so after any crash
 * the entry says exactly how far the order got. Preflights are not journaled: they change nothing.
 * How it is written is `Journal.writeEntry`'s to say.
 */
export const JournalEntrySchema = z.discriminatedUnion('kind', [ApplyEntrySchema, RevertEntrySchema]);
export type JournalEntry = z.infer<typeof JournalEntrySchema>;

/** What a write may change of an entry: never its identity, kind or what it was asked to do. */
export type JournalPatch = Partial<Pick<JournalEntry, 'phase' | 'snapshot' | 'changed' | 'result' | 'acked'>>;

/** The members a later line of an entry file may carry: what a write changed, its position and time. */
const PATCHED_MEMBERS: ReadonlySet<string> = new Set(['phase', 'snapshot', 'changed', 'result', 'acked']);

/** A later line of an entry file (see `Journal.writeEntry`); checked as strictly as a whole entry. */
const EntryChangeSchema = z
  .object({
    seq: EntryBase.seq,
    updatedAt: EntryBase.updatedAt,
    phase: OrderPhaseSchema.optional(),
    snapshot: z.unknown().optional(),
    changed: z.boolean().optional(),
    result: OrderResultBodySchema.optional(),
    acked: z.boolean().optional(),
  })
  .strict();

export interface JournalOptions {
  /**
   * Test-only crash points inside each entry write: `journal:<kind>:<what>:<step>`, where `what` is
   * the phase written (or `acked`) and `step` an `AtomicWriteStep`. Unset in production.
   */
  checkpoint?: (name: string) => void;
}

const ENTRY_FILE = 'entry.json';
/** Beside `orders/` in the data dir: see `SpaceReserve`, and `writeNow` for who may use it. */
export const RESERVE_FILE = 'journal.reserve';
/**
 * Room for the writes that bring an order to rest on a full disk: an entry and its temp copy, many
 * times over for an ordinary order (a few KiB each). An order whose entry is larger (a file change
 * near the 1 MiB limit) may not fit: it stays at its last phase, recovered at the next start.
 */
export const JOURNAL_RESERVE_BYTES = 128 * 1024;
/** The writes that bring an order to rest (its revert begins, it ends): they may use the reserve. */
const BRINGS_TO_REST: ReadonlySet<string> = new Set(['reverting', 'done']);
/** How agents before the shared atomic writer named an entry's temp file (`entry.json.<hex>.tmp`). */
const LEGACY_TEMP_PATTERN = /^entry\.json\.[0-9a-f]+\.tmp$/;

/**
 * The durable order journal: one directory per order under `<dataDir>/orders/`, holding the entry
 * and the order's snapshot. Order ids are the idempotency key — an id seen before is answered from
 * here, never executed again.
 */
export class Journal {
  private readonly entries = new Map<string, JournalEntry>();
  private readonly turns = new Map<string, Promise<unknown>>();
  /** Acks a full disk kept from being written (see `acknowledge`), written once there is room. */
  private readonly deferredAcks = new Map<string, { finishedAt: string | undefined; at: string }>();
  private seq = 0;
  /**
   * Orders whose entry file this journal wrote, durably, ending with a whole line: a later write may be
   * appended to it (see `writeEntry`). Any other is written whole again.
   */
  private readonly appendable = new Set<string>();
  /** Told the id of every order whose directory may have changed: see `onOrderChanged`. */
  private readonly changeListeners: ((orderId: string) => void)[] = [];
  /** The size of each order's entry as last written, for the orders whose files the journal knows: see `entryBytes`. */
  private readonly knownEntryBytes = new Map<string, number>();

  private constructor(
    private readonly ordersDir: string,
    private readonly reserve: SpaceReserve,
    private readonly options: JournalOptions,
  ) {}

  static async open(dataDir: string, options: JournalOptions = {}): Promise<Journal> {
    const ordersDir = join(dataDir, 'orders');
    await makeDirectoryDurably(ordersDir, 0o700);
    const journal = new Journal(
      ordersDir,
      await SpaceReserve.open(join(dataDir, RESERVE_FILE), JOURNAL_RESERVE_BYTES),
      options,
    );
    // An order directory made by an agent killed before it synced `orders/` is durable from here on.
    await fsyncDirectory(journal.ordersDir);
    // Read synchronously: nothing else runs before the journal is open, and a synchronous read of a small
    // file costs about a third of the CPU of the thread pool's round trips (open, stat, read, close),
    // which a reconnect storm of restarted agents on shared cores pays once per entry.
    for (const name of readdirSync(journal.ordersDir)) {
      const entry = journal.readEntry(name);
      if (!entry) continue;
      // Not appendable: the file's name may not be durable yet (a rename whose directory sync a crash
      // cut short, an ack's), nor its last lines (appended, never synced). Its next write, if it has
      // one, replaces it whole and durably; most orders found here are at rest and have none.
      journal.entries.set(entry.orderId, entry);
      journal.seq = Math.max(journal.seq, entry.seq);
      // What the agent reports of an order not at rest (`hello`, recovery) must be durable first: a
      // process killed between an append and its sync left the line in the page cache, where this
      // read found it and a power cut could still take it. An order done and acknowledged is reported
      // no more, and what may be unsynced of it is its ack, which may be lost.
      if (entry.phase !== 'done' || !entry.acked) syncFileAndDirectory(journal.orderDir(entry.orderId), ENTRY_FILE);
    }
    return journal;
  }

  /** `<dataDir>/orders`: entries and snapshots, what the journal quota measures. */
  get directory(): string {
    return this.ordersDir;
  }

  get position(): number {
    return this.seq;
  }

  /** How many orders the journal holds. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Calls `listener` with an order's id after each write of its entry and after its directory is
   * removed: what keeps a measure of the journal (see `JournalUsage`) from walking every order for
   * every new one.
   */
  onOrderChanged(listener: (orderId: string) => void): void {
    this.changeListeners.push(listener);
  }

  private orderChanged(orderId: string): void {
    for (const listener of this.changeListeners) listener(orderId);
  }

  get(orderId: string): JournalEntry | undefined {
    return this.entries.get(orderId);
  }

  /**
   * The bytes of the order's directory outside its snapshot and run directories, when the journal
   * knows them without looking: this journal made the directory (so it held nothing else) and every
   * write of the order's entry since succeeded (one that failed may have left its temp file), so it
   * holds the entry as last written and nothing more. Undefined for any other order — one found at
   * open, one whose directory was there before its first entry, one a write of failed — whose
   * directory only a walk can measure (see `JournalUsage`).
   */
  entryBytes(orderId: string): number | undefined {
    return this.knownEntryBytes.get(orderId);
  }

  all(): JournalEntry[] {
    return [...this.entries.values()].sort((a, b) => a.seq - b.seq);
  }

  /** Unfinished orders and results the coordinator has not acknowledged: what `hello` reports. */
  pendingReports(): OrderReport[] {
    return this.all()
      .filter((e) => e.phase !== 'done' || !e.acked)
      .map((e) => ({ orderId: e.orderId, phase: e.phase, ...(e.result ? { result: e.result } : {}) }));
  }

  /** The directory an order's driver keeps its snapshot in. */
  /** Where a dpkg run of the order keeps its pid, output and exit status (it may outlive the agent). */
  runDir(orderId: string): string {
    return join(this.orderDir(orderId), 'run');
  }

  snapshotDir(orderId: string): string {
    return join(this.orderDir(orderId), 'snapshot');
  }

  /** Starts an apply order: its first entry, durable before anything is done for it. */
  async createApply(order: OrderApply, at: string): Promise<ApplyEntry> {
    return this.start(order.orderId, (executions) => ({
      orderId: order.orderId,
      kind: 'apply',
      seq: 0,
      phase: 'accepted',
      order,
      changed: false,
      acked: false,
      executions,
      updatedAt: at,
    }));
  }

  async createRevert(orderId: string, revertsOrderId: string, at: string): Promise<RevertEntry> {
    return this.start(orderId, (executions) => ({
      orderId,
      kind: 'revert',
      seq: 0,
      phase: 'reverting',
      revertsOrderId,
      changed: false,
      acked: false,
      executions,
      updatedAt: at,
    }));
  }

  /**
   * Applies `patch` to the entry as it is when this write's turn comes, not as `entry` was when
   * called; the entry keeps its kind, so the caller gets back the kind it passed.
   */
  async update<E extends JournalEntry>(entry: E, patch: JournalPatch, at: string): Promise<E> {
    return this.inTurn(entry.orderId, () => {
      const current = this.entries.get(entry.orderId);
      if (!current || !isSameKind(current, entry))
        throw new Error(`journal has no ${entry.kind} order ${entry.orderId}`);
      return this.writeNow({ ...current, ...patch, updatedAt: at }, patch.phase ?? current.phase);
    });
  }

  async finish<E extends JournalEntry>(entry: E, result: OrderResultBody, changed: boolean): Promise<E> {
    // acked resets: a second result (a failure during bake) must be reported again.
    return this.update(entry, { phase: 'done', result, changed, acked: false }, result.finishedAt);
  }

  /**
   * Marks the stored result acknowledged, but only when it is the one the coordinator stored: an
   * ack naming another result's `finishedAt` (a late ack of a result a bake failure has replaced)
   * leaves it pending. Decided in the order's turn, so a result written meanwhile is what is checked.
   */
  async acknowledge(orderId: string, finishedAt: string | undefined, at: string): Promise<void> {
    // Stryker disable next-line ConditionalExpression: the check in the turn finds no entry either; this spares a turn
    if (!this.entries.has(orderId)) return;
    await this.inTurn(orderId, async () => {
      const current = this.entries.get(orderId);
      if (current?.phase !== 'done' || current.acked) return;
      // Stryker disable next-line OptionalChaining: a done entry always has its result (finish writes both)
      if (finishedAt !== undefined && current.result?.finishedAt !== finishedAt) return;
      try {
        await this.writeNow({ ...current, acked: true, updatedAt: at }, 'acked');
        this.deferredAcks.delete(orderId);
      } catch (err) {
        // A full disk: the coordinator has the result all the same. The ack is written with the
        // next write that finds room; until then a reconnect reports the result again, and the
        // coordinator, which has it, acks it again.
        if (!isDiskFull(err)) throw err;
        this.deferredAcks.set(orderId, { finishedAt, at });
      }
    });
  }

  /**
   * Finished orders the coordinator acknowledged more than `retentionMs` ago go, snapshots with
   * them: the journal must not grow for ever on a long-lived host. Past that age an order can no
   * longer be reverted by this agent (a new patch is the way forward). Returns how many went.
   */
  async prune(retentionMs: number, now: number): Promise<number> {
    const isOld = (e: JournalEntry | undefined) =>
      e !== undefined && e.phase === 'done' && e.acked && Date.parse(e.updatedAt) < now - retentionMs;
    let removed = 0;
    // Stryker disable next-line MethodExpression: the check in the order's turn decides; this filter only spares turns
    for (const entry of this.all().filter(isOld)) {
      await this.inTurn(entry.orderId, async () => {
        if (!isOld(this.entries.get(entry.orderId))) return; // written to meanwhile
        this.entries.delete(entry.orderId);
        this.knownEntryBytes.delete(entry.orderId);
        this.appendable.delete(entry.orderId);
        await rm(this.orderDir(entry.orderId), { recursive: true, force: true });
        this.orderChanged(entry.orderId);
        removed++;
      });
    }
    return removed;
  }

  /** Resolves once every write begun so far has ended: a graceful stop never cuts one short. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.turns.values()]);
  }

  /**
   * The first write of an order. Callers never start an id the journal knows (the executor answers
   * it from here); if one ever does, the count of executions goes up, so the second run shows.
   */
  private start<E extends JournalEntry>(orderId: string, build: (executions: number) => E): Promise<E> {
    return this.inTurn(orderId, async () => {
      const known = this.entries.has(orderId);
      const entry = build((this.entries.get(orderId)?.executions ?? 0) + 1);
      try {
        return await this.writeNow(entry, entry.phase);
      } catch (err) {
        // A first entry that could not be written (a full disk): the order is not in the journal,
        // and its directory must not stay behind as an order without an entry.
        if (!known) await rm(this.orderDir(orderId), { recursive: true, force: true }).catch(() => undefined);
        throw err;
      }
    });
  }

  /**
   * Writes of one order run one after another: an ack, a bake failure and a revert can all want to
   * write the same entry at the same moment, and interleaved they would lose updates.
   */
  private inTurn<T>(orderId: string, step: () => Promise<T>): Promise<T> {
    const previous = this.turns.get(orderId) ?? Promise.resolve();
    const turn = previous.catch(() => undefined).then(step);
    this.turns.set(orderId, turn);
    const forget = () => {
      if (this.turns.get(orderId) === turn) this.turns.delete(orderId);
    };
    turn.then(forget, forget);
    return turn;
  }

  /**
   * `what` names the write for the test crash points: the phase it records, or `acked`. On a full
   * disk, a write that brings an order to rest (`BRINGS_TO_REST`) is given the reserve's room and
   * tried once more: an order cut short by the disk filling can still be reverted and recorded, and
   * the journal never ends with an order it cannot finish. Other writes fail, which stops the order.
   */
  private async writeNow<E extends JournalEntry>(entry: E, what: string): Promise<E> {
    let written: E;
    try {
      written = await this.writeEntry(entry, what);
    } catch (err) {
      if (!isDiskFull(err) || !BRINGS_TO_REST.has(what) || !this.reserve.release()) throw err;
      written = await this.writeEntry(entry, what);
    }
    // Space came back (or some was left): acks it kept from being written are written (in their
    // orders' turns, after this one), and the reserve is made again for the next full disk.
    for (const [orderId, ack] of this.deferredAcks) {
      this.deferredAcks.delete(orderId);
      void this.acknowledge(orderId, ack.finishedAt, ack.at).catch(() => undefined);
    }
    // Best effort: the entry is written, whatever becomes of the reserve.
    if (!this.reserve.available) await this.reserve.replenish().catch(() => false);
    return written;
  }

  /** Whether the journal's reserve is in place (it is not while the disk is too full to make it again). */
  get reserveHeld(): boolean {
    return this.reserve.available;
  }

  /**
   * How an entry is written. An order's entry file holds one JSON line per write: the first line the
   * whole entry, each later line what that write changed (`changeLine`), so a write costs an append
   * and one `fdatasync` — not a temp file, a rename and the directory's fsync, with the whole order
   * (its content up to a megabyte) serialized again. After a crash or a full disk, the lines a write
   * left unfinished read as not made (`readEntryFile`): none was synced, so nothing acted on them.
   *
   * The first write, and any write to a file this journal did not itself write durably and whole (one
   * a failed append may have torn, one renamed without its directory's sync, one read at open: a crash
   * may have left its name or its last lines not durable), replaces the file atomically with the entry
   * as one line: temp file, fsync, rename, fsync dir — after a crash the file is the old one or the new
   * one. An ack need not outlive a power cut (it is appended or renamed without a sync): the entry
   * before it holds the same result, unacked, which the agent reports again and the coordinator,
   * holding it, acks again.
   */
  private async writeEntry<E extends JournalEntry>(entry: E, what: string): Promise<E> {
    const seq = ++this.seq;
    // The first write of an order marks where it started; later ones keep it. An entry written before
    // startedSeq existed is given the position of its last write before this one, which is before any
    // order begun since: an ack written now does not make it seem to have begun after them
    // (`supersedingOrder`; between two such old orders the order is the best the journal knows).
    const previous = this.entries.get(entry.orderId);
    const next: E = { ...entry, seq, startedSeq: entry.startedSeq ?? previous?.seq ?? seq };
    const dir = this.orderDir(entry.orderId);
    const { checkpoint } = this.options;
    const crashPoints = checkpoint
      ? { checkpoint: (step: string) => checkpoint(`journal:${entry.kind}:${what}:${step}`) }
      : {};
    const durable = what !== 'acked';
    const change =
      previous !== undefined && this.appendable.has(entry.orderId) ? changeLine(previous, next) : undefined;
    // Appendable only again once this write has ended with its line whole.
    this.appendable.delete(entry.orderId);
    const known = this.knownEntryBytes.get(entry.orderId);
    // What the order's directory holds besides its snapshot and run directories, when the journal knows it.
    let bytes: number | undefined;
    try {
      if (change !== undefined) {
        appendToFile(`${dir}/${ENTRY_FILE}`, change, { durable, ...crashPoints });
        bytes = known === undefined ? undefined : known + change.byteLength;
      } else {
        // The order's directory is durable before its first entry is: else a power cut could lose both.
        // An order with an entry already has it (written after this step, or read back at open, after
        // `orders/` was synced), so a later write skips the mkdir.
        const made = previous === undefined && (await makeDirectoryDurably(dir, 0o700));
        const whole = Buffer.from(`${JSON.stringify(next)}\n`);
        await writeFileAtomically(dir, ENTRY_FILE, { mode: 0o600 }, (fd) => writeAll(fd, whole), {
          durableRename: durable,
          ...crashPoints,
        });
        bytes = made || known !== undefined ? whole.byteLength : undefined;
      }
    } catch (err) {
      // A failed write may have left a temp file or part of a line: only a walk knows the directory now.
      this.knownEntryBytes.delete(entry.orderId);
      throw err;
    }
    if (bytes !== undefined) this.knownEntryBytes.set(entry.orderId, bytes);
    // A file renamed into place without its directory's sync (an ack written whole) may yet lose its
    // name in a power cut, and a line appended to it with it: the next write replaces it whole, durably.
    if (change !== undefined || durable) this.appendable.add(entry.orderId);
    this.entries.set(entry.orderId, next);
    this.orderChanged(entry.orderId);
    return next;
  }

  /** An order's entry as its file holds it (see `readEntryFile`), its interrupted temp files removed. */
  private readEntry(name: string): JournalEntry | undefined {
    const dir = join(this.ordersDir, name);
    // Temp files of writes a crash interrupted: the entry beside them is the last complete one.
    for (const file of readdirSync(dir)) {
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: force only matters if the file went since readdir
      if (isTempFileFor(ENTRY_FILE, file) || LEGACY_TEMP_PATTERN.test(file)) rmSync(join(dir, file), { force: true });
    }
    let raw: string;
    try {
      // Stryker disable next-line StringLiteral: without an encoding the Buffer is read as UTF-8 all the same
      raw = readFileSync(join(dir, ENTRY_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // A directory without an entry: the agent died before the first write completed. Nothing ran.
      // Stryker disable next-line BooleanLiteral: force only matters if the directory went since readdir
      rmSync(dir, { recursive: true, force: true });
      return undefined;
    }
    try {
      return readEntryFile(raw);
    } catch (err) {
      throw new Error(`journal entry ${name} is corrupt: ${(err as Error).message}`);
    }
  }

  private orderDir(orderId: string): string {
    // Order ids come from the wire: keep them from naming anything outside the journal.
    if (!/^[A-Za-z0-9_.-]{1,100}$/.test(orderId) || orderId.startsWith('.'))
      throw new Error(`unsafe order id ${orderId}`);
    // What join would make: `ordersDir` is join's already, and the id one plain name. Made at every
    // write of every order, it is not normalized again each time.
    return `${this.ordersDir}/${orderId}`;
  }
}

/**
 * The line that turns `previous` into `next` (see `Journal.writeEntry`): the members a write may
 * change that it changed (by identity: a write spreads the entry it changes, so what it leaves keeps
 * its object), with the new position and time. Undefined when the change cannot be such a line — a
 * member dropped, or one a write never changes (an order id started again, an old entry given its
 * `startedSeq`) — and the entry must be written whole.
 */
function changeLine(previous: JournalEntry, next: JournalEntry): Buffer | undefined {
  const change: Record<string, unknown> = { seq: next.seq, updatedAt: next.updatedAt };
  const before = previous as Record<string, unknown>;
  const after = next as Record<string, unknown>;
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (key === 'seq' || key === 'updatedAt' || before[key] === after[key]) continue;
    if (!PATCHED_MEMBERS.has(key) || after[key] === undefined) return undefined;
    change[key] = after[key];
  }
  return Buffer.from(`${JSON.stringify(change)}\n`);
}

/**
 * An entry file's text as the journal reads it: the first line the whole entry, each later line a
 * change to it (`changeLine`), applied in order.
 *
 * A line that is not JSON is a write that did not complete, and it and every line after it are
 * dropped: a crash or a full disk mid-append leaves part of a line without its newline, and a power
 * cut may keep a line's later page and lose its earlier one, which then reads as zeros (newline and
 * all, or run into the next line). A line not whole on disk was never synced, so no sync after it
 * completed, and nothing acted on it or on any line after it: an order goes on only once its line is
 * synced. A last line without its newline is dropped even if it parses: its write did not end. (The
 * journal replaces an entry it read at its next write, never appending to it.) An agent before this
 * format wrote the entry as one JSON text without a newline: it reads as the first line.
 *
 * Throws on anything else: a first line that is not the entry (it is written by a rename, whole or
 * not at all), a line of JSON that is not a change (only corruption makes it), or an entry the schema
 * refuses.
 */
export function readEntryFile(raw: string): JournalEntry {
  const lines = raw.split('\n');
  // What follows the last newline: '' when the file ends with one, else a write cut short (or an old agent's entry).
  const cut = lines.pop() as string;
  if (lines.length === 0) lines.push(cut);
  const [first, ...later] = lines;
  const changes = later.map(readChange);
  const torn = changes.indexOf(undefined);
  let entry: unknown = JSON.parse(first as string);
  for (const change of torn === -1 ? changes : changes.slice(0, torn)) entry = { ...(entry as object), ...change };
  const parsed = JournalEntrySchema.safeParse(entry);
  if (!parsed.success) throw new Error(parsed.error.message);
  return parsed.data;
}

/** A later line of an entry file as a change to the entry; undefined when it is not JSON (cut short). */
function readChange(line: string): z.infer<typeof EntryChangeSchema> | undefined {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return undefined;
  }
  const change = EntryChangeSchema.safeParse(json);
  if (!change.success) throw new Error(`a line is not a change to the entry: ${change.error.message}`);
  return change.data;
}

/** ENOSPC or EDQUOT: the file system (or the agent's quota on it) has no room for the write. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function isSameKind<E extends JournalEntry>(entry: JournalEntry, like: E): entry is E {
  return entry.kind === like.kind;
}
