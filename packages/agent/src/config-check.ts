import { type AgentCredential, readCredential } from './agent-credential.js';
import { type AgentConfig, isInsecureUrl } from './config.js';

/**
 * `fleetpatch-agent --check-config`, once the configuration has loaded: whether this agent can
 * start (it is enrolled, or has a join token to enroll with, under the host id it is configured
 * for), and a summary of what it will do. Never prints the join token or the key.
 */
export async function checkAgentConfig(config: AgentConfig): Promise<{ ok: boolean; text: string }> {
  const problems: string[] = [];
  let credential: AgentCredential | undefined;
  try {
    credential = await readCredential(config.dataDir);
  } catch (err) {
    problems.push(`dataDir: ${(err as Error).message}`);
  }
  if (credential && config.hostId && config.hostId !== credential.hostId) {
    problems.push(`hostId: "${config.hostId}", but this agent is enrolled as "${credential.hostId}"`);
  }
  if (!credential && problems.length === 0 && !config.joinToken) {
    problems.push('joinToken: not enrolled yet, and no join token to enroll with (joinTokenFile)');
  }
  const enrollment = credential
    ? `enrolled as ${credential.hostId}`
    : config.joinToken
      ? `not enrolled yet: enrolls at start as ${config.hostId ?? 'the hostname'} with its join token`
      : 'not enrolled';
  const lines = [
    problems.length === 0 ? 'configuration OK' : 'configuration NOT OK:',
    ...problems.map((problem) => `  ${problem}`),
    ...coordinatorLines(config.coordinatorUrls),
    `identity:      ${enrollment}`,
    `data dir:      ${config.dataDir}`,
    `root dir:      ${config.rootDir}`,
    `file patches:  under ${config.file.allowedRoots.join(', ')}`,
    `apt patches:   ${config.apt ? [...(config.apt.allowedPackages ?? []), ...(config.apt.allowedSourcePackages ?? []).map((s) => `source:${s}`)].join(', ') : 'off'}`,
    `units:         ${config.services.allowedUnits.join(', ') || 'none may be restarted'}`,
    `signed orders: ${config.signing ? `${config.signing.requiredSignatures} of ${config.signing.trustedKeys.length} trusted keys` : 'not required'}`,
    `metrics:       ${config.metrics.textfile ?? 'off'}`,
  ];
  return { ok: problems.length === 0, text: `${lines.join('\n')}\n` };
}

/** One line per coordinator, in the order they are tried; a list of several is labelled as such. */
function coordinatorLines(urls: readonly string[]): string[] {
  const label = urls.length === 1 ? 'coordinator:' : 'coordinators:';
  return urls.map(
    (url, index) => `${(index === 0 ? label : '').padEnd(15)}${url}${isInsecureUrl(url) ? '  (WARNING: no TLS)' : ''}`,
  );
}
