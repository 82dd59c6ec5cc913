import type { Trajectory } from '../../src/rollouts/types.js';

/** Trajectories for the dataset-export tests: a parallel call, and the demo's broken call and its recovery, with multi-byte text. */

export function trajectory(messages: unknown[], extra: Partial<Trajectory> = {}): Trajectory {
  return {
    id: 't', runId: 'r', scenarioId: 's', environmentId: 'e', mode: 'non-conversational', sample: 0, model: 'm', userModel: null,
    sampling: { temperature: 1, maxTokens: 100 }, tools: [{ type: 'function', function: { name: 'get', parameters: { type: 'object' } } }],
    messages: messages as Trajectory['messages'], userMessages: null, steps: [], checks: [], reward: 1, solved: true, checksError: null,
    termination: { reason: 'agent-finished', detail: null }, turns: 1, usage: { promptTokens: 0, completionTokens: 0, modelCalls: 0 },
    timings: { startedAt: '', wallMs: 0, envUs: 0 }, finalState: {}, lineage: {}, ...extra,
  };
}

export const call = (id: string, name: string, args: string) => ({ id, type: 'function', function: { name, arguments: args } });
export const PARALLEL = trajectory([
  { role: 'system', content: 'sys' },
  { role: 'user', content: 'do it' },
  { role: 'assistant', content: null, reasoning_content: 'plan', tool_calls: [call('a', 'get', '{"x":1}'), call('b', 'get', '{"x":2}')] },
  { role: 'tool', tool_call_id: 'a', content: '{"success":true}' },
  { role: 'tool', tool_call_id: 'b', content: '{"success":false}' },
  { role: 'assistant', content: 'done' },
  { role: 'user', content: 'thanks ###STOP###' },
]);

export const TOOLS = [
  { type: 'function', function: { name: 'get_member', parameters: { type: 'object', properties: { member_id: { type: 'string' } }, required: ['member_id'] } } },
  { type: 'function', function: { name: 'pay_fine', parameters: { type: 'object', properties: { member_id: { type: 'string' }, amount: { type: 'number' } } } } },
  { type: 'function', function: { name: 'borrow_book', parameters: { type: 'object', properties: { member_id: { type: 'string' }, book_id: { type: 'string' } } } } },
];
export const step = (turn: number, toolCallId: string, tool: string, rawArguments: string, runtimeError: string | null = null) => ({ turn, tool, toolCallId, rawArguments, result: {}, runtimeError, us: 0 });
/** The demo's broken call (Oskar): one message with unparseable JSON and a schema-refused type, then the recovery. Multi-byte text throughout. */
export const BROKEN = trajectory(
  [
    { role: 'system', content: 'Help the user — politely 🙂' },
    { role: 'user', content: "I'm member M3 (Oskar Lind, Zoë's 兄弟), I want to pay everything I owe and borrow Beloved, book B9." },
    { role: 'assistant', content: null, reasoning_content: 'Pay first, then borrow. 先付款', tool_calls: [call('c1', 'get_member', '{"member_id": "M3"'), call('c2', 'pay_fine', '{"member_id": "M3", "amount": "6"}')] },
    { role: 'tool', tool_call_id: 'c1', content: '{"success":false,"error":"the arguments are not valid JSON (Unexpected end of JSON input); send one JSON object of named arguments"}' },
    { role: 'tool', tool_call_id: 'c2', content: '{"success":false,"error":"invalid arguments for pay_fine:\\n- at amount: must be number"}' },
    { role: 'assistant', content: 'Je vérifie — 确认 ✅', reasoning_content: 'Amount is a number.', tool_calls: [call('c3', 'pay_fine', '{"member_id": "M3", "amount": 6}')] },
    { role: 'tool', tool_call_id: 'c3', content: '{"success":true,"message":"Oskar Lind paid 6 — reçu 🧾"}' },
    { role: 'assistant', content: null, tool_calls: [call('c4', 'borrow_book', '{"member_id": "M3", "book_id": "B9"}')] },
    { role: 'tool', tool_call_id: 'c4', content: '{"success":true,"message":"Lent Beloved to Oskar Lind"}' },
    { role: 'assistant', content: "Done: Oskar's fines are paid and Beloved is lent to him. 📚 Anything else?" },
  ],
  {
    tools: TOOLS,
    turns: 4,
    steps: [
      step(1, 'c1', 'get_member', '{"member_id": "M3"', 'INVALID_ARGUMENTS'),
      step(1, 'c2', 'pay_fine', '{"member_id": "M3", "amount": "6"}', 'INVALID_ARGUMENTS'),
      step(2, 'c3', 'pay_fine', '{"member_id": "M3", "amount": 6}'),
      step(3, 'c4', 'borrow_book', '{"member_id": "M3", "book_id": "B9"}'),
    ],
  },
);
