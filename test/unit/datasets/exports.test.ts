import { expect } from 'chai';
import { passesFilter, pyJson, toHF, toLlamaFactory, toOpenAI, toShareGPT } from '../../../src/datasets/trajectories.js';
import { groupStats } from '../../../src/rollouts/groups.js';
import type { Trajectory } from '../../../src/rollouts/types.js';
import { BROKEN, call, PARALLEL, step, TOOLS, trajectory } from '../../helpers/sft-fixtures.js';
import { AlpacaLine, functionCallsOf, HFPromptCompletionLine, OpenAIFineTuneLine, ShareGPTLine } from '../../helpers/formats.js';

const KEEP = { reasoning: 'keep' } as const;
const valid = (schema: { safeParse: (x: unknown) => { success: boolean; error?: unknown } }, line: unknown) => {
  const r = schema.safeParse(line);
  expect(r.success, JSON.stringify(r.error ?? '')).to.equal(true);
};
/** Every line goes through JSON text and back unchanged (emoji, CJK, accents). */
const roundTrip = (line: unknown) => expect(JSON.parse(JSON.stringify(line))).to.deep.equal(line);

describe('dataset exports', () => {
  it('OpenAI: keeps tool calls and results, drops reasoning by default, ends at the last assistant turn', () => {
    const line = toOpenAI(PARALLEL)!;
    valid(OpenAIFineTuneLine, line);
    expect(line.messages.at(-1)).to.deep.equal({ role: 'assistant', content: 'done' });
    expect(JSON.stringify(line)).not.to.include('reasoning_content');
    expect(JSON.stringify(line)).not.to.include('<think>');
  });

  it('OpenAI: a turn with a broken call stays, with weight 0; arguments stay the strings the model sent', () => {
    const line = toOpenAI(BROKEN)!;
    valid(OpenAIFineTuneLine, line);
    roundTrip(line);
    const assistants = line.messages.filter(m => m.role === 'assistant');
    expect(assistants.map(m => m.weight)).to.deep.equal([0, undefined, undefined, undefined]);
    const broken = assistants[0] as { tool_calls: { function: { arguments: string } }[] };
    expect(broken.tool_calls.map(c => c.function.arguments)).to.deep.equal(['{"member_id": "M3"', '{"member_id": "M3", "amount": "6"}']);
    expect(line.messages.filter(m => m.role === 'tool')).to.have.length(4);
    expect(line.messages.at(-1)).to.deep.equal({ role: 'assistant', content: "Done: Oskar's fines are paid and Beloved is lent to him. 📚 Anything else?" });
  });

  it('OpenAI: ends at the last turn trained on; none at all when every turn is broken', () => {
    const endsBroken = trajectory(BROKEN.messages.slice(0, 5), { tools: TOOLS, steps: BROKEN.steps.slice(0, 2), termination: { reason: 'step-limit', detail: null } });
    expect(toOpenAI(endsBroken)).to.equal(null);
    expect(toShareGPT(endsBroken)).to.deep.equal([]);
    expect(toLlamaFactory(endsBroken)).to.deep.equal([]);
    expect(toHF(endsBroken)).to.deep.equal([]);
    const cut = trajectory([...BROKEN.messages.slice(0, 7), { role: 'assistant', content: null, tool_calls: [call('c4', 'borrow_book', '{"book_id": ')] }, { role: 'tool', tool_call_id: 'c4', content: '{}' }], {
      tools: TOOLS,
      steps: [...BROKEN.steps.slice(0, 3), step(3, 'c4', 'borrow_book', '{"book_id": ', 'INVALID_ARGUMENTS')],
      termination: { reason: 'step-limit', detail: null },
    });
    expect(toOpenAI(cut)!.messages.at(-1)).to.deep.include({ role: 'assistant', content: 'Je vérifie — 确认 ✅' });
  });

  it('a call is broken by its runtime code, by a tool the policy was not given, or by arguments that are not a JSON object', () => {
    const one = (c: ReturnType<typeof call>, steps: Trajectory['steps'] = []) =>
      toOpenAI(trajectory([{ role: 'system', content: 's' }, { role: 'user', content: 'u' }, { role: 'assistant', content: null, tool_calls: [c] }, { role: 'tool', tool_call_id: c.id, content: '{}' }, { role: 'assistant', content: 'ok' }], { tools: TOOLS, steps }))!
        .messages[2] as { weight?: number };
    expect(one(call('k', 'get_member', '{"member_id": "M3"}')).weight).to.equal(undefined);
    expect(one(call('k', 'get_member', ''), [step(1, 'k', 'get_member', '')]).weight, 'empty arguments are {}').to.equal(undefined);
    expect(one(call('k', 'get_member', '{"member_id": 3}'), [step(1, 'k', 'get_member', '{"member_id": 3}', 'INVALID_ARGUMENTS')]).weight).to.equal(0);
    expect(one(call('k', 'get_membr', '{"member_id": "M3"}'), [step(1, 'k', 'get_membr', '{"member_id": "M3"}', 'UNKNOWN_TOOL')]).weight).to.equal(0);
    expect(one(call('k', 'get_member', '{"member_id": "M3"}'), [step(1, 'k', 'get_member', '{"member_id": "M3"}', 'TOOL_NOT_OFFERED')]).weight, 'a scripted turn had not offered it yet').to.equal(0);
    expect(one(call('k', 'get_member', '["M3"]')).weight).to.equal(0);
    expect(one(call('k', 'get_member', '{"member_id": ')).weight, 'no step recorded').to.equal(0);
    // The environment's own failure is not the model's: the turn is trained on.
    expect(one(call('k', 'get_member', '{"member_id": "M3"}'), [step(1, 'k', 'get_member', '{"member_id": "M3"}', 'TOOL_THREW')]).weight).to.equal(undefined);
  });

  it('ShareGPT: parallel calls are one function_call turn, their results one observation of <tool_response> blocks', () => {
    const lines = toShareGPT(PARALLEL);
    expect(lines).to.have.length(2);
    for (const l of lines) valid(ShareGPTLine, l);
    const line = lines[1]!;
    expect(line.conversations.map(c => c.from)).to.deep.equal(['human', 'function_call', 'observation', 'gpt']);
    expect(JSON.parse(line.conversations[1]!.value)).to.deep.equal([{ name: 'get', arguments: { x: 1 } }, { name: 'get', arguments: { x: 2 } }]);
    expect(line.conversations[2]!.value).to.equal('{"success":true}\n</tool_response>\n<tool_response>\n{"success":false}');
    expect(lines[0]!.conversations).to.deep.equal(line.conversations.slice(0, 2));
  });

  it('ShareGPT: one line per turn trained on; a broken turn is only context and the recovery after it is a target', () => {
    const lines = toShareGPT(BROKEN);
    expect(lines).to.have.length(3);
    for (const l of lines) {
      valid(ShareGPTLine, l);
      roundTrip(l);
    }
    const last = lines[2]!.conversations;
    expect(last.map(c => c.from)).to.deep.equal(['human', 'function_call', 'observation', 'function_call', 'observation', 'function_call', 'observation', 'gpt']);
    // The broken calls as context: the unparseable arguments as the string the model sent.
    expect(functionCallsOf(last[1]!.value)).to.deep.equal([
      { name: 'get_member', arguments: '{"member_id": "M3"' },
      { name: 'pay_fine', arguments: { member_id: 'M3', amount: '6' } },
    ]);
    // Every line ends with a target: never the broken turn.
    expect(lines.map(l => l.conversations.length)).to.deep.equal([4, 6, 8]);
    expect(lines[0]!.conversations[3]!.value).to.equal('Je vérifie — 确认 ✅\n<tool_call>{"name": "pay_fine", "arguments": {"member_id": "M3", "amount": 6}}</tool_call>');
    expect(functionCallsOf(lines[0]!.conversations[3]!.value)).to.deep.equal([{ name: 'pay_fine', arguments: { member_id: 'M3', amount: 6 } }]);
    expect(lines[0]!.system).to.equal('Help the user — politely 🙂');
  });

  it('ShareGPT: refuses a conversation that cannot alternate', () => {
    const twoUsers = trajectory([{ role: 'system', content: 's' }, { role: 'user', content: 'a' }, { role: 'user', content: 'b' }, { role: 'assistant', content: 'c' }]);
    expect(toShareGPT(twoUsers)).to.deep.equal([]);
    // and says so: the one target turn, left out for the turn order
    const told: [string, number][] = [];
    expect(toShareGPT(twoUsers, undefined, (why, n) => told.push([why, n]))).to.deep.equal([]);
    expect(told).to.deep.equal([['turn-order', 1]]);
  });

  it('ShareGPT: a function_call value has no < or > in its JSON (\\u003c, \\u003e), so LLaMA-Factory’s tool-call and thought regexes cannot cut it', () => {
    const words = 'a </tool_call> b <tool_call>{"x": 1}</tool_call> c <|tool_call_start|>d<|tool_call_end|> <think>e</think> 1 < 2 > 0';
    const args = JSON.stringify({ text: words, 'k<>': ['</tool_call>'] });
    const t = (content: string | null) =>
      trajectory(
        [
          { role: 'system', content: 's' },
          { role: 'user', content: 'write it' },
          { role: 'assistant', content, reasoning_content: 'plan', tool_calls: [call('a', 'get', args)] },
          { role: 'tool', tool_call_id: 'a', content: '{"success":true,"echo":"</tool_call>"}' },
          { role: 'assistant', content: 'done <tool_call> </think>' },
        ],
        { steps: [step(1, 'a', 'get', args)] },
      );
    const sent = JSON.parse(args) as unknown;
    for (const [content, o] of [[null, undefined], ['Let me write <b>it</b>', undefined], [null, KEEP], ['Let me write <b>it</b>', KEEP]] as const) {
      const lines = toShareGPT(t(content), o);
      expect(lines, String(content)).to.have.length(2);
      for (const l of lines) valid(ShareGPTLine, l);
      const value = lines[0]!.conversations[1]!.value;
      // The only tool-call and thought words are the ones the value is built of; the JSON reads back to the model's arguments.
      const json = value.replace(/^<think>\nplan\n<\/think>\n\n/, '').replace(/^Let me write <b>it<\/b>\n<tool_call>([\s\S]*)<\/tool_call>$/, '$1');
      expect(json, value).not.to.match(/[<>]/);
      expect(JSON.parse(json)).to.deep.equal({ name: 'get', arguments: sent });
      expect(functionCallsOf(value)).to.deep.equal([{ name: 'get', arguments: sent }]);
      expect(json).to.include('\\u003c/tool_call\\u003e');
      // A gpt turn is not parsed by LLaMA-Factory: as the model wrote it.
      expect(lines[1]!.conversations[3]).to.deep.equal({ from: 'gpt', value: 'done <tool_call> </think>' });
    }
    // The alpaca file is text already rendered as Qwen's template renders it, and sft-hf.jsonl holds objects: both as before.
    expect(toLlamaFactory(t(null))[0]!.output).to.include(words.replace(/"/g, '\\"'));
    expect(JSON.stringify(toHF(t(null))[0]!.completion[0])).to.include(JSON.stringify(words).slice(1, -1));
  });

  it('ShareGPT: a function_call turn whose text or kept reasoning holds tool-call or thought words gives lines only before it', () => {
    const t = (content: string | null, reasoning: string) =>
      trajectory(
        [
          { role: 'system', content: 's' },
          { role: 'user', content: 'u' },
          { role: 'assistant', content: null, tool_calls: [call('a', 'get', '{"x":1}')] },
          { role: 'tool', tool_call_id: 'a', content: '{}' },
          { role: 'assistant', content, reasoning_content: reasoning, tool_calls: [call('b', 'get', '{"x":2}')] },
          { role: 'tool', tool_call_id: 'b', content: '{}' },
          { role: 'assistant', content: 'done' },
        ],
        { steps: [step(1, 'a', 'get', '{"x":1}'), step(2, 'b', 'get', '{"x":2}')] },
      );
    // The turns left out are told, with the reason; a trajectory with all its lines tells nothing.
    const told: [string, number][] = [];
    const tell = (why: string, n: number) => told.push([why, n]);
    expect(toShareGPT(t('I will <tool_call> now', 'r'), undefined, tell)).to.have.length(1);
    expect(toShareGPT(t(null, 'r'), undefined, tell)).to.have.length(3);
    expect(told).to.deep.equal([['unreadable-call-turn', 2]]);
    for (const w of ['<tool_call>', '</tool_call>', '<|tool_call_start|>', '<|tool_call_end|>']) {
      expect(toShareGPT(t(`I will ${w} now`, 'r')), `text ${w}`).to.have.length(1);
      expect(toShareGPT(t(`I will ${w} now`, 'r'), KEEP), `text ${w}, reasoning kept`).to.have.length(1);
      expect(toShareGPT(t(null, `think ${w}`), KEEP), `reasoning ${w}`).to.have.length(1);
      expect(toShareGPT(t(null, `think ${w}`)), `reasoning ${w}, dropped`).to.have.length(3);
    }
    for (const w of ['<think>', '</think>']) {
      expect(toShareGPT(t(null, `a ${w} b`), KEEP), `reasoning ${w}`).to.have.length(1);
      expect(toShareGPT(t('text', `a ${w} b`), KEEP), `reasoning ${w} beside text`).to.have.length(1);
      expect(toShareGPT(t(null, `a ${w} b`)), `reasoning ${w}, dropped`).to.have.length(3);
      // Thought words in the text next to the calls: the tool-call words around the JSON are found first.
      expect(toShareGPT(t(`a ${w} b`, 'r'), KEEP), `text ${w}`).to.have.length(3);
    }
    const kept = toShareGPT(t('fine', 'fine'), KEEP);
    expect(kept).to.have.length(3);
    for (const l of kept) valid(ShareGPTLine, l);
    // The other files are text a template renders as it is, or objects: every target stays.
    expect(toLlamaFactory(t('I will </tool_call> now', 'r'), KEEP)).to.have.length(3);
    expect(toHF(t('I will </tool_call> now', 'r'), KEEP)).to.have.length(1);
  });

  it('blank arguments are the {} the call ran with (the episode reads a blank text as no arguments); OpenAI keeps the string sent', () => {
    const blank = trajectory(
      [
        { role: 'system', content: 's' },
        { role: 'user', content: 'u' },
        { role: 'assistant', content: null, tool_calls: [call('a', 'get_member', ' ')] },
        { role: 'tool', tool_call_id: 'a', content: '{"success":false,"error":"invalid arguments for get_member:\\n- must have required property member_id"}' },
        { role: 'assistant', content: 'done' },
      ],
      { tools: TOOLS, steps: [step(1, 'a', 'get_member', ' ', 'INVALID_ARGUMENTS')] },
    );
    expect(toOpenAI(blank)!.messages[2]).to.deep.include({ tool_calls: [call('a', 'get_member', ' ')], weight: 0 });
    expect(functionCallsOf(toShareGPT(blank)[0]!.conversations[1]!.value)).to.deep.equal([{ name: 'get_member', arguments: {} }]);
    expect(toLlamaFactory(blank)[0]!.history[0]![1]).to.equal('<tool_call>\n{"name": "get_member", "arguments": {}}\n</tool_call>');
    expect(toHF(blank)[0]!.prompt[2]).to.deep.equal({ role: 'assistant', tool_calls: [{ id: 'a', type: 'function', function: { name: 'get_member', arguments: {} } }] });
  });

  it('alpaca: one sample per turn trained on; history keeps the broken call exactly as sent', () => {
    const lines = toLlamaFactory(BROKEN);
    expect(lines).to.have.length(3);
    for (const l of lines) {
      valid(AlpacaLine, l);
      roundTrip(l);
    }
    expect(lines[0]!.history).to.have.length(1);
    expect(lines[0]!.history[0]![1]).to.equal(
      '<tool_call>\n{"name": "get_member", "arguments": {"member_id": "M3"}\n</tool_call>\n<tool_call>\n{"name": "pay_fine", "arguments": {"member_id": "M3", "amount": "6"}}\n</tool_call>',
    );
    expect(lines[0]!.instruction).to.equal(
      '<tool_response>\n{"success":false,"error":"the arguments are not valid JSON (Unexpected end of JSON input); send one JSON object of named arguments"}\n</tool_response>\n<tool_response>\n{"success":false,"error":"invalid arguments for pay_fine:\\n- at amount: must be number"}\n</tool_response>',
    );
    expect(lines[0]!.output).to.equal('Je vérifie — 确认 ✅\n<tool_call>\n{"name": "pay_fine", "arguments": {"member_id": "M3", "amount": 6}}\n</tool_call>');
    expect(lines.map(l => l.output)).not.to.include(lines[0]!.history[0]![1]);
    expect(lines[0]!.system).to.include('# Tools').and.include('{"type": "function", "function": {"name": "get_member", "parameters": {"type": "object"');
  });

  it('alpaca: one sample per assistant turn of a clean trajectory', () => {
    const lines = toLlamaFactory(PARALLEL);
    expect(lines).to.have.length(2);
    for (const l of lines) valid(AlpacaLine, l);
    expect(lines[1]!.instruction).to.include('<tool_response>');
    expect(lines[0]!.system).to.include('# Tools');
  });

  it('HF / TRL: arguments as objects; a clean trajectory is one prompt-completion line', () => {
    const lines = toHF(PARALLEL);
    expect(lines).to.have.length(1);
    valid(HFPromptCompletionLine, lines[0]);
    expect(lines[0]!.prompt.map(m => m.role)).to.deep.equal(['system', 'user']);
    expect(lines[0]!.completion.map(m => m.role)).to.deep.equal(['assistant', 'tool', 'tool', 'assistant']);
    expect(lines[0]!.completion[0]).to.deep.equal({
      role: 'assistant',
      tool_calls: [
        { id: 'a', type: 'function', function: { name: 'get', arguments: { x: 1 } } },
        { id: 'b', type: 'function', function: { name: 'get', arguments: { x: 2 } } },
      ],
    });
    expect(lines[0]!.completion[1]).to.deep.equal({ role: 'tool', tool_call_id: 'a', name: 'get', content: '{"success":true}' });
    expect(lines[0]!.tools).to.deep.equal(PARALLEL.tools);
  });

  it('HF / TRL: the turns after a broken one are a completion whose prompt holds the broken call', () => {
    const lines = toHF(BROKEN);
    expect(lines).to.have.length(1);
    valid(HFPromptCompletionLine, lines[0]);
    roundTrip(lines[0]);
    const { prompt, completion } = lines[0]!;
    expect(prompt.map(m => m.role)).to.deep.equal(['system', 'user', 'assistant', 'tool', 'tool']);
    expect(prompt[2]).to.deep.equal({
      role: 'assistant',
      tool_calls: [
        { id: 'c1', type: 'function', function: { name: 'get_member', arguments: '{"member_id": "M3"' } },
        { id: 'c2', type: 'function', function: { name: 'pay_fine', arguments: { member_id: 'M3', amount: '6' } } },
      ],
    });
    expect(completion.map(m => m.role)).to.deep.equal(['assistant', 'tool', 'assistant', 'tool', 'assistant']);
    expect(completion[0]).to.deep.include({ content: 'Je vérifie — 确认 ✅' });
    // A broken turn between two good runs splits them.
    const twice = trajectory([...BROKEN.messages.slice(0, 7), ...BROKEN.messages.slice(2, 5), ...BROKEN.messages.slice(7)], {
      tools: TOOLS,
      steps: [...BROKEN.steps.slice(0, 3), { ...BROKEN.steps[0]!, turn: 3 }, { ...BROKEN.steps[1]!, turn: 3 }, { ...BROKEN.steps[3]!, turn: 4 }],
    });
    const split = toHF(twice);
    expect(split.map(l => [l.prompt.length, l.completion.length])).to.deep.equal([[5, 1], [10, 3]]);
    for (const l of split) valid(HFPromptCompletionLine, l);
  });

  it('reasoning is dropped from every file by default and kept in every file on request, in each format’s form', () => {
    const all = (o?: { reasoning: 'keep' | 'drop' }) => JSON.stringify([toOpenAI(BROKEN, o), toShareGPT(BROKEN, o), toLlamaFactory(BROKEN, o), toHF(BROKEN, o)]);
    expect(all()).not.to.match(/先付款|Amount is a number|reasoning_content|<think>/);
    expect(all({ reasoning: 'drop' })).to.equal(all());
    const openai = toOpenAI(BROKEN, KEEP)!;
    valid(OpenAIFineTuneLine, openai);
    expect(openai.messages.filter(m => m.role === 'assistant').map(m => (m as { content?: string }).content)).to.deep.equal([
      '<think>\nPay first, then borrow. 先付款\n</think>\n\n',
      '<think>\nAmount is a number.\n</think>\n\nJe vérifie — 确认 ✅',
      undefined,
      "Done: Oskar's fines are paid and Beloved is lent to him. 📚 Anything else?",
    ]);
    const sharegpt = toShareGPT(BROKEN, KEEP);
    for (const l of sharegpt) valid(ShareGPTLine, l);
    expect(sharegpt[2]!.conversations[1]!.value).to.match(/^<think>\nPay first, then borrow\. 先付款\n<\/think>\n\n\[/);
    expect(sharegpt[0]!.conversations[3]!.value).to.equal('<think>\nAmount is a number.\n</think>\n\nJe vérifie — 确认 ✅\n<tool_call>{"name": "pay_fine", "arguments": {"member_id": "M3", "amount": 6}}</tool_call>');
    expect(functionCallsOf(sharegpt[0]!.conversations[3]!.value)).to.have.length(1);
    const alpaca = toLlamaFactory(BROKEN, KEEP);
    expect(alpaca[0]!.output).to.match(/^<think>\nAmount is a number\.\n<\/think>\n\nJe vérifie/);
    expect(alpaca[0]!.history[0]![1]).to.match(/^<think>\nPay first, then borrow\. 先付款\n<\/think>\n\n<tool_call>/);
    const hf = toHF(BROKEN, KEEP)[0]!;
    valid(HFPromptCompletionLine, hf);
    expect(hf.prompt[2]).to.deep.include({ reasoning_content: 'Pay first, then borrow. 先付款' });
    expect(hf.completion[0]).to.deep.include({ reasoning_content: 'Amount is a number.', content: 'Je vérifie — 确认 ✅' });
  });

  it('an empty reply is not a target, and a reply cut off as an unparsed tool call is left out', () => {
    const empty = trajectory([{ role: 'system', content: 's' }, { role: 'user', content: 'u' }, { role: 'assistant', content: 'fine' }, { role: 'user', content: 'more?' }, { role: 'assistant', content: '' }], { mode: 'conversational' });
    expect(toOpenAI(empty)!.messages).to.have.length(3);
    expect(toShareGPT(empty)).to.have.length(1);
    expect(toLlamaFactory(empty)).to.have.length(1);
    expect(toHF(empty)).to.have.length(1);
    // Whitespace alone is empty too (vLLM's "\n\n" after a reasoning parser took the thinking): it was a target in
    // all four files, so a solved episode taught the policy to stop with blank text.
    const blank = trajectory([{ role: 'system', content: 's' }, { role: 'user', content: 'u' }, { role: 'assistant', content: 'fine' }, { role: 'user', content: 'more?' }, { role: 'assistant', content: '\n\n', reasoning_content: 'done — 完成' }], { mode: 'conversational' });
    expect(toOpenAI(blank)!.messages).to.have.length(3);
    expect(toShareGPT(blank).map(l => l.conversations.at(-1)!.value)).to.deep.equal(['fine']);
    expect(toLlamaFactory(blank).map(l => l.output)).to.deep.equal(['fine']);
    expect(toHF(blank).map(l => l.completion.at(-1)!.content)).to.deep.equal(['fine']);
    const unparsed = trajectory([{ role: 'system', content: 's' }, { role: 'user', content: 'u' }, { role: 'assistant', content: '<tool_call>{"name": "get", "arguments": {</tool_call>' }], { termination: { reason: 'unparsed-tool-call', detail: 'x' } });
    expect(toOpenAI(unparsed)).to.equal(null);
    expect(JSON.stringify([toShareGPT(unparsed), toLlamaFactory(unparsed), toHF(unparsed)])).not.to.include('<tool_call>');
  });

  it('--min-reward keeps no trajectory without a reward (unscored), not even at 0; without it, every one passes', () => {
    const unscored = trajectory([], { reward: null, solved: false, termination: { reason: 'model-error', detail: 'x' } });
    const zero = trajectory([], { reward: 0, solved: false });
    expect(passesFilter(unscored, { solvedOnly: false, minReward: 0 })).to.equal(false);
    expect(passesFilter(unscored, { solvedOnly: false, minReward: 0.5 })).to.equal(false);
    expect(passesFilter(zero, { solvedOnly: false, minReward: 0 })).to.equal(true);
    expect(passesFilter(zero, { solvedOnly: false, minReward: 0.1 })).to.equal(false);
    expect(passesFilter(unscored, { solvedOnly: false, minReward: null })).to.equal(true);
  });

  it('pyJson writes JSON as Python json.dumps does (the templates’ tojson)', () => {
    expect(pyJson({ a: [1, 'é', { b: null }], 'k"': true, u: undefined })).to.equal('{"a": [1, "é", {"b": null}], "k\\"": true}');
    expect(JSON.parse(pyJson({ s: 'line\n"q" 🙂' }))).to.deep.equal({ s: 'line\n"q" 🙂' });
  });
});

describe('groupStats', () => {
  it('computes mean, population std, pass@1 and pass@K, counting a missing reward as 0', () => {
    const g = groupStats('r', 's', 'e', 'non-conversational', [
      trajectory([], { sample: 1, reward: 0.5, solved: false }),
      trajectory([], { sample: 0, reward: 1, solved: true }),
      trajectory([], { sample: 2, reward: null, solved: false, termination: { reason: 'model-error', detail: 'x' } }),
    ]);
    expect(g.rewards).to.deep.equal([1, 0.5, 0]);
    expect(g.mean).to.be.closeTo(0.5, 1e-9);
    expect(g.std).to.be.closeTo(Math.sqrt((0.25 + 0 + 0.25) / 3), 1e-6);
    expect(g).to.deep.include({ solved: 1, passAtK: true, samples: 3, unscored: 1 });
    // A planned sample without a trajectory is unscored too.
    expect(groupStats('r', 's', 'e', 'non-conversational', [trajectory([], { sample: 0, reward: 1, solved: true })], 3)).to.deep.include({ rewards: [1, 0, 0], unscored: 2 });
    expect(g.passAt1).to.be.closeTo(1 / 3, 1e-6);
    expect(g.terminations).to.deep.equal({ 'agent-finished': 2, 'model-error': 1 });
  });
});
