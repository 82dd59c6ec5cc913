import { z } from 'zod';
import type { ChatMessage } from '../llm/gateway.js';
import type { RolloutMode } from './types.js';

export const ROLLOUT_PROMPT_VERSIONS = { 'rollout.policy': 'agent-v1', 'rollout.user': 'user-sim-v1' } as const;

/** The agent's system prompt (the seed's intent, without its "avoid parallel calls" contradiction). */
export function agentSystemPrompt(mode: RolloutMode, introduction: string): string {
  const common =
    'Use the tools to act in the environment; prefer queries before changes and adapt to what the tools return. ' +
    'Call tools with complete, valid arguments. You may call several tools in one message; they run in order.';
  const specific =
    mode === 'non-conversational'
      ? 'Complete the given task step by step. When the task is done (or cannot be done), reply with a short final message and no tool call: that ends the episode.'
      : 'Help the user with their requests until they end the conversation. Ask the user for information the tools cannot give you; do not call a tool and talk to the user in the same message. When a request is done, report the result and ask whether there is anything else.';
  return `${specific} ${common}\nThe environment: ${introduction}`;
}

/** The user simulator, given the scenario's user goal. Its thought is private; only its reply reaches the agent. */
export function userSimulatorPrompt(goal: string, facts: readonly string[]): ChatMessage {
  return {
    role: 'system',
    content:
      'You play a real person who wants an assistant to accomplish a goal for you. Reveal the details (facts) gradually and only when ' +
      'the assistant needs them; never recite the whole goal at once; stay strictly within the goal (invent nothing); keep names, ids and ' +
      'numbers exact; do not repeat what you already said. When the goal is fully achieved, end your reply with the token ###STOP### ' +
      '(only in your reply, never before the assistant has answered you). Answer with one JSON object: {"thought": your private reasoning, ' +
      '"reply": what you say to the assistant}.\n' +
      `Your goal: ${goal}\nFacts you know: ${facts.map(f => `\n- ${f}`).join('')}`,
  };
}

export const STOP_TOKEN = '###STOP###';

/** Every message the user simulator reads from the agent starts with this (its own replies are its assistant messages). */
export const AGENT_PREFIX = '[Agent] ';

/** What the agent "says" first in conversational mode, before the policy model is asked anything: the user simulator answers it with its opening request. */
export const USER_GREETING = 'Hi! How can I help you today?';

/**
 * The user simulator's answer (rollout.user), as src/rollouts/episode.ts parses it: only `reply` reaches the agent;
 * STOP_TOKEN in the reply, once the agent has spoken, ends the episode as `user-stopped`.
 */
export const UserSimulatorAnswer = z
  .strictObject({
    thought: z.string().describe('private reasoning, never shown to the agent'),
    reply: z.string().min(1).describe(`what the user says to the agent; ${STOP_TOKEN} in it ends the conversation`),
  })
  .describe('rollout.user');
