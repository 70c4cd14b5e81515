/** Runs the built `fleetpatch` binary (or any Node script) as a child process, as ops staff would. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

export const CLI = join(import.meta.dirname, '..', '..', 'packages/cli/dist/bin/fleetpatch.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a Node script with none of this process's FLEETPATCH_ variables, plus `env`; `input` is its
 * stdin. No CLI config file either (a developer's own contexts must not leak in) unless `env` names one.
 */
export async function runNode(args: string[], env: Record<string, string>, input?: string): Promise<CliResult> {
  const base = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEETPATCH_'))),
    FLEETPATCH_CONFIG: '/nonexistent/fleetpatch/config.yaml',
  };
  const child = spawn(process.execPath, args, { env: { ...base, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  // A program may exit before reading its input; its exit code and output are what a test judges.
  child.stdin.on('error', () => {});
  child.stdin.end(input ?? '');
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

export interface CliCall {
  /** FLEETPATCH_TOKEN; left out, the CLI has none. */
  token?: string;
  env?: Record<string, string>;
  input?: string;
}

/** Runs `fleetpatch …` against the coordinator at `url` (FLEETPATCH_URL). */
export function runCli(url: string, args: string[], { token, env, input }: CliCall = {}): Promise<CliResult> {
  return runNode([CLI, ...args], { FLEETPATCH_URL: url, ...(token ? { FLEETPATCH_TOKEN: token } : {}), ...env }, input);
}
