import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { generateLoadedAgentKeyPair, keyIdOf, rawPublicKey } from '@fleetpatch/shared';
import type { Command } from 'commander';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { UsageError } from '../cli-errors.js';
import { writeJson } from '../cli-output.js';

/**
 * Signing keys live with people: made and read here, on the signer's machine, never sent to the
 * coordinator. A key file is PKCS#8 PEM, mode 0600, optionally encrypted (PBES2 with aes-256-cbc,
 * as OpenSSL does it) with a passphrase that comes from an environment variable or the terminal,
 * never from argv (which `ps` shows). None of these commands needs a coordinator.
 */

/** What the key commands read from the process, given by the caller so tests can give their own. */
export interface KeyEnvironment {
  /** `$FLEETPATCH_KEY`, else `~/.config/fleetpatch/signing-key.pem`. */
  defaultKeyFile: string;
  env(name: string): string | undefined;
  /** Asks on the terminal without echo; absent when there is no terminal to ask on. */
  askPassphrase?: (prompt: string) => Promise<string>;
}

export function defaultKeyFile(env: { FLEETPATCH_KEY?: string | undefined }, home: string): string {
  return env.FLEETPATCH_KEY || join(home, '.config', 'fleetpatch', 'signing-key.pem');
}

/** The key commands' view of a process environment (main.ts passes the real one). */
export function keyEnvironmentOf(
  env: Record<string, string | undefined>,
  home: string,
  terminal: boolean,
): KeyEnvironment {
  return {
    defaultKeyFile: defaultKeyFile(env, home),
    env: (name) => env[name],
    ...(terminal ? { askPassphrase: askOnTerminal } : {}),
  };
}

/** Anything wrong with a key file: exit 1, one line. */
export class KeyFileError extends Error {
  override readonly name = 'KeyFileError';
}

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: string;
  keyId: string;
  encrypted: boolean;
}

/**
 * Reads a key file; asks `passphrase` only if the file is encrypted (undefined: none to be had).
 * Errors say which file and what to do.
 */
export async function loadSigningKey(file: string, passphrase: () => Promise<string | undefined>): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new KeyFileError(
      missing ? `no signing key at ${file} (make one: fleetpatch key generate)` : `cannot read ${file}`,
      { cause: err },
    );
  }
  const encrypted = pem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----');
  const secret = encrypted ? await passphrase() : undefined;
  if (encrypted && secret === undefined) {
    throw new KeyFileError(`${file} is encrypted: give --passphrase-env VAR, or run on a terminal to be asked`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem', ...(secret !== undefined ? { passphrase: secret } : {}) });
  } catch (err) {
    throw new KeyFileError(
      encrypted ? `cannot decrypt ${file}: wrong passphrase` : `${file} is not a PEM private key`,
      { cause: err },
    );
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new KeyFileError(
      `${file} holds a ${privateKey.asymmetricKeyType ?? 'unknown'} key; signing keys are ed25519`,
    );
  }
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  return { privateKey, publicKey, keyId: keyIdOf(publicKey), encrypted };
}

/**
 * The signing key in `file` (the default key file when undefined), its passphrase, if it is
 * encrypted, from the variable `passphraseEnv` names or else asked on the terminal.
 */
export function openSigningKey(
  file: string | undefined,
  passphraseEnv: string | undefined,
  keys: KeyEnvironment,
): Promise<SigningKey & { file: string }> {
  const path = file ?? keys.defaultKeyFile;
  return loadSigningKey(path, async () => {
    if (passphraseEnv !== undefined) return passphraseFromEnv(passphraseEnv, keys);
    return keys.askPassphrase?.(`passphrase for ${path}: `);
  }).then((key) => ({ ...key, file: path }));
}

function passphraseFromEnv(name: string, keys: KeyEnvironment): string {
  const value = keys.env(name);
  if (!value) throw new KeyFileError(`the environment variable ${name} is not set`);
  return value;
}

const MIN_PASSPHRASE_LENGTH = 8;

export const PASSPHRASE_ENV_HELP = 'read the passphrase from this environment variable (never from the command line)';

/** A new key's passphrase: named by --passphrase-env, or asked for twice; undefined for an unencrypted key. */
async function newPassphrase(opts: GenerateOptions, keys: KeyEnvironment): Promise<string | undefined> {
  if (opts.passphraseEnv !== undefined && opts.askPassphrase) {
    throw new UsageError('give --passphrase-env or --ask-passphrase, not both');
  }
  let passphrase: string | undefined;
  if (opts.passphraseEnv !== undefined) {
    passphrase = passphraseFromEnv(opts.passphraseEnv, keys);
  } else if (opts.askPassphrase) {
    if (!keys.askPassphrase) throw new KeyFileError('no terminal to ask for a passphrase on: use --passphrase-env VAR');
    passphrase = await keys.askPassphrase('passphrase for the new key: ');
    if ((await keys.askPassphrase('the same again: ')) !== passphrase) throw new KeyFileError('the passphrases differ');
  }
  if (passphrase !== undefined && passphrase.length < MIN_PASSPHRASE_LENGTH) {
    throw new KeyFileError(`a passphrase needs at least ${MIN_PASSPHRASE_LENGTH} characters`);
  }
  return passphrase;
}

