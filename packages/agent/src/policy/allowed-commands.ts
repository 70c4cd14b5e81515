/**
 * One entry of `health.allowedCommands`:
 * - `["/usr/local/bin/check-app", "--quick"]`: exactly this argv;
 * - `"/usr/local/bin/check-app"`: exactly `[path]`, with no arguments (until i10 it allowed the
 *   program with any arguments, which let an allowed `/usr/bin/curl` write files anywhere);
 * - `{ "argvPrefix": ["/usr/bin/curl", "-fsS"], "allowedArgs": ["http://127.0.0.1:8080/health"] }`:
 *   this prefix, then any number of arguments each one of `allowedArgs` (none when it is empty).
 */
export type AllowedCommand =
  | string
  | readonly string[]
  | { argvPrefix: readonly string[]; allowedArgs: readonly string[] };

/** Whether `argv` is allowed by one of `allowed`; a program path alone never is, unless listed with no arguments. */
export function isCommandAllowed(argv: readonly string[], allowed: readonly AllowedCommand[]): boolean {
  return allowed.some((entry) => {
    if (typeof entry === 'string') return argv.length === 1 && argv[0] === entry;
    if (isArgv(entry)) return sameArgv(argv, entry);
    const { argvPrefix, allowedArgs } = entry;
    if (argv.length < argvPrefix.length || !sameArgv(argv.slice(0, argvPrefix.length), argvPrefix)) return false;
    return argv.slice(argvPrefix.length).every((arg) => allowedArgs.includes(arg));
  });
}

function isArgv(entry: AllowedCommand): entry is readonly string[] {
  return Array.isArray(entry);
}

function sameArgv(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((arg, i) => arg === b[i]);
}
