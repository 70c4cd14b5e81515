import { isLoopbackHost } from '@fleetpatch/shared';
import type { CoordinatorConfig } from './config.js';
import type { TlsCredentials } from './tls-credentials.js';

/**
 * What `fleetpatch-coordinator --check-config` prints once the configuration has loaded: what it
 * will do, in a few lines a person can check. Token names and roles, never a token or its hash.
 */
export function coordinatorConfigSummary(
  config: CoordinatorConfig,
  tls: TlsCredentials | undefined,
  store: string,
): string {
  const scheme = tls ? 'https' : 'http';
  const lines = [
    'configuration OK',
    `listen:        ${scheme}://${config.host}:${config.port}${tls || isLoopbackHost(config.host) ? '' : '  (WARNING: plain HTTP off loopback)'}`,
    `store:         ${store}`,
    tls
      ? `tls:           certificate ${tls.fingerprint256}, valid to ${tls.validTo}${tls.expired ? '  (EXPIRED)' : ''}`
      : 'tls:           off',
    `api tokens:    ${config.apiTokens.length === 0 ? 'none (every call but the public routes is refused)' : config.apiTokens.map((t) => `${t.name} (${t.role})`).join(', ')}`,
    `metrics:       /metrics ${config.metrics.token || config.metrics.tokenSha256 ? 'needs its bearer token' : 'public'}`,
    `approvals:     at least ${config.minApprovals} per rollout`,
    `webhooks:      ${config.webhooks.length}`,
    `log level:     ${config.logLevel}`,
  ];
  return `${lines.join('\n')}\n`;
}
