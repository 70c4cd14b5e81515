import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { keyIdOf, rawPublicKey } from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { itNeeding, requirement } from '../../../test/support/requirements.js';
import type { CliContext } from '../src/cli-context.js';
import { describeError, ExitCode } from '../src/cli-errors.js';
import { defaultKeyFile, type KeyEnvironment } from '../src/commands/key-commands.js';
import { buildProgram } from '../src/program.js';

// `fleetpatch key …` in process against a temp HOME, with its environment and terminal given by the
// test; one run of the built binary checks the real process wiring and exit codes.

let home: string;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'fleetpatch-key-'));
});
afterEach(() => {
  rmSync(home, { recursive: true, force: true });
});

function harness(env: Record<string, string> = {}, answers?: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: CliContext = {
    output: { out: (t) => out.push(t), err: (t) => err.push(t), interactive: false },
    api: () => {
      throw new Error('key commands must not need a coordinator');
    },
    readStdin: async () => '',
    now: () => new Date('2025-01-01T00:00:00Z'),
    setExitCode: () => undefined,
  };
  const keys: KeyEnvironment = {
    defaultKeyFile: defaultKeyFile(env, home),
    env: (name) => env[name],
    ...(answers ? { askPassphrase: async () => answers.shift() ?? '' } : {}),
  };
  const run = (...argv: string[]) => buildProgram(ctx, () => keys).parseAsync(['node', 'fleetpatch', ...argv]);
  /** The error a command line fails with, and the exit code main.ts would give it. */
  const fail = async (...argv: string[]) => {
    const error = await run(...argv).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error, `${argv.join(' ')} should fail`).toBeDefined();
    return describeError(error);
  };
  return { out, err, run, fail };
}

/** The key id and public key printed on stdout. */
function printed(out: string[]): { keyId: string; publicKey: string } {
  const text = out.join('\n');
  return {
    keyId: /key id {6}([0-9a-f]{16})/.exec(text)?.[1] ?? '',
    publicKey: /public key {2}([A-Za-z0-9_-]{43})/.exec(text)?.[1] ?? '',
  };
}

const mode = (file: string) => statSync(file).mode & 0o777;

describe('fleetpatch key generate', () => {
  it('writes an unencrypted PKCS#8 key, 0600 in a 0700 directory under ~/.config, and prints its public key and id', async () => {
    const h = harness();
    await h.run('key', 'generate');
    const file = join(home, '.config', 'fleetpatch', 'signing-key.pem');
    expect(mode(file)).toBe(0o600);
    expect(mode(join(home, '.config', 'fleetpatch'))).toBe(0o700);
    const pem = readFileSync(file, 'utf8');
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const publicKey = rawPublicKey(createPublicKey(createPrivateKey(pem)));
    expect(printed(h.out)).toEqual({ publicKey, keyId: keyIdOf(publicKey) });
    expect(h.err.join('\n')).toMatch(/NOT encrypted/);
  });

  it('writes to $FLEETPATCH_KEY, or to --out', async () => {
    await harness({ FLEETPATCH_KEY: join(home, 'from-env.pem') }).run('key', 'generate');
    expect(mode(join(home, 'from-env.pem'))).toBe(0o600);
    await harness().run('key', 'generate', '--out', join(home, 'a', 'b', 'out.pem'));
    expect(mode(join(home, 'a', 'b', 'out.pem'))).toBe(0o600);
  });

  it('refuses to overwrite an existing file', async () => {
    const file = join(home, 'key.pem');
    writeFileSync(file, 'precious');
    const { lines, exitCode } = await harness().fail('key', 'generate', '--out', file);
    expect(exitCode).toBe(ExitCode.failed);
    expect(lines.join('\n')).toMatch(/exists: not overwriting/);
    expect(readFileSync(file, 'utf8')).toBe('precious');
  });

  it('encrypts with the passphrase from --passphrase-env, and prints JSON with --json', async () => {
    const file = join(home, 'enc.pem');
    const h = harness({ FP_PASS: 'correct horse battery' });
    await h.run('key', 'generate', '--out', file, '--passphrase-env', 'FP_PASS', '--json');
    expect(readFileSync(file, 'utf8')).toMatch(/^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/);
    const answer = JSON.parse(h.out.join('\n')) as Record<string, unknown>;
    expect(answer).toMatchObject({ file, encrypted: true });
    expect(answer.keyId).toBe(keyIdOf(answer.publicKey as string));
  });

  it('encrypts with a passphrase asked twice on the terminal, and refuses two different answers', async () => {
    await harness({}, ['long enough', 'long enough']).run(
      'key',
      'generate',
      '--out',
      join(home, 'a.pem'),
      '--ask-passphrase',
    );
    expect(readFileSync(join(home, 'a.pem'), 'utf8')).toMatch(/ENCRYPTED/);
    const differ = await harness({}, ['long enough', 'long enougH']).fail(
      'key',
      'generate',
      '--out',
      join(home, 'b.pem'),
      '--ask-passphrase',
    );
    expect(differ.lines).toEqual(['error: the passphrases differ']);
    expect(existsSync(join(home, 'b.pem'))).toBe(false);
  });

  it.each([
    [['--passphrase-env', 'UNSET'], /UNSET is not set/, ExitCode.failed],
    [['--passphrase-env', 'SHORT'], /at least 8 characters/, ExitCode.failed],
    [['--ask-passphrase'], /no terminal/, ExitCode.failed],
    [['--ask-passphrase', '--passphrase-env', 'SHORT'], /not both/, ExitCode.usage],
  ])('refuses %j', async (flags, message, exitCode) => {
    const file = join(home, 'key.pem');
    const refused = await harness({ SHORT: 'short' }).fail('key', 'generate', '--out', file, ...flags);
    expect(refused.lines.join('\n')).toMatch(message);
    expect(refused.exitCode).toBe(exitCode);
    expect(existsSync(file)).toBe(false);
  });
});

