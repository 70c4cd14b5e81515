/**
 * Reads a log written by `strace -f -yy -o FILE` (see traced-process.ts for the exact options) into
 * the events the durability rules look at: opens, writes and reads with their bytes, fsyncs,
 * renames, unlinks, mkdirs and closes, each with the path or socket its fd names (`-y`).
 *
 * Order is the order of the log's lines. A call split across threads (`<unfinished ...>` then
 * `<... resumed>`) becomes one event that started at its first line and ended at its last: "A
 * happened before B" is `a.endLine < b.startLine` — strace printed A's return before B entered the
 * kernel, so A's work was done before B's began. Node does its file I/O on libuv's thread pool, so
 * the thread (pid column) says nothing about causality; fds and paths do.
 */
import { isAbsolute, join } from 'node:path';

/** A file descriptor as `-y`/`-yy` print it: `18</tmp/x>`, `21<TCP:[127.0.0.1:1->127.0.0.1:2]>`. */
export interface FdRef {
  fd: number;
  /** The path, or `TCP:[…]`, `pipe:[…]`, … for other files; absent without `-y`. */
  target?: string;
}

interface EventBase {
  /** The syscall's name as strace printed it. */
  syscall: string;
  pid: number;
  /** 1-based line where the call entered (its only line unless it was interrupted). */
  startLine: number;
  /** 1-based line where the call returned. */
  endLine: number;
  /** Whether it succeeded (its return value is not -1). */
  ok: boolean;
  /** `ENOENT` and the like, for a failed call. */
  errno?: string;
}

/** The bytes a read or write moved: the first `return value` bytes of the buffer strace shows. */
interface Transfer {
  data: Buffer;
  /** False when strace cut the buffer (`-s`) before the last byte that moved. */
  complete: boolean;
}

export type StraceEvent =
  | (EventBase & { kind: 'open'; path: string; flags: string[]; fd?: FdRef })
  | (EventBase & { kind: 'write'; fd: FdRef } & Transfer)
  | (EventBase & { kind: 'read'; fd: FdRef } & Transfer)
  | (EventBase & { kind: 'sync'; fd: FdRef })
  | (EventBase & { kind: 'rename'; from: string; to: string })
  | (EventBase & { kind: 'unlink'; path: string })
  | (EventBase & { kind: 'mkdir'; path: string })
  | (EventBase & { kind: 'truncate'; path: string })
  | (EventBase & { kind: 'close'; fd: FdRef });

export type StraceEventKind = StraceEvent['kind'];
export type EventOf<K extends StraceEventKind> = Extract<StraceEvent, { kind: K }>;

const WRITES = new Set(['write', 'pwrite64', 'writev', 'pwritev', 'pwritev2', 'sendto', 'sendmsg']);
/** The calls that read: only a process whose received messages a rule looks at needs them traced. */
export const READS = new Set(['read', 'readv', 'recvfrom', 'recvmsg']);
const SYNCS = new Set(['fsync', 'fdatasync']);
/** Copies in the kernel (Node's copyFile): the bytes never pass through the process, so none are shown. */
const COPIES = new Set(['copy_file_range', 'sendfile']);

/** The syscalls `parseStraceLog` understands; `-e trace=` should name exactly these. */
export const TRACED_SYSCALLS = [
  'open',
  'openat',
  'creat',
  'mkdir',
  'mkdirat',
  'rename',
  'renameat',
  'renameat2',
  'unlink',
  'unlinkat',
  'close',
  'truncate',
  'ftruncate',
  ...SYNCS,
  ...WRITES,
  ...COPIES,
  ...READS,
] as const;

/** `-y` appends this to a path whose file was unlinked while the fd stayed open (6.1: after the `>`). */
const DELETED_SUFFIX = ' (deleted)';

/** Thrown for a line this parser cannot read: a silent skip could hide the call a rule needs. */
export class StraceParseError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`strace log line ${line}: ${message}`);
  }
}

