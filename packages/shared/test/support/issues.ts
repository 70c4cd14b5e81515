import type { z } from 'zod';

/**
 * What a schema says about `value`, as `path: message` lines (`: message` at the top level), or
 * `[]` when it accepts it: what an operator would read in the 400 answer. A record key's issues
 * come nested under zod's "Invalid key in record"; they are listed in its place, at the key.
 */
export function issues(schema: z.ZodType, value: unknown): string[] {
  const result = schema.safeParse(value);
  return result.success ? [] : flatten(result.error.issues, []);
}

function flatten(list: readonly z.core.$ZodIssue[], at: readonly PropertyKey[]): string[] {
  return list.flatMap((issue) => {
    const path = [...at, ...issue.path];
    if (issue.code === 'invalid_key') return flatten(issue.issues, path);
    return [`${path.map(String).join('.')}: ${issue.message}`];
  });
}
