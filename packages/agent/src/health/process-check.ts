import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { type CheckOfKind, type CheckOutcome, describeError, fail, pass } from './check-outcome.js';

/**
 * Scans /proc directly rather than shelling out to pgrep: no extra package, no pattern language.
 * A process matches when its comm equals the name, or its argv[0] basename does (scripts run by an
 * interpreter, names longer than the 15 bytes comm keeps).
 */
export async function runProcessCheck(
  check: CheckOfKind<'process'>,
  signal: AbortSignal,
  procRoot = '/proc',
): Promise<CheckOutcome> {
  const wanted = check.processName;
  let entries: string[];
  try {
    entries = await readdir(procRoot);
  } catch (err) {
    return fail(`cannot list ${procRoot}: ${describeError(err)}`);
  }
  const pids = entries.filter((entry) => /^\d+$/.test(entry));
  const matches: string[] = [];
  for (const pid of pids) {
    if (signal.aborted) return fail('aborted');
    if (await processMatches(`${procRoot}/${pid}`, wanted)) matches.push(pid);
  }
  if (matches.length === 0) return fail(`no process named ${JSON.stringify(wanted)} among ${pids.length}`);
  const shown = matches.slice(0, 5).join(', ') + (matches.length > 5 ? ', …' : '');
  return pass(
    `${matches.length} process${matches.length === 1 ? '' : 'es'} named ${JSON.stringify(wanted)} (pid ${shown})`,
  );
}

async function processMatches(dir: string, wanted: string): Promise<boolean> {
  // Processes come and go during the scan; one that vanished simply does not match.
  const comm = await readFile(`${dir}/comm`, 'utf8').then(
    (text) => text.replace(/\n$/, ''),
    () => undefined,
  );
  if (comm === wanted) return true;
  // comm may be truncated or a thread name; argv[0] carries the full name the process was run as.
  const cmdline = await readFile(`${dir}/cmdline`).catch(() => undefined);
  if (cmdline === undefined || cmdline.length === 0) return false;
  const end = cmdline.indexOf(0);
  const argv0 = cmdline.subarray(0, end === -1 ? cmdline.length : end).toString('utf8');
  return basename(argv0) === wanted;
}
