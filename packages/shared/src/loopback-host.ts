/**
 * Whether a host name or address stays on this machine. Plain HTTP is tolerable there (nobody else
 * can read the traffic) and nowhere else: the coordinator warns, the CLI refuses to send a token.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127(?:\.\d{1,3}){3}$/.test(bare);
}