describe('fleetpatch key show', () => {
  it('prints the same public key and id as generate did', async () => {
    const made = harness();
    await made.run('key', 'generate');
    const shown = harness();
    await shown.run('key', 'show');
    expect(printed(shown.out)).toEqual(printed(made.out));
    expect(printed(shown.out).keyId).toMatch(/^[0-9a-f]{16}$/);
  });

  it('needs the passphrase of an encrypted key, and says so clearly when it is wrong', async () => {
    const file = join(home, 'enc.pem');
    const made = harness({ FP_PASS: 'correct horse battery' });
    await made.run('key', 'generate', '--out', file, '--passphrase-env', 'FP_PASS');

    const none = await harness().fail('key', 'show', '--key', file);
    expect(none).toEqual({
      lines: [`error: ${file} is encrypted: give --passphrase-env VAR, or run on a terminal to be asked`],
      exitCode: ExitCode.failed,
    });
    const wrong = await harness({ FP_PASS: 'wrong horse battery' }).fail(
      'key',
      'show',
      '--key',
      file,
      '--passphrase-env',
      'FP_PASS',
    );
    expect(wrong).toEqual({ lines: [`error: cannot decrypt ${file}: wrong passphrase`], exitCode: ExitCode.failed });

    const right = harness({ FP_PASS: 'correct horse battery' });
    await right.run('key', 'show', '--key', file, '--passphrase-env', 'FP_PASS');
    expect(printed(right.out)).toEqual(printed(made.out));
    const asked = harness({}, ['correct horse battery']);
    await asked.run('key', 'show', '--key', file);
    expect(printed(asked.out)).toEqual(printed(made.out));
  });

  it('says when there is no key, or the file is not one', async () => {
    const missing = await harness().fail('key', 'show');
    expect(missing.lines.join('\n')).toMatch(
      /no signing key at .*signing-key\.pem \(make one: fleetpatch key generate\)/,
    );
    writeFileSync(join(home, 'junk.pem'), 'junk', { mode: 0o600 });
    const junk = await harness().fail('key', 'show', '--key', join(home, 'junk.pem'));
    expect(junk.lines.join('\n')).toMatch(/is not a PEM private key/);
  });

  it('warns when the key file is readable by others', async () => {
    const file = join(home, 'open.pem');
    await harness().run('key', 'generate', '--out', file);
    chmodSync(file, 0o644);
    const h = harness();
    await h.run('key', 'show', '--key', file);
    expect(h.err.join('\n')).toMatch(/readable by others \(mode 644\)/);
  });
});

describe('the fleetpatch binary', () => {
  const bin = fileURLToPath(new URL('../dist/bin/fleetpatch.js', import.meta.url));

  const built = requirement(
    'the built CLI',
    existsSync(bin) ? { available: true } : { available: false, reason: `${bin} is missing: run npm run build` },
  );

  itNeeding([built], 'runs key commands with no coordinator configured, exit 1 on a wrong passphrase', () => {
    const env = { PATH: process.env.PATH ?? '', HOME: home, FP_PASS: 'correct horse battery' };
    const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' });
    const file = join(home, 'enc.pem');
    const generated = run('key', 'generate', '--out', file, '--passphrase-env', 'FP_PASS');
    expect(generated.status).toBe(0);
    expect(mode(file)).toBe(0o600);
    expect(run('key', 'show', '--key', file, '--passphrase-env', 'FP_PASS').stdout).toBe(generated.stdout);
    const wrong = spawnSync(process.execPath, [bin, 'key', 'show', '--key', file, '--passphrase-env', 'FP_PASS'], {
      env: { ...env, FP_PASS: 'wrong horse battery' },
      encoding: 'utf8',
    });
    expect({ status: wrong.status, stderr: wrong.stderr }).toEqual({
      status: 1,
      stderr: `error: cannot decrypt ${file}: wrong passphrase\n`,
    });
  });
});
