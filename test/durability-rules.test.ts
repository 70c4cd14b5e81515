/**
 * The durability rules (support/durability-rules.ts) on hand-written strace logs: for each rule, a
 * log that keeps it and one that breaks it the way a careless edit to the product would.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type AgentTraceSpec,
  checkAgentTrace,
  checkCoordinatorTrace,
  formatViolations,
  type RuleName,
} from './support/durability-rules.js';
import { parseStraceLog } from './support/strace-log.js';

const DATA = '/var/lib/agent';
const ROOT = '/srv/host';
const SPEC: AgentTraceSpec = { dataDir: DATA, rootDir: ROOT };
const MANAGED = '/etc/app.conf';
const ORDER = 'ord_1';
const ORDER_DIR = join(DATA, 'orders', ORDER);
const AGENT_SOCKET = 'TCP:[127.0.0.1:40000->127.0.0.1:4000]';

/** A string argument as strace prints it (plain, C-escaped). */
const quoted = (text: string) =>
  `"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n').replaceAll('\r', '\\r')}"`;

let nextFd = 20;
/** Temp names are random in the product: each write here gets its own. */
let nextTemp = 0;

/** fs/atomic-file.ts `writeFileAtomically`, call by call; `skip` leaves a step out as a broken writer would. */
function atomicWrite(dir: string, name: string, content: string, skip: { fsync?: boolean; dirSync?: boolean } = {}) {
  const temp = join(dir, `.${name}.fleetpatch-tmp-${(nextTemp++).toString(16).padStart(16, '0')}`);
  const fd = nextFd++;
  return [
    `openat(AT_FDCWD</>, ${quoted(temp)}, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0600) = ${fd}<${temp}>`,
    `write(${fd}<${temp}>, ${quoted(content)}, ${Buffer.byteLength(content)}) = ${Buffer.byteLength(content)}`,
    ...(skip.fsync ? [] : [`fsync(${fd}<${temp}>) = 0`]),
    `close(${fd}<${temp}>) = 0`,
    `rename(${quoted(temp)}, ${quoted(join(dir, name))}) = 0`,
    ...(skip.dirSync ? [] : dirSync(dir)),
  ];
}

function dirSync(dir: string) {
  const fd = nextFd++;
  return [
    `openat(AT_FDCWD</>, ${quoted(dir)}, O_RDONLY|O_NOFOLLOW|O_CLOEXEC|O_DIRECTORY) = ${fd}<${dir}>`,
    `fsync(${fd}<${dir}>) = 0`,
    `close(${fd}<${dir}>) = 0`,
  ];
}

/** journal.ts `makeDirectoryDurably` of a new directory: made, then synced into its parent. */
function newDirectory(dir: string, skip: { parentSync?: boolean } = {}) {
  return [`mkdir(${quoted(dir)}, 0700) = 0`, ...(skip.parentSync ? [] : dirSync(join(dir, '..')))];
}

function journal(phase: string, extra: Record<string, unknown> = {}, skip: Parameters<typeof atomicWrite>[3] = {}) {
  const entry = { orderId: ORDER, kind: 'apply', seq: 1, phase, order: { change: { path: MANAGED } }, ...extra };
  // One line, as journal.ts writes an entry whole: later writes may append to it.
  return atomicWrite(ORDER_DIR, 'entry.json', `${JSON.stringify(entry)}\n`, skip);
}

/** A line appended to the order's entry file (journal.ts), its data synced unless `skip.sync`. */
function appended(change: object, skip: { sync?: boolean } = {}) {
  const entry = join(ORDER_DIR, 'entry.json');
  const line = `${JSON.stringify(change)}\n`;
  const fd = nextFd++;
  return [
    `openat(AT_FDCWD</>, ${quoted(entry)}, O_WRONLY|O_APPEND|O_NOFOLLOW|O_CLOEXEC) = ${fd}<${entry}>`,
    `write(${fd}<${entry}>, ${quoted(line)}, ${Buffer.byteLength(line)}) = ${Buffer.byteLength(line)}`,
    ...(skip.sync ? [] : [`fdatasync(${fd}<${entry}>) = 0`]),
    `close(${fd}<${entry}>) = 0`,
  ];
}

