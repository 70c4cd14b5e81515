import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

/** The built CLI binary, as ops staff run it. */
export const CLI_BIN = fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

export interface NodeRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a Node script (`args[0]`, then its arguments) to its exit with none of this process's
 * FLEETPATCH_ variables, plus `env`; `input` is its whole stdin.
 */
export async function runNode(args: string[], env: Record<string, string>, input?: string): Promise<NodeRun> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEETPATCH_')));
  const child = spawn(process.execPath, args, { env: { ...base, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  child.stdin.end(input ?? '');
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}
