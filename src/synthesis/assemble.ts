import type { CodeLanguage, EnvironmentCode, FunctionTool } from '../sandbox/bundle.js';
import type { SandboxLimits } from '../sandbox/limits.js';
import type { SandboxRunner } from '../sandbox/runner.js';
import type { Operation } from './schemas.js';
import type { EnvironmentRecord } from './types.js';
import { typedParameters } from './tool-schemas.js';

/**
 * Builds the environment class from its parts. The constructor is envfleet's own (it keeps the
 * initial state in this.state, the contract), so a model only ever writes methods; each is
 * indented as a whole, so no re-indentation can break it (the seed's assembler did).
 */
export function assembleSource(className: string, methods: readonly string[], helpers: readonly string[]): string {
  const indent = (src: string) => src.trim().split('\n').map(line => (line.trim() ? `  ${line}` : '')).join('\n');
  const body = [...methods, ...helpers].map(indent).join('\n\n');
  // The runtime hands each environment a freshly parsed initial state, so no copy is needed.
  return `class ${className} {\n  constructor(initialState) {\n    this.state = initialState === undefined || initialState === null ? {} : initialState;\n  }\n\n${body}\n}\n`;
}

/** The tools of the operations; every property of their parameters gets a `type` (typedParameters), which trainers and chat templates need. */
export function toolsOf(operations: readonly Operation[]): FunctionTool[] {
  return operations.map(op => ({ type: 'function', function: { name: op.name, description: op.description, parameters: typedParameters(op.parameters) } }));
}

/**
 * Checks one method in the sandbox (never in Node): it must parse inside a class body and define
 * a method of the expected name. Returns null, or what is wrong in words a model can act on.
 */
