import { expect } from 'chai';
import { assemblePythonSource, pythonMethodParts, pythonParameters, pythonSignatureProblem, unfence } from '../../../src/synthesis/assemble.js';
import { dedupeHelpers } from '../../../src/synthesis/environments.js';

/** The pure parts of Python assembly (src/synthesis/assemble.ts); the sandbox checks run in test/integration/synth-python.test.ts. */

const LEND = { name: 'lend', parameters: { type: 'object', properties: { member_id: { type: 'string' }, packets: { type: 'integer' } }, required: ['member_id'] } };

describe('Python method answers: fences, imports, indentation', () => {
  it('takes a fence off only when it wraps the whole answer', () => {
    expect(unfence('```python\ndef f(self):\n    return 1\n```')).to.equal('def f(self):\n    return 1');
    expect(unfence('  ```py\ndef f(self):\n    pass\n```\n')).to.equal('def f(self):\n    pass');
    const inside = 'def f(self):\n    """Example: ```x```"""\n    return 1';
    expect(unfence(inside)).to.equal(inside);
  });

  it('hoists the import lines before the def, dedents an answer indented as in a class body, and leaves a docstring line that starts with "from"', () => {
    const answer = '    import re\n    from datetime import date\n\n    def find(self, query: str) -> dict:\n        """Find a record.\n        from the registry of all users\n        """\n        import json\n        return {"success": True, "data": re.escape(query)}\n';
    const parts = pythonMethodParts(answer);
    expect(parts.imports).to.deep.equal(['import re', 'from datetime import date']);
    expect(parts.code.split('\n')[0]).to.equal('def find(self, query: str) -> dict:');
    expect(parts.code).to.include('\n    from the registry of all users\n');
    expect(parts.code).to.include('\n    import json\n');
  });

  it('assembles the class: the header, hoisted imports once, required attributes created empty, each method indented whole', () => {
    const schema = {
      type: 'object',
      required: ['members', 'loans', 'next_loan', 'note'],
      properties: { members: { type: 'object', description: 'member_id -> Member\nwith """quotes"""' }, loans: { type: 'array' }, next_loan: { type: 'integer' }, note: { type: 'string' }, extra: { type: 'object' } },
    };
    const source = assemblePythonSource('SeedLibrary', schema, ['import re\ndef a(self):\n    return {"success": True, "data": re.escape("é")}', '```python\ndef b(self, x: int = 0) -> dict:\n    return {"success": True, "data": x}\n```'], ['import re\ndef _h(self):\n    return 1'], 'Seed library 🌱');
    expect(source).to.equal(
      [
        'from typing import Any, Dict, List, Optional, Union',
        'import re',
        '',
        '',
        'class SeedLibrary:',
        '    """Seed library 🌱: the state is the instance attributes (vars(self))."""',
        '',
        '    def __init__(self, init_config: Optional[dict] = None):',
        "        self.members: Dict[str, Any] = {}  # member_id -> Member with '''quotes'''",
        '        self.loans: List[Any] = []',
        '        self.next_loan: int = 0',
        "        self.note: str = ''",
        '        for key, value in (init_config or {}).items():',
        '            setattr(self, key, value)',
        '',
        '    def a(self):',
        '        return {"success": True, "data": re.escape("é")}',
        '',
        '    def b(self, x: int = 0) -> dict:',
        '        return {"success": True, "data": x}',
        '',
        '    def _h(self):',
        '        return 1',
        '',
      ].join('\n'),
    );
  });

  it('dedupes Python helpers by name as JavaScript ones', () => {
    expect(dedupeHelpers(['def _h(self):\n    return 1', 'def _h(self, x):\n    return 2', '@staticmethod\ndef _k():\n    return 3'])).to.have.length(2);
  });
});

describe('Python signatures against the tool parameters', () => {
  it('reads the parameters: annotations with brackets and commas, defaults with strings, *, **kwargs', () => {
    const sig = pythonParameters('def lend(self, member_id: Dict[str, int], packets: int = 1, *, note: str = "a, b)", **extra) -> dict:\n    pass', 'lend');
    expect(sig).to.deep.equal({ self: true, params: [{ name: 'member_id', optional: false }, { name: 'packets', optional: true }, { name: 'note', optional: true }], varKeyword: true });
    expect(pythonParameters('def other(self):\n    pass', 'lend')).to.equal(null);
  });

  it('says what does not match, in words a model can act on', () => {
    expect(pythonSignatureProblem(LEND, 'def lend(self, member_id: str, packets: int = 1) -> dict:\n    pass')).to.equal(null);
    expect(pythonSignatureProblem(LEND, 'def lend(self, member_id: str, **kwargs) -> dict:\n    pass')).to.equal(null);
    expect(pythonSignatureProblem(LEND, 'def lend(self, member_id: str, count: int = 1) -> dict:\n    pass')).to.equal(
      "the tool's parameters packets are not parameters of def lend(self, ...) (the arguments are passed by name); the tool's parameters are: member_id, packets",
    );
    expect(pythonSignatureProblem(LEND, 'def lend(self, member_id, packets, branch):\n    pass')).to.include('def lend requires branch, which the tool\'s parameters do not have');
    expect(pythonSignatureProblem(LEND, 'def lend(member_id, packets):\n    pass')).to.equal('def lend(...) must take self as its first parameter (it is a method of the class)');
    expect(pythonSignatureProblem(LEND, 'def borrow(self):\n    pass')).to.match(/^it does not define a method named lend/);
  });
});
