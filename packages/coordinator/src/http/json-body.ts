import { ErrorCode, FleetError } from '@fleetpatch/shared';

/** Deeper than any request the API describes; a limit so nothing walks an attacker's nesting. */
export const MAX_JSON_DEPTH = 64;

/**
 * Reads a JSON request body, refusing — with a 400 that names where — what JSON.parse accepts but
 * the coordinator must not keep:
 * - strings (values or keys) that are not well-formed UTF-16: a lone surrogate stored once makes
 *   every later answer that includes it unreadable to strict JSON readers (jq), for everyone;
 * - strings (values or keys) holding a NUL character, which PostgreSQL's text and jsonb cannot keep
 *   (on that store the write would fail with a 500); a file's bytes that include one go as base64;
 * - `__proto__` keys and `constructor.prototype`: harmless to JSON.parse, poison to any later
 *   object spread or merge;
 * - nesting deeper than MAX_JSON_DEPTH.
 * An empty body is no body (each route's schema decides whether that is allowed): it is what
 * `curl -X POST -H 'content-type: application/json'` sends.
 */
export function parseJsonBody(text: string): unknown {
  if (text.length === 0) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FleetError(ErrorCode.validationFailed, `body is not valid JSON: ${(err as Error).message}`, undefined, {
      cause: err,
    });
  }
  checkValue(value, 'body', 0);
  return value;
}

function checkValue(value: unknown, path: string, depth: number): void {
  if (typeof value === 'string') {
    if (!value.isWellFormed()) refuse(path, 'is not well-formed Unicode (a lone surrogate)');
    if (value.includes('\u0000')) refuse(path, NUL_REFUSED);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  if (depth >= MAX_JSON_DEPTH) refuse(path, `nests deeper than ${MAX_JSON_DEPTH} levels`);
  // Arrays too: their keys are their indexes, which pass every key check.
  for (const [key, item] of Object.entries(value)) {
    const itemPath = `${path}.${key.isWellFormed() ? key : key.toWellFormed()}`;
    if (!key.isWellFormed()) refuse(itemPath, 'is a key that is not well-formed Unicode (a lone surrogate)');
    if (key.includes('\u0000')) refuse(itemPath.replaceAll('\u0000', '\\u0000'), `is a key that ${NUL_REFUSED}`);
    if (key === '__proto__') refuse(itemPath, 'is a refused key (__proto__)');
    if (key === 'constructor' && item !== null && typeof item === 'object' && Object.hasOwn(item, 'prototype')) {
      refuse(`${itemPath}.prototype`, 'is a refused key (constructor.prototype)');
    }
    checkValue(item, itemPath, depth + 1);
  }
}

const NUL_REFUSED = 'holds a NUL character (U+0000), which the store cannot keep (a file with one: encoding base64)';

function refuse(path: string, message: string): never {
  throw new FleetError(ErrorCode.validationFailed, `invalid request: ${path}: ${message}`, {
    issues: [{ path, message }],
  });
}
