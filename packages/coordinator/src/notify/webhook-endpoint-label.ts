import { createHash } from 'node:crypto';

/**
 * What names a webhook endpoint in logs and on the audit trail, which every viewer reads. Never its
 * URL: Slack, Discord and Mattermost put the credential in the path (`/services/T…/B…/<secret>`),
 * others in the query or the userinfo, and whoever has it can post as fleetpatch. So the endpoint's
 * configured `name`, or else its origin and the first 8 hex digits of the full URL's sha256
 * (`https://hooks.slack.com#3f2a9c1b`): enough to tell two endpoints on one host apart, nothing to
 * post with.
 */
export function webhookEndpointLabel(endpoint: { url: string; name?: string | undefined }): string {
  if (endpoint.name !== undefined) return endpoint.name;
  const digest = createHash('sha256').update(endpoint.url).digest('hex');
  return `${new URL(endpoint.url).origin}#${digest.slice(0, 8)}`;
}

/**
 * An attempt's error as text without the endpoint's URL: fetch names the URL in some of its errors
 * (one with a user and password in it is refused with the whole URL in the message), and this text
 * goes where the label goes. The cause, when there is one, says what `fetch failed` does not.
 */
export function webhookErrorText(err: unknown, url: string, label: string): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const why = cause?.code ?? cause?.message;
  let text = why === undefined ? String(err) : `${String(err)} (${String(why)})`;
  for (const spelling of new Set([url, new URL(url).href])) text = text.replaceAll(spelling, label);
  return text;
}
