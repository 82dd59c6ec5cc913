import type { FunctionTool } from '../sandbox/bundle.js';

/**
 * BFCL multi-turn (gorilla's berkeley-function-call-leaderboard; docs/formats.md, "Imported data: envfleet import bfcl") as envfleet environments: the class
 * modules read as text from the user's checkout and put, unchanged but for their imports, behind one
 * generated router class per combination of classes. Pure text work: nothing here runs the Python
 * code (it runs in the Pyodide sandbox only); the sandbox refuses whatever this lets through.
 */

/** A class module as read from the checkout: its class, its module's base name and its text. */
export interface BfclModule {
  readonly className: string;
  /** `gorilla_file_system`: the module's file name without `.py`. */
  readonly module: string;
  readonly source: string;
}

/** Why a module cannot be used, in words that name the module and the line. */
export class BfclSourceError extends Error {}

/** The long-context filler module the classes import names from. */
export const LONG_CONTEXT_MODULE = 'long_context';

/**
 * Packages the classes import that are not among the sandbox's standard modules: kept as imports when
 * the Python runtime is given the package (ENVFLEET_PYTHON_PACKAGES), otherwise replaced by a stand-in
 * whose every use raises (a tool error in the method that needs it), with this reason.
 */
export const UNAVAILABLE_MODULES: Readonly<Record<string, string>> = {
  mpmath:
    'mpmath is not available in the envfleet sandbox (MathAPI.logarithm needs it): supply a pure-Python mpmath with ENVFLEET_PYTHON_PACKAGES (the path of its package folder, the one holding __init__.py; Debian and Ubuntu ship one in python3-mpmath, or unpack the mpmath wheel from PyPI) and import again',
};

/**
 * Indents every line of `source` by `indent`, except lines that begin inside a string (a triple-quoted
 * one, or a one-quote string continued by a backslash at the end of the line before): their text is
 * part of the string's value. A scanner of Python's string and comment syntax: a
 * quote opens a string (''' and """ triple), a backslash escapes the next character inside one
 * (raw strings too, as Python's tokenizer does), `#` outside a string comments to the end of line.
 */
export function indentPython(source: string, indent: string): string {
  const lines = source.split('\n');
  const out: string[] = [];
  let quote: string | null = null; // the open string's delimiter: ', ", ''' or """
  for (const line of lines) {
    out.push(quote !== null ? line : line.trim() === '' ? '' : indent + line);
    let i = 0;
    while (i < line.length) {
      const c = line[i]!;
      if (quote === null) {
        if (c === '#') break;
        if (c === '"' || c === "'") {
          const triple = line.startsWith(c.repeat(3), i);
          quote = triple ? c.repeat(3) : c;
          i += quote.length;
          continue;
        }
        i += 1;
        continue;
      }
      if (c === '\\') {
        i += 2;
        continue;
      }
      if (line.startsWith(quote, i)) {
        i += quote.length;
        quote = null;
        continue;
      }
      i += 1;
    }
    // A one-quote string ends at the end of its line (unless the line ends with a backslash, read above as an escape of the newline).
    if (quote !== null && quote.length === 1 && !line.endsWith('\\')) quote = null;
  }
  return out.join('\n');
}

