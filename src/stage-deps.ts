import type { ModelGateway } from './llm/gateway.js';
import type { Logger } from './logger.js';
import type { SandboxRunner } from './sandbox/runner.js';
import type { SynthesisStore } from './synthesis/store.js';

/**
 * What a pipeline stage works with: the model gateway, the sandbox, the run store, and the job's
 * logger and abort signal. Stages take it as an argument, so tests can hand them memory versions.
 */
export interface StageDeps {
  readonly gateway: ModelGateway;
  readonly sandbox: SandboxRunner;
  readonly store: SynthesisStore;
  readonly logger?: Logger | undefined;
  readonly signal?: AbortSignal | undefined;
}
