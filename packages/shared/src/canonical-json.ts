/**
 * RFC 8785 JSON Canonicalization Scheme (JCS): one byte sequence per JSON value, so that a signature
 * made by this CLI can be checked by a program in another language that canonicalizes the same value.
 *
 * - objects: members sorted by their names as arrays of UTF-16 code units (not by locale, not by
 *   UTF-8 bytes), written `{"a":1,"b":2}` with no whitespace;
 * - arrays: in order;
 * - numbers: ECMAScript's Number::toString (shortest round-trip form, `1e+21`, `1e-7`, `-0` as `0`),
 *   which is what `JSON.stringify` writes for a finite number; NaN and ±Infinity have no JSON form;
 * - strings: `JSON.stringify`'s escaping (`\"`, `\\`, `\b\f\n\r\t`, other controls as `\u00xx` in
 *   lower-case hex, everything else as is), which is RFC 8785's for well-formed strings; a lone
 *   surrogate cannot be encoded as UTF-8 and is refused.
 *
 * Anything that is not JSON data is refused rather than dropped or converted: `undefined` (also as
 * a member value or an array hole), functions, symbols, bigint, and objects that are not plain
 * (a `Date`, a `Map`, a class instance — `JSON.stringify` would quietly call `toJSON` or drop them).
 * The caller encodes the result as UTF-8.
 */
export function canonicalJson(value: unknown): string {
  return serialize(value, '$', 0);
}

/** A JSON value nested deeper than this is refused (a statement is a few levels deep; a cycle is infinitely deep). */
export const MAX_CANONICAL_JSON_DEPTH = 64;

/** The value has no canonical JSON form; `path` says where (`$.patch.change.mode`). */
export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(`${path}: ${message}`);
  }
}

function serialize(value: unknown, path: string, depth: number): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalJsonError(`${value} has no JSON form`, path);
      return JSON.stringify(value);
    case 'string':
      if (!value.isWellFormed()) throw new CanonicalJsonError('holds a lone surrogate', path);
      return JSON.stringify(value);
    case 'object':
      if (depth >= MAX_CANONICAL_JSON_DEPTH) {
        throw new CanonicalJsonError(`nested deeper than ${MAX_CANONICAL_JSON_DEPTH} (or a cycle)`, path);
      }
      return Array.isArray(value) ? serializeArray(value, path, depth) : serializeObject(value, path, depth);
    default:
      throw new CanonicalJsonError(`a ${typeof value} has no JSON form`, path);
  }
}

function serializeArray(array: readonly unknown[], path: string, depth: number): string {
  const items: string[] = [];
  // An index loop, not map: map skips holes, and a hole is an `undefined` to refuse.
  for (let i = 0; i < array.length; i++) items.push(serialize(array[i], `${path}[${i}]`, depth + 1));
  return `[${items.join(',')}]`;
}

function serializeObject(object: object, path: string, depth: number): string {
  const prototype: unknown = Object.getPrototypeOf(object);
  if (prototype !== Object.prototype && prototype !== null) {
    throw new CanonicalJsonError('only plain objects have a JSON form', path);
  }
  if (Object.getOwnPropertySymbols(object).length > 0) throw new CanonicalJsonError('has a symbol key', path);
  const record = object as Record<string, unknown>;
  // `<` on strings compares UTF-16 code units, which is exactly RFC 8785's order.
  const names = Object.keys(record).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const members = names.map((name) => {
    if (!name.isWellFormed()) throw new CanonicalJsonError('a member name holds a lone surrogate', path);
    return `${JSON.stringify(name)}:${serialize(record[name], `${path}.${name}`, depth + 1)}`;
  });
  return `{${members.join(',')}}`;
}
