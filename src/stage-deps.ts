import { ModelOutputError } from './errors.js';
import type { ModelGateway } from './llm/gateway.js';
import type { Logger } from './logger.js';
import type { SandboxRunner } from './sandbox/runner.js';
import type { RunStore } from './runs/store.js';

/**
 * What a pipeline stage works with: the model gateway, the sandbox, the run store, and the job's
 * logger and abort signal. Stages take it as an argument (the worker builds it per job).
 */
export interface StageDeps {
  readonly gateway: ModelGateway;
  readonly sandbox: SandboxRunner;
  readonly store: RunStore;
  readonly logger?: Logger | undefined;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Runs a stage's work on one item; when the model's output stays invalid after the repair rounds
 * (ModelOutputError), `end` ends that item with the error and the run goes on. Anything else is thrown
 * for the job to retry or give up.
 */
export async function endingItemOnInvalidOutput<T>(work: () => Promise<T>, end: (err: ModelOutputError) => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (!(err instanceof ModelOutputError)) throw err;
    return end(err);
  }
}