const LINE_HEAD = /^(?:(\d+)\s+)?(?:(\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s+)?(.*)$/;

/** Parses a whole log. Calls this parser does not model (mmap, futex, …) are left out. */
export function parseStraceLog(text: string): StraceEvent[] {
  const events: StraceEvent[] = [];
  /** Calls a thread entered and has not returned from yet: `<unfinished ...>`. */
  const pending = new Map<number, { syscall: string; args: string; startLine: number }>();
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const lineNo = index + 1;
    const raw = lines[index]?.trimEnd() ?? '';
    if (raw === '') continue;
    const head = LINE_HEAD.exec(raw);
    const pid = Number(head?.[1] ?? 0);
    const body = head?.[3] ?? raw;
    if (body.startsWith('+++') || body.startsWith('---') || body.startsWith('strace:')) continue;

    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(body);
    if (resumed) {
      const [, syscall = '', rest = ''] = resumed;
      const started = pending.get(pid);
      pending.delete(pid);
      // A thread resumed a call whose entry this log does not have (strace attached mid-call): skip.
      if (!started || started.syscall !== syscall) continue;
      const event = decodeCall(syscall, `${started.args}${rest}`, pid, started.startLine, lineNo);
      if (event) events.push(event);
      continue;
    }
    const call = /^(\w+)\((.*)$/.exec(body);
    if (!call) continue; // `<detached ...>`, `????(` and other noise carry nothing the rules use
    const [, syscall = '', rest = ''] = call;
    if (rest.endsWith('<unfinished ...>')) {
      pending.set(pid, { syscall, args: rest.slice(0, -'<unfinished ...>'.length), startLine: lineNo });
      continue;
    }
    const event = decodeCall(syscall, rest, pid, lineNo, lineNo);
    if (event) events.push(event);
  }
  return events;
}

/** `args` is everything after the opening parenthesis: `18</x>, "abc", 3) = 3`. */
function decodeCall(
  syscall: string,
  argsAndResult: string,
  pid: number,
  startLine: number,
  endLine: number,
): StraceEvent | undefined {
  if (!isModelled(syscall)) return undefined;
  const scanner = new ArgScanner(argsAndResult, endLine);
  const args = scanner.args();
  const result = parseResult(scanner.rest(), endLine);
  if (result === undefined) return undefined; // `= ?`: the process died inside the call
  const base: EventBase = {
    syscall,
    pid,
    startLine,
    endLine,
    ok: result.ok,
    ...(result.errno ? { errno: result.errno } : {}),
  };
  const arg = (i: number): Value => {
    const value = args[i];
    if (value === undefined) throw new StraceParseError(`${syscall} has no argument ${i + 1}`, endLine);
    return value;
  };
  switch (syscall) {
    case 'open':
    case 'creat':
      return {
        ...base,
        kind: 'open',
        path: asPath(arg(0), undefined, endLine),
        flags: syscall === 'creat' ? ['O_CREAT', 'O_WRONLY', 'O_TRUNC'] : asFlags(arg(1)),
        ...(result.fd ? { fd: result.fd } : {}),
      };
    case 'openat':
      return {
        ...base,
        kind: 'open',
        path: asPath(arg(1), asFd(arg(0), endLine), endLine),
        flags: asFlags(arg(2)),
        ...(result.fd ? { fd: result.fd } : {}),
      };
    case 'mkdir':
      return { ...base, kind: 'mkdir', path: asPath(arg(0), undefined, endLine) };
    case 'mkdirat':
      return { ...base, kind: 'mkdir', path: asPath(arg(1), asFd(arg(0), endLine), endLine) };
    case 'unlink':
      return { ...base, kind: 'unlink', path: asPath(arg(0), undefined, endLine) };
    case 'unlinkat': {
      // AT_REMOVEDIR makes it an rmdir: not a file's removal.
      if (asFlags(arg(2)).includes('AT_REMOVEDIR')) return undefined;
      return { ...base, kind: 'unlink', path: asPath(arg(1), asFd(arg(0), endLine), endLine) };
    }
    case 'rename':
      return {
        ...base,
        kind: 'rename',
        from: asPath(arg(0), undefined, endLine),
        to: asPath(arg(1), undefined, endLine),
      };
    case 'renameat':
    case 'renameat2':
      return {
        ...base,
        kind: 'rename',
        from: asPath(arg(1), asFd(arg(0), endLine), endLine),
        to: asPath(arg(3), asFd(arg(2), endLine), endLine),
      };
    case 'close':
      return { ...base, kind: 'close', fd: asFd(arg(0), endLine) };
    case 'truncate':
      return { ...base, kind: 'truncate', path: asPath(arg(0), undefined, endLine) };
    case 'ftruncate': {
      const fd = asFd(arg(0), endLine);
      if (fd.target === undefined)
        throw new StraceParseError('ftruncate of a descriptor without its path (-y)', endLine);
      return { ...base, kind: 'truncate', path: fd.target };
    }
    default:
      break;
  }
  if (SYNCS.has(syscall)) return { ...base, kind: 'sync', fd: asFd(arg(0), endLine) };
  if (COPIES.has(syscall)) {
    // A write to the destination whose bytes the log cannot show: copy_file_range(in, off, OUT, …),
    // sendfile(OUT, in, …).
    const out = asFd(arg(syscall === 'sendfile' ? 0 : 2), endLine);
    return { ...base, kind: 'write', fd: out, data: Buffer.alloc(0), complete: !result.ok || result.value === 0 };
  }
  // Reads and writes: the bytes that moved are the first `result` bytes of what strace shows (a
  // failed call shows only the buffer's address).
  const moved = result.ok ? result.value : 0;
  const shown = moved > 0 ? bytesOf(syscall, args) : Buffer.alloc(0);
  const data = shown?.subarray(0, moved) ?? Buffer.alloc(0);
  return {
    ...base,
    kind: WRITES.has(syscall) ? 'write' : 'read',
    fd: asFd(arg(0), endLine),
    data: Buffer.from(data),
    // Cut at `-s`: the bytes past the cut are unknown, and so is whatever a rule would read in them.
    complete: data.length === moved,
  };
}

function isModelled(syscall: string): boolean {
  return (TRACED_SYSCALLS as readonly string[]).includes(syscall);
}

/**
 * The bytes a read or write shows: its buffer, or its iovec array (`writev`, `sendmsg`). Undefined
 * when strace decoded the buffer as a structure (a netlink message) rather than printing its bytes.
 */
function bytesOf(syscall: string, args: Value[]): Buffer | undefined {
  let vector: Value | undefined;
  if (syscall === 'writev' || syscall === 'pwritev' || syscall === 'pwritev2' || syscall === 'readv') vector = args[1];
  else if (syscall === 'sendmsg' || syscall === 'recvmsg') {
    const msg = args[1];
    vector = msg?.kind === 'struct' ? msg.fields.get('msg_iov') : undefined;
  } else {
    const buffer = args[1];
    return buffer?.kind === 'string' ? buffer.bytes : undefined;
  }
  if (vector?.kind !== 'array') return undefined;
  const parts: Buffer[] = [];
  for (const item of vector.items) {
    const base = item.kind === 'struct' ? item.fields.get('iov_base') : undefined;
    if (base?.kind !== 'string') continue;
    // A cut iovec leaves a gap: stop there, so what follows is not taken for the bytes after the cut.
    parts.push(base.bytes);
    if (base.truncated) break;
  }
  return Buffer.concat(parts);
}

function parseResult(
  text: string,
  line: number,
): { ok: boolean; value: number; errno?: string; fd?: FdRef } | undefined {
  const match = /^\)\s*=\s*(.*)$/.exec(text.trim());
  if (!match) throw new StraceParseError(`no return value in "${text}"`, line);
  const value = (match[1] ?? '').trim();
  if (value.startsWith('?')) return undefined;
  const failed = /^-1 (E[A-Z0-9]+)/.exec(value);
  if (failed) return { ok: false, value: -1, errno: failed[1] as string };
  const number = /^(-?\d+|0x[0-9a-f]+)(?:<(.*)>(?:\(deleted\))?)?/.exec(value);
  if (!number) throw new StraceParseError(`cannot read return value "${value}"`, line);
  const n = Number(number[1]);
  return {
    ok: true,
    value: n,
    ...(number[2] !== undefined ? { fd: { fd: n, target: annotationTarget(number[2], line) } } : {}),
  };
}

