/**
 * The Python code of the τ-bench importer (src/importers/tau-bench.ts). All of it runs in the Python
 * runtime's sandbox (Pyodide, hardened): the reader that takes τ-bench's tool and task files apart
 * with `ast` (nothing of them is imported or executed there), and the pieces of the generated
 * environment class. Written here from τ-bench's published behaviour (tau_bench/envs/base.py:
 * `to_hashable`, `consistent_hash`, `Env.step`, `calculate_reward`); none of τ-bench's code is copied.
 */

/** Parses a task list (`Task(...)` / `Action(...)` calls, literals only) and the tool files. Shared by the reader and the replay. */
const PARSER_PY = String.raw`
import ast as _envfleet_ast
import re as _envfleet_re

class _EnvfleetNotLiteral(Exception):
    pass

def _envfleet_literal(node, where):
    A = _envfleet_ast
    if isinstance(node, A.Constant):
        if isinstance(node.value, (str, int, float, bool)) or node.value is None:
            return node.value
        raise _EnvfleetNotLiteral('%s: a %s constant is not JSON (line %s)' % (where, type(node.value).__name__, node.lineno))
    if isinstance(node, A.UnaryOp) and isinstance(node.op, (A.USub, A.UAdd)) and isinstance(node.operand, A.Constant) \
            and type(node.operand.value) in (int, float):
        return -node.operand.value if isinstance(node.op, A.USub) else node.operand.value
    if isinstance(node, (A.List, A.Tuple)):
        return [_envfleet_literal(x, '%s[%d]' % (where, i)) for i, x in enumerate(node.elts)]
    if isinstance(node, A.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise _EnvfleetNotLiteral('%s: a ** expansion is not a literal (line %s)' % (where, v.lineno))
            if not (isinstance(k, A.Constant) and isinstance(k.value, str)):
                raise _EnvfleetNotLiteral('%s: a dict key that is not a string literal (line %s)' % (where, k.lineno))
            out[k.value] = _envfleet_literal(v, '%s.%s' % (where, k.value))
        return out
    raise _EnvfleetNotLiteral('%s: %s is not a literal (line %s); only strings, numbers, True/False/None, lists and dicts are read'
                              % (where, type(node).__name__, getattr(node, 'lineno', '?')))

def _envfleet_callee(node):
    f = node.func
    return f.id if isinstance(f, _envfleet_ast.Name) else f.attr if isinstance(f, _envfleet_ast.Attribute) else None

def _envfleet_record(node, kind, required, optional, where):
    if not (isinstance(node, _envfleet_ast.Call) and _envfleet_callee(node) == kind):
        raise _EnvfleetNotLiteral('%s: not a %s(...) call but %s (line %s)' % (where, kind, type(node).__name__, getattr(node, 'lineno', '?')))
    if node.args:
        raise _EnvfleetNotLiteral('%s: %s(...) with positional arguments (line %s); τ-bench writes keyword arguments' % (where, kind, node.lineno))
    out = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise _EnvfleetNotLiteral('%s: %s(**...) is not a literal (line %s)' % (where, kind, node.lineno))
        if kw.arg not in required and kw.arg not in optional:
            raise _EnvfleetNotLiteral('%s: %s has an unknown field %s (line %s); its fields are %s'
                                      % (where, kind, kw.arg, kw.lineno, ', '.join(list(required) + list(optional))))
        if kw.arg == 'actions':
            if not isinstance(kw.value, (_envfleet_ast.List, _envfleet_ast.Tuple)):
                raise _EnvfleetNotLiteral('%s.actions: not a list (line %s)' % (where, kw.value.lineno))
            out['actions'] = [_envfleet_record(a, 'Action', ('name', 'kwargs'), (), '%s.actions[%d]' % (where, i)) for i, a in enumerate(kw.value.elts)]
        else:
            out[kw.arg] = _envfleet_literal(kw.value, '%s.%s' % (where, kw.arg))
    missing = [f for f in required if f not in out]
    if missing:
        raise _EnvfleetNotLiteral('%s: %s(...) without %s (line %s)' % (where, kind, ', '.join(missing), node.lineno))
    return out

def _envfleet_check_task(t, where):
    for f in ('user_id', 'instruction'):
        if not isinstance(t[f], str):
            raise _EnvfleetNotLiteral('%s.%s: not a string' % (where, f))
    outputs = t.get('outputs', [])
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise _EnvfleetNotLiteral('%s.outputs: not a list of strings' % where)
    for i, a in enumerate(t['actions']):
        if not isinstance(a['name'], str) or not isinstance(a['kwargs'], dict):
            raise _EnvfleetNotLiteral('%s.actions[%d]: name must be a string and kwargs a dict' % (where, i))
    return {'annotator': t.get('annotator'), 'user_id': t['user_id'], 'instruction': t['instruction'], 'actions': t['actions'], 'outputs': outputs}

def _envfleet_parse_tasks(source, file):
    """(tasks, skipped, variable): tasks is a list of (index, line, task or None, problem or None)."""
    try:
        tree = _envfleet_ast.parse(source, file)
    except SyntaxError as e:
        return None, 'syntax error, line %s: %s' % (e.lineno, e.msg), None
    lists = []
    for node in tree.body:
        if isinstance(node, (_envfleet_ast.Assign, _envfleet_ast.AnnAssign)):
            targets = node.targets if isinstance(node, _envfleet_ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, _envfleet_ast.Name)]
            if names and isinstance(node.value, (_envfleet_ast.List, _envfleet_ast.Tuple)) \
                    and any(isinstance(e, _envfleet_ast.Call) and _envfleet_callee(e) == 'Task' for e in node.value.elts):
                lists.append((names[0], node.value))
    if not lists:
        return None, 'no module-level list of Task(...) calls (τ-bench writes TASKS_TEST = [Task(...), ...])', None
    if len(lists) > 1:
        return None, 'several module-level lists of Task(...) calls (%s); expected one' % ', '.join(n for n, _ in lists), None
    variable, value = lists[0]
    out = []
    for i, node in enumerate(value.elts):
        where = '%s[%d]' % (variable, i)
        try:
            t = _envfleet_record(node, 'Task', ('user_id', 'instruction', 'actions'), ('outputs', 'annotator'), where)
            out.append((i, node.lineno, _envfleet_check_task(t, where), None))
        except _EnvfleetNotLiteral as e:
            out.append((i, getattr(node, 'lineno', 0), None, str(e)))
    return out, None, variable

_ENVFLEET_NEWLINE = _envfleet_re.compile(r'(\r\n|\r|\n)')

def _envfleet_lines(source):
    parts = _ENVFLEET_NEWLINE.split(source)
    return [parts[i] + (parts[i + 1] if i + 1 < len(parts) else '') for i in range(0, len(parts), 2)]

def _envfleet_is_tool_base(b):
    return (isinstance(b, _envfleet_ast.Name) and b.id == 'Tool') or (isinstance(b, _envfleet_ast.Attribute) and b.attr == 'Tool')

def _envfleet_analyze_tool_file(source, file):
    """The file rewritten for the sandbox (τ-bench's own imports dropped, eval(...) routed to _envfleet_eval), its Tool classes, its problems."""
    A = _envfleet_ast
    try:
        tree = A.parse(source, file)
    except SyntaxError as e:
        return {'problems': ['%s: syntax error, line %s: %s' % (file, e.lineno, e.msg)]}
    lines = _envfleet_lines(source)
    problems, drop, evals = [], set(), []
    for node in A.walk(tree):
        if isinstance(node, A.ImportFrom):
            mod = node.module or ''
            if node.level or mod.split('.')[0] == 'tau_bench':
                if mod in ('tau_bench.envs.tool',) and [a.name for a in node.names] == ['Tool'] and node in tree.body:
                    drop.update(range(node.lineno, node.end_lineno + 1))
                else:
                    problems.append('%s, line %s: imports %s from %s%s; only "from tau_bench.envs.tool import Tool" is provided'
                                    % (file, node.lineno, ', '.join(a.name for a in node.names), '.' * node.level, mod))
        elif isinstance(node, A.Import):
            for a in node.names:
                if a.name.split('.')[0] == 'tau_bench':
                    problems.append('%s, line %s: imports %s; only "from tau_bench.envs.tool import Tool" is provided' % (file, node.lineno, a.name))
        elif isinstance(node, A.Call) and isinstance(node.func, A.Name) and node.func.id == 'eval':
            evals.append((node.func.lineno, node.func.col_offset))
    classes = [n.name for n in tree.body if isinstance(n, A.ClassDef) and any(_envfleet_is_tool_base(b) for b in n.bases)]
    for lineno, col in sorted(evals, reverse=True):
        raw = lines[lineno - 1].encode('utf-8')
        lines[lineno - 1] = (raw[:col] + b'_envfleet_eval' + raw[col + 4:]).decode('utf-8')
    for lineno in drop:
        text = lines[lineno - 1]
        ending = text[len(text.rstrip('\r\n')):]
        lines[lineno - 1] = '# (envfleet) ' + text.rstrip('\r\n') + ' -- provided by the generated module' + ending
    return {'problems': problems, 'classes': classes, 'evals': len(evals), 'source': ''.join(lines)}

def _envfleet_tools_order(init_source):
    """The classes of ALL_TOOLS in tools/__init__.py, in order, with the module each comes from; None when there is no such list."""
    A = _envfleet_ast
    try:
        tree = A.parse(init_source, 'tools/__init__.py')
    except SyntaxError:
        return None
    modules = {}
    for node in tree.body:
        if isinstance(node, A.ImportFrom) and node.level == 1 and node.module:
            for a in node.names:
                modules[a.asname or a.name] = node.module
    for node in tree.body:
        if isinstance(node, A.Assign) and any(isinstance(t, A.Name) and t.id == 'ALL_TOOLS' for t in node.targets) \
                and isinstance(node.value, (A.List, A.Tuple)):
            names = [e.id for e in node.value.elts if isinstance(e, A.Name)]
            return [[modules.get(n), n] for n in names]
    return None
`;

