import type { HealthCheck } from '@fleetpatch/shared';

/**
 * The name a check goes by in results and reasons: its own `name`, or what it looks at, so an
 * operator reading "tcp check '10.0.0.5:5432' failed" needs no lookup.
 */
export function checkLabel(check: HealthCheck): string {
  if (check.name !== undefined) return check.name;
  switch (check.kind) {
    case 'command':
      return check.argv.join(' ');
    case 'http':
      return check.url;
    case 'tcp':
      return `${check.host}:${check.port}`;
    case 'systemd':
      return check.unit;
    case 'process':
      return check.processName;
    case 'file':
      return check.path;
    case 'metric':
      return check.metric === 'disk_used_percent' ? `${check.metric} ${check.mount ?? '/'}` : check.metric;
    default:
      return assertNever(check);
  }
}

export function assertNever(value: never): never {
  throw new Error(`unhandled health check kind: ${JSON.stringify(value)}`);
}
