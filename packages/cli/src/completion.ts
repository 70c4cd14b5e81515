import type { Command } from 'commander';

/** One place in the command tree: the words that lead to it, and what may follow there. */
interface CompletionNode {
  /** " rollout status" (the words after `fleetpatch`, each with a leading space; "" is the top). */
  path: string;
  subcommands: string[];
  options: string[];
}

/** Every command of the tree with its subcommands and options, read from commander itself. */
export function completionNodes(program: Command): CompletionNode[] {
  const nodes: CompletionNode[] = [];
  const visit = (command: Command, path: string, inherited: string[]) => {
    const own = command.options.flatMap((o) => [o.short, o.long]).filter((f): f is string => Boolean(f));
    const options = [...own, ...inherited, '--help'];
    const subcommands = command.commands.map((c) => c.name()).filter((name) => name !== 'help');
    nodes.push({ path, subcommands, options: [...new Set(options)] });
    // Global options (--url, --token, …) are accepted after any command too; --version only at the top.
    const passed = path === '' ? own.filter((f) => f !== '-V' && f !== '--version') : inherited;
    for (const sub of command.commands) visit(sub, `${path} ${sub.name()}`, passed);
  };
  visit(program, '', []);
  return nodes;
}

/** Words here are command names and flags: letters, digits and dashes only, so no quoting is needed. */
function assertPlain(nodes: readonly CompletionNode[]): void {
  for (const word of nodes.flatMap((n) => [...n.subcommands, ...n.options])) {
    if (!/^-{0,2}[a-z0-9][a-z0-9-]*$/i.test(word)) throw new Error(`cannot complete ${JSON.stringify(word)}`);
  }
}

/**
 * `fleetpatch completion bash`: a script for `source <(fleetpatch completion bash)`. It walks the
 * words typed so far, following only known command names (option values are skipped), and offers
 * the subcommands and flags of the command reached.
 */
export function bashCompletion(program: Command): string {
  const nodes = completionNodes(program);
  assertPlain(nodes);
  const name = program.name();
  const fn = `_${name.replace(/-/g, '_')}_complete`;
  const known = nodes.filter((n) => n.path !== '').map((n) => `"${n.path}"`);
  return [
    `# bash completion for ${name}; generated from its command tree (${name} completion bash)`,
    `${fn}() {`,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell, not a template
    '  local cur="${COMP_WORDS[COMP_CWORD]}" cmdpath="" word i words',
    '  for ((i = 1; i < COMP_CWORD; i++)); do',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell, not a template
    '    word="${COMP_WORDS[i]}"',
    '    case "$cmdpath $word" in',
    `      ${known.join('|')}) cmdpath="$cmdpath $word" ;;`,
    '    esac',
    '  done',
    '  case "$cmdpath" in',
    ...nodes.map((n) => `    "${n.path}") words="${wordsFor(n)}" ;;`),
    '  esac',
    '  COMPREPLY=($(compgen -W "$words" -- "$cur"))',
    '}',
    `complete -F ${fn} ${name}`,
    '',
  ].join('\n');
}

/**
 * `fleetpatch completion zsh`: a script for `source <(fleetpatch completion zsh)` (or saved as
 * `_fleetpatch` on $fpath), native zsh: the same walk as bash's, offered with compadd.
 */
export function zshCompletion(program: Command): string {
  const nodes = completionNodes(program);
  assertPlain(nodes);
  const name = program.name();
  const fn = `_${name.replace(/-/g, '_')}`;
  const known = nodes.filter((n) => n.path !== '').map((n) => `"${n.path}"`);
  return [
    `#compdef ${name}`,
    `# zsh completion for ${name}; generated from its command tree (${name} completion zsh)`,
    `${fn}() {`,
    '  local cmdpath="" word i',
    '  local -a candidates',
    '  for ((i = 2; i < CURRENT; i++)); do',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell, not a template
    '    word="${words[i]}"',
    '    case "$cmdpath $word" in',
    `      ${known.join('|')}) cmdpath="$cmdpath $word" ;;`,
    '    esac',
    '  done',
    '  case "$cmdpath" in',
    ...nodes.map((n) => `    "${n.path}") candidates=(${wordsFor(n)}) ;;`),
    '  esac',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell, not a template
    '  compadd -- "${candidates[@]}"',
    '}',
    `compdef ${fn} ${name}`,
    '',
  ].join('\n');
}

/** Subcommands and flags alike: the shell keeps those that start with what was typed. */
function wordsFor(node: CompletionNode): string {
  return [...node.subcommands, ...node.options].join(' ');
}
