/**
 * Scripted OpenAI-compatible model server: answers chat completions,
 * embeddings and model listings from fixture scripts. See docs/scripted-model.md.
 */
export {
  loadModelScript,
  mergeModelScripts,
  ModelScript,
  ModelScriptError,
  parseModelScript,
  ScriptedFault,
  ScriptedResponse,
  ScriptedToolCall,
  ScriptRule,
  UsageCounts,
  type FaultType,
  type RuleEndpoint,
} from './fixtures.js';
export { cosineSimilarity, DEFAULT_EMBEDDING_DIMENSIONS, embeddingFromBase64, embeddingToBase64, hashEmbedding, tokenize } from './embedder.js';
export type { TokenUsage } from './protocol.js';
export {
  createModelServer,
  startModelServer,
  STAGE_HEADER,
  type ModelServer,
  type ModelServerOptions,
  type ReceivedRequest,
} from './server.js';
