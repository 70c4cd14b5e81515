// Loaded with `node --import` into the bench's coordinator and agent processes when `--cpu-prof DIR` is
// given: each SIGUSR2 starts V8's CPU profiler, the next one stops it and writes
// DIR/<role>-<pid>-<phase>.cpuprofile, where the phase is the name the bench put in DIR/.phase first.
// Per phase, not per run: a whole run's profile is mostly enrolment and the reconnect storm, and
// says little about the rollout. (`--cpu-prof` itself is refused in NODE_OPTIONS.)
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.FLEETPATCH_PROFILE_DIR ?? '.';
const role = process.env.FLEETPATCH_PROFILE_ROLE ?? 'process';
const session = new Session();
session.connect();
session.post('Profiler.enable');
let running = false;
// A process started mid-phase (the reconnect storm's agent processes) profiles from its first line.
if (process.env.FLEETPATCH_PROFILE_FROM_START === '1') {
  session.post('Profiler.start');
  running = true;
}

process.on('SIGUSR2', () => {
  if (!running) {
    session.post('Profiler.start');
    running = true;
    return;
  }
  running = false;
  const phase = readFileSync(join(dir, '.phase'), 'utf8').trim();
  // The in-process session answers synchronously: the file is written before the handler returns.
  session.post('Profiler.stop', (err, result) => {
    if (!err) writeFileSync(join(dir, `${role}-${process.pid}-${phase}.cpuprofile`), JSON.stringify(result.profile));
  });
});
