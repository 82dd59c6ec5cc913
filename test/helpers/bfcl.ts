import type { ChatResult, ModelGateway } from '../../src/llm/gateway.js';
import type { BfclGoldTurn } from '../../src/importers/bfcl-check.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';

/** A tool call as an agent sends it: `arguments` a value (sent as JSON.stringify writes it) or the text itself. */
export interface AgentCall {
  readonly name: string;
  readonly arguments: unknown;
}

/** The JSON text of the gold turns embedded in an imported scenario's BFCL check (`GOLD = json.loads("...")`), as Python reads it. */
export function goldTextOf(scenario: ScenarioRecord): string {
  const check = scenario.checklist?.[0]?.check ?? '';
  const m = /^GOLD = json\.loads\((".*")\)$/m.exec(check);
  if (!m) throw new Error(`scenario ${scenario.id}: no GOLD in its check`);
  return JSON.parse(m[1]!) as string;
}

/** The gold turns embedded in an imported scenario's BFCL check, parsed. */
export function goldOf(scenario: ScenarioRecord): BfclGoldTurn[] {
  return JSON.parse(goldTextOf(scenario)) as BfclGoldTurn[];
}

/**
 * A policy model (outside the product, so stood in for) that answers a scripted multi-turn episode
 * with given calls: at the start of user turn i, all of `turns[i]` in one assistant message (none:
 * a text answer); after the tool results, a text answer that ends the turn.
 */
export function callingGateway(turns: readonly (readonly AgentCall[])[]): ModelGateway & { requests: number } {
  const gateway = {
    requests: 0,
    chat: (_ctx: unknown, request: { messages: readonly { role: string }[] }) => {
      gateway.requests += 1;
      const msgs = request.messages;
      let turn = -1;
      msgs.forEach((m, i) => {
        if (m.role === 'user' && msgs[i - 1]?.role !== 'user') turn += 1;
      });
      const last = msgs.at(-1)!;
      const calls = last.role === 'user' ? (turns[turn] ?? []) : [];
      const message = calls.length
        ? { role: 'assistant', content: null, refusal: null, tool_calls: calls.map((c, i) => ({ id: `call_${turn}_${i}`, type: 'function', function: { name: c.name, arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments) } })) }
        : { role: 'assistant', content: `Fait pour le tour ${turn + 1} ✅ — 完成`, refusal: null };
      return Promise.resolve({ message, finishReason: calls.length ? 'tool_calls' : 'stop', usage: { promptTokens: 1, completionTokens: 1 }, model: 'gold-agent', cached: false, toolCallFormat: 'native', tokens: null, sampling: {} } as unknown as ChatResult);
    },
    structured: () => Promise.reject(new Error('a scripted multi-turn episode must not call the user simulator')),
    embed: () => Promise.reject(new Error('not used')),
  };
  return gateway;
}
