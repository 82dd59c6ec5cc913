import { runEpisode } from '../../src/rollouts/episode.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import type { SandboxRunner } from '../../src/sandbox/runner.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { callingGateway, type AgentCall } from './bfcl.js';

/** One non-conversational episode of `scenario` in which the agent makes `calls` in one message, then answers in text. */
export function playCalls(sandbox: SandboxRunner, scenario: ScenarioRecord, env: EnvironmentRecord, calls: readonly AgentCall[]) {
  return runEpisode(
    { gateway: callingGateway([calls]), sandbox },
    { runId: scenario.runId, scenario, env, mode: 'non-conversational', sample: 0, limits: { maxSteps: 5, maxTokens: 0, maxWallMs: 60_000 }, sandboxLimits: DEFAULT_SANDBOX_LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
  );
}