// ---- argument values ---------------------------------------------------------------------------

type Value =
  | { kind: 'string'; bytes: Buffer; truncated: boolean }
  | { kind: 'array'; items: Value[] }
  | { kind: 'struct'; fields: Map<string, Value> }
  | { kind: 'atom'; text: string };

function asFd(value: Value, line: number): FdRef {
  if (value.kind !== 'atom') throw new StraceParseError('expected an fd', line);
  const match = /^(-?\d+|AT_FDCWD)(?:<(.*)>(?:\(deleted\))?)?$/.exec(value.text);
  if (!match) throw new StraceParseError(`expected an fd, got "${value.text}"`, line);
  const fd = match[1] === 'AT_FDCWD' ? -100 : Number(match[1]);
  return match[2] === undefined ? { fd } : { fd, target: annotationTarget(match[2], line) };
}

/**
 * What `-y` prints between `<` and `>`: a path (escaped like any string under `-x`/`-xx`, a device's
 * `<char 1:3>` after it, ` (deleted)` once unlinked), or a socket such as `TCP:[1.2.3.4:5->6.7.8.9:10]`.
 */
function annotationTarget(text: string, line: number): string {
  const withoutDevice = text.replace(/<(?:char|block) \d+:\d+>$/, '');
  const decoded = unescapeC(withoutDevice, line).toString('utf8');
  return decoded.endsWith(DELETED_SUFFIX) ? decoded.slice(0, -DELETED_SUFFIX.length) : decoded;
}

