import { mkdtemp, rm, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { BFCL_CHECK_ITEM, bfclCheck } from '../../../src/importers/bfcl-check.js';
import { BfclSourceError, bfclSchema, indentPython, rewriteImports, routerSource, toolFromFuncDoc, UNAVAILABLE_MODULES } from '../../../src/importers/bfcl-source.js';
import { findBfclLayout, methodsUsing, pythonStringDict } from '../../../src/importers/bfcl.js';
import { RequestError } from '../../../src/errors.js';

const FIXTURE = new URL('../../fixtures/bfcl/', import.meta.url).pathname;

describe('BFCL import: function docs as JSON Schema', () => {
  it('maps dict→object, float→number, tuple→array, any→{} and keeps descriptions, defaults and required', () => {
    const tool = toolFromFuncDoc(
      {
        name: 'plan_trip',
        description: 'Plan a trip — 旅行 ✈️',
        parameters: {
          type: 'dict',
          properties: {
            budget: { type: 'float', description: 'in €' },
            stops: { type: 'tuple', items: { type: 'string' }, description: 'towns' },
            extra: { type: 'any', description: 'anything' },
            options: { type: 'dict', properties: { late: { type: 'boolean', default: false } } },
            level: { type: 'integer', enum: [1, 2] },
          },
          required: ['budget'],
        },
        response: { type: 'dict', properties: {} },
      },
      'trip.json line 1',
    );
    expect(tool).to.deep.equal({
      type: 'function',
      function: {
        name: 'plan_trip',
        description: 'Plan a trip — 旅行 ✈️',
        parameters: {
          type: 'object',
          properties: {
            budget: { type: 'number', description: 'in €' },
            stops: { type: 'array', items: { type: 'string' }, description: 'towns' },
            extra: { description: 'anything' },
            options: { type: 'object', properties: { late: { type: 'boolean', default: false } } },
            level: { type: 'integer', enum: [1, 2] },
          },
          required: ['budget'],
        },
      },
    });
  });

  it('refuses an unknown type and a name that is not a Python identifier, naming where', () => {
    expect(() => bfclSchema({ type: 'complex' }, 'x.json line 3 (f).parameters.properties.z')).to.throw(BfclSourceError, /x\.json line 3 \(f\)\.parameters\.properties\.z: unknown type "complex"/);
    expect(() => toolFromFuncDoc({ name: 'café', parameters: { type: 'dict', properties: {} } }, 'y.json line 1')).to.throw(BfclSourceError, /y\.json line 1: the name "café" is not a Python identifier/);
    expect(() => toolFromFuncDoc({ name: 'f', parameters: { type: 'string' } }, 'y.json line 2')).to.throw(BfclSourceError, /must describe a dict/);
  });
});

describe('BFCL import: module text', () => {
  it('indents code but not the lines inside a triple-quoted string', () => {
    const src = ['X = """first', '    second, indented in the string', 'third"""', "y = '''a'''  # '''not a string", 'def f():', '    return "#\\"\'\'\'"', '', 'Z = 1'].join('\n');
    expect(indentPython(src, '    ').split('\n')).to.deep.equal([
      '    X = """first',
      '    second, indented in the string',
      'third"""',
      "    y = '''a'''  # '''not a string",
      '    def f():',
      '        return "#\\"\'\'\'"',
      '',
      '    Z = 1',
    ]);
  });

  it('leaves alone a line that continues a one-quote string after a backslash (its text is the string\'s value)', () => {
    const src = ["x = 'ab\\", "cd — 東京 ✅'", 'y = "ef\\\\"', 'z = 1'].join('\n');
    expect(indentPython(src, '  ').split('\n')).to.deep.equal(["  x = 'ab\\", "cd — 東京 ✅'", '  y = "ef\\\\"', '  z = 1']);
  });

  it('reads the long-context names from _lc, drops an unused subprocess import, stubs mpmath, refuses other package imports', () => {
    const m = { className: 'A', module: 'a', source: 'import subprocess\nimport mpmath\nfrom pkg.sub.long_context import (\n    ONE,\n    TWO as DEUX,\n)\nfrom typing import Dict\nclass A:\n    pass\n' };
    const r = rewriteImports(m);
    expect(r.usesLongContext).to.equal(true);
    expect(r.removed).to.deep.equal(['subprocess']);
    expect(r.stubbed).to.deep.equal(['mpmath']);
    expect(r.source).to.include("ONE = _lc[\"ONE\"]; DEUX = _lc[\"TWO\"]");
    expect(r.source).to.include('mpmath = _Unavailable("mpmath"');
    expect(r.source).to.include('from typing import Dict');
    expect(r.source).not.to.match(/^import subprocess/m);
    // Line numbers are kept: the import statement's lines are still there.
    expect(r.source.split('\n').length).to.equal(m.source.split('\n').length);
    const used = rewriteImports({ className: 'B', module: 'b', source: 'import subprocess\nclass B:\n    def run(self):\n        return subprocess.run\n' });
    expect(used.removed).to.deep.equal([]);
    expect(used.source).to.match(/^import subprocess$/m);
    expect(() => rewriteImports({ className: 'C', module: 'c', source: 'x = 1\nfrom pkg.other import thing\n' })).to.throw(BfclSourceError, /c\.py, line 2: imports pkg\.other/);
  });

  it('keeps import mpmath when the Python runtime is given it, and otherwise says how to supply it', () => {
    const m = { className: 'A', module: 'a', source: 'import mpmath\nimport json, mpmath\nclass A:\n    pass\n' };
    const kept = rewriteImports(m, new Set(['mpmath']));
    expect(kept.stubbed).to.deep.equal([]);
    expect(kept.source).to.equal(m.source);
    const stubbed = rewriteImports(m);
    expect(stubbed.stubbed).to.deep.equal(['mpmath', 'mpmath']);
    expect(stubbed.source).to.include('import json; mpmath = _Unavailable("mpmath"');
    expect(UNAVAILABLE_MODULES['mpmath']).to.match(/MathAPI\.logarithm needs it\): supply a pure-Python mpmath with ENVFLEET_PYTHON_PACKAGES/);
    const modules = new Map([['A', m]]);
    expect(routerSource(['A'], modules, null, new Map([['A', []]]), new Set(['mpmath']))).to.match(/^ {4}import mpmath$/m);
    expect(routerSource(['A'], modules, null, new Map([['A', []]]))).not.to.match(/^ {4}import mpmath$/m);
  });

  it('generates a router with one method per tool and a replay entry that parses call strings with ast', () => {
    const modules = new Map([['Alpha', { className: 'Alpha', module: 'alpha', source: 'class Alpha:\n    def ping(self, x):\n        return {"pong": x}\n' }]]);
    const src = routerSource(['Alpha'], modules, null, new Map([['Alpha', ['ping']]]));
    expect(src).to.match(/^class Bfcl_Alpha:/m);
    expect(src).to.include('    def ping(self, *args, **kwargs):');
    expect(src).to.include("_ast.parse(call.strip(), mode='eval')");
    expect(src).to.include('_ast.literal_eval(a) for a in node.args');
    expect(() => routerSource(['Alpha', 'Beta'], modules, null, new Map())).to.throw(BfclSourceError, /no module for class Beta/);
  });

  it('reads the class maps of a constants file whose values hold braces, and the methods that use a module', () => {
    const text = 'A = {\n    "X": f"{P}.x_mod",\n    "Y": f"{P}.y_mod",\n}\nB = {"X": "x.json"}\n';
    expect([...pythonStringDict(text, 'A')!]).to.deep.equal([
      ['X', '{P}.x_mod'],
      ['Y', '{P}.y_mod'],
    ]);
    expect(pythonStringDict(text, 'C')).to.equal(null);
    expect(methodsUsing('import mpmath\nclass M:\n    def a(self):\n        return mpmath.log(2)\n    def b(self):\n        return 1\n', 'mpmath')).to.deep.equal(['a']);
  });
});

