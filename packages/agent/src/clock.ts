// The one Clock lives in shared; this re-export keeps the agent's existing imports working.
export { type Clock, systemClock } from '@fleetpatch/shared';