/** Hex digit values by char code; -1 for anything else. */
const HEX_VALUE = Int8Array.from({ length: 128 }, (_, code) => {
  const digit = Number.parseInt(String.fromCharCode(code), 16);
  return Number.isNaN(digit) ? -1 : digit;
});
const BACKSLASH = 92;
const LOWER_X = 120;

/** The common case under -xx, and the bulk of a log: every byte as `\xHH`. Undefined for any other text. */
function decodeAllHex(text: string): Buffer | undefined {
  if (text.length % 4 !== 0) return undefined;
  const bytes = Buffer.allocUnsafe(text.length / 4);
  for (let i = 0; i < text.length; i += 4) {
    if (text.charCodeAt(i) !== BACKSLASH || text.charCodeAt(i + 1) !== LOWER_X) return undefined;
    const high = HEX_VALUE[text.charCodeAt(i + 2)] ?? -1;
    const low = HEX_VALUE[text.charCodeAt(i + 3)] ?? -1;
    if (high < 0 || low < 0) return undefined;
    bytes[i / 4] = high * 16 + low;
  }
  return bytes;
}
const SIMPLE_ESCAPES: Record<string, number> = { n: 10, t: 9, r: 13, v: 11, f: 12, '"': 34, '\\': 92 };

/** The bytes of a C-escaped text as strace prints it: `\xHH` (`-x`), octal `\NNN`, `\n`, `\"`… */
function unescapeC(text: string, line: number): Buffer {
  const hex = decodeAllHex(text);
  if (hex) return hex;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; ) {
    const c = text[i++] as string;
    if (c !== '\\') {
      for (const byte of Buffer.from(c, 'utf8')) bytes.push(byte);
      continue;
    }
    const e = text[i++];
    if (e === 'x') {
      bytes.push(Number.parseInt(text.slice(i, i + 2), 16));
      i += 2;
    } else if (e !== undefined && /[0-7]/.test(e)) {
      let digits = e;
      while (digits.length < 3 && /[0-7]/.test(text[i] ?? '')) digits += text[i++];
      bytes.push(Number.parseInt(digits, 8));
    } else {
      const byte = e === undefined ? undefined : SIMPLE_ESCAPES[e];
      if (byte === undefined) throw new StraceParseError(`unknown escape \\${e} in "${text.slice(0, 100)}"`, line);
      bytes.push(byte);
    }
  }
  return Buffer.from(bytes);
}

/** A path argument, made absolute against the directory fd it is relative to when `-y` named it. */
function asPath(value: Value, dirFd: FdRef | undefined, line: number): string {
  if (value.kind !== 'string') throw new StraceParseError('expected a path string', line);
  const path = value.bytes.toString('utf8');
  if (isAbsolute(path) || dirFd?.target === undefined) return path;
  return join(dirFd.target, path);
}

function asFlags(value: Value): string[] {
  return value.kind === 'atom' ? value.text.split('|').map((flag) => flag.trim()) : [];
}

/**
 * Reads the comma-separated arguments of one call up to its closing parenthesis: quoted strings
 * (C escapes, `\xHH` under `-x`/`-xx`, a trailing `...` when cut at `-s`), `[…]` arrays, `{k=v}`
 * structs, and atoms such as `O_WRONLY|O_CREAT`, `0666` or `18</tmp/x>`.
 */
class ArgScanner {
  private pos = 0;

  constructor(
    private readonly text: string,
    private readonly line: number,
  ) {}

  args(): Value[] {
    const values: Value[] = [];
    this.skipSpaces();
    if (this.peek() === ')') return values;
    for (;;) {
      values.push(this.value());
      this.skipSpaces();
      // `[1024] => [2048]`: an argument the kernel changed, before and after; the after is kept.
      if (this.text.startsWith('=>', this.pos)) {
        this.pos += 2;
        values[values.length - 1] = this.value();
        this.skipSpaces();
      }
      const next = this.peek();
      if (next === ',') {
        this.pos++;
        continue;
      }
      if (next === ')') return values;
      throw this.error(`expected "," or ")"`);
    }
  }

  /** What follows the arguments: `) = 3`. */
  rest(): string {
    return this.text.slice(this.pos);
  }

  private value(): Value {
    this.skipSpaces();
    const c = this.peek();
    if (c === '"') return this.string();
    if (c === '[') return this.array();
    if (c === '{') return this.struct();
    return this.atom();
  }

