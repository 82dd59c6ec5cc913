import { expect } from 'chai';
import {
  TOOL_CALL_FORMATS,
  looksLikeToolCall,
  parseTextToolCalls,
  type TextToolCall,
  type TextToolCallParse,
} from '../../../src/llm/text-tool-calls.js';

const TOOLS = ['get_weather', 'search', 'get_time'] as const;

function call(name: string, args: Record<string, unknown> = {}): TextToolCall {
  return { name, arguments: JSON.stringify(args) };
}

/** The calls and content of a successful parse (fails the test otherwise). */
function parsed(result: TextToolCallParse): { calls: readonly TextToolCall[]; content: string | null; format: string } {
  if (result.kind !== 'calls') expect.fail(`expected calls, got ${JSON.stringify(result)}`);
  return { calls: result.calls, content: result.content, format: result.format };
}

/** The problem of a malformed parse (fails the test otherwise). */
function problem(result: TextToolCallParse): string {
  if (result.kind !== 'malformed') expect.fail(`expected malformed, got ${JSON.stringify(result)}`);
  return result.problem;
}

describe('text tool calls', () => {
  it('lists the formats', () => {
    expect(TOOL_CALL_FORMATS).to.deep.equal(['native', 'hermes', 'llama3', 'mistral', 'json', 'auto']);
  });

  describe('hermes', () => {
    it('reads a single <tool_call> block', () => {
      const text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>';
      expect(parseTextToolCalls(text, 'hermes', TOOLS)).to.deep.equal({
        kind: 'calls',
        calls: [call('get_weather', { city: 'Paris', days: 2 })],
        content: null,
        format: 'hermes',
      });
    });

    it('reads parallel calls with prose before, between and after', () => {
      const text = [
        'Let me look both up.',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
        '<tool_call>\n{"name": "search", "arguments": {"q": "Oslo events"}}\n</tool_call>',
        'Back soon.',
      ].join('\n');
      const { calls, content } = parsed(parseTextToolCalls(text, 'hermes', TOOLS));
      expect(calls).to.deep.equal([call('get_weather', { city: 'Oslo' }), call('search', { q: 'Oslo events' })]);
      expect(content).to.equal('Let me look both up.\n\n\nBack soon.');
    });

    it('ignores calls inside a <think> block and keeps the block in the content', () => {
      const text =
        '<think>I could write <tool_call>{"name": "search", "arguments": {"q": "draft"}}</tool_call> but the weather is better.</think>\n\n' +
        'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>';
      const { calls, content } = parsed(parseTextToolCalls(text, 'hermes', TOOLS));
      expect(calls).to.deep.equal([call('get_weather', { city: 'Rome' })]);
      expect(content).to.equal(
        '<think>I could write <tool_call>{"name": "search", "arguments": {"q": "draft"}}</tool_call> but the weather is better.</think>\n\nChecking.',
      );
    });

    it('ignores reasoning before a lone </think> (Qwen3 thinking templates open <think> in the prompt)', () => {
      const text = 'maybe <tool_call>{"name": "search"}</tool_call>?\n</think>\n\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>';
      expect(parsed(parseTextToolCalls(text, 'hermes', TOOLS)).calls).to.deep.equal([call('get_time')]);
    });

    it('treats everything after a <think> that never closes as reasoning', () => {
      expect(parseTextToolCalls('<think>I will call <tool_call>{"name": "search", "arguments": {}}</tool_call>', 'hermes', TOOLS)).to.deep.equal({ kind: 'none' });
    });

    it('accepts arguments given as a JSON string, "parameters", null and missing arguments', () => {
      const text = [
        '<tool_call>{"name": "search", "arguments": "{\\"q\\": \\"books\\", \\"n\\": 3}"}</tool_call>',
        '<tool_call>{"name": "get_weather", "parameters": {"city": "Lima"}}</tool_call>',
        '<tool_call>{"name": "get_time", "arguments": null}</tool_call>',
        '<tool_call>{"name": "get_time"}</tool_call>',
      ].join('');
      expect(parsed(parseTextToolCalls(text, 'hermes', TOOLS)).calls).to.deep.equal([
        call('search', { q: 'books', n: 3 }),
        call('get_weather', { city: 'Lima' }),
        call('get_time'),
        call('get_time'),
      ]);
    });

    it('returns a call to a tool that does not exist (the environment answers "unknown tool")', () => {
      const text = '<tool_call>{"name": "launch_rocket", "arguments": {"target": "moon"}}</tool_call>';
      expect(parsed(parseTextToolCalls(text, 'hermes', TOOLS)).calls).to.deep.equal([call('launch_rocket', { target: 'moon' })]);
    });

    it('accepts a last block left open when generation stopped, and a list of calls in one block', () => {
      expect(parsed(parseTextToolCalls('<tool_call>\n{"name": "get_time", "arguments": {}}\n', 'hermes', TOOLS)).calls).to.deep.equal([call('get_time')]);
      const list = '<tool_call>[{"name": "search", "arguments": {"q": "a"}}, {"name": "search", "arguments": {"q": "b"}}]</tool_call>';
      expect(parsed(parseTextToolCalls(list, 'hermes', TOOLS)).calls).to.deep.equal([call('search', { q: 'a' }), call('search', { q: 'b' })]);
    });

    it('reports a block whose JSON is cut off', () => {
      expect(problem(parseTextToolCalls('<tool_call>\n{"name": "search", "arguments": {"q": "x"}\n</tool_call>', 'hermes', TOOLS))).to.match(
        /^a <tool_call> block whose JSON does not parse: /,
      );
      expect(problem(parseTextToolCalls('<tool_call>{"name": "search", "arguments": {"q": "x', 'hermes', TOOLS))).to.equal(
        'a <tool_call> block that is never closed and whose JSON ends inside a string (the JSON is cut off)',
      );
    });

    it('never returns a partial result: one bad block among good ones makes the reply malformed', () => {
      const text =
        '<tool_call>{"name": "search", "arguments": {"q": "a"}}</tool_call>\n' +
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Kyiv",}}</tool_call>\n' +
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>';
      expect(problem(parseTextToolCalls(text, 'hermes', TOOLS))).to.match(/^<tool_call> block #2 whose JSON does not parse: /);
    });

    it('reports blocks without a usable name or arguments', () => {
      expect(problem(parseTextToolCalls('<tool_call>{"arguments": {}}</tool_call>', 'hermes', TOOLS))).to.equal('a <tool_call> block whose call has no "name"');
      expect(problem(parseTextToolCalls('<tool_call>{"name": "", "arguments": {}}</tool_call>', 'hermes', TOOLS))).to.match(/"name" that is not a non-empty string/);
      expect(problem(parseTextToolCalls('<tool_call>{"name": 7, "arguments": {}}</tool_call>', 'hermes', TOOLS))).to.match(/"name" that is not a non-empty string \(a number\)/);
      expect(problem(parseTextToolCalls('<tool_call>{"name": "search", "arguments": ["q"]}</tool_call>', 'hermes', TOOLS))).to.equal(
        'a <tool_call> block whose call has "arguments" that is an array, not a JSON object',
      );
      expect(problem(parseTextToolCalls('<tool_call>{"name": "search", "arguments": "q=books"}</tool_call>', 'hermes', TOOLS))).to.match(
        /"arguments" as a string that is not JSON/,
      );
      expect(problem(parseTextToolCalls('<tool_call>{"name": "search", "arguments": "[1]"}</tool_call>', 'hermes', TOOLS))).to.match(
        /"arguments" as a string holding an array, not a JSON object/,
      );
      expect(problem(parseTextToolCalls('Calling:\n<tool_call>\n</tool_call>', 'hermes', TOOLS))).to.equal('a <tool_call> block that is empty');
      expect(problem(parseTextToolCalls('<tool_call>search(q="x")</tool_call>', 'hermes', TOOLS))).to.match(/whose JSON does not parse/);
    });

    it('finds nothing in prose, in prose naming a tool, or in other formats', () => {
      expect(parseTextToolCalls('The weather in Paris is sunny.', 'hermes', TOOLS)).to.deep.equal({ kind: 'none' });
      expect(parseTextToolCalls('I used get_weather and search to find this.', 'hermes', TOOLS)).to.deep.equal({ kind: 'none' });
      expect(parseTextToolCalls('[TOOL_CALLS][{"name": "search", "arguments": {}}]', 'hermes', TOOLS)).to.deep.equal({ kind: 'none' });
    });
  });

  describe("hermes blocks in Qwen3-Coder's XML", () => {
    const SCHEMAS = [
      { type: 'function', function: { name: 'search', parameters: { type: 'object', properties: { q: { type: 'string' }, limit: { type: 'integer' }, exact: { type: 'boolean' }, min: { type: ['number', 'null'] }, filters: { type: 'object' }, tags: { type: 'array' } } } } },
      { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
    ];

    it('reads the function and its parameters by the types the tool gives them, several calls, prose kept', () => {
      const text = [
        'Je cherche — 检索 📚',
        '<tool_call>\n<function=search>\n<parameter=q>\nLe Petit Prince 🌹\n  deux lignes\n</parameter>\n<parameter=limit>\n7\n</parameter>\n<parameter=exact>\nTrue\n</parameter>\n<parameter=min>\n2.5\n</parameter>\n<parameter=filters>\n{"lang": "fr"}\n</parameter>\n<parameter=tags>\n["a", "b"]\n</parameter>\n</function>\n</tool_call>',
        '<tool_call>\n<function=get_time>\n</function>\n</tool_call>',
      ].join('\n');
      for (const format of ['hermes', 'auto'] as const) {
        const result = parsed(parseTextToolCalls(text, format, TOOLS, SCHEMAS));
        expect(result.format).to.equal('hermes');
        expect(result.calls).to.deep.equal([
          { name: 'search', arguments: JSON.stringify({ q: 'Le Petit Prince 🌹\n  deux lignes', limit: 7, exact: true, min: 2.5, filters: { lang: 'fr' }, tags: ['a', 'b'] }) },
          { name: 'get_time', arguments: '{}' },
        ]);
        expect(result.content).to.equal('Je cherche — 检索 📚');
      }
    });

    it('keeps text that is not what its type says as text (the schema check then says so), and reads a parameter the tool does not name as text', () => {
      const text = '<tool_call>\n<function=search>\n<parameter=limit>\nseven\n</parameter>\n<parameter=q>\n42\n</parameter>\n<parameter=__proto__>\n{"x": 1}\n</parameter>\n<parameter=other>\n[1]\n</parameter>\n</function>\n</tool_call>';
      expect(JSON.parse(parsed(parseTextToolCalls(text, 'hermes', TOOLS, SCHEMAS)).calls[0]!.arguments)).to.deep.equal(JSON.parse('{"limit": "seven", "q": "42", "__proto__": "{\\"x\\": 1}", "other": "[1]"}'));
      // without the tools' schemas every value is text
      expect(parsed(parseTextToolCalls(text.replace('seven', '3'), 'hermes', TOOLS)).calls[0]!.arguments).to.include('"limit":"3"');
    });

    it('reads a value whose close is missing up to the next parameter, and says what is wrong with a broken tag', () => {
      const text = '<tool_call>\n<function=search>\n<parameter=q>\nchat\n<parameter=limit>\n3\n</parameter>\n</function>\n</tool_call>';
      expect(JSON.parse(parsed(parseTextToolCalls(text, 'hermes', TOOLS, SCHEMAS)).calls[0]!.arguments)).to.deep.equal({ q: 'chat', limit: 3 });
      expect(problem(parseTextToolCalls('<tool_call>\n<function=>\n</function>\n</tool_call>', 'hermes', TOOLS))).to.equal('a <tool_call> block whose <function=…> tag names no function');
      expect(problem(parseTextToolCalls('<tool_call>\n<function=search\n</tool_call>', 'hermes', TOOLS))).to.equal('a <tool_call> block whose <function=…> tag is never closed');
      // a model expected to call natively that writes this is never taken for an answer
      expect(problem(parseTextToolCalls(text, 'native', TOOLS))).to.match(/^the reply writes a tool call as text/);
    });

    it('stays linear: 20,000 parameters without a close, and 20,000 opened tags', () => {
      const many = `<tool_call>\n<function=search>\n${'<parameter=q>\nx\n'.repeat(20_000)}</function>\n</tool_call>`;
      expect(JSON.parse(parsed(parseTextToolCalls(many, 'hermes', TOOLS, SCHEMAS)).calls[0]!.arguments)).to.deep.equal({ q: 'x' });
      expect(problem(parseTextToolCalls(`<tool_call><function=search>${'<parameter='.repeat(20_000)}</tool_call>`, 'hermes', TOOLS))).to.match(/never closed|names no parameter/);
    });
  });

  describe("hermes blocks in GLM-4.5's format", () => {
    const SCHEMAS = [{ type: 'function', function: { name: 'search', parameters: { type: 'object', properties: { q: { type: 'string' }, limit: { type: 'integer' } } } } }];

    it('reads the name and its <arg_key>/<arg_value> pairs by the tool\'s types (JSON where the schema says nothing), and a name alone as a call without arguments', () => {
      const text = 'Je cherche — 检索\n<tool_call>search\n<arg_key>q</arg_key>\n<arg_value>42 — Le Petit Prince 🌹</arg_value>\n<arg_key>limit</arg_key>\n<arg_value>7</arg_value>\n<arg_key>filters</arg_key>\n<arg_value>{"lang": "fr"}</arg_value>\n</tool_call>\n<tool_call>get_time</tool_call>';
      for (const format of ['hermes', 'auto'] as const) {
        const result = parsed(parseTextToolCalls(text, format, TOOLS, SCHEMAS));
        expect(result.calls).to.deep.equal([
          { name: 'search', arguments: JSON.stringify({ q: '42 — Le Petit Prince 🌹', limit: 7, filters: { lang: 'fr' } }) },
          { name: 'get_time', arguments: '{}' },
        ]);
        expect(result.content).to.equal('Je cherche — 检索');
      }
    });

    it('says what is wrong with a broken pair, and leaves a block that is not in the format to the JSON reading', () => {
      expect(problem(parseTextToolCalls('<tool_call>search\n<arg_key>q</arg_key>\n</tool_call>', 'hermes', TOOLS))).to.equal('a <tool_call> block whose argument "q" has no <arg_value>');
      expect(problem(parseTextToolCalls('<tool_call>search\n<arg_key>q</arg_key><arg_value>x\n</tool_call>', 'hermes', TOOLS))).to.equal('a <tool_call> block whose <arg_value> of "q" is never closed');
      expect(problem(parseTextToolCalls('<tool_call>unknown_tool</tool_call>', 'hermes', TOOLS))).to.match(/^a <tool_call> block whose JSON does not parse/);
      expect(problem(parseTextToolCalls('<tool_call>search {"q": 1}</tool_call>', 'hermes', TOOLS))).to.match(/^a <tool_call> block whose JSON does not parse/);
      // linear: 20,000 keys without values, 20,000 pairs
      expect(problem(parseTextToolCalls(`<tool_call>search${'<arg_key>q</arg_key>'.repeat(20_000)}</tool_call>`, 'hermes', TOOLS))).to.equal('a <tool_call> block whose argument "q" has no <arg_value>');
      expect(JSON.parse(parsed(parseTextToolCalls(`<tool_call>search${'<arg_key>q</arg_key><arg_value>x</arg_value>'.repeat(20_000)}</tool_call>`, 'hermes', TOOLS, SCHEMAS)).calls[0]!.arguments)).to.deep.equal({ q: 'x' });
    });
  });

  describe('llama3', () => {
    it('reads a reply that is a JSON call with "parameters"', () => {
      expect(parseTextToolCalls('{"name": "get_weather", "parameters": {"city": "Cairo"}}', 'llama3', TOOLS)).to.deep.equal({
        kind: 'calls',
        calls: [call('get_weather', { city: 'Cairo' })],
        content: null,
        format: 'llama3',
      });
    });

    it('reads a call after <|python_tag|>, with "arguments" and prose before it', () => {
      const { calls, content } = parsed(parseTextToolCalls('Let me check. <|python_tag|>{"name": "search", "arguments": {"q": "llamas"}}<|eom_id|>', 'llama3', TOOLS));
      expect(calls).to.deep.equal([call('search', { q: 'llamas' })]);
      expect(content).to.equal('Let me check.');
    });

    it('reads several calls separated by ";" or newlines', () => {
      const text = '<|python_tag|>{"name": "search", "parameters": {"q": "a"}}; {"name": "search", "parameters": {"q": "b"}}\n{"name": "get_time", "parameters": {}}';
      expect(parsed(parseTextToolCalls(text, 'llama3', TOOLS)).calls).to.deep.equal([call('search', { q: 'a' }), call('search', { q: 'b' }), call('get_time')]);
    });

    it('accepts a tool named without parameters, and keeps prose after the call as content', () => {
      expect(parsed(parseTextToolCalls('{"name": "get_time"}', 'llama3', TOOLS)).calls).to.deep.equal([call('get_time')]);
      const { content } = parsed(parseTextToolCalls('{"name": "get_time", "parameters": {}}\n\n[waiting for the result]', 'llama3', TOOLS));
      expect(content).to.equal('[waiting for the result]');
    });

    it('reads a call after a <think> block', () => {
      expect(parsed(parseTextToolCalls('<think>{"name": "search"} maybe</think>\n{"name": "get_time", "parameters": {}}', 'llama3', TOOLS)).calls).to.deep.equal([
        call('get_time'),
      ]);
    });

    it('reports calls it cannot use', () => {
      expect(problem(parseTextToolCalls('{"name": "search", "parameters": {"q": "llam', 'llama3', TOOLS))).to.equal(
        'a Llama 3 JSON tool call whose JSON ends inside a string (the JSON is cut off)',
      );
      expect(problem(parseTextToolCalls("{'name': 'search', 'parameters': {'q': 'x'}}", 'llama3', TOOLS))).to.match(
        /^a Llama 3 JSON tool call whose JSON does not parse: /,
      );
      expect(problem(parseTextToolCalls('<|python_tag|>import sys\nprint(sys.version)', 'llama3', TOOLS))).to.match(/^a <\|python_tag\|> that is not followed by a JSON tool call/);
      expect(problem(parseTextToolCalls('{"name": "search", "parameters": {"q": "a"}}; {"q": "b"}', 'llama3', TOOLS))).to.equal(
        'Llama 3 JSON tool call #2 whose call has no "name"',
      );
      expect(problem(parseTextToolCalls('{"name": "search", "parameters": "nope"}', 'llama3', TOOLS))).to.match(/"parameters" as a string that is not JSON/);
    });

    it('finds nothing in prose, a JSON answer, or JSON after prose', () => {
      for (const text of ['Cairo is hot today.', '{"answer": 3}', '{"name": "Alice", "age": 30}', '[1, 2, 3]', 'Try {"name": "search", "parameters": {}} yourself.', '{ not json at all']) {
        expect(parseTextToolCalls(text, 'llama3', TOOLS), text).to.deep.equal({ kind: 'none' });
      }
    });
  });

  describe('mistral', () => {
    it('reads the older [TOOL_CALLS][...] list, ignoring ids', () => {
      const text = '[TOOL_CALLS][{"name": "search", "arguments": {"q": "a"}, "id": "abc123def"}, {"name": "get_weather", "arguments": {"city": "Nice"}, "id": "xyz987uvw"}]';
      expect(parseTextToolCalls(text, 'mistral', TOOLS)).to.deep.equal({
        kind: 'calls',
        calls: [call('search', { q: 'a' }), call('get_weather', { city: 'Nice' })],
        content: null,
        format: 'mistral',
      });
    });

    it('reads the newer [TOOL_CALLS]name[ARGS]{...} shape, repeated, with prose before it', () => {
      const { calls, content } = parsed(parseTextToolCalls('Sure.\n[TOOL_CALLS]search[ARGS]{"q": "a"}[TOOL_CALLS]get_time[ARGS]{}', 'mistral', TOOLS));
      expect(calls).to.deep.equal([call('search', { q: 'a' }), call('get_time')]);
      expect(content).to.equal('Sure.');
    });

    it('reads [CALL_ID], a missing [ARGS] token and several calls after one marker', () => {
      expect(parsed(parseTextToolCalls('[TOOL_CALLS]search[CALL_ID]a1b2c3d4e[ARGS]{"q": "x"}', 'mistral', TOOLS)).calls).to.deep.equal([call('search', { q: 'x' })]);
      expect(parsed(parseTextToolCalls('[TOOL_CALLS]get_weather{"city": "Bern"}', 'mistral', TOOLS)).calls).to.deep.equal([call('get_weather', { city: 'Bern' })]);
      const { calls, content } = parsed(parseTextToolCalls('[TOOL_CALLS]search[ARGS]{"q": "x"} get_time[ARGS]{} Done.', 'mistral', TOOLS));
      expect(calls).to.deep.equal([call('search', { q: 'x' }), call('get_time')]);
      expect(content).to.equal('Done.');
    });

    it('reports sections it cannot use', () => {
      expect(problem(parseTextToolCalls('[TOOL_CALLS][{"name": "search", "arguments": {"q": "a"}', 'mistral', TOOLS))).to.equal(
        'a [TOOL_CALLS] section whose JSON is never closed (2 brackets left open)',
      );
      expect(problem(parseTextToolCalls('[TOOL_CALLS][{"name": "search", "arguments": {"q": a}}]', 'mistral', TOOLS))).to.match(/^a \[TOOL_CALLS\] section whose JSON does not parse: /);
      expect(problem(parseTextToolCalls('[TOOL_CALLS]', 'mistral', TOOLS))).to.equal('a [TOOL_CALLS] section with nothing after it');
      expect(problem(parseTextToolCalls('[TOOL_CALLS]search please', 'mistral', TOOLS))).to.equal(
        'a [TOOL_CALLS] section whose call to "search" is not followed by a JSON object of arguments',
      );
      expect(problem(parseTextToolCalls('[TOOL_CALLS][{"arguments": {}}]', 'mistral', TOOLS))).to.equal('a [TOOL_CALLS] section whose list item 1 has no "name"');
      expect(problem(parseTextToolCalls('[TOOL_CALLS]search[ARGS]{"q": "a"}[TOOL_CALLS]get_time[ARGS]{"x": ', 'mistral', TOOLS))).to.equal(
        '[TOOL_CALLS] section #2 whose arguments for "get_time" is never closed (1 bracket left open)',
      );
      expect(problem(parseTextToolCalls('[TOOL_CALLS][ARGS]{}', 'mistral', TOOLS))).to.match(/not followed by a tool name/);
    });

    it('finds nothing in prose', () => {
      expect(parseTextToolCalls('No tools needed: the answer is 4.', 'mistral', TOOLS)).to.deep.equal({ kind: 'none' });
    });
  });

  describe('json', () => {
    it('reads a ```json fence with prose around it', () => {
      const text = 'I will search.\n```json\n{"name": "search", "arguments": {"q": "x"}}\n```\nThen I will answer.';
      expect(parseTextToolCalls(text, 'json', TOOLS)).to.deep.equal({
        kind: 'calls',
        calls: [call('search', { q: 'x' })],
        content: 'I will search.\n\nThen I will answer.',
        format: 'json',
      });
    });

    it('reads a bare ``` fence holding a list of calls, and several fences', () => {
      const list = '```\n[{"name": "search", "parameters": {"q": "a"}}, {"name": "get_time", "parameters": {}}]\n```';
      expect(parsed(parseTextToolCalls(list, 'json', TOOLS)).calls).to.deep.equal([call('search', { q: 'a' }), call('get_time')]);
      const two = '```json\n{"name": "search", "arguments": {"q": "a"}}\n```\nand\n```JSON\n{"name": "get_time", "arguments": {}}\n```';
      const { calls, content } = parsed(parseTextToolCalls(two, 'json', TOOLS));
      expect(calls).to.deep.equal([call('search', { q: 'a' }), call('get_time')]);
      expect(content).to.equal('and');
    });

    it('keeps ``` inside a JSON string (markdown arguments)', () => {
      const text = '```json\n{"name": "write_file", "arguments": {"body": "```py\\nprint(1)\\n```"}}\n```';
      expect(parsed(parseTextToolCalls(text, 'json', TOOLS)).calls).to.deep.equal([call('write_file', { body: '```py\nprint(1)\n```' })]);
    });

    it('reads a reply that is a bare call object or list', () => {
      expect(parsed(parseTextToolCalls('  {"name": "search", "arguments": {"q": "x"}}  ', 'json', TOOLS)).calls).to.deep.equal([call('search', { q: 'x' })]);
      expect(parsed(parseTextToolCalls('[{"name": "search", "arguments": {"q": "x"}}, {"name": "get_time", "arguments": {}}]', 'json', TOOLS)).calls).to.deep.equal([
        call('search', { q: 'x' }),
        call('get_time'),
      ]);
    });

    it('leaves fences that are not calls in the content', () => {
      const text = 'Data:\n```json\n{"answer": 3}\n```\n```python\nprint({"name": "x", "arguments": {}})\n```\n```json\n{"name": "get_time", "arguments": {}}\n```';
      const { calls, content } = parsed(parseTextToolCalls(text, 'json', TOOLS));
      expect(calls).to.deep.equal([call('get_time')]);
      expect(content).to.equal('Data:\n```json\n{"answer": 3}\n```\n```python\nprint({"name": "x", "arguments": {}})\n```');
    });

    it('reports fences and replies it cannot use', () => {
      expect(problem(parseTextToolCalls('```json\n{"name": "search", "arguments": {"q": "x"}\n```', 'json', TOOLS))).to.match(
        /^a ```json block that looks like a tool call but whose JSON does not parse: /,
      );
      expect(problem(parseTextToolCalls('```\n[{"name": "search", "arguments": {}}, {"answer": 1}]\n```', 'json', TOOLS))).to.equal(
        'a ``` block whose list mixes 1 tool call with 1 other value',
      );
      expect(problem(parseTextToolCalls('{"name": ["search"], "arguments": {}}', 'json', TOOLS))).to.match(/^a JSON tool call whose call has a "name" that is not a non-empty string \(an array\)/);
      expect(problem(parseTextToolCalls('{"name": "search", "arguments": {"q": ', 'json', TOOLS))).to.equal('a JSON tool call whose JSON is never closed (2 brackets left open)');
    });

    it('finds nothing in prose, JSON answers or code', () => {
      for (const text of [
        'Plain prose mentioning search and get_weather.',
        '{"answer": 3}',
        '```json\n{"answer": 3}\n```',
        '```json\n{"broken": \n```',
        '```python\nsearch(q="x")\n```',
        '[]',
      ]) {
        expect(parseTextToolCalls(text, 'json', TOOLS), text).to.deep.equal({ kind: 'none' });
      }
    });
  });

  describe('auto', () => {
    it('picks the format that yields calls, trying hermes, mistral, llama3 then json', () => {
      expect(parsed(parseTextToolCalls('<tool_call>{"name": "get_time", "arguments": {}}</tool_call>', 'auto', TOOLS)).format).to.equal('hermes');
      expect(parsed(parseTextToolCalls('[TOOL_CALLS]get_time[ARGS]{}', 'auto', TOOLS)).format).to.equal('mistral');
      expect(parsed(parseTextToolCalls('{"name": "get_time", "parameters": {}}', 'auto', TOOLS)).format).to.equal('llama3');
      expect(parsed(parseTextToolCalls('Calling:\n```json\n{"name": "get_time", "arguments": {}}\n```', 'auto', TOOLS)).format).to.equal('json');
    });

    it('runs no part of a reply that mixes formats: the calls of one format would run and the other\'s stay in the text, unseen (until 2026-12-06 the hermes call ran and the fenced one was dropped)', () => {
      const text = '```json\n{"name": "search", "arguments": {}}\n```\n<tool_call>{"name": "get_time", "arguments": {}}</tool_call>';
      expect(problem(parseTextToolCalls(text, 'auto', TOOLS))).to.equal('the reply writes 1 tool call in the hermes format and, outside it, more that cannot be read with it (1 call in the json format); write every call of a reply the same way');
      const bare = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\n{"name": "search", "arguments": {"q": "日本"}}';
      expect(problem(parseTextToolCalls(bare, 'hermes', TOOLS))).to.match(/^the reply writes 1 tool call in the hermes format and, outside it, more that cannot be read with it \(/);
      // prose after the calls is content, as before; so is prose that quotes a result naming a tool, a Python-style
      // mention of one, and a closing tag too many (only what opens a call, or reads as one, counts beside calls)
      expect(parsed(parseTextToolCalls('<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\nThen I will search — 然后', 'auto', TOOLS)).content).to.equal('Then I will search — 然后');
      for (const prose of ['Previously I got {"status": "ok", "action": "search"} — 好', 'search(x)', '</tool_call>']) {
        const text = `${prose}\n<tool_call>{"name": "get_time", "arguments": {}}</tool_call>`;
        expect(parsed(parseTextToolCalls(text, 'hermes', TOOLS)).calls, prose).to.deep.equal([call('get_time')]);
      }
    });

    it('reads several Llama 3.1 calls each after its own <|python_tag|>, and refuses prose then a second call', () => {
      const two = '<|python_tag|>{"name": "get_time", "parameters": {}}; <|python_tag|>{"name": "search", "parameters": {"q": "café ☕"}}<|eom_id|>';
      const result = parsed(parseTextToolCalls(two, 'llama3', TOOLS));
      expect(result.calls).to.deep.equal([call('get_time'), { name: 'search', arguments: '{"q":"café ☕"}' }]);
      expect(result.content).to.equal(null);
      expect(parsed(parseTextToolCalls(two, 'auto', TOOLS)).calls).to.have.length(2);
      const afterProse = '{"name": "get_time", "parameters": {}}\nand then\n{"name": "search", "parameters": {"q": "x"}}';
      expect(problem(parseTextToolCalls(afterProse, 'llama3', TOOLS))).to.match(/^the reply writes 1 tool call in the llama3 format and, outside it, more/);
    });

    it('reports the first malformed format when none yields calls, and none for prose', () => {
      expect(problem(parseTextToolCalls('<tool_call>{"name": "search", "arguments": {</tool_call>', 'auto', TOOLS))).to.match(/^a <tool_call> block whose JSON does not parse/);
      expect(parseTextToolCalls('The answer is 42; get_time was not needed.', 'auto', TOOLS)).to.deep.equal({ kind: 'none' });
      expect(parseTextToolCalls('{"answer": 42}', 'auto', TOOLS)).to.deep.equal({ kind: 'none' });
    });
  });

  describe('native', () => {
    it('never parses calls, and refuses text that writes one', () => {
      for (const text of [
        '<tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call>',
        '[TOOL_CALLS]search[ARGS]{"q": "x"}',
        '<|python_tag|>{"name": "search", "parameters": {"q": "x"}}',
        '{"name": "search", "arguments": {"q": "x"}}',
        '```json\n{"name": "search", "arguments": {"q": "x"}}\n```',
        '{"tool": "search", "query": "x"}',
        'search(q="x")',
        '[get_weather(city="Paris")]',
        '<function=search>{"q": "x"}</function>',
        '<tool_call>{"name": "search", "arguments": {',
      ]) {
        const result = parseTextToolCalls(text, 'native', TOOLS);
        expect(result.kind, text).to.equal('malformed');
        expect(problem(result), text).to.match(/^the reply writes a tool call as text \(.+\) but this model profile expects native tool calls in message\.tool_calls$/);
      }
    });

    it('says what it found', () => {
      expect(problem(parseTextToolCalls('x <tool_call>', 'native', TOOLS))).to.contain('(a <tool_call> tag)');
      expect(problem(parseTextToolCalls('{"name": "search", "parameters": {}}', 'native', TOOLS))).to.contain('(1 call in the llama3 format)');
      expect(problem(parseTextToolCalls('{"action": "get_weather", "city": "Paris"}', 'native', TOOLS))).to.contain('(a JSON object naming the tool "get_weather")');
    });

    it('lets answers through: prose, prose naming tools, JSON answers, reasoning that drafted a call', () => {
      for (const text of [
        'It is 21°C in Paris.',
        'I called get_weather and search; the answer is 4.',
        '{"answer": 4}',
        '{"name": "Alice", "role": "admin"}',
        '<think><tool_call>{"name": "search", "arguments": {}}</tool_call> no, I know this.</think>The answer is 4.',
        'Use search(q) when you need it.',
      ]) {
        expect(parseTextToolCalls(text, 'native', TOOLS), text).to.deep.equal({ kind: 'none' });
      }
    });
  });

  describe("gpt-oss's harmony format leaked into the text", () => {
    it('is never taken for an answer: it reads as a call no text format reads', () => {
      const text = '<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{"zone": "Europe/Paris"}<|call|>';
      expect(looksLikeToolCall(text, TOOLS)).to.equal(true);
      expect(problem(parseTextToolCalls(text, 'native', TOOLS))).to.match(/harmony/);
      for (const format of ['hermes', 'auto'] as const) expect(parseTextToolCalls(text, format, TOOLS).kind, format).to.not.equal('calls');
      expect(looksLikeToolCall('I will tell you the time to the minute.', TOOLS)).to.equal(false);
    });
  });

  describe('looksLikeToolCall', () => {
    it('recognises attempted calls in every format and nothing in answers', () => {
      expect(looksLikeToolCall('<tool_call>{"name": "search"}</tool_call>', TOOLS)).to.equal(true);
      expect(looksLikeToolCall('[TOOL_CALLS][{"name": "search", "arguments": {}}]', TOOLS)).to.equal(true);
      expect(looksLikeToolCall('{"name": "search", "parameters": {}}', TOOLS)).to.equal(true);
      expect(looksLikeToolCall('```json\n{"name": "anything", "arguments": {}}\n```', TOOLS)).to.equal(true);
      expect(looksLikeToolCall('{"name": "search", "arguments": {"q": "cut', TOOLS)).to.equal(true);
      expect(looksLikeToolCall('{"tool_name": "get_time"}', TOOLS)).to.equal(true);
      expect(looksLikeToolCall('get_time()', TOOLS)).to.equal(true);
      expect(looksLikeToolCall('The time is 10:00.', TOOLS)).to.equal(false);
      expect(looksLikeToolCall('I used get_time to check.', TOOLS)).to.equal(false);
      expect(looksLikeToolCall('{"answer": "get_time"}', TOOLS)).to.equal(false);
      expect(looksLikeToolCall('{"tool": "get_time"}', [])).to.equal(false);
    });
  });

  describe('multi-byte text', () => {
    const args = { city: '東京', note: 'café crème — naïve façade', mood: '🌧️☔ 👩‍👩‍👧', quote: 'он сказал «привет»', path: 'C:\\temp\\日本' };
    const argsJson = JSON.stringify(args);
    const before = 'Voilà, je vérifie 🌍 天気を調べます。';
    const after = 'Ça arrive — 少々お待ちください 🙏';

    it('round-trips arguments and prose exactly in every format', () => {
      const replies: readonly [string, 'hermes' | 'llama3' | 'mistral' | 'json', string | null][] = [
        [`${before}\n<tool_call>\n{"name": "get_weather", "arguments": ${argsJson}}\n</tool_call>\n${after}`, 'hermes', `${before}\n\n${after}`],
        [`<tool_call>{"name": "get_weather", "arguments": ${JSON.stringify(argsJson)}}</tool_call>`, 'hermes', null],
        [`${before} <|python_tag|>{"name": "get_weather", "parameters": ${argsJson}}`, 'llama3', before],
        [`${before}[TOOL_CALLS][{"name": "get_weather", "arguments": ${argsJson}}]`, 'mistral', before],
        [`${before}[TOOL_CALLS]get_weather[ARGS]${argsJson}`, 'mistral', before],
        [`${before}\n\`\`\`json\n{"name": "get_weather", "arguments": ${argsJson}}\n\`\`\`\n${after}`, 'json', `${before}\n\n${after}`],
      ];
      for (const [text, format, content] of replies) {
        for (const f of [format, 'auto'] as const) {
          const result = parsed(parseTextToolCalls(text, f, TOOLS));
          expect(result.calls, `${format} via ${f}`).to.deep.equal([{ name: 'get_weather', arguments: argsJson }]);
          expect(JSON.parse(result.calls[0]!.arguments), format).to.deep.equal(args);
          expect(result.content, format).to.equal(content);
          expect(result.format).to.equal(format);
        }
      }
    });

    it('round-trips \\u escapes and a non-ASCII tool name', () => {
      const text = '<tool_call>{"name": "météo_天気", "arguments": {"s": "\\u00e9\\ud83d\\ude00"}}</tool_call>';
      expect(parsed(parseTextToolCalls(text, 'hermes', TOOLS)).calls).to.deep.equal([call('météo_天気', { s: 'é😀' })]);
    });

    it('treats multi-byte prose without calls as none', () => {
      expect(parseTextToolCalls(`${before} ${after}`, 'auto', TOOLS)).to.deep.equal({ kind: 'none' });
      expect(parseTextToolCalls(`${before} ${after}`, 'native', TOOLS)).to.deep.equal({ kind: 'none' });
    });
  });

  describe('hostile input (must finish: every scan is linear)', () => {
    it('20,000 unclosed <tool_call>{ openers', () => {
      const text = '<tool_call>{'.repeat(20_000);
      expect(text.length).to.equal(240_000);
      const expected = '<tool_call> block #1 that is never closed and whose JSON is never closed (1 bracket left open)';
      expect(problem(parseTextToolCalls(text, 'hermes', TOOLS))).to.equal(expected);
      expect(problem(parseTextToolCalls(text, 'auto', TOOLS))).to.equal(expected);
      expect(problem(parseTextToolCalls(text, 'native', TOOLS))).to.contain('(a <tool_call> tag)');
      expect(problem(parseTextToolCalls(`${'<tool_call>'.repeat(20_000)}</tool_call>`, 'hermes', TOOLS))).to.equal(
        '<tool_call> block #1 that is empty and never closed',
      );
    });

    it('100,000 [ and 100,000 {', () => {
      for (const text of ['['.repeat(100_000), '{'.repeat(100_000), `{"a": ${'['.repeat(100_000)}`]) {
        for (const format of ['auto', 'llama3', 'json', 'native'] as const) {
          expect(parseTextToolCalls(text, format, TOOLS), format).to.deep.equal({ kind: 'none' });
        }
        expect(looksLikeToolCall(text, TOOLS)).to.equal(false);
      }
    });

    it('many markers, fences, think tags and keys', () => {
      expect(problem(parseTextToolCalls('[TOOL_CALLS]['.repeat(20_000), 'mistral', TOOLS))).to.match(/^a \[TOOL_CALLS\] section whose JSON /);
      expect(parseTextToolCalls('```json\n{'.repeat(20_000), 'json', TOOLS)).to.deep.equal({ kind: 'none' });
      expect(parseTextToolCalls('```json\n{"name": "x"'.repeat(20_000), 'auto', TOOLS)).to.deep.equal({ kind: 'none' });
      expect(parseTextToolCalls('<think>'.repeat(30_000), 'auto', TOOLS)).to.deep.equal({ kind: 'none' });
      expect(parseTextToolCalls('</think><think>'.repeat(15_000), 'native', TOOLS)).to.deep.equal({ kind: 'none' });
      expect(parseTextToolCalls(`{"a": "${'\\"'.repeat(100_000)}`, 'auto', TOOLS)).to.deep.equal({ kind: 'none' });
      expect(looksLikeToolCall('"name"     '.repeat(20_000), TOOLS)).to.equal(false);
      expect(looksLikeToolCall('"search"   :   '.repeat(20_000), TOOLS)).to.equal(false);
    });

    it('thousands of valid calls are all read', () => {
      const hermes = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\n'.repeat(5_000);
      expect(parsed(parseTextToolCalls(hermes, 'auto', TOOLS)).calls).to.have.length(5_000);
      const mistral = '[TOOL_CALLS]search[ARGS]{"q": "x"}'.repeat(5_000);
      expect(parsed(parseTextToolCalls(mistral, 'auto', TOOLS)).calls).to.have.length(5_000);
      const llama = '{"name": "search", "parameters": {"q": "x"}}; '.repeat(5_000);
      expect(parsed(parseTextToolCalls(llama, 'auto', TOOLS)).calls).to.have.length(5_000);
    });

    it('arguments nested too deeply to re-encode are malformed, not a crash', () => {
      const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
      expect(problem(parseTextToolCalls(`<tool_call>{"name": "search", "arguments": {"x": ${deep}}}</tool_call>`, 'hermes', TOOLS))).to.match(
        /^a <tool_call> block whose call has "arguments" that cannot be re-encoded/,
      );
    });
  });
});
