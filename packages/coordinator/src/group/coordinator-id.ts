import { hostname } from 'node:os';

/**
 * A coordinator's default name in its group: the host and the port it listens on, stable across
 * restarts (a restarted coordinator takes its own rollouts back at once). With port 0 (a port the
 * system picks, as tests do) the process id stands in for it, so two coordinators on one host differ.
 */
export function groupCoordinatorId(port: number): string {
  return `${hostname()}:${port === 0 ? `pid${process.pid}` : port}`;
}
