import { expect } from 'chai';
import { DATA_SOURCE, INTERACTION_NAME, hermesToolsBlock, pythonJson, toPromptRow, toVerlRow, trainerTools } from '../../../src/datasets/rl-exports.js';
import { agentSystemPrompt } from '../../../src/rollouts/prompts.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';
import { PromptLine, VerlLine, arrowProblems, untypedProperties } from '../../helpers/formats.js';

const createdAt = '2026-01-01T00:00:00.000Z';
const PARKING_TOOLS: EnvironmentRecord['tools'] = [
  // As runs before typed tool schemas stored them: `size` has only an enum.
  { type: 'function', function: { name: 'find_free_spots', description: 'Freie Plätze finden 🅿️ — 空き駐車スペース', parameters: { type: 'object', properties: { size: { enum: ['compact', 'standard', 'large'] }, level: { type: 'integer' } }, required: ['size'], additionalProperties: false } } },
  { type: 'function', function: { name: 'park_vehicle', parameters: { type: 'object', properties: { plate: { type: 'string', minLength: 1 }, size: { enum: ['compact', 'große', '大型', '🚚'] } } } } },
];
const env = (id: string, tools = PARKING_TOOLS): EnvironmentRecord => ({
  id, runId: 'r', status: 'kept', description: { summary: 'Parkhaus «Zentrum» 🅿️', introduction: 'Un garage à Zürich — 東京にもある。' }, className: 'Garage', source: 'class Garage {}',
  tools, failure: null, lineage: { runId: 'r', sourceTaskId: null, models: {}, prompts: {}, createdAt },
});
const scenario = (id: string, environmentId: string, status: ScenarioRecord['status'] = 'ready'): ScenarioRecord => ({
  id, runId: 'r', environmentId, index: 0, status, initialState: { spots: [] }, task: 'Parke den Wagen „ZH-123“ 🚗 auf einem großen Platz (大型).', userGoal: { goal: 'park', facts: [] },
  checklistItems: ['ZH-123 steht auf einem großen Platz'], checklist: [{ item: 'ZH-123 steht auf einem großen Platz', check: 'function check(f) { return true; }' }],
  lineage: { runId: 'r', environmentId, models: {}, prompts: {}, createdAt },
});
const ctx = { runId: 'run-ü', index: 3, split: 'train' };

describe('RL trainer rows (verl, TRL GRPO, verifiers)', () => {
  it('verl: data_source, the prompt with the tools block and the task, reward_model, and extra_info with what the hooks need', () => {
    const row = toVerlRow(scenario('scn-1', 'env-1'), env('env-1'), ctx)!;
    const parsed = VerlLine.safeParse(row);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).to.equal(true);
    expect(row.data_source).to.equal(DATA_SOURCE);
    const system = agentSystemPrompt('non-conversational', 'Un garage à Zürich — 東京にもある。');
    expect(row.prompt).to.deep.equal([
      { role: 'system', content: system + hermesToolsBlock(trainerTools(PARKING_TOOLS)) },
      { role: 'user', content: 'Parke den Wagen „ZH-123“ 🚗 auf einem großen Platz (大型).' },
    ]);
    // Non-ASCII stays as it is (the templates' tojson has ensure_ascii=False).
    expect(row.prompt[0]!.content).to.include('"enum": ["compact", "große", "大型", "🚚"]').and.not.include('\\u');
    expect(row.reward_model).to.deep.equal({ style: 'rule', ground_truth: 'scn-1', kind: 'checklist-fraction', checklist: ['ZH-123 steht auf einem großen Platz'] });
    const where = { run_id: 'run-ü', scenario_id: 'scn-1', environment_id: 'env-1' };
    expect(row.extra_info).to.deep.include({ split: 'train', index: 3, ...where, environment_name: 'Parkhaus «Zentrum» 🅿️', mode: 'non-conversational', system_prompt: system, need_tools_kwargs: true });
    expect(row.extra_info.tools_kwargs).to.deep.equal({ find_free_spots: { create_kwargs: where }, park_vehicle: { create_kwargs: where } });
    expect(row.extra_info.interaction_kwargs).to.deep.equal({ name: INTERACTION_NAME, ...where, mode: 'non-conversational' });
    const tools = JSON.parse(row.extra_info.tools) as { function: { description: string; parameters: { properties: Record<string, unknown>; required: string[] } } }[];
    expect(tools[0]!.function.parameters.properties['size']).to.deep.equal({ type: 'string', enum: ['compact', 'standard', 'large'] });
    expect(tools[1]!.function).to.deep.include({ description: '' });
    expect(tools[1]!.function.parameters.required).to.deep.equal([]);
    for (const t of tools) expect(untypedProperties(t.function.parameters)).to.deep.equal([]);
  });

  it('TRL / verifiers: a conversational prompt, the reward columns, tools and info as JSON strings', () => {
    const row = toPromptRow(scenario('scn-1', 'env-1'), env('env-1'), ctx)!;
    const parsed = PromptLine.safeParse(row);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).to.equal(true);
    expect(row.prompt).to.deep.equal([
      { role: 'system', content: agentSystemPrompt('non-conversational', 'Un garage à Zürich — 東京にもある。') },
      { role: 'user', content: 'Parke den Wagen „ZH-123“ 🚗 auf einem großen Platz (大型).' },
    ]);
    expect(row).to.deep.include({ run_id: 'run-ü', scenario_id: 'scn-1', environment_id: 'env-1', mode: 'non-conversational', example_id: 3, answer: 'scn-1' });
    expect(JSON.parse(row.tools)).to.deep.equal(trainerTools(PARKING_TOOLS));
    const info = JSON.parse(row.info) as { tool_defs: { name: string; description: string; parameters: unknown }[]; scenario_id: string; checklist: string[] };
    expect(info.tool_defs.map(t => t.name)).to.deep.equal(['find_free_spots', 'park_vehicle']);
    expect(info.tool_defs[0]!.description).to.equal('Freie Plätze finden 🅿️ — 空き駐車スペース');
    expect(info).to.deep.include({ scenario_id: 'scn-1', checklist: ['ZH-123 steht auf einem großen Platz'] });
    expect(row).not.to.have.property('task');
  });

  it('no row for a scenario that is not ready, has no task, or whose environment has no tools', () => {
    for (const row of [toVerlRow, toPromptRow]) {
      expect(row(scenario('s', 'e', 'dropped'), env('e'), ctx)).to.equal(null);
      expect(row({ ...scenario('s', 'e'), task: '' }, env('e'), ctx)).to.equal(null);
      expect(row(scenario('s', 'e'), env('e', []), ctx)).to.equal(null);
    }
  });

  it('rows of different environments keep one shape per column (what Arrow needs), but for tools_kwargs keyed by tool name', () => {
    const other: EnvironmentRecord['tools'] = [{ type: 'function', function: { name: 'get_book', description: '本を探す 📚', parameters: { type: 'object', properties: { isbn: { type: 'string' }, copies: { enum: [1, 2] } }, required: ['isbn'] } } }];
    const verl = [toVerlRow(scenario('scn-1', 'env-1'), env('env-1'), ctx), toVerlRow(scenario('scn-2', 'env-2'), env('env-2', other), { ...ctx, index: 4 })];
    const prompts = [toPromptRow(scenario('scn-1', 'env-1'), env('env-1'), ctx), toPromptRow(scenario('scn-2', 'env-2'), env('env-2', other), { ...ctx, index: 4 })];
    expect(arrowProblems(verl, ['extra_info.tools_kwargs'])).to.deep.equal([]);
    expect(arrowProblems(prompts)).to.deep.equal([]);
    // What the JSON strings avoid: the tool schemas themselves differ in shape and in types from row to row.
    expect(arrowProblems([PARKING_TOOLS, other]).length).to.be.greaterThan(0);
    // And every line survives UTF-8 bytes unchanged.
    for (const row of [...verl, ...prompts]) expect(JSON.parse(Buffer.from(JSON.stringify(row), 'utf8').toString('utf8'))).to.deep.equal(row);
  });
});

