import { z } from 'zod';
import { ErrorCode } from './errors.js';
import { StatementRefusalCode } from './signed-statement.js';

/*
 * An agent that refuses an order before running it (a signature check or its local policy) answers
 * `errorCode: policy_denied`, and a signed-order refusal puts its own code first in the reason
 * (`tampered: …`), since results carry ErrorCode values only. The coordinator records each such
 * answer as a security event; one definition here so the agent that writes the reason, the
 * coordinator that parses it and the CLI that shows the event agree.
 */

/** The audit event type of an order an agent refused. */
export const ORDER_REFUSED_EVENT = 'security.order_refused';

const STATEMENT_REFUSAL_CODES: ReadonlySet<string> = new Set(Object.values(StatementRefusalCode));

/** A signed-order refusal code, or `policy_denied` for a rule of the agent's local policy. */
export const OrderRefusalCodeSchema = z.enum([
  ...(Object.values(StatementRefusalCode) as [StatementRefusalCode, ...StatementRefusalCode[]]),
  ErrorCode.policyDenied,
]);
export type OrderRefusalCode = z.infer<typeof OrderRefusalCodeSchema>;

/** The reason an agent reports for a signed-order refusal: its code first. */
export function statementRefusalReason(code: StatementRefusalCode, reason: string): string {
  return `${code}: ${reason}`;
}

/**
 * The refusal code of an agent's result, or undefined when the result is not a refusal: the
 * statement refusal code the reason starts with, else `policy_denied`. The reason is the agent's
 * own text, so only a known code is taken from it.
 */
export function orderRefusalCodeOf(
  errorCode: string | undefined,
  reason: string | undefined,
): OrderRefusalCode | undefined {
  if (errorCode !== ErrorCode.policyDenied) return undefined;
  const prefix = /^([a-z_]+): /.exec(reason ?? '')?.[1];
  return prefix !== undefined && STATEMENT_REFUSAL_CODES.has(prefix)
    ? (prefix as StatementRefusalCode)
    : ErrorCode.policyDenied;
}

/** The data of an `ORDER_REFUSED_EVENT`. */
export const OrderRefusedDataSchema = z
  .object({
    orderId: z.string(),
    /** Which order was refused: the rollout's apply, or a revert of it. */
    order: z.enum(['apply', 'revert']),
    code: OrderRefusalCodeSchema,
    reason: z.string(),
  })
  .strict();
export type OrderRefusedData = z.infer<typeof OrderRefusedDataSchema>;
