#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { CommanderError } from 'commander';
import { createLogUpdate } from 'log-update';
import { ApiClient } from './api-client.js';
import type { CliContext } from './cli-context.js';
import { describeError, describeErrorAsJson, ExitCode } from './cli-errors.js';
import { keyEnvironmentOf } from './commands/key-commands.js';
import { resolveConnection } from './connection.js';
import { readAll } from './json-input.js';
import { buildProgram } from './program.js';
import { wantsColour } from './terminal-style.js';
import { terminalSafe } from './terminal-text.js';

// The only place that reads process.env, argv and the real stdio; everything below gets a CliContext.

// `fleetpatch events ro_1 | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? ExitCode.ok);
  throw err;
});

let exitCode: ExitCode = ExitCode.ok;
let client: ApiClient | undefined;

// `--json` anywhere before `--`: errors are then one JSON object on stderr too.
const args = process.argv.slice(2);
const errorsAsJson = args.slice(0, args.includes('--') ? args.indexOf('--') : undefined).includes('--json');

const ctx: CliContext = {
  output: {
    // Whatever reaches the terminal has the server's control characters escaped (terminal-text.ts).
    out: (text) => process.stdout.write(`${terminalSafe(text)}\n`),
    err: (text) => process.stderr.write(`${terminalSafe(text)}\n`),
    interactive: process.stdout.isTTY === true,
    colour: wantsColour(process.env, process.stdout.isTTY === true),
    live: () => {
      const update = createLogUpdate(process.stdout);
      return { update: (frame) => update(frame), done: () => update.done() };
    },
  },
  errorsAsJson,
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
    if (errorsAsJson) {
      const { text, exitCode: code } = describeErrorAsJson(err);
      ctx.output.err(text);
      exitCode = code;
    } else {
      const { lines, exitCode: code } = describeError(err);
      for (const line of lines) ctx.output.err(line);
      exitCode = code;
    }
  }
}
process.exitCode = exitCode;
