import { type CommandResult, describeExit } from '../process/command-runner.js';

/** How much of dpkg's output a failure carries to the coordinator: its tail, where dpkg says what went wrong. */
export const DPKG_OUTPUT_TAIL_CHARS = 3000;

const SCRIPT_NAMES: Readonly<Record<string, string>> = {
  'pre-installation': 'preinst',
  'post-installation': 'postinst',
  'pre-removal': 'prerm',
  'post-removal': 'postrm',
};

/** A maintainer script dpkg reports as failed: whose, which, and its exit status. */
export interface FailedScript {
  package: string;
  script: string;
  status: string;
}

/**
 * The maintainer scripts dpkg says failed, from lines such as
 * `installed fptest package post-installation script subprocess returned error exit status 1`.
 */
export function failedScripts(output: string): FailedScript[] {
  const found: FailedScript[] = [];
  const pattern =
    /(?:new |old |installed )?(\S+) package (pre-installation|post-installation|pre-removal|post-removal) script subprocess (?:returned error exit status (\d+)|was killed by signal \d+ \(([^)]+)\))/g;
  for (const match of output.matchAll(pattern)) {
    found.push({
      package: (match[1] ?? '').replace(/:\S+$/, ''),
      script: SCRIPT_NAMES[match[2] ?? ''] ?? match[2] ?? '',
      status: match[3] !== undefined ? `exit status ${match[3]}` : `killed by ${match[4] ?? 'a signal'}`,
    });
  }
  return found;
}

/** dpkg's output, both streams, cut to its last `maxChars` characters. */
export function dpkgOutputTail(result: CommandResult, maxChars = DPKG_OUTPUT_TAIL_CHARS): string {
  const text = [result.stdout.trim(), result.stderr.trim()].filter((t) => t !== '').join('\n');
  return text.length <= maxChars ? text : `…${text.slice(text.length - maxChars + 1)}`;
}

/**
 * For an operator: how dpkg ended and which maintainer script failed (named the way the package's
 * debian/ directory names it), in one line; then the tail of dpkg's output.
 */
export function explainDpkgRun(result: CommandResult): { summary: string; output: string } {
  const scripts = failedScripts(`${result.stdout}\n${result.stderr}`);
  const which = scripts.map((s) => `; ${s.package}'s ${s.script} failed (${s.status})`).join('');
  return {
    summary: `dpkg ${describeExit(result)}${which}`,
    output: `--- dpkg output (tail) ---\n${dpkgOutputTail(result)}`,
  };
}