/** A WebSocket text frame on `socket` (unmasked: the reader unmasks when a frame says it is masked). */
function frame(call: 'write' | 'read', message: object, socket = AGENT_SOCKET) {
  const payload = Buffer.from(JSON.stringify(message));
  const head = payload.length < 126 ? [0x81, payload.length] : [0x81, 126, payload.length >> 8, payload.length & 0xff];
  const bytes = Buffer.concat([Buffer.from(head), payload]);
  const shown = [...bytes].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
  return `${call}(9<${socket}>, "${shown}", ${bytes.length}) = ${bytes.length}`;
}

const UPGRADE = 'GET /v1/agent/ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n';
const connect = () => [`write(9<${AGENT_SOCKET}>, ${quoted(UPGRADE)}, ${UPGRADE.length}) = ${UPGRADE.length}`];
const progress = (phase: string) => frame('write', { type: 'order.progress', orderId: ORDER, phase });
const FINISHED = '2026-01-01T00:00:01.000Z';

function agentViolations(lines: string[], spec: AgentTraceSpec = SPEC) {
  return checkAgentTrace(parseStraceLog(lines.map((line) => `1 ${line}`).join('\n')), spec);
}

const rulesOf = (report: { violations: { rule: RuleName }[] }) => [...new Set(report.violations.map((v) => v.rule))];

/** A trace as named steps, so a test can break one step of a good story. */
type Story = { step: string; lines: string[] }[];

/** An apply of MANAGED done right: what each test below breaks one step of. */
function goodApply(): Story {
  return [
    { step: 'connect', lines: connect() },
    { step: 'order dir', lines: newDirectory(ORDER_DIR) },
    { step: 'accepted', lines: journal('accepted') },
    { step: 'report accepted', lines: [progress('accepted')] },
    { step: 'snapshot dir', lines: newDirectory(join(ORDER_DIR, 'snapshot')) },
    { step: 'snapshot', lines: atomicWrite(join(ORDER_DIR, 'snapshot'), 'content', 'old\n') },
    // The snapshot is journaled with `applying`: no `snapshotted` entry, so no `snapshotted` report.
    { step: 'applying', lines: journal('applying', { snapshot: { contentFile: 'content' } }) },
    { step: 'report applying', lines: [progress('applying')] },
    { step: 'managed file', lines: atomicWrite(join(ROOT, 'etc'), 'app.conf', 'new\n') },
    // Not journaled: the durable `applying` stands for the phases after it (see the rules).
    { step: 'report applied', lines: [progress('applied')] },
    { step: 'report verifying', lines: [progress('verifying')] },
    { step: 'done', lines: journal('done', { result: { finishedAt: FINISHED } }) },
    {
      step: 'report result',
      lines: [frame('write', { type: 'order.result', orderId: ORDER, outcome: 'healthy', finishedAt: FINISHED })],
    },
    // The ack, which may be lost in a power cut: its directory is not synced.
    { step: 'acked', lines: journal('done', { result: { finishedAt: FINISHED }, acked: true }, { dirSync: true }) },
  ];
}

/**
 * The same apply by an agent that journaled `snapshotted` on its own (before the snapshot went into
 * `applying`): what such an agent left on disk and reported is still judged by the same rules.
 */
function olderAgentApply(): Story {
  return goodApply().flatMap((s) =>
    s.step === 'applying'
      ? [
          { step: 'snapshotted', lines: journal('snapshotted', { snapshot: { contentFile: 'content' } }) },
          { step: 'report snapshotted', lines: [progress('snapshotted')] },
          { step: 'applying', lines: journal('applying', { snapshot: { contentFile: 'content' } }) },
        ]
      : [s],
  );
}

/** The same apply as today's agent journals it: the entry renamed into place once, each later write appended. */
function appendingApply(): Story {
  const later: Record<string, string[]> = {
    applying: appended({ seq: 2, updatedAt: 'b', phase: 'applying', snapshot: { contentFile: 'content' } }),
    done: appended({ seq: 3, updatedAt: 'c', phase: 'done', changed: true, result: { finishedAt: FINISHED } }),
    // The ack, which may be lost in a power cut: not synced.
    acked: appended({ seq: 4, updatedAt: 'd', acked: true }, { sync: true }),
  };
  return goodApply().map((s) => (later[s.step] ? { step: s.step, lines: later[s.step] as string[] } : s));
}

