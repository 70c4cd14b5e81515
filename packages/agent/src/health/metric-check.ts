import { type CheckOfKind, type CheckOutcome, describeError, fail, pass } from './check-outcome.js';

/** systeminformation shells out for some readings (df); a hung NFS mount must not hang the check. */
const READ_TIMEOUT_MS = 10_000;

type Reading = { value: number; label: string } | { missing: string };

export async function runMetricCheck(check: CheckOfKind<'metric'>, signal: AbortSignal): Promise<CheckOutcome> {
  let reading: Reading;
  try {
    reading = await withDeadline(read(check), signal, READ_TIMEOUT_MS);
  } catch (err) {
    if (signal.aborted) return fail('aborted');
    return fail(`cannot read ${check.metric}: ${describeError(err)}`);
  }
  if ('missing' in reading) return fail(reading.missing);
  if (!Number.isFinite(reading.value)) return fail(`${reading.label} is not a number (${reading.value})`);
  const observed = `${reading.label} = ${reading.value.toFixed(1)} (max ${check.max})`;
  return reading.value <= check.max ? pass(observed) : fail(observed);
}

async function read(check: CheckOfKind<'metric'>): Promise<Reading> {
  // Loaded on the first metric check, not at every agent start (~60 ms of CPU): most hosts have none.
  const { default: si } = await import('systeminformation');
  switch (check.metric) {
    case 'cpu_load_percent': {
      const load = await si.currentLoad();
      return { value: load.currentLoad, label: 'cpu_load_percent' };
    }
    case 'memory_used_percent': {
      // `active` is used minus buffers and page cache: memory the kernel cannot simply reclaim.
      const mem = await si.mem();
      if (mem.total <= 0) return { missing: 'memory total is unknown' };
      return { value: (mem.active / mem.total) * 100, label: 'memory_used_percent' };
    }
    case 'disk_used_percent': {
      const mount = check.mount ?? '/';
      const filesystems = await si.fsSize();
      // Exact match: "/" must never stand in for an unmounted "/var".
      const fs = filesystems.find((candidate) => candidate.mount === mount);
      if (fs === undefined) return { missing: `no filesystem mounted at ${mount}` };
      return { value: fs.use, label: `disk_used_percent of ${mount}` };
    }
  }
}

function withDeadline<T>(work: Promise<T>, signal: AbortSignal, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no reading within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (err: unknown) => {
        cleanup();
        reject(err);
      },
    );
  });
}