/** The reader session's class: tool files and task files in, JSON out (no code of them runs). */
export const READER_PY = `${PARSER_PY}
from hashlib import sha256 as _envfleet_sha

_ENVFLEET_TASKS = {}

class TauBenchReader:
    def __init__(self, config=None):
        pass

    def analyze_tools(self, files, init_source=''):
        out = {name: _envfleet_analyze_tool_file(files[name], name) for name in sorted(files)}
        return {'files': out, 'order': _envfleet_tools_order(init_source) if init_source else None}

    def parse_tasks(self, file, source):
        tasks, problem, variable = _envfleet_parse_tasks(source, file)
        if problem:
            return {'problem': problem}
        _ENVFLEET_TASKS[file] = tasks
        return {'count': len(tasks), 'variable': variable}

    def task_batch(self, file, start, count):
        # key: the task as Python holds it (repr tells 1000 from 1000.0, which JSON does not)
        return [{'index': i, 'line': line, 'task': t, 'problem': p, 'key': _envfleet_sha(repr(t).encode('utf-8', 'surrogatepass')).hexdigest() if t is not None else None}
                for i, line, t, p in _ENVFLEET_TASKS[file][start:start + count]]
`;

export const READER_TOOLS = ['analyze_tools', 'parse_tasks', 'task_batch'];