/** The story with `step` replaced by `lines` (none: left out). */
function replaced(story: Story, step: string, lines: string[] = []): Story {
  if (!story.some((s) => s.step === step)) throw new Error(`no step ${step}`);
  return story.map((s) => (s.step === step ? { step, lines } : s));
}

/** The story with `step` moved to just after `after`. */
function moved(story: Story, step: string, after: string): Story {
  const moving = story.find((s) => s.step === step);
  if (!moving || !story.some((s) => s.step === after)) throw new Error(`no step ${step} or ${after}`);
  return story.filter((s) => s !== moving).flatMap((s) => (s.step === after ? [s, moving] : [s]));
}

const linesOf = (story: Story) => story.flatMap((s) => s.lines);

describe('agent rules', () => {
  it('pass an apply made of synced temp files, synced directories and a journal ahead of every step', () => {
    const report = agentViolations(linesOf(goodApply()));
    expect(report.violations).toEqual([]);
    expect(report.checked).toEqual({
      placements: {
        // accepted, applying (with the snapshot), done, acked.
        'journal entry': 4,
        snapshot: 1,
        'managed file': 1,
        credential: 0,
        'refusal counter': 0,
        'applied sequences': 0,
      },
      appends: 0,
      managedChanges: 1,
      reports: { 'order.progress': 4, 'order.result': 1 },
    });
  });

  it('pass an apply whose entry is renamed into place once and appended to after, each line synced but the ack', () => {
    const report = agentViolations(linesOf(appendingApply()));
    expect(report.violations).toEqual([]);
    expect(report.checked).toMatchObject({
      placements: { 'journal entry': 1, snapshot: 1, 'managed file': 1 },
      appends: 3,
      managedChanges: 1,
      reports: { 'order.progress': 4, 'order.result': 1 },
    });
  });

  it('appended-synced: a line appended and never synced', () => {
    const story = replaced(
      appendingApply(),
      'done',
      appended({ seq: 3, updatedAt: 'c', phase: 'done', result: { finishedAt: FINISHED } }, { sync: true }),
    );
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toEqual(['appended-synced', 'journal-before-report']);
    expect(report.violations[0]?.message).toMatch(/journal entry .*entry\.json: a line was appended .* never synced/);
  });

  it('journal-before-change: a managed file changed before the appended `applying` line was synced', () => {
    const entry = join(ORDER_DIR, 'entry.json');
    const lines = appended({ seq: 2, updatedAt: 'b', phase: 'applying', snapshot: { contentFile: 'content' } });
    const sync = lines.find((line) => line.startsWith('fdatasync')) as string;
    let story = replaced(
      appendingApply(),
      'applying',
      lines.filter((line) => line !== sync && !line.startsWith('close')),
    );
    story = moved(story, 'managed file', 'applying');
    story = story.flatMap((s) =>
      s.step === 'managed file' ? [s, { step: 'late sync', lines: [sync, `close(${nextFd - 1}<${entry}>) = 0`] }] : [s],
    );
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toEqual(['journal-before-change']);
    expect(report.violations[0]?.message).toMatch(/'applying' entry of line \d+ was not durable yet/);
  });

  it('appended-synced: a line appended to an entry file that does not end with a whole line', () => {
    const entry = { orderId: ORDER, kind: 'apply', seq: 1, phase: 'accepted', order: { change: { path: MANAGED } } };
    // The entry as an agent before appends wrote it: one JSON text, no newline. A line appended to it
    // joins its first line, and the agent could not read the file back.
    const story = replaced(appendingApply(), 'accepted', atomicWrite(ORDER_DIR, 'entry.json', JSON.stringify(entry)));
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toEqual(['appended-synced']);
    expect(report.violations[0]?.message).toMatch(/appended after bytes that do not end with a whole line/);
  });

  it('appended-synced: a line appended to an entry whose rename was not durable (an ack renamed without its directory’s sync)', () => {
    // A bake failure after the ack: `reverting` appended and synced into the file the unsynced rename put
    // in place, reported, and the managed file restored. A power cut could bring back the entry before
    // the ack, without `reverting`, after the file was restored.
    const story: Story = [
      ...goodApply(),
      { step: 'reverting', lines: appended({ seq: 5, updatedAt: 'e', phase: 'reverting' }) },
      { step: 'report reverting', lines: [progress('reverting')] },
      { step: 'restore', lines: atomicWrite(join(ROOT, 'etc'), 'app.conf', 'old\n') },
    ];
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toEqual(['appended-synced', 'journal-before-change', 'journal-before-report']);
    expect(report.violations[0]?.message).toMatch(/whose rename \(line \d+\) was not durable before it/);
  });

  it('appended-synced: a line appended to an entry file put in place before the trace (a restarted agent)', () => {
    const story = appendingApply().filter((s) => !['order dir', 'accepted', 'report accepted'].includes(s.step));
    const report = agentViolations(linesOf(story), {
      ...SPEC,
      journalBefore: [{ orderId: ORDER, kind: 'apply', phase: 'accepted', changePath: MANAGED }],
    });
    expect(rulesOf(report)).toContain('appended-synced');
    expect(report.violations[0]?.message).toMatch(/to an entry file this trace did not put in place/);
  });

  it('trace-readable: a line appended that is not a change (the whole entry again)', () => {
    const whole = { orderId: ORDER, kind: 'apply', seq: 2, phase: 'applying', order: { change: { path: MANAGED } } };
    const story = replaced(appendingApply(), 'applying', appended({ ...whole, snapshot: { contentFile: 'content' } }));
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toContain('trace-readable');
    expect(formatViolations(report.violations)).toMatch(/cannot read the journal entry/);
  });

  it('not-written-in-place: an entry opened to append, then truncated and written over', () => {
    const entry = join(ORDER_DIR, 'entry.json');
    const whole = `${JSON.stringify({ orderId: ORDER, kind: 'apply', seq: 2, phase: 'applying', order: { change: { path: MANAGED } }, snapshot: { contentFile: 'content' } })}\n`;
    const story = replaced(appendingApply(), 'applying', [
      `openat(AT_FDCWD</>, ${quoted(entry)}, O_WRONLY|O_APPEND|O_NOFOLLOW|O_CLOEXEC) = 77<${entry}>`,
      `ftruncate(77<${entry}>, 0) = 0`,
      `write(77<${entry}>, ${quoted(whole)}, ${Buffer.byteLength(whole)}) = ${Buffer.byteLength(whole)}`,
      `fdatasync(77<${entry}>) = 0`,
      `close(77<${entry}>) = 0`,
    ]);
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toContain('not-written-in-place');
    expect(formatViolations(report.violations)).toMatch(/entry\.json was truncated/);
  });

  it('not-written-in-place: an entry opened to append may not be truncated', () => {
    const entry = join(ORDER_DIR, 'entry.json');
    const report = agentViolations([
      ...newDirectory(ORDER_DIR),
      ...journal('accepted'),
      `openat(AT_FDCWD</>, ${quoted(entry)}, O_WRONLY|O_APPEND|O_TRUNC|O_CLOEXEC) = 31<${entry}>`,
    ]);
    expect(rulesOf(report)).toEqual(['not-written-in-place']);
  });

  it('synced-before-rename: a temp file renamed over its target before it was fsync’d', () => {
    const story = replaced(
      goodApply(),
      'applying',
      journal('applying', { snapshot: { contentFile: 'content' } }, { fsync: true }),
    );
    const report = agentViolations(linesOf(story));
    expect(report.violations[0]).toMatchObject({ rule: 'synced-before-rename' });
    expect(report.violations[0]?.message).toMatch(/journal entry .*entry\.json: temp file .* was not fsync'd/);
  });

  it('not-written-in-place: an entry opened for writing where it lies', () => {
    const entry = join(ORDER_DIR, 'entry.json');
    const report = agentViolations([
      ...newDirectory(ORDER_DIR),
      `openat(AT_FDCWD</>, ${quoted(entry)}, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 30<${entry}>`,
      `write(30<${entry}>, "{}", 2) = 2`,
      `fsync(30<${entry}>) = 0`,
    ]);
    expect(rulesOf(report)).toEqual(['not-written-in-place']);
  });

  it('directory-synced: the directory never synced', () => {
    const story = replaced(
      goodApply(),
      'managed file',
      atomicWrite(join(ROOT, 'etc'), 'app.conf', 'new\n', { dirSync: true }),
    );
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toEqual(['directory-synced']);
    expect(report.violations[0]?.message).toMatch(
      /managed file .*app\.conf was renamed into place but .* never fsync'd/,
    );
  });

  it('directory-synced: the directory synced only after the step was reported', () => {
    let story = replaced(
      goodApply(),
      'applying',
      journal('applying', { snapshot: { contentFile: 'content' } }, { dirSync: true }),
    );
    story = [...story, { step: 'late sync', lines: dirSync(ORDER_DIR) }];
    story = moved(story, 'late sync', 'report applying');
    const report = agentViolations(linesOf(story));
    expect(report.violations[0]?.rule).toBe('directory-synced');
    expect(report.violations[0]?.message).toMatch(/fsync'd only at line \d+, after the 'order.progress' message/);
    // What follows from it: the step was reported before its entry was durable.
    expect(rulesOf(report)).toEqual(['directory-synced', 'journal-before-report']);
  });

  it('new-directory-synced: an order directory whose parent was never synced', () => {
    const story = replaced(goodApply(), 'order dir', newDirectory(ORDER_DIR, { parentSync: true }));
    const report = agentViolations(linesOf(story));
    expect(report.violations[0]).toMatchObject({ rule: 'new-directory-synced' });
    expect(report.violations[0]?.message).toMatch(
      /ord_1 was made to hold journal entry .*, but \S+\/orders was not fsync'd/,
    );
    expect(report.violations.filter((v) => v.rule === 'new-directory-synced')).toHaveLength(1);
  });

  it('pass an apply by an older agent, which journaled and reported snapshotted on its own', () => {
    const report = agentViolations(linesOf(olderAgentApply()));
    expect(report.violations).toEqual([]);
    expect(report.checked.placements.snapshot).toBe(1);
  });

  it('journal-before-change: the managed file replaced while the journal still says accepted', () => {
    // Without its `applying` the apply's later progress reports are unbacked too: they go as well.
    const story = ['applying', 'report applying', 'report applied', 'report verifying'].reduce(
      (told, step) => replaced(told, step),
      goodApply(),
    );
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toEqual(['journal-before-change']);
    expect(report.violations[0]?.message).toMatch(/durably said apply order ord_1 is 'accepted'/);
  });

  it('journal-before-change, after a restart: the journal on disk may announce the restore', () => {
    const restore = [`unlink(${quoted(join(ROOT, MANAGED))}) = 0`, ...dirSync(join(ROOT, 'etc'))];
    const onDisk = (phase: string) => ({
      ...SPEC,
      journalBefore: [{ orderId: ORDER, kind: 'apply' as const, phase, changePath: MANAGED }],
    });
    expect(agentViolations(restore, onDisk('applied')).violations).toEqual([]);
    expect(rulesOf(agentViolations(restore, onDisk('snapshotted')))).toEqual(['journal-before-change']);
    expect(rulesOf(agentViolations(restore))).toEqual(['journal-before-change']);
  });

  it('snapshot-before-journal: the entry that first names the snapshot written before the snapshot', () => {
    // This agent's `applying`, and an older agent's `snapshotted`.
    for (const [story, entry] of [
      [goodApply(), 'applying'],
      [olderAgentApply(), 'snapshotted'],
    ] as const) {
      const report = agentViolations(linesOf(moved(story, 'snapshot', entry)));
      expect(rulesOf(report)).toEqual(['snapshot-before-journal']);
      expect(report.violations[0]?.message).toMatch(
        new RegExp(`the '${entry}' entry of ord_1 was written before its snapshot .*content was durable`),
      );
    }
  });

  it('sequence-before-journal: a signed order journaled before its sequence was durably recorded', () => {
    const signed = { order: { change: { path: MANAGED }, signed: { statement: { sequence: 7 } } } };
    const recorded = (sequence: number) =>
      atomicWrite(
        DATA,
        'applied-sequences.json',
        JSON.stringify({ [`file:${MANAGED}`]: { sequence, statementDigest: 'd' } }),
      );
    const story = replaced(goodApply(), 'accepted', journal('accepted', signed));
    const kept = agentViolations(linesOf([{ step: 'sequence', lines: recorded(7) }, ...story]));
    expect(kept.violations).toEqual([]);
    expect(kept.checked.placements['applied sequences']).toBe(1);

    expect(rulesOf(agentViolations(linesOf(story)))).toEqual(['sequence-before-journal']);
    const stale = agentViolations(linesOf([{ step: 'sequence', lines: recorded(6) }, ...story]));
    expect(rulesOf(stale)).toEqual(['sequence-before-journal']);
    const late = agentViolations(
      linesOf(moved([{ step: 'sequence', lines: recorded(7) }, ...story], 'sequence', 'accepted')),
    );
    expect(rulesOf(late)).toEqual(['sequence-before-journal']);
  });

  it('snapshot-before-journal: a package snapshot copied in place must be synced, file and directory', () => {
    const deb = join(ORDER_DIR, 'snapshot', 'app_1.0_all.deb');
    const durableCopy = (skip: { fsync?: boolean } = {}) => [
      `openat(AT_FDCWD</>, ${quoted(deb)}, O_WRONLY|O_CREAT|O_CLOEXEC, 0644) = 40<${deb}>`,
      `copy_file_range(39</var/cache/app_1.0_all.deb>, NULL, 40<${deb}>, NULL, 9223372035781033984, 0) = 4096`,
      `close(40<${deb}>) = 0`,
      `openat(AT_FDCWD</>, ${quoted(deb)}, O_RDONLY|O_CLOEXEC) = 41<${deb}>`,
      ...(skip.fsync ? [] : [`fsync(41<${deb}>) = 0`]),
      `close(41<${deb}>) = 0`,
      ...dirSync(join(ORDER_DIR, 'snapshot')),
    ];
    const withDeb = (lines: string[]) =>
      linesOf(
        replaced(
          replaced(goodApply(), 'snapshot', lines),
          'applying',
          journal('applying', { snapshot: { kind: 'package', deb: 'app_1.0_all.deb' } }),
        ),
      );
    const kept = agentViolations(withDeb(durableCopy()));
    expect(kept.violations).toEqual([]);
    expect(kept.checked.placements.snapshot).toBe(1);
    expect(rulesOf(agentViolations(withDeb(durableCopy({ fsync: true }))))).toEqual(['snapshot-before-journal']);
  });

  it('journal-before-report: progress reported before its entry was written', () => {
    const story = moved(olderAgentApply(), 'snapshotted', 'report snapshotted');
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toContain('journal-before-report');
    expect(report.violations.find((v) => v.rule === 'journal-before-report')?.message).toMatch(
      /reports ord_1 'snapshotted', but no such journal entry was durable/,
    );
  });

  it('journal-before-report: snapshotted reported while the journal says accepted (the snapshot not yet journaled)', () => {
    const story = moved(goodApply(), 'report accepted', 'snapshot');
    const told = story.flatMap((s) =>
      s.step === 'report accepted' ? [s, { step: 'report snapshotted', lines: [progress('snapshotted')] }] : [s],
    );
    const report = agentViolations(linesOf(told));
    expect(rulesOf(report)).toEqual(['journal-before-report']);
    expect(report.violations[0]?.message).toMatch(/reports ord_1 'snapshotted', but no such journal entry was durable/);
  });

  it('journal-before-report: applied and verifying are backed by a durable applying, and by nothing less', () => {
    // Reported while the journal still says accepted: nothing durable stands for them.
    const early = moved(moved(goodApply(), 'report applied', 'snapshot'), 'report verifying', 'report applied');
    const report = agentViolations(linesOf(early));
    const unbacked = report.violations.filter((v) => v.rule === 'journal-before-report').map((v) => v.message);
    expect(unbacked).toEqual([
      expect.stringMatching(/reports ord_1 'applying', but/),
      expect.stringMatching(/reports ord_1 'applying', but/),
    ]);
  });

  it('directory-synced: only the ack may leave its directory unsynced', () => {
    const story = replaced(
      goodApply(),
      'done',
      journal('done', { result: { finishedAt: FINISHED } }, { dirSync: true }),
    );
    const report = agentViolations(linesOf(story));
    expect(rulesOf(report)).toEqual(['directory-synced', 'journal-before-report']);
    expect(report.violations[0]?.message).toMatch(
      /journal entry .*entry\.json was renamed into place but .* never fsync'd/,
    );
  });

  it('journal-before-report: a result with no entry at all', () => {
    const result = frame('write', { type: 'order.result', orderId: 'ord_2', outcome: 'failed', finishedAt: FINISHED });
    expect(rulesOf(agentViolations([...connect(), result]))).toEqual(['journal-before-report']);
  });

  it('journal-before-report: a refused order is backed by refusals.json, durably counting it', () => {
    const refusal = frame('write', { type: 'order.result', orderId: 'ord_2', outcome: 'failed', finishedAt: FINISHED });
    const counted = () =>
      atomicWrite(DATA, 'refusals.json', JSON.stringify({ byCode: { policy_denied: 1 }, lastAt: FINISHED }));
    const report = agentViolations([...connect(), ...counted(), refusal]);
    expect(report.violations).toEqual([]);
    expect(report.checked.placements['refusal counter']).toBe(1);
    expect(rulesOf(agentViolations([...connect(), refusal, ...counted()]))).toEqual(['journal-before-report']);
  });
});

describe('coordinator rules', () => {
  const WAL = '/var/lib/coordinator/fleetpatch.db-wal';
  const SOCKET = 'TCP:[127.0.0.1:4000->127.0.0.1:40000]';
  const SWITCHED = 'HTTP/1.1 101 Switching Protocols\r\n\r\n';
  const handshake = [
    `read(9<${SOCKET}>, ${quoted(UPGRADE)}, 65536) = ${UPGRADE.length}`,
    `write(9<${SOCKET}>, ${quoted(SWITCHED)}, ${SWITCHED.length}) = ${SWITCHED.length}`,
  ];
  const walWrite = (text: string) => `pwrite64(7<${WAL}>, ${quoted(`page...${text}...`)}, 4096, 8192) = 4096`;
  const walSync = `fdatasync(7<${WAL}>) = 0`;
  const apply = frame('write', { type: 'order.apply', orderId: ORDER }, SOCKET);
  const result = frame('read', { type: 'order.result', orderId: ORDER, finishedAt: FINISHED }, SOCKET);
  const ack = frame('write', { type: 'order.ack', orderId: ORDER, finishedAt: FINISHED }, SOCKET);
  const check = (lines: string[]) =>
    checkCoordinatorTrace(parseStraceLog(lines.map((line) => `1 ${line}`).join('\n')), {
      databaseFile: '/var/lib/coordinator/fleetpatch.db',
    });

  it('committed-before-sent: the order goes out after a WAL write naming it and a WAL sync', () => {
    const kept = check([...handshake, walWrite(ORDER), walSync, apply]);
    expect(kept.violations).toEqual([]);
    expect(kept.checked.sent).toEqual({ 'order.apply': 1 });

    expect(rulesOf(check([...handshake, apply, walWrite(ORDER), walSync]))).toEqual(['committed-before-sent']);
    expect(rulesOf(check([...handshake, walWrite(ORDER), apply, walSync]))).toEqual(['committed-before-sent']);
    expect(rulesOf(check([...handshake, walWrite('ord_other'), walSync, apply]))).toEqual(['committed-before-sent']);
  });

  it('committed-before-ack: the ack goes out after the result it names was received and committed', () => {
    const dispatched = [...handshake, walWrite(ORDER), walSync, apply];
    const kept = check([...dispatched, result, walWrite(ORDER), walSync, ack]);
    expect(kept.violations).toEqual([]);
    expect(kept.checked.acks).toBe(1);

    // The commit of the dispatch, long before the result, does not count for it.
    const early = check([...dispatched, result, ack, walWrite(ORDER), walSync]);
    expect(rulesOf(early)).toEqual(['committed-before-ack']);
    expect(early.violations[0]?.message).toMatch(/sent before the result received at line \d+ was committed/);
    expect(check([...dispatched, ack]).violations[0]?.message).toMatch(/never received/);
  });
});
