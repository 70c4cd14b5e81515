export { type BuildAppOptions, buildApp, type FleetServices } from './app.js';
export { type CoordinatorConfig, CoordinatorConfigSchema, loadCoordinatorConfig } from './config.js';
export { type AgentChannel, RolloutEngine } from './engine/rollout-engine.js';
export { AGENT_SOCKET_PATH } from './hub/agent-hub.js';
export { InventorySync } from './inventory/inventory-sync.js';
export { Store } from './store/store.js';