/**
 * The top of every generated module: a stand-in for \`tau_bench.envs.tool.Tool\`, the arithmetic
 * evaluator \`calculate\`'s \`eval\` is routed to, τ-bench's hash, and the tool-call wrapper.
 */
/** τ-bench's to_hashable in Python: one text for the environment (the hash in a session) and the gold-hash check, so the two cannot drift. */
const TO_HASHABLE_PY = String.raw`def _envfleet_hashable(value):
    """τ-bench's to_hashable: dicts as key-sorted tuples of pairs, lists as tuples, sets as sorted tuples."""
    if isinstance(value, dict):
        return tuple((k, _envfleet_hashable(v)) for k, v in sorted(value.items()))
    if isinstance(value, list):
        return tuple(_envfleet_hashable(v) for v in value)
    if isinstance(value, set):
        return tuple(sorted(_envfleet_hashable(v) for v in value))
    return value
`;

export const MODULE_HEADER_PY = String.raw`import abc as _envfleet_abc
import ast as _envfleet_ast
import hashlib as _envfleet_hashlib
import json as _envfleet_json


class Tool(_envfleet_abc.ABC):
    """Stands for tau_bench.envs.tool.Tool (an abstract base with static invoke and get_info)."""

    @staticmethod
    def invoke(*args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def get_info():
        raise NotImplementedError


_ENVFLEET_EVAL_MAX_OPERATORS = 3000


def _envfleet_eval(expression, globals=None, locals=None):
    """What eval(expression) gives for the arithmetic τ-bench's calculate admits (numbers, + - * / ** //,
    unary signs, parentheses): computed by walking the syntax tree, so no code is compiled or run. The
    errors are eval's (SyntaxError, ZeroDivisionError, TypeError ...), so the tool's messages stay the same."""
    if not isinstance(expression, str):
        raise TypeError('eval() arg 1 must be a string, bytes or code object')
    # An expression of thousands of operators nests its syntax tree as deep: CPython refuses it (RecursionError, during
    # ast construction, from about 3,000), while Pyodide's smaller stack overflows first (about 7,000), fatally, taking
    # the interpreter and every environment on it down. Refused here as CPython refuses it.
    if sum(map(expression.count, '+-*/%(')) > _ENVFLEET_EVAL_MAX_OPERATORS:
        raise RecursionError('maximum recursion depth exceeded during ast construction')
    tree = _envfleet_ast.parse(expression.lstrip(' \t'), '<string>', 'eval')
    return _envfleet_arith(tree.body)


_ENVFLEET_BINOPS = {
    _envfleet_ast.Add: lambda a, b: a + b, _envfleet_ast.Sub: lambda a, b: a - b, _envfleet_ast.Mult: lambda a, b: a * b,
    _envfleet_ast.Div: lambda a, b: a / b, _envfleet_ast.FloorDiv: lambda a, b: a // b, _envfleet_ast.Mod: lambda a, b: a % b,
    _envfleet_ast.Pow: lambda a, b: a ** b,
}


def _envfleet_arith(node):
    A = _envfleet_ast
    if isinstance(node, A.Constant) and (type(node.value) in (int, float, complex) or node.value is Ellipsis):
        return node.value
    if isinstance(node, A.BinOp) and type(node.op) in _ENVFLEET_BINOPS:
        return _ENVFLEET_BINOPS[type(node.op)](_envfleet_arith(node.left), _envfleet_arith(node.right))
    if isinstance(node, A.UnaryOp) and isinstance(node.op, (A.UAdd, A.USub)):
        v = _envfleet_arith(node.operand)
        return +v if isinstance(node.op, A.UAdd) else -v
    if isinstance(node, A.Tuple):
        return tuple(_envfleet_arith(e) for e in node.elts)
    if isinstance(node, A.Call) and not node.keywords:
        # (2)(3): calling a number; raises eval's TypeError ("'int' object is not callable").
        return _envfleet_arith(node.func)(*[_envfleet_arith(a) for a in node.args])
    raise ValueError('unsupported expression: only numbers, + - * / // % ** and parentheses are evaluated')


${TO_HASHABLE_PY}

def _envfleet_data_hash(data):
    """τ-bench's database hash: sha256 of str(to_hashable(data))."""
    return _envfleet_hashlib.sha256(str(_envfleet_hashable(data)).encode('utf-8')).hexdigest()


def _envfleet_invoke(tool, data, kwargs):
    """A tool call as τ-bench's Env.step makes it: an exception is the observation "Error: ..."."""
    try:
        return tool.invoke(data=data, **kwargs)
    except MemoryError:
        raise
    except Exception as e:
        return 'Error: %s' % (e,)
`;