const IMPORT_FROM = /^from[ \t]+([\w.]+)[ \t]+import[ \t]+(\(([^)]*)\)|[^\n#]*)/gm;
const IMPORT = /^import[ \t]+([\w.]+(?:[ \t]*,[ \t]*[\w.]+)*)[ \t]*(?:#.*)?$/gm;

/**
 * The module's text with its imports made to work in one generated source: a top-level
 * `from <package>.long_context import (A, B)` becomes `A = _lc['A']` (the names read from the
 * long-context module's namespace, `_lc`); an `import subprocess` that nothing else uses is removed
 * (the runtime's allow-list is not widened for it); `import mpmath`, unless `available` names it (a
 * package the Python runtime is given), becomes a stand-in that raises when used. Any other import of
 * the package itself is refused with its line.
 */
export function rewriteImports(m: BfclModule, available: ReadonlySet<string> = new Set()): { source: string; usesLongContext: boolean; removed: string[]; stubbed: string[] } {
  let usesLongContext = false;
  const removed: string[] = [];
  const stubbed: string[] = [];
  const lineOf = (index: number) => m.source.slice(0, index).split('\n').length;
  let source = m.source.replace(IMPORT_FROM, (all: string, mod: string, _names: string, inParens: string | undefined, offset: number) => {
    if (!mod.includes('.')) return all;
    const last = mod.split('.').pop()!;
    if (last !== LONG_CONTEXT_MODULE) throw new BfclSourceError(`${m.module}.py, line ${lineOf(offset)}: imports ${mod}, a module of the benchmark's package other than ${LONG_CONTEXT_MODULE}; only that one can be provided`);
    usesLongContext = true;
    const names = (inParens ?? all.replace(/^from[ \t]+[\w.]+[ \t]+import[ \t]+/, ''))
      .split(',')
      .map(s => s.replace(/#.*$/gm, '').trim())
      .filter(Boolean);
    const parts = names.map(n => {
      const [name, alias] = n.split(/[ \t]+as[ \t]+/);
      if (!/^\w+$/.test(name!) || (alias !== undefined && !/^\w+$/.test(alias))) throw new BfclSourceError(`${m.module}.py, line ${lineOf(offset)}: cannot read the imported name ${JSON.stringify(n)}`);
      return `${alias ?? name} = _lc[${JSON.stringify(name)}]`;
    });
    // As many lines as the statement had, so that line numbers in tracebacks still point at the module's lines.
    const lines = all.split('\n').length;
    return [parts.join('; '), ...Array.from({ length: lines - 1 }, () => '')].join('\n');
  });
  source = source.replace(IMPORT, (all: string, list: string) => {
    const mods = list.split(',').map(s => s.trim());
    const kept: string[] = [];
    const repl: string[] = [];
    for (const mod of mods) {
      const top = mod.split('.')[0]!;
      if (top === 'subprocess' && !new RegExp(`\\b${top}\\b`).test(m.source.replace(all, ''))) removed.push(mod);
      else if (UNAVAILABLE_MODULES[top] !== undefined && mod === top && !available.has(top)) {
        stubbed.push(top);
        repl.push(`${top} = _Unavailable(${JSON.stringify(top)}, ${JSON.stringify(UNAVAILABLE_MODULES[top])})`);
      } else kept.push(mod);
    }
    const parts = [...(kept.length ? [`import ${kept.join(', ')}`] : []), ...repl];
    return parts.length ? parts.join('; ') : `pass  # envfleet: import ${removed.join(', ')} removed (unused)`;
  });
  return { source, usesLongContext, removed, stubbed };
}

/** `{name, description, parameters: {type: "dict", ...}, response}` of multi_turn_func_doc, converted to JSON Schema. */
export interface BfclFuncDoc {
  readonly name: string;
  readonly description?: string;
  readonly parameters?: unknown;
}

const TYPE_MAP: Readonly<Record<string, string | null>> = {
  dict: 'object',
  object: 'object',
  float: 'number',
  number: 'number',
  integer: 'integer',
  int: 'integer',
  string: 'string',
  str: 'string',
  boolean: 'boolean',
  bool: 'boolean',
  array: 'array',
  list: 'array',
  tuple: 'array',
  any: null,
  null: 'null',
};

/** A BFCL type description as JSON Schema: dict→object, float→number, tuple→array, any→{} (anything); descriptions, enums, defaults and required kept. */
export function bfclSchema(raw: unknown, where: string): Record<string, unknown> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new BfclSourceError(`${where}: not a type description object`);
  const src = raw as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  const t = src['type'];
  if (t !== undefined) {
    if (typeof t !== 'string' || !(t in TYPE_MAP)) throw new BfclSourceError(`${where}: unknown type ${JSON.stringify(t)} (known: ${Object.keys(TYPE_MAP).join(', ')})`);
    const mapped = TYPE_MAP[t];
    if (mapped !== null && mapped !== undefined) out['type'] = mapped;
  }
  for (const key of ['description', 'enum', 'default', 'format']) if (src[key] !== undefined) out[key] = src[key];
  if (src['properties'] !== undefined) {
    const props = src['properties'];
    if (props === null || typeof props !== 'object' || Array.isArray(props)) throw new BfclSourceError(`${where}.properties: not an object`);
    out['properties'] = Object.fromEntries(Object.entries(props as Record<string, unknown>).map(([k, v]) => [k, bfclSchema(v, `${where}.properties.${k}`)]));
  }
  if (src['items'] !== undefined) out['items'] = bfclSchema(src['items'], `${where}.items`);
  if (Array.isArray(src['required'])) out['required'] = src['required'];
  return out;
}

/** One function doc as an OpenAI function tool (parameters as JSON Schema of type object). */
export function toolFromFuncDoc(doc: unknown, where: string): FunctionTool {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new BfclSourceError(`${where}: not a function doc object {name, description, parameters}`);
  const d = doc as Record<string, unknown>;
  const name = d['name'];
  if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new BfclSourceError(`${where}: the name ${JSON.stringify(name)} is not a Python identifier`);
  const parameters = d['parameters'] === undefined ? { type: 'object', properties: {} } : bfclSchema(d['parameters'], `${where} (${name}).parameters`);
  if (parameters['type'] !== 'object') throw new BfclSourceError(`${where} (${name}).parameters: must describe a dict (an object), not ${JSON.stringify(parameters['type'])}`);
  return { type: 'function', function: { name, ...(typeof d['description'] === 'string' ? { description: d['description'] } : {}), parameters } };
}

/** The router's internal tool that runs one call string (gold replay at import); never offered to an agent. */
export const REPLAY_TOOL: FunctionTool = {
  type: 'function',
  function: { name: '_replay_call', description: 'envfleet import: run one BFCL call string', parameters: { type: 'object', properties: { call: { type: 'string' } }, required: ['call'], additionalProperties: false } },
};

/** The router class's name for a combination of classes. */
export const routerClassName = (classes: readonly string[]): string => `Bfcl_${[...classes].sort().join('_')}`;

const py = (s: string) => JSON.stringify(s);

/**
 * The environment source for a combination of classes: each module wrapped in a function (its own
 * namespace: the modules share top-level names such as DEFAULT_STATE and `datetime`), the
 * long-context module first when a class needs it, and the router class. Construction follows
 * EnvScaler's semantics (python-harness.mjs `create`): the router is built with the scenario's
 * initial state `{"__initial_config": {...}, "__long_context": bool}`, whose keys (dunder, so not
 * state) are then set on it. It makes one instance per class and loads each stateful one with
 * `_load_scenario(deepcopy(config[Class]), long_context=...)`, as BFCL does. Its public state is one
 * attribute per class: that instance's public attributes as plain JSON (objects become their public
 * vars, `parent` links dropped, dict keys as JSON writes them), refreshed after every call. A tool method returns what BFCL hands
 * the model: a string as it is, a dict when JSON can write it (else its str), anything else as str,
 * and an exception as "Error during execution: ...".
 */
export function routerSource(classes: readonly string[], modules: ReadonlyMap<string, BfclModule>, longContext: BfclModule | null, toolsByClass: ReadonlyMap<string, readonly string[]>, available: ReadonlySet<string> = new Set()): string {
  const sorted = [...classes].sort();
  const parts: string[] = [
    `# Generated by envfleet import bfcl: the classes ${sorted.join(', ')} of BFCL multi-turn (read from the user's checkout), behind one router class.`,
    'import ast as _ast',
    'import json as _json',
    'from copy import deepcopy as _deepcopy',
    '',
    'class _Unavailable:',
    '    """A module the sandbox does not have: any use raises, which the method using it reports as its error."""',
    '    def __init__(self, name, why):',
    '        self._why = why',
    '    def __getattr__(self, attr):',
    '        raise ImportError(self._why)',
    '',
  ];
  const rewritten = sorted.map(c => {
    const m = modules.get(c);
    if (!m) throw new BfclSourceError(`no module for class ${c}`);
    return { c, m, r: rewriteImports(m, available) };
  });
  const needsLc = rewritten.some(x => x.r.usesLongContext);
  if (needsLc) {
    if (!longContext) throw new BfclSourceError(`${rewritten.filter(x => x.r.usesLongContext).map(x => `${x.m.module}.py`).join(', ')} import from ${LONG_CONTEXT_MODULE}.py, which is missing`);
    parts.push('def _bfcl_module_long_context():', indentPython(rewriteImports(longContext).source, '    '), '    return dict(locals())', '', '_lc = _bfcl_module_long_context()', '');
  }
  for (const { m, r } of rewritten) {
    parts.push(`def _bfcl_module_${m.module}(_lc):`, indentPython(r.source, '    '), '    return dict(locals())', '', `_ns_${m.module} = _bfcl_module_${m.module}(${needsLc ? '_lc' : 'None'})`, '');
  }
  parts.push(
    'def _bfcl_public(value):',
    '    """Plain JSON of a state value: containers element by element, an object as its public vars without parent links."""',
    '    if value is None or isinstance(value, (str, bool, int, float)):',
    '        return value',
    '    if isinstance(value, dict):',
    '        # Keys as JSON writes them (an int key becomes its text): some classes key one dict by both.',
    '        return {(k if isinstance(k, str) else _json.dumps(k) if isinstance(k, (int, float, bool)) or k is None else str(k)): _bfcl_public(v) for k, v in value.items()}',
    '    if isinstance(value, (list, tuple)):',
    '        return [_bfcl_public(v) for v in value]',
    '    if isinstance(value, (set, frozenset)):',
    '        return sorted((_bfcl_public(v) for v in value), key=repr)',
    "    if hasattr(value, '__dict__') and not isinstance(value, type):",
    "        return {k: _bfcl_public(v) for k, v in vars(value).items() if not k.startswith('_') and k != 'parent'}",
    '    return value',
    '',
    'def _bfcl_state(inst):',
    "    return {k: _bfcl_public(v) for k, v in vars(inst).items() if not k.startswith('_')}",
    '',
    'def _bfcl_result(result):',
    '    if type(result) == str:',
    '        return result',
    '    if type(result) == dict:',
    '        try:',
    '            _json.dumps(result, allow_nan=False)',
    '            return result',
    '        except Exception:',
    '            return str(result)',
    '    return str(result)',
    '',
    `_CLASSES = (${sorted.map(c => `(${py(c)}, _ns_${modules.get(c)!.module}[${py(c)}])`).join(', ')},)`,
    "_STATELESS = frozenset(['MathAPI'])",
    '',
    `class ${routerClassName(sorted)}:`,
    `    """BFCL ${sorted.join(' + ')}: one instance per class; the state is each one's public attributes."""`,
    '    def __init__(self, config=None):',
    '        config = config or {}',
    "        initial = config.get('__initial_config') or {}",
    "        long_context = bool(config.get('__long_context', False))",
    '        instances = {}',
    '        for name, cls in _CLASSES:',
    '            inst = cls()',
    '            if name not in _STATELESS:',
    '                inst._load_scenario(_deepcopy(initial.get(name, {})), long_context=long_context)',
    '            instances[name] = inst',
    "        self.__dict__['__bfcl_instances'] = instances",
    '        for name, inst in instances.items():',
    '            setattr(self, name, _bfcl_state(inst))',
    '',
    '    def _dispatch(self, class_name, method, args, kwargs):',
    "        inst = self.__dict__['__bfcl_instances'][class_name]",
    '        try:',
    '            result = _bfcl_result(getattr(inst, method)(*args, **kwargs))',
    '        except Exception as e:',
    "            result = 'Error during execution: ' + str(e)",
    '        setattr(self, class_name, _bfcl_state(inst))',
    '        return result',
    '',
    '    def _replay_call(self, call):',
    '        """One call string of BFCL\'s ground truth, parsed with ast (literal arguments, positional ones first)."""',
    "        node = _ast.parse(call.strip(), mode='eval').body",
    '        if not isinstance(node, _ast.Call) or not isinstance(node.func, _ast.Name):',
    "            raise ValueError('not a call of a function by name: %r' % call)",
    '        if node.func.id not in _TOOLS:',
    "            raise ValueError('no tool named %s in this environment' % node.func.id)",
    '        args = [_ast.literal_eval(a) for a in node.args]',
    '        kwargs = {k.arg: _ast.literal_eval(k.value) for k in node.keywords}',
    '        return getattr(self, node.func.id)(*args, **kwargs)',
    '',
  );
  const tools: string[] = [];
  for (const c of sorted) {
    for (const t of toolsByClass.get(c) ?? []) {
      tools.push(t);
      parts.push(`    def ${t}(self, *args, **kwargs):`, `        return self._dispatch(${py(c)}, ${py(t)}, args, kwargs)`, '');
    }
  }
  parts.push(`_TOOLS = frozenset([${tools.map(py).join(', ')}])`, '');
  return parts.join('\n');
}
