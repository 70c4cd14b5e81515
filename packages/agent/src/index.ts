export { AGENT_VERSION, Agent, type AgentOptions } from './agent.js';
export { type AgentConfig, AgentConfigSchema, loadAgentConfig } from './config.js';
export { Journal, type JournalEntry, JournalEntrySchema, readEntryFile } from './journal.js';
export { OrderExecutor } from './orders/order-executor.js';
