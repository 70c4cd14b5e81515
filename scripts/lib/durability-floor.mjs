// @ts-check
// The durability floor: what one file order's file system work costs an agent that does nothing else.
// A bare loop of synchronous system calls, in a process of its own (so its CPU is its own), makes for
// each of N orders exactly the durable writes and reads the agent's rules require (DESIGN.md's
// invariants, and the journal's rules in packages/agent/src/journal.ts), in the fewest calls that honour
// them, and nothing more: no JSON, no WebSocket, no policy, no logging. Its CPU per order is the least
// any agent honouring those rules can spend per order on this machine and file system; the bench prints
// it beside the agents' CPU per order, with the wire's floor on the agent's side of the socket, so
// "agent CPU per order" has a yardstick as the coordinator's has.
//
// Per order, each step the rule it honours:
// 1. the target's parents checked, none a symlink (lstat of the root and of each parent);
// 2. the order journaled before anything is done for it: its directory made and made durable (mkdir,
//    fsync of the journal's directory), its entry written as an atomic replace (temp file opened
//    O_EXCL|O_NOFOLLOW, written, mode set, fsync'd, closed, renamed, directory fsync'd);
// 3. a snapshot durably stored and verified before anything changes: the target opened O_NOFOLLOW,
//    checked (fstat) and read; the copy written as an atomic replace; read back and compared;
// 4. the journal durable at `applying` before the change begins (a line appended to the entry, its
//    data synced: an entry file is renamed into place once, at the order's first write, and each
//    later write appends a line to it, see packages/agent/src/journal.ts);
// 5. the change itself never half-written: a temp file beside the target, written, owner and mode set,
//    fsync'd, closed, renamed over it, the directory fsync'd;
// 6. the change verified: the target read back (open, fstat, read, close);
// 7. the journal durable at `done` before the result is reported (a line appended, synced);
// 8. the coordinator's ack recorded, not durably (a line appended, not synced).
//
// `node durability-floor.mjs run DIR N` is the child; the bench calls `measureDurabilityFloor(DIR, N)`.
import { fork } from 'node:child_process';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** About the size of the bench agents' journal entry for a small file change (the order is most of it). */
const ENTRY = Buffer.alloc(1500, 'e');
/** About the size of the lines later writes append: `applying` with its snapshot, `done` with its result, the ack. */
const APPLYING_LINE = Buffer.alloc(300, 'a');
const DONE_LINE = Buffer.alloc(250, 'd');
const ACK_LINE = Buffer.alloc(70, 'k');
const OLD = Buffer.from('the old content of the file\n');
const NEW = Buffer.from('the new content of the file\n');
/** The change's owner: the agent's own ids stand in for the root:root of the bench's patch (chown to oneself needs no privilege). */
const OWN_UID = process.getuid?.() ?? 0;
const OWN_GID = process.getgid?.() ?? 0;
const WARM_UP_ORDERS = 200;
const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

if (process.argv[2] === 'run') run(String(process.argv[3]), Number(process.argv[4]));

/** @param {string} dir @param {number} orders */
function run(dir, orders) {
  const journal = join(dir, 'orders');
  mkdirSync(journal, { recursive: true });
  // Each order's own root with its target in place, made before the clock starts, as the bench's agents have.
  for (let i = 0; i < orders + WARM_UP_ORDERS; i++) {
    mkdirSync(join(dir, `root-${i}`, 'etc', 'bench'), { recursive: true });
    writeFileSync(join(dir, `root-${i}`, 'etc', 'bench', 'app.conf'), OLD);
  }
  const buffer = Buffer.alloc(4096);
  let temps = 0;
  const fsyncDirectory = (/** @type {string} */ path) => {
    const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    fsyncSync(fd);
    closeSync(fd);
  };
  const replace = (
    /** @type {string} */ parent,
    /** @type {string} */ name,
    /** @type {Buffer} */ bytes,
    { owned = false, durable = true } = {},
  ) => {
    const temp = join(parent, `.${name}.tmp-${temps++}`);
    const fd = openSync(temp, CREATE, 0o600);
    writeSync(fd, bytes);
    if (owned) fchownSync(fd, OWN_UID, OWN_GID);
    fchmodSync(fd, owned ? 0o644 : 0o600);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(temp, join(parent, name));
    if (durable) fsyncDirectory(parent);
  };
  const append = (/** @type {string} */ path, /** @type {Buffer} */ bytes, { durable = true } = {}) => {
    const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW);
    writeSync(fd, bytes);
    if (durable) fdatasyncSync(fd);
    closeSync(fd);
  };
  const readChecked = (/** @type {string} */ path) => {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    fstatSync(fd);
    const n = readSync(fd, buffer, 0, buffer.byteLength, 0);
    closeSync(fd);
    return buffer.subarray(0, n);
  };

  const runOrder = (/** @type {number} */ i) => {
    const root = join(dir, `root-${i}`);
    const parent = join(root, 'etc', 'bench');
    const target = join(parent, 'app.conf');
    lstatSync(root); // 1
    lstatSync(join(root, 'etc'));
    lstatSync(parent);
    const entries = join(journal, `ord-${i}`); // 2
    mkdirSync(entries, 0o700);
    fsyncDirectory(journal);
    replace(entries, 'entry.json', ENTRY);
    const prior = Buffer.from(readChecked(target)); // 3
    replace(entries, 'prior', prior);
    if (!readChecked(join(entries, 'prior')).equals(prior)) throw new Error('the snapshot does not read back');
    append(join(entries, 'entry.json'), APPLYING_LINE); // 4
    replace(parent, 'app.conf', NEW, { owned: true }); // 5
    if (!readChecked(target).equals(NEW)) throw new Error('the change does not read back'); // 6
    append(join(entries, 'entry.json'), DONE_LINE); // 7
    append(join(entries, 'entry.json'), ACK_LINE, { durable: false }); // 8
  };
  // The first orders pay V8 compiling this loop: they warm it, uncounted, so the figure is the calls'.
  for (let i = 0; i < WARM_UP_ORDERS; i++) runOrder(orders + i);
  const started = process.cpuUsage();
  for (let i = 0; i < orders; i++) runOrder(i);
  const cpu = process.cpuUsage(started);
  // Removed before the figures go: the parent kills this process as soon as it has them.
  rmSync(dir, { recursive: true, force: true });
  process.send?.({ cpuUsPerOrder: (cpu.user + cpu.system) / orders, systemUsPerOrder: cpu.system / orders });
}

/**
 * Runs `orders` orders' file system work in a child process under `dir` (made, then removed: put it on
 * the agents' file system) and returns its CPU per order, and the system calls' share of it.
 * @param {string} dir
 * @param {number} orders
 * @returns {Promise<{ cpuUsPerOrder: number, systemUsPerOrder: number, orders: number }>}
 */
export async function measureDurabilityFloor(dir, orders) {
  const child = fork(fileURLToPath(import.meta.url), ['run', dir, String(orders)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const figures = await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`the durability-floor process exited ${code}`)));
  });
  child.kill();
  return { .../** @type {{ cpuUsPerOrder: number, systemUsPerOrder: number }} */ (figures), orders };
}
