import { z } from 'zod';

/**
 * Services after a change: which systemd units a patch restarts (part of the change, so signed with
 * it), and what the agent found afterwards — processes still running deleted or replaced libraries,
 * and whether the host wants a reboot.
 */

/** Units one patch may restart after apply, and after revert. */
export const MAX_RESTART_UNITS = 20;
/** Processes one after-change report names (the rest are counted). */
export const MAX_STALE_PROCESSES = 100;
/** Deleted files one stale process lists, and how long each path may be (a frame holds 100 × 5 × 1 kB). */
export const MAX_STALE_FILES = 5;
export const MAX_STALE_PATH_CHARS = 1024;

/**
 * A systemd service unit by its full name (`nginx.service`, `getty@tty1.service`): no leading `-`,
 * so it can never be read as an option, and only `.service` — restarting a target, a socket or a
 * mount is not what "restart the service that uses the library" means.
 */
export const ServiceUnitSchema = z
  .string()
  .max(256)
  .regex(
    /^[A-Za-z0-9_][A-Za-z0-9:_.\\@-]*\.service$/,
    'must be a systemd service unit such as "nginx.service" (letters, digits, ":_.\\@-", ending in .service)',
  );

/**
 * Units to restart once the change is in (before the health checks run) and once it is taken back
 * (a revert, or the agent restoring its snapshot). Each list at most `MAX_RESTART_UNITS`, no repeats.
 */
export const ServiceRestartsSchema = z
  .object({
    afterApply: z.array(ServiceUnitSchema).max(MAX_RESTART_UNITS).default([]),
    afterRevert: z.array(ServiceUnitSchema).max(MAX_RESTART_UNITS).default([]),
  })
  .strict()
  .superRefine((restarts, ctx) => {
    for (const key of ['afterApply', 'afterRevert'] as const) {
      const seen = new Set<string>();
      restarts[key].forEach((unit, i) => {
        if (seen.has(unit)) ctx.addIssue({ code: 'custom', message: `${unit} is listed twice`, path: [key, i] });
        seen.add(unit);
      });
    }
  });
export type ServiceRestarts = z.infer<typeof ServiceRestartsSchema>;

/** One unit restarted (or not): how long it took and what systemctl said when it failed. */
export const UnitRestartSchema = z.object({
  unit: z.string().max(256),
  when: z.enum(['apply', 'revert']),
  ok: z.boolean(),
  /** Empty when it worked; else systemctl's exit and the tail of its output. */
  detail: z.string().max(2000),
  ms: z.number().int().min(0),
});
export type UnitRestart = z.infer<typeof UnitRestartSchema>;

/** A process that still maps a file that was deleted or replaced (a library dpkg upgraded under it). */
export const StaleProcessSchema = z.object({
  pid: z.number().int().min(1),
  command: z.string().max(256),
  /** Its systemd unit, from its cgroup; null for a process outside any service (a login shell, say). */
  unit: z.string().max(256).nullable(),
  files: z.array(z.string().max(MAX_STALE_PATH_CHARS)).max(MAX_STALE_FILES),
});
export type StaleProcess = z.infer<typeof StaleProcessSchema>;

/**
 * What the agent found once a package change (or its revert) was in and the restarts done: who
 * still runs the old code, and whether the host wants a reboot — and whether this change is why.
 */
export const AfterChangeReportSchema = z.object({
  restarts: z.array(UnitRestartSchema).max(2 * MAX_RESTART_UNITS),
  /** How the stale processes were found: `proc-maps` (/proc/<pid>/maps) or `needrestart` (`needrestart -b`). */
  staleSource: z.enum(['proc-maps', 'needrestart']),
  staleProcesses: z.array(StaleProcessSchema).max(MAX_STALE_PROCESSES),
  /** Stale processes beyond those listed. */
  moreStaleProcesses: z.number().int().min(0),
  /** Units among the stale processes: the services still on the old code. */
  staleUnits: z.array(z.string().max(256)).max(MAX_STALE_PROCESSES),
  reboot: z.object({
    /** `/var/run/reboot-required` exists. */
    required: z.boolean(),
    /** It did not before this change, or its `.pkgs` gained a package this change touched. */
    causedByThisChange: z.boolean(),
    /** What `/var/run/reboot-required.pkgs` names (at most 100). */
    packages: z.array(z.string().max(256)).max(100),
  }),
});
export type AfterChangeReport = z.infer<typeof AfterChangeReportSchema>;
