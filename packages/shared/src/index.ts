export * from './api-views.js';
export * from './errors.js';
export * from './health-check.js';
export * from './patch.js';
export * from './protocol.js';
export * from './rollout.js';
export * from './validation.js';
export * from './wave-plan.js';