export async function checkMethodSource(sandbox: SandboxRunner, name: string, source: string, limits: SandboxLimits): Promise<string | null> {
  if (/^\s*(import|export)\s/m.test(source) || /\brequire\s*\(/.test(source)) {
    return 'the method must not use import, export or require: environments have no modules';
  }
  const check = `function check() {\nclass __EnvfleetMethodProbe {\n${source}\n}\nreturn Object.getOwnPropertyNames(__EnvfleetMethodProbe.prototype).includes(${JSON.stringify(name)});\n}`;
  const { results } = await sandbox.checks({ checks: [{ item: name, check }], finalState: {}, initialState: {}, limits });
  const r = results[0];
  if (!r) return 'the sandbox returned no result';
  if (r.passed) return null;
  if (r.errorCode) return `it does not load as a class method: ${r.error ?? r.errorCode}`;
  return `it does not define a method named ${name}(…) (write it as ${name}({ ... }) { ... } inside a class body)`;
}

// --- Python (envfleet synth --language python) ------------------------------------------------------

/** Python's keywords (and `self`): not a method or parameter name. */
export const PYTHON_RESERVED: ReadonlySet<string> = new Set([
  'False', 'None', 'True', 'and', 'as', 'assert', 'async', 'await', 'break', 'class', 'continue', 'def', 'del', 'elif', 'else', 'except',
  'finally', 'for', 'from', 'global', 'if', 'import', 'in', 'is', 'lambda', 'nonlocal', 'not', 'or', 'pass', 'raise', 'return', 'try',
  'while', 'with', 'yield', 'self',
]);

/** The header of every synthesized Python module: the names the method contract says are imported for you. */
export const PYTHON_HEADER = 'from typing import Any, Dict, List, Optional, Union';

/**
 * A code answer's text without a Markdown fence around it: models often wrap a method in ```python … ```
 * even inside a JSON string. Only a fence around the whole text is removed.
 */
export function unfence(source: string): string {
  const m = /^\s*```[A-Za-z0-9_+-]*[ \t]*\n([\s\S]*?)\n[ \t]*```\s*$/.exec(source);
  return m ? m[1]! : source;
}

/** Removes the indentation every non-blank line shares (textwrap.dedent), tabs counted as they are. */
function dedent(text: string): string {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const widths = lines.filter(l => l.trim()).map(l => /^[ \t]*/.exec(l)![0].length);
  const cut = widths.length ? Math.min(...widths) : 0;
  return lines.map(l => (l.trim() ? l.slice(cut) : '')).join('\n');
}

/**
 * A Python method as a model wrote it, split into the import lines before its `def` (hoisted to the
 * module, as the seed's assembler meant to do) and the method itself, dedented. Unlike the seed's
 * assembler, only whole import statements at the top level of the answer move: an indented import, or a
 * docstring line that starts with "from", stays where it is.
 */
export function pythonMethodParts(source: string): { imports: string[]; code: string } {
  const lines = dedent(unfence(source)).split('\n');
  const imports: string[] = [];
  let i = 0;
  for (; i < lines.length; i += 1) {
    const line = lines[i]!;
    if (!line.trim() || line.startsWith('#')) continue;
    if (/^(import[ \t]+[A-Za-z_]|from[ \t]+[A-Za-z_.][\w.]*[ \t]+import[ \t])/.test(line) && !line.includes('(')) imports.push(line.trim());
    else break;
  }
  return { imports, code: lines.slice(i).join('\n').replace(/\s+$/, '') };
}

const indentPy = (code: string, by = '    ') => code.split('\n').map(line => (line.trim() ? `${by}${line}` : '')).join('\n');

/** A Python literal of the empty value of a schema's type: {} for objects, [] for arrays, 0, '' or False; None otherwise. */
function emptyOf(schema: unknown): string {
  const type = schema && typeof schema === 'object' ? (schema as { type?: unknown }).type : undefined;
  const t: unknown = Array.isArray(type) ? (type as unknown[])[0] : type;
  return t === 'object' ? '{}' : t === 'array' ? '[]' : t === 'integer' || t === 'number' ? '0' : t === 'string' ? "''" : t === 'boolean' ? 'False' : 'None';
}

const PY_TYPE: Readonly<Record<string, string>> = { object: 'Dict[str, Any]', array: 'List[Any]', integer: 'int', number: 'float', string: 'str', boolean: 'bool' };

/** One line of a Python comment or docstring: no line breaks, no closing triple quote. */
const oneLine = (text: string) => text.replace(/\s+/g, ' ').replace(/"""/g, "'''").replace(/\\/g, '/').trim();

/**
 * The Python environment class, EnvScaler's shape (RUC-NLPIR/EnvScaler; docs/formats.md, "Python environments"):
 * typing imported, one class with no base class, an `__init__(self, init_config)` that creates every
 * required attribute of the state schema empty (EnvScaler's containers) and sets each top-level key of
 * `init_config` on the instance, then the methods. The runtime builds it the EnvScaler way (the class
 * called with the config, then each key set on the instance), so `vars(instance)` is exactly the state
 * (unlike EnvScaler's own classes, the config is not kept as `self.init_config`). Each method is
 * dedented and indented as a whole, so no re-indentation can break it (the seed's assembler did).
 */
export function assemblePythonSource(className: string, stateSchema: Record<string, unknown>, methods: readonly string[], helpers: readonly string[], summary = ''): string {
  const parts = [...methods, ...helpers].map(pythonMethodParts);
  const imports = [...new Set([PYTHON_HEADER, ...parts.flatMap(p => p.imports)])];
  const props = (stateSchema['properties'] && typeof stateSchema['properties'] === 'object' ? stateSchema['properties'] : {}) as Record<string, unknown>;
  const required = new Set(Array.isArray(stateSchema['required']) ? (stateSchema['required'] as unknown[]).filter((r): r is string => typeof r === 'string') : []);
  const attributes = Object.entries(props)
    .filter(([name]) => required.has(name) && /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !PYTHON_RESERVED.has(name))
    .map(([name, schema]) => {
      const s = (schema ?? {}) as { type?: unknown; description?: unknown };
      const t: unknown = Array.isArray(s.type) ? (s.type as unknown[])[0] : s.type;
      const note = typeof s.description === 'string' && s.description.trim() ? `  # ${oneLine(s.description)}` : '';
      return `        self.${name}: ${PY_TYPE[String(t)] ?? 'Any'} = ${emptyOf(schema)}${note}`;
    });
  const init = [
    '    def __init__(self, init_config: Optional[dict] = None):',
    ...attributes,
    '        for key, value in (init_config or {}).items():',
    '            setattr(self, key, value)',
  ].join('\n');
  const doc = `    """${oneLine(summary || className)}: the state is the instance attributes (vars(self))."""`;
  const body = [init, ...parts.map(p => indentPy(p.code))].join('\n\n');
  return `${imports.join('\n')}\n\n\nclass ${className}:\n${doc}\n\n${body}\n`;
}

/** The parameter names of `def name(self, …)` in Python source, with whether each has a default; null when there is no such def. */
export function pythonParameters(source: string, name: string): { self: boolean; params: { name: string; optional: boolean }[]; varKeyword: boolean } | null {
  const m = new RegExp(`^[ \\t]*(?:async[ \\t]+)?def[ \\t]+${name}[ \\t]*\\(`, 'm').exec(source);
  if (!m) return null;
  // The parameter list up to its closing parenthesis, splitting at top-level commas (annotations and defaults may hold brackets and strings).
  const items: string[] = [];
  let depth = 0;
  let current = '';
  let quote: string | null = null;
  for (let i = m.index + m[0].length; i < source.length; i += 1) {
    const c = source[i]!;
    if (quote) {
      current += c;
      if (c === '\\') current += source[++i] ?? '';
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '(' || c === '[' || c === '{') depth += 1;
    else if (c === ')' || c === ']' || c === '}') {
      if (depth === 0) break;
      depth -= 1;
    } else if (c === ',' && depth === 0) {
      items.push(current);
      current = '';
      continue;
    } else if (c === '#') {
      // A comment runs to the end of the line.
      const end = source.indexOf('\n', i);
      i = end < 0 ? source.length : end;
      continue;
    }
    current += c;
  }
  items.push(current);
  const cleaned = items.map(x => x.trim()).filter(Boolean);
  let varKeyword = false;
  const params: { name: string; optional: boolean }[] = [];
  let first = true;
  let isSelf = false;
  let keywordOnly = false;
  for (const item of cleaned) {
    if (item === '/') continue;
    if (item === '*') {
      keywordOnly = true;
      continue;
    }
    if (item.startsWith('**')) {
      varKeyword = true;
      continue;
    }
    if (item.startsWith('*')) {
      keywordOnly = true;
      continue;
    }
    const pname = /^([A-Za-z_][A-Za-z0-9_]*)/.exec(item)?.[1] ?? item;
    if (first) {
      first = false;
      isSelf = pname === 'self';
      if (isSelf) continue;
    }
    void keywordOnly;
    params.push({ name: pname, optional: /=/.test(item.replace(/\[[^\]]*\]/g, '')) });
  }
  return { self: isSelf, params, varKeyword };
}

/**
 * What is wrong between a Python method's signature and its tool's parameters, in words a model can act
 * on; null when they agree. The tool call's arguments are passed as keywords, so each schema property must
 * be a parameter (or the method takes **kwargs), and a parameter without a default must be in the schema.
 */
export function pythonSignatureProblem(op: Pick<Operation, 'name' | 'parameters'>, source: string): string | null {
  const sig = pythonParameters(unfence(source), op.name);
  if (!sig) return `it does not define a method named ${op.name} (write it as def ${op.name}(self, ...): inside a class body)`;
  if (!sig.self) return `def ${op.name}(...) must take self as its first parameter (it is a method of the class)`;
  const props = Object.keys(((op.parameters ?? {}) as { properties?: Record<string, unknown> }).properties ?? {});
  const names = sig.params.map(p => p.name);
  const missing = sig.varKeyword ? [] : props.filter(p => !names.includes(p));
  const extra = sig.params.filter(p => !p.optional && !props.includes(p.name)).map(p => p.name);
  const problems: string[] = [];
  if (missing.length) problems.push(`the tool's parameters ${missing.join(', ')} are not parameters of def ${op.name}(self, ...) (the arguments are passed by name)`);
  if (extra.length) problems.push(`def ${op.name} requires ${extra.join(', ')}, which the tool's parameters do not have (give it a default or remove it)`);
  return problems.length ? `${problems.join('; ')}; the tool's parameters are: ${props.join(', ') || '(none)'}` : null;
}

/**
 * Checks one Python method in the Python sandbox (never in Node or a host Python): it must load in a class
 * body of its own, with the module header and the imports it brings, and define a method of the expected
 * name whose signature takes the tool's parameters. Returns null, or what is wrong.
 */
export async function checkPythonMethodSource(sandbox: SandboxRunner, op: Pick<Operation, 'name' | 'parameters'>, source: string, limits: SandboxLimits): Promise<string | null> {
  const { imports, code } = pythonMethodParts(source);
  if (!/^(?:@[^\n]*\n)*(?:async[ \t]+)?def[ \t]/.test(code)) return `the method must start with def ${op.name}(self, ...): (found ${JSON.stringify(code.split('\n')[0]?.slice(0, 60) ?? '')})`;
  const header = [PYTHON_HEADER, ...imports];
  const check =
    `${header.join('\n')}\n\nclass _EnvfleetMethodProbe:\n${indentPy(code)}\n\n` +
    `def check_func(final_state):\n    return callable(getattr(_EnvfleetMethodProbe, ${JSON.stringify(op.name)}, None))\n`;
  const { results } = await sandbox.checks({ checks: [{ item: op.name, check, language: 'python' }], finalState: {}, initialState: {}, limits });
  const r = results[0];
  if (!r) return 'the sandbox returned no result';
  if (r.errorCode) {
    // Line numbers of the check are the method's own plus the lines before it.
    const offset = header.length + 2;
    const message = (r.error ?? r.errorCode)
      .replace(/\bthe check\b/g, 'the method')
      .replace(/line (\d+)/g, (_, n: string) => (Number(n) > offset ? `line ${Number(n) - offset}` : `the import lines before its def`));
    return `it does not load as a method of a Python class: ${message}`;
  }
  if (!r.passed) return `it does not define a method named ${op.name} (write it as def ${op.name}(self, ...): inside a class body)`;
  return pythonSignatureProblem(op, code);
}

/** The environment's class from its methods, in its language. */
export function assembleFor(env: Pick<EnvironmentRecord, 'className' | 'language' | 'state' | 'description'>, methods: readonly string[], helpers: readonly string[]): string {
  return env.language === 'python'
    ? assemblePythonSource(env.className!, env.state?.stateSchema ?? {}, methods, helpers, env.description.summary)
    : assembleSource(env.className!, methods, helpers);
}

/** Checks one method in the sandbox, in the environment's language (see checkMethodSource, checkPythonMethodSource). */
export function checkMethodFor(language: CodeLanguage | undefined, sandbox: SandboxRunner, op: Pick<Operation, 'name' | 'parameters'>, source: string, limits: SandboxLimits): Promise<string | null> {
  return language === 'python' ? checkPythonMethodSource(sandbox, op, source, limits) : checkMethodSource(sandbox, op.name, source, limits);
}

/** What the sandbox needs to run an environment: its class, tools and language. */
export function codeOf(env: Pick<EnvironmentRecord, 'description' | 'className' | 'tools' | 'language'>, source: string): EnvironmentCode {
  return { name: env.description.summary, className: env.className!, source, tools: env.tools ?? [], ...(env.language ? { language: env.language } : {}) };
}
