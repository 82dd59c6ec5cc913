import { expect } from 'chai';
import { pythonJson } from '../../../src/datasets/python-json.js';
import { pythonDumpsText, pythonFloat, pythonMemberWhereLost } from '../../../src/util/python-json.js';
import { toHF, toLlamaFactory, toShareGPT } from '../../../src/datasets/trajectories.js';
import { stringifyJson } from '../../../src/util/raw-json.js';
import { call, step, trajectory } from '../../helpers/sft-fixtures.js';

// Every expected string below was written by CPython 3.12's json.dumps(json.loads(text), ensure_ascii=False) (or
// repr(float)) once, and copied here: the exports must show a trainer the values the model wrote, as Python reads them.
const ARGS = '{"number": 12345678901234567891, "amount": 2.0, "big": 1e16, "small": 0.00001, "by_id": {"b": 1, "10": 2, "b": 3}, "note": "n° 7 — 七 🧾\\n\\"q\\""}';
const ARGS_PY = '{"number": 12345678901234567891, "amount": 2.0, "big": 1e+16, "small": 1e-05, "by_id": {"b": 3, "10": 2}, "note": "n° 7 — 七 🧾\\n\\"q\\""}';
const ARGS_PY_COMPACT = '{"number":12345678901234567891,"amount":2.0,"big":1e+16,"small":1e-05,"by_id":{"b":3,"10":2},"note":"n° 7 — 七 🧾\\n\\"q\\""}';

describe("Python's json.dumps of the model's argument text", () => {
  it('reads numbers as Python does: ints exact, floats as repr writes them, -0 an int', () => {
    expect(pythonDumpsText(ARGS)).to.equal(ARGS_PY);
    expect(pythonDumpsText(ARGS, true)).to.equal(ARGS_PY_COMPACT);
    const numbers = '[-0, -0.0, 0.0, 1E5, 1e15, 1.5e-7, 0.0001, 5e-324, 1.7976931348623157e308, 1e400, -1e400, 0.1e1, 2.50, 9007199254740993, 123456789012345678901234567890.0]';
    expect(pythonDumpsText(numbers)).to.equal('[0, -0.0, 0.0, 100000.0, 1000000000000000.0, 1.5e-07, 0.0001, 5e-324, 1.7976931348623157e+308, Infinity, -Infinity, 1.0, 2.5, 9007199254740993, 1.2345678901234568e+29]');
  });

  it('keeps keys in the order they came (a repeated key: its first place, its last value), strings as json.dumps writes them', () => {
    const text = ' {\n  "a" : [ ] , "b":{ } ,"\\u00e9\\ud83e\\uddfe": "\\u2028\\u007f\\u0001\\t" }\n';
    expect(pythonDumpsText(text)).to.equal('{"a": [], "b": {}, "é🧾": "\u2028\u007f\\u0001\\t"}');
    expect(pythonDumpsText(text, true)).to.equal('{"a":[],"b":{},"é🧾":"\u2028\u007f\\u0001\\t"}');
  });

  it('is undefined for text that is not JSON, or an integer Python refuses to read (over 4,300 digits)', () => {
    expect(pythonDumpsText('{"a": ')).to.equal(undefined);
    expect(pythonDumpsText(`{"n": ${'1'.repeat(4301)}}`)).to.equal(undefined);
    expect(pythonDumpsText(`{"n": ${'1'.repeat(4300)}}`)).to.equal(`{"n": ${'1'.repeat(4300)}}`);
  });

  it('takes 100,000 nested arrays without recursion', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    expect(pythonDumpsText(deep)).to.equal(deep);
  });

  it("writes a float as Python's repr", () => {
    const cases: [number, string][] = [[2, '2.0'], [1e16, '1e+16'], [1e15, '1000000000000000.0'], [0.00001, '1e-05'], [0.0001, '0.0001'], [1.5e-7, '1.5e-07'], [-0, '-0.0'], [1.5e300, '1.5e+300'], [123.456, '123.456'], [1e22, '1e+22'], [5e-324, '5e-324'], [-2.5e-5, '-2.5e-05'], [100, '100.0'], [0.1, '0.1']];
    expect(cases.map(([x]) => pythonFloat(x))).to.deep.equal(cases.map(([, s]) => s));
    // A value without its text (a tool's schema): an integral number is an int, any other as repr writes it.
    expect(pythonJson({ minimum: 0.00001, step: 1.5e-7, max: 100, big: 1e22 })).to.equal('{"minimum": 1e-05, "step": 1.5e-07, "max": 100, "big": 1e+22}');
  });
});

describe('the SFT exports write the arguments as Python reads the model’s text', () => {
  const t = trajectory(
    [
      { role: 'system', content: 'Help — 帮助 🙂' },
      { role: 'user', content: 'Pay it ✅' },
      { role: 'assistant', content: null, tool_calls: [call('k1', 'pay', ARGS), call('k2', 'pay', '{"amount": 3}')] },
      { role: 'tool', tool_call_id: 'k1', content: '{"ok":true}' },
      { role: 'tool', tool_call_id: 'k2', content: '{"ok":true}' },
      { role: 'assistant', content: 'Payé ✅' },
    ],
    { steps: [step(1, 'k1', 'pay', ARGS), step(1, 'k2', 'pay', '{"amount": 3}')], tools: [{ type: 'function', function: { name: 'pay', parameters: { type: 'object' } } }] },
  );

  it('LLaMA-Factory ShareGPT and alpaca (Qwen text): json.dumps of what json.loads reads', () => {
    const fc = toShareGPT(t)[0]!.conversations[1]!;
    expect(fc.from).to.equal('function_call');
    expect(fc.value).to.equal(`[{"name": "pay", "arguments": ${ARGS_PY}}, {"name": "pay", "arguments": {"amount": 3}}]`);
    expect(toLlamaFactory(t)[0]!.output).to.equal(`<tool_call>\n{"name": "pay", "arguments": ${ARGS_PY}}\n</tool_call>\n<tool_call>\n{"name": "pay", "arguments": {"amount": 3}}\n</tool_call>`);
  });

  it('HF / TRL: the line as written holds the exact values; arguments JavaScript reads the same stay plain objects', () => {
    const [line] = toHF(t);
    const written = stringifyJson(line)!;
    expect(written).to.include(`"arguments":${ARGS_PY_COMPACT}`);
    expect(written).not.to.include('\n');
    const calls = (line!.completion[0] as { tool_calls: { function: { arguments: unknown } }[] }).tool_calls;
    expect(calls[1]!.function.arguments).to.deep.equal({ amount: 3 });
  });
});

describe("pythonMemberWhereLost: a member of a model's answer as Python reads it", () => {
  const answer = `{"state": ${ARGS}, "explanation": "x"}`;
  it("is Python's reading where JavaScript's differs, undefined where they agree", () => {
    expect(pythonMemberWhereLost(answer, 'state', JSON.parse(ARGS))).to.equal(ARGS_PY_COMPACT);
    expect(pythonMemberWhereLost('{"state": {"a": 1, "b": "é"}}', 'state', { a: 1, b: 'é' })).to.equal(undefined);
  });
  it('is undefined when the member is absent or its text does not hold the value (a schema changed it)', () => {
    expect(pythonMemberWhereLost(answer, 'missing', {})).to.equal(undefined);
    expect(pythonMemberWhereLost('{"state": {"amount": 2.0, "extra": 1}}', 'state', { amount: 2 })).to.equal(undefined);
  });
});
