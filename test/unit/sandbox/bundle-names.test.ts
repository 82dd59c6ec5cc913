import { expect } from 'chai';
import { EnvironmentCode } from '../../../src/sandbox/bundle.js';

/** Names a model or an importer may give: the message says the rule is ASCII, and why (a stranger's probe read "a JavaScript identifier" for 予約, which is one). */
describe('environment and tool names', () => {
  const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } });
  const problems = (code: Record<string, unknown>) => {
    const r = EnvironmentCode.safeParse(code);
    return r.success ? [] : r.error.issues.map(i => `${i.path.join('.')}: ${i.message}`);
  };

  it('refuses a tool name that is not ASCII, in either language, saying the rule and why', () => {
    for (const name of ['予約', 'réserver', 'book_🛏️']) {
      const said = "tools.0.function.name: an identifier of ASCII letters, digits and _ ($ too in JavaScript), not starting with a digit: the method name, which is also the tool's name the model calls (model APIs take ASCII tool names only)";
      expect(problems({ name: 'hotel', className: 'Hotel', source: 'class Hotel {}', tools: [tool(name)] }), name).to.deep.equal([said]);
      expect(problems({ name: 'hotel', className: 'Hotel', language: 'python', source: 'class Hotel:\n    pass\n', tools: [tool(name)] }), name).to.deep.equal([said]);
    }
    expect(problems({ name: 'hotel', className: 'Hotel', language: 'python', source: 'class Hotel:\n    pass\n', tools: [tool('book$room')] })).to.deep.equal([
      'tools.0.function.name: a Python identifier (ASCII letters, digits and _, not starting with a digit) for a Python environment: no $',
    ]);
    expect(problems({ name: 'hôtel', className: 'Hôtel', source: 'class Hôtel {}', tools: [tool('book')] })).to.deep.equal(['className: an identifier of ASCII letters, digits and _ ($ too in JavaScript), not starting with a digit']);
    expect(problems({ name: 'hotel', className: 'Hotel', source: 'class Hotel {}', tools: [tool('book_room')] })).to.deep.equal([]);
  });
});