interface KeyFacts {
  keyId: string;
  publicKey: string;
  file: string;
  encrypted: boolean;
}

function printKey(ctx: CliContext, facts: KeyFacts, json: boolean | undefined): void {
  if (json) writeJson(ctx.output, facts);
  else ctx.output.out(`key id      ${facts.keyId}\npublic key  ${facts.publicKey}`);
}

interface GenerateOptions extends JsonFlag {
  out?: string;
  passphraseEnv?: string;
  askPassphrase?: boolean;
}

interface ShowOptions extends JsonFlag {
  key?: string;
  passphraseEnv?: string;
}

export function addKeyCommands(program: Command, ctx: CliContext, keyEnvironment: () => KeyEnvironment): void {
  const key = program
    .command('key')
    .description('your ed25519 signing key: agents trust its public key; the coordinator never sees it');

  key
    .command('generate')
    .description('make a signing key pair; writes the private key (0600) and prints the public key and its id')
    .option('--out <file>', 'where to write it (default $FLEETPATCH_KEY or ~/.config/fleetpatch/signing-key.pem)')
    .option('--passphrase-env <var>', `encrypt it; ${PASSPHRASE_ENV_HELP}`)
    .option('--ask-passphrase', 'encrypt it with a passphrase asked for on the terminal')
    .option('--json', 'print {keyId, publicKey, file, encrypted}')
    .action(async (opts: GenerateOptions) => {
      const keys = keyEnvironment();
      const file = opts.out ?? keys.defaultKeyFile;
      const passphrase = await newPassphrase(opts, keys);
      // From a random seed, not generateKeyPairSync, whose keys can hang Node 20 when exported
      // (generateLoadedAgentKeyPair says how).
      const { privateKey, publicKey: raw } = generateLoadedAgentKeyPair();
      const pem = privateKey
        .export({
          format: 'pem',
          type: 'pkcs8',
          ...(passphrase !== undefined ? { cipher: 'aes-256-cbc', passphrase } : {}),
        })
        .toString();
      await mkdir(dirname(file), { recursive: true, mode: 0o700 });
      try {
        // 'wx': O_CREAT|O_EXCL, so an existing key (or a symlink planted where one goes) is never overwritten.
        await writeFile(file, pem, { flag: 'wx', mode: 0o600 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new KeyFileError(`${file} exists: not overwriting a signing key (move it away first)`);
        }
        throw err;
      }
      printKey(ctx, { keyId: keyIdOf(raw), publicKey: raw, file, encrypted: passphrase !== undefined }, opts.json);
      if (!opts.json) {
        ctx.output.err(
          `wrote ${file} (0600, ${passphrase !== undefined ? 'encrypted' : 'NOT encrypted: consider --ask-passphrase'})`,
        );
      }
    });

  key
    .command('show')
    .description('print the public key and key id of a signing key')
    .option('--key <file>', 'the key file (default $FLEETPATCH_KEY or ~/.config/fleetpatch/signing-key.pem)')
    .option('--passphrase-env <var>', `if it is encrypted, ${PASSPHRASE_ENV_HELP}`)
    .option('--json', 'print {keyId, publicKey, file, encrypted}')
    .action(async (opts: ShowOptions) => {
      const loaded = await openSigningKey(opts.key, opts.passphraseEnv, keyEnvironment());
      const file = loaded.file;
      const mode = (await stat(file)).mode & 0o777;
      if ((mode & 0o077) !== 0) {
        ctx.output.err(`warning: ${file} is readable by others (mode ${mode.toString(8)}): chmod 600 it`);
      }
      printKey(ctx, { keyId: loaded.keyId, publicKey: loaded.publicKey, file, encrypted: loaded.encrypted }, opts.json);
    });
}

/** Reads one line from the terminal without echoing it. */
async function askOnTerminal(prompt: string): Promise<string> {
  const { stdin, stderr } = process;
  stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise<string>((resolve, reject) => {
    let answer = '';
    const finish = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n' || char === '\u0004') {
          finish();
          resolve(answer);
          return;
        }
        if (char === '\u0003') {
          finish();
          reject(new KeyFileError('cancelled'));
          return;
        }
        answer = char === '\u007f' || char === '\b' ? [...answer].slice(0, -1).join('') : answer + char;
      }
    };
    stdin.on('data', onData);
  });
}
