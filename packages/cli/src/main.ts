#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { CommanderError } from 'commander';
import { ApiClient } from './api-client.js';
import type { CliContext } from './cli-context.js';
import { describeError, ExitCode } from './cli-errors.js';
import { keyEnvironmentOf } from './commands/key-commands.js';
import { resolveConnection } from './connection.js';
import { readAll } from './json-input.js';
import { buildProgram } from './program.js';

// The only place that reads process.env, argv and the real stdio; everything below gets a CliContext.

// `fleetpatch events ro_1 | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? ExitCode.ok);
  throw err;
});

let exitCode: ExitCode = ExitCode.ok;
let client: ApiClient | undefined;

const ctx: CliContext = {
  output: {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    interactive: process.stdout.isTTY === true,
  },
  api: () => {
    client ??= new ApiClient(
      resolveConnection({
        flags: program.opts<{ url?: string; token?: string; caFile?: string; insecure?: boolean }>(),
        env: {
          FLEETPATCH_URL: process.env.FLEETPATCH_URL,
          FLEETPATCH_TOKEN: process.env.FLEETPATCH_TOKEN,
          FLEETPATCH_CA_FILE: process.env.FLEETPATCH_CA_FILE,
        },
        readFile: (path) => readFileSync(path, 'utf8'),
      }),
    );
    return client;
  },
  readStdin: () => readAll(process.stdin),
  now: () => new Date(),
  setExitCode: (code) => {
    exitCode = code;
  },
};

// Read only when a command needs a signing key (`key …`, `--sign-key`).
const program = buildProgram(ctx, () => keyEnvironmentOf(process.env, homedir(), process.stdin.isTTY === true));

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander has already printed its message (or the help).
    const shown = err.code === 'commander.helpDisplayed' || err.code === 'commander.version';
    exitCode = shown ? ExitCode.ok : ExitCode.usage;
  } else {
    const { lines, exitCode: code } = describeError(err);
    for (const line of lines) process.stderr.write(`${line}\n`);
    exitCode = code;
  }
}
process.exitCode = exitCode;