/** Appended to the generated module (without its environment class) for the import session: tool infos, hashes, gold replays. */
export const REPLAY_PY = `${PARSER_PY}
_ENVFLEET_REPLAY_TASKS = {}

class TauBenchReplay:
    def __init__(self, config=None):
        pass

    def tool_infos(self):
        return [[t.__name__, t.get_info()] for t in _ENVFLEET_TOOLS]

    def initial_hash(self):
        data = _envfleet_load_db()
        state = _envfleet_json.dumps({'data': data}, ensure_ascii=False, sort_keys=True, separators=(',', ':'))
        return {'hash': _envfleet_data_hash(data), 'bytes': len(state.encode('utf-8', 'surrogatepass'))}

    def load_tasks(self, file, source):
        tasks, problem, variable = _envfleet_parse_tasks(source, file)
        if problem:
            return {'problem': problem}
        _ENVFLEET_REPLAY_TASKS[file] = {i: t for i, _, t, p in tasks if t is not None}
        return {'count': len(tasks)}

    def replay(self, file, index, terminate):
        """The gold actions of one task on a fresh database (the terminate tools skipped, as calculate_reward does); its hash."""
        task = _ENVFLEET_REPLAY_TASKS[file][index]
        tools = {t.get_info()['function']['name']: t for t in _ENVFLEET_TOOLS}
        data = _envfleet_load_db()
        errors = 0
        for a in task['actions']:
            name = a['name']
            if name in terminate or name not in tools:
                continue
            out = _envfleet_invoke(tools[name], data, a['kwargs'])
            if isinstance(out, str) and out.startswith('Error'):
                errors += 1
        return {'hash': _envfleet_data_hash(data), 'errors': errors}
`;

export const REPLAY_TOOLS = ['tool_infos', 'initial_hash', 'load_tasks', 'replay'];

/** The gold-hash check of one task: τ-bench's hash of the final database against the one the gold actions give. */
export function goldHashCheck(goldHash: string): string {
  return `import hashlib

GOLD_HASH = ${JSON.stringify(goldHash)}


${TO_HASHABLE_PY}

def check_func(final_state):
    data = final_state.get('data')
    return hashlib.sha256(str(_envfleet_hashable(data)).encode('utf-8')).hexdigest() == GOLD_HASH
`;
}

/** The outputs check (an episode check): each output, lowercased, in some assistant message's text, lowercased with commas removed. */
export function outputsCheck(outputs: readonly string[]): string {
  return `OUTPUTS = ${JSON.stringify(outputs)}


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return ''.join(p.get('text', '') for p in content if isinstance(p, dict) and isinstance(p.get('text'), str))
    return ''


def check_func(final_state):
    said = [text_of(m.get('content')).lower().replace(',', '') for m in episode['messages'] if m.get('role') == 'assistant']
    return all(any(output.lower() in text for text in said) for output in OUTPUTS)
`;
}
