import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { itNeeding, requirement } from '../../../test/support/requirements.js';
import type { CliContext } from '../src/cli-context.js';
import { bashCompletion, completionNodes, zshCompletion } from '../src/completion.js';
import { buildProgram } from '../src/program.js';

function program() {
  const ctx: CliContext = {
    output: { out: () => {}, err: () => {}, interactive: false },
    api: () => {
      throw new Error('completion calls no API');
    },
    readStdin: async () => '',
    now: () => new Date(0),
    setExitCode: () => {},
  };
  return buildProgram(ctx, () => {
    throw new Error('no keys');
  });
}

/** What bash offers after `fleetpatch <typed>`, the last word being the one completed. */
function bashOffers(typed: string[]): string[] {
  const script = `${bashCompletion(program())}
COMP_WORDS=(fleetpatch ${typed.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${typed.length}
_fleetpatch_complete
printf '%s\\n' "\${COMPREPLY[@]}"`;
  return execFileSync('bash', ['--norc', '-c', script], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

const zsh = requirement(
  'zsh',
  spawnSync('zsh', ['--version']).status === 0
    ? { available: true }
    : { available: false, reason: 'zsh is not installed' },
);

describe('shell completion, generated from the command tree', () => {
  it('has every command and flag commander knows, and only those', () => {
    const nodes = completionNodes(program());
    const status = nodes.find((n) => n.path === ' rollout status');
    expect(status?.options).toEqual(
      expect.arrayContaining(['--watch', '-w', '--timeout', '--reconnect-for', '--json', '--url']),
    );
    expect(status?.options).not.toContain('--version');
    expect(nodes.find((n) => n.path === '')?.subcommands).toEqual(
      expect.arrayContaining(['rollout', 'patch', 'completion']),
    );
  });

  it('completes subcommands and flags in a real bash, skipping option values', () => {
    expect(bashOffers(['rollout', 'st'])).toEqual(['status', 'start']);
    expect(bashOffers(['--url', 'http://127.0.0.1:7420', 'rollout', 'status', 'ro_1', '--re'])).toEqual([
      '--reconnect-for',
    ]);
    expect(bashOffers(['pat'])).toEqual(['patch']);
    expect(bashOffers(['completion', ''])).toEqual([
      '--url',
      '--token',
      '--ca-file',
      '--insecure',
      '--context',
      '--help',
    ]);
  });

  itNeeding(
    [zsh],
    'gives zsh a script it parses, defining the completion function',
    () => {
      const script = zshCompletion(program());
      expect(script.startsWith('#compdef fleetpatch\n')).toBe(true);
      const checked = spawnSync('zsh', ['-n'], { input: script, encoding: 'utf8' });
      expect(checked.stderr).toBe('');
      expect(checked.status).toBe(0);
      // Loaded into a zsh with compinit, the function is there and bound to fleetpatch.
      const dir = mkdtempSync(join(tmpdir(), 'fleetpatch-zsh-'));
      try {
        writeFileSync(join(dir, '_fleetpatch'), script);
        const loaded = spawnSync(
          'zsh',
          ['-f', '-c', 'autoload -U compinit && compinit -u -D; source ./_fleetpatch; print -r -- $_comps[fleetpatch]'],
          { cwd: dir, encoding: 'utf8' },
        );
        expect(loaded.stdout.trim(), loaded.stderr).toBe('_fleetpatch');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    30_000,
  );
});
