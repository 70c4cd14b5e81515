// @ts-check
// A Stryker ignorer (stryker.config.mjs `ignorers: ['log-lines']`): no mutant inside a logger
// call statement such as `ctx.log.info({ path }, 'file apply: replaced')`. What a log line says is
// for the people reading it; no invariant rests on its text or fields, and a test pinning them
// would only pin wording. Errors thrown, results returned and messages sent are still mutated.
import { declareValuePlugin, PluginKind } from '@stryker-mutator/api/plugin';

/**
 * The little of a Babel AST node this reads.
 * @typedef {{ type: string, name?: string, expression?: AstNode, callee?: AstNode, object?: AstNode, property?: AstNode }} AstNode
 */

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
const LOGGERS = new Set(['log', 'logger']);

/** @param {AstNode | undefined} node */
const nameOf = (node) => (node?.type === 'Identifier' ? node.name : undefined);

/** `log.info(…);`, `ctx.log.warn(…);`, `this.deps.logger.error(…);` */
function isLogLine(/** @type {AstNode} */ statement) {
  const call = statement.type === 'ExpressionStatement' ? statement.expression : undefined;
  const callee = call?.type === 'CallExpression' ? call.callee : undefined;
  if (callee?.type !== 'MemberExpression' || !LEVELS.has(nameOf(callee.property) ?? '')) return false;
  const logger = callee.object?.type === 'MemberExpression' ? callee.object.property : callee.object;
  return LOGGERS.has(nameOf(logger) ?? '');
}

export const strykerPlugins = [
  declareValuePlugin(PluginKind.Ignore, 'log-lines', {
    /** @param {{ node: AstNode }} path */
    shouldIgnore: (path) => (isLogLine(path.node) ? 'a log line: its wording carries no invariant' : undefined),
  }),
];
