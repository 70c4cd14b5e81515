#!/usr/bin/env node
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { CommanderError } from 'commander';
import { ApiClient } from './api-client.js';
import { type ConfigFiles, configPath, loadConfig, readTokenFile, selectContext } from './cli-config.js';
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

const CONFIG_FILES: ConfigFiles = {
  readFile: (path) => readFileSync(path, 'utf8'),
  writeFile: (path, text) => writeFileSync(path, text, { mode: 0o600 }),
  mode: (path) => statSync(path).mode & 0o777,
  exists: (path) => existsSync(path),
};
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
    live: async () => {
      // Loaded here, not at start: ~0.12 s of CPU (log-update and its string-width tables) that every
      // other command, `--help` included, skipped paying (of ~0.7 s).
      const { createLogUpdate } = await import('log-update');
      const update = createLogUpdate(process.stdout);
      return { update: (frame) => update(frame), done: () => update.done() };
    },
  },
  errorsAsJson,
  api: () => {
    client ??= connect();
    return client;
  },
  configFile: () => ({ path: configPath(process.env, homedir()), files: CONFIG_FILES }),
  readStdin: () => readAll(process.stdin),
  now: () => new Date(),
  setExitCode: (code) => {
    exitCode = code;
  },
};

/** The client for the coordinator named by the flags, the environment or the chosen context. */
function connect(): ApiClient {
  const context = chosenContext();
  return new ApiClient(
    resolveConnection({
      flags: program.opts<{ url?: string; token?: string; caFile?: string; insecure?: boolean }>(),
      env: {
        FLEETPATCH_URL: process.env.FLEETPATCH_URL,
        FLEETPATCH_TOKEN: process.env.FLEETPATCH_TOKEN,
        FLEETPATCH_CA_FILE: process.env.FLEETPATCH_CA_FILE,
      },
      context: context && {
        ...context,
        token: context.tokenFile ? () => readTokenFile(context.tokenFile as string, CONFIG_FILES) : undefined,
      },
      readFile: (path) => readFileSync(path, 'utf8'),
    }),
  );
}

/** The config file's context chosen by --context or its currentContext; undefined when there is none. */
function chosenContext() {
  const path = configPath(process.env, homedir());
  return selectContext(loadConfig(path, CONFIG_FILES), path, program.opts<{ context?: string }>().context);
}

// Read only when a command needs a signing key (`key …`, `--sign-key`); FLEETPATCH_KEY wins over the context's.
const program = buildProgram(ctx, () =>
  keyEnvironmentOf(
    { FLEETPATCH_KEY: chosenContext()?.signKey, ...definedOnly(process.env) },
    homedir(),
    process.stdin.isTTY === true,
  ),
);

function definedOnly(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''),
  );
}

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