  private string(): Value {
    const open = this.pos;
    // The closing quote is the first one not escaped (preceded by an even run of backslashes).
    let close = this.text.indexOf('"', open + 1);
    for (;;) {
      if (close < 0) throw this.error('unterminated string');
      let backslashes = 0;
      while (this.text[close - 1 - backslashes] === '\\') backslashes++;
      if (backslashes % 2 === 0) break;
      close = this.text.indexOf('"', close + 1);
    }
    const bytes = unescapeC(this.text.slice(open + 1, close), this.line);
    this.pos = close + 1;
    const truncated = this.text.startsWith('...', this.pos);
    if (truncated) this.pos += 3;
    return { kind: 'string', bytes, truncated };
  }

  private array(): Value {
    this.pos++;
    const items: Value[] = [];
    for (;;) {
      this.skipSpaces();
      if (this.peek() === ']') {
        this.pos++;
        return { kind: 'array', items };
      }
      // `...`: strace left out the rest of a long array (never iovecs under strace-tracer.ts's -s).
      if (this.text.startsWith('...', this.pos)) this.pos += 3;
      else items.push(this.value());
      this.skipSpaces();
      if (this.peek() === ',') this.pos++;
    }
  }

  private struct(): Value {
    this.pos++;
    const fields = new Map<string, Value>();
    for (;;) {
      this.skipSpaces();
      if (this.peek() === '}') {
        this.pos++;
        return { kind: 'struct', fields };
      }
      if (this.text.startsWith('...', this.pos)) this.pos += 3;
      else {
        const key = /^(\w+)=/.exec(this.text.slice(this.pos));
        if (!key) {
          this.value(); // an unnamed member: not one the rules read
        } else {
          this.pos += key[0].length;
          fields.set(key[1] as string, this.value());
        }
      }
      this.skipSpaces();
      if (this.peek() === ',') this.pos++;
    }
  }

  /**
   * Up to the next top-level `,` `)` `]` `}`. A `<…>` fd annotation may hold any of them, and so may
   * what strace writes for decoded structures: `if_nametoindex("lo")`, `/* IFLA_??? *\/`.
   */
  private atom(): Value {
    const start = this.pos;
    let parens = 0;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos] as string;
      if (c === '<') {
        this.skipAnnotation();
        continue;
      }
      if (c === '"') {
        this.string();
        continue;
      }
      if (c === '/' && this.text[this.pos + 1] === '*') {
        const end = this.text.indexOf('*/', this.pos + 2);
        this.pos = end < 0 ? this.text.length : end + 2;
        continue;
      }
      if (c === '(') parens++;
      else if (c === ')' && parens > 0) parens--;
      else if (c === ',' || c === ')' || c === ']' || c === '}') {
        if (parens === 0) break;
      }
      this.pos++;
    }
    const text = this.text.slice(start, this.pos).trim();
    if (text === '') throw this.error('empty argument');
    return { kind: 'atom', text };
  }

  /**
   * `<TCP:[127.0.0.1:1->127.0.0.1:2]>`, where the `>` of `->` sits inside brackets, or
   * `</dev/null<char 1:3>>`, where a device annotation nests.
   */
  private skipAnnotation(): void {
    let brackets = 0;
    let angles = 0;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos++];
      if (c === '[') brackets++;
      else if (c === ']') brackets--;
      else if (c === '<' && brackets <= 0) angles++;
      else if (c === '>' && brackets <= 0 && --angles === 0) return;
    }
    throw this.error('unterminated <…> annotation');
  }

  private skipSpaces(): void {
    while (this.text[this.pos] === ' ') this.pos++;
  }

  private peek(): string | undefined {
    return this.text[this.pos];
  }

  private error(message: string): StraceParseError {
    return new StraceParseError(`${message} at column ${this.pos} of "${this.text.slice(0, 200)}"`, this.line);
  }
}

// ---- helpers for the rules ---------------------------------------------------------------------

/** Whether an fd is a TCP or Unix socket (`-yy` prints `TCP:[…]`, `-y` prints `socket:[…]`). */
export function isSocket(fd: FdRef): boolean {
  return /^(?:TCP|TCPv6|UDP|UDPv6|UNIX|socket):/.test(fd.target ?? '');
}

/** Whether an open may write the file (and so change it in place). */
export function opensForWriting(flags: readonly string[]): boolean {
  return flags.some((flag) => flag === 'O_WRONLY' || flag === 'O_RDWR' || flag === 'O_TRUNC');
}
