import type { PromptMarker } from '../synthesis/prompt-markers.js';
import { AGENT_PREFIX, USER_GREETING, type ROLLOUT_PROMPT_VERSIONS } from './prompts.js';

/** The markers of the rollout stages' requests (src/rollouts/prompts.ts, sent by src/rollouts/episode.ts); see PromptMarker. */
export const ROLLOUT_PROMPT_MARKERS = {
  'rollout.policy': [
    { text: 'Complete the given task step by step.', in: 'system', then: 'how to finish: a final message without a tool call ends the episode', when: 'the mode is non-conversational' },
    { text: 'Help the user with their requests', in: 'system', then: 'until they end the conversation; ask the user for what the tools cannot give', when: 'the mode is conversational' },
    { text: 'The environment: ', in: 'system', then: "the environment's introduction" },
  ],
  'rollout.user': [
    { text: 'Your goal: ', in: 'system', then: "the scenario's user goal" },
    { text: 'Facts you know: ', in: 'system', then: 'one `- <fact>` line per fact the user may reveal' },
    { text: `${AGENT_PREFIX}${USER_GREETING}`, in: 'user', then: 'nothing: it is the first user message, sent before the policy is asked anything' },
    { text: AGENT_PREFIX, in: 'user', then: "each later user message: the agent's reply, as the agent wrote it" },
  ],
} as const satisfies Record<keyof typeof ROLLOUT_PROMPT_VERSIONS, readonly PromptMarker[]>;
