import type { ApiClient } from './api-client.js';
import type { ConfigFiles } from './cli-config.js';
import type { ExitCode } from './cli-errors.js';
import type { CliOutput } from './cli-output.js';

/** What every command gets from main.ts: its output, the API (connection resolved once), stdin, a clock. */
export interface CliContext {
  output: CliOutput;
  /** The client for the coordinator named by --url/--token or the environment; a usage error if neither. */
  api(): ApiClient;
  readStdin(): Promise<string>;
  now(): Date;
  /** The config file and the file system it lives on (main.ts); absent in tests that need none. */
  configFile?(): { path: string; files: ConfigFiles };
  /** `--json` was given: errors, the command line's included, are one JSON object on stderr. */
  errorsAsJson?: boolean;
  /** For commands whose outcome is not an error but still not a success (a watched rollout that halted). */
  setExitCode(code: ExitCode): void;
}

export interface JsonFlag {
  json?: boolean | undefined;
}