describe('BFCL import: the layout of a checkout', () => {
  it('finds bfcl_eval from its parent folder, and names every missing part', async () => {
    const layout = await findBfclLayout(FIXTURE, ['base', 'miss_func']);
    expect(layout.root).to.equal(join(FIXTURE, 'bfcl_eval'));
    expect(Object.keys(layout.categories)).to.deep.equal(['base', 'miss_func']);
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-bfcl-layout-'));
    try {
      await cp(join(FIXTURE, 'bfcl_eval'), join(dir, 'bfcl_eval'), { recursive: true });
      await rm(join(dir, 'bfcl_eval', 'data', 'multi_turn_func_doc'), { recursive: true });
      await rm(join(dir, 'bfcl_eval', 'data', 'possible_answer', 'BFCL_v4_multi_turn_base.json'));
      const err = await findBfclLayout(dir, ['base', 'miss_param']).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(RequestError);
      const message = (err as Error).message;
      expect(message).to.include('multi_turn_func_doc (the function docs)');
      expect(message).to.include('BFCL_v*_multi_turn_base.json (the base gold answers)');
      expect(message).to.include('BFCL_v*_multi_turn_miss_param.json (the miss_param entries)');
      const none = await findBfclLayout(join(dir, 'bfcl_eval', 'constants'), ['base']).catch((e: unknown) => e);
      expect((none as Error).message).to.match(/no bfcl_eval folder found/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('BFCL import: the check', () => {
  it('embeds the gold turns as JSON a Python string literal can hold (quotes, backslashes, multi-byte text)', () => {
    const gold = [{ calls: 1, state: { A: { note: 'Thé "茶" \\ 🍵\n' } }, results: [{ ok: 'l\'été' }] }];
    const spec = bfclCheck('e_1', gold);
    expect(spec).to.include({ item: BFCL_CHECK_ITEM, language: 'python', episode: true });
    const literal = /^GOLD = json\.loads\((".*")\)$/m.exec(spec.check)![1]!;
    expect(JSON.parse(JSON.parse(literal) as string)).to.deep.equal(gold);
  });
});