describe('pythonJson and the Hermes tools block', () => {
  it('writes what Python json.dumps(ensure_ascii=False) writes for what it read (separators, escapes, exponents, non-ASCII)', () => {
    // json.dumps(tool, ensure_ascii=False), from Python 3.11, shown here JSON-encoded in ASCII.
    const python = JSON.parse(
      '"{\\"type\\": \\"function\\", \\"function\\": {\\"name\\": \\"r\\u00e9server_chambre\\", \\"description\\": \\"R\\u00e9serve une chambre \\ud83c\\udfe8 \\u2014 \\u4e88\\u7d04\\", \\"parameters\\": {\\"type\\": \\"object\\", \\"properties\\": {\\"size\\": {\\"type\\": \\"string\\", \\"enum\\": [\\"\\u5355\\u4eba\\", \\"double\\", \\"suite \\ud83d\\udc51\\"]}, \\"nights\\": {\\"type\\": \\"integer\\", \\"minimum\\": 1}, \\"ratio\\": {\\"type\\": \\"number\\", \\"maximum\\": 1e-07}, \\"note\\": {\\"type\\": \\"string\\", \\"default\\": \\"tab\\\\there \\\\\\"quoted\\\\\\" back\\\\\\\\slash \\\\u0001 \\u2028\\"}}, \\"required\\": [\\"size\\"], \\"additionalProperties\\": false}}}"',
    ) as string;
    expect(pythonJson(JSON.parse(python))).to.equal(python);
    expect(pythonJson([1.5, 1e21, 1e-7, 123456789012, -0.25, true, null, [], {}])).to.equal('[1.5, 1e+21, 1e-07, 123456789012, -0.25, true, null, [], {}]');
  });

  it('is the block the Qwen2.5 and Qwen3 templates add to the system message, one tool a line', () => {
    const tools = trainerTools(PARKING_TOOLS);
    const block = hermesToolsBlock(tools);
    expect(block).to.equal(
      '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' +
        tools.map(t => pythonJson(t)).join('\n') +
        '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>',
    );
  });

  it('recurses only so deep: a deeper value (model-written arguments can be) is written compactly below that level, the same value', () => {
    let deep: unknown = { 'clé 🔑': 1.5e-7 };
    for (let i = 0; i < 1000; i += 1) deep = [deep];
    const text = pythonJson(deep);
    expect(JSON.parse(text)).to.deep.equal(deep);
    expect(text.startsWith('[[')).to.equal(true);
  });
});
