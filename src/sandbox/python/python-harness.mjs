// @ts-check
/**
 * The Python side of the runtime, run once in every interpreter after it loads (python-interpreter.mjs).
 * Plain JavaScript holding Python source: the interpreter threads run in a child process under Node's
 * permission model, which cannot load TypeScript (tsx would need child processes).
 *
 * Only text crosses between JavaScript and Python: every function below takes `str` and returns JSON
 * text (an envelope `{"ok": ...}` / `{"err": CODE, "message": ...}`), as a `str`, or, when it is long and
 * not ASCII, as its UTF-8 `bytes`, which the interpreter thread reads through a view of the heap and
 * releases at once (answerText): Pyodide copies such a str one character at a time. No other Python
 * object is handed to JavaScript, and no JsProxy is handed to Python.
 */

import { TextDecoder } from 'node:util';

/** Modules an environment or a check may import (checked on the source's AST before it runs). */
export const ALLOWED_IMPORTS = [
  '__future__', 'abc', 'ast', 'base64', 'binascii', 'bisect', 'calendar', 'collections', 'contextlib', 'copy', 'csv', 'dataclasses',
  'datetime', 'decimal', 'difflib', 'enum', 'fnmatch', 'fractions', 'functools', 'graphlib', 'hashlib', 'heapq', 'html', 'io',
  'ipaddress', 'itertools', 'json', 'keyword', 'logging', 'math', 'numbers', 'operator', 'pprint', 'random', 're', 'secrets',
  'shlex', 'statistics', 'string', 'struct', 'textwrap', 'time', 'typing', 'unicodedata', 'uuid', 'zoneinfo',
];

/** Modules no code in the interpreter may import at run time, whatever route it takes (the harness's meta_path blocker). */
export const BLOCKED_MODULES = [
  'js', 'pyodide_js', 'pyodide', '_pyodide', '_pyodide_core', 'micropip', 'ctypes', '_ctypes', 'socket', '_socket', 'select', 'selectors',
  'ssl', '_ssl', 'subprocess', 'multiprocessing', '_multiprocessing', 'pyodide_http', 'webbrowser', 'urllib', 'http', 'ftplib', 'smtplib',
  'asyncio',
];

/**
 * The deepest a JSON value the Python runtime writes or reads may nest, in levels of containers (a flat object is
 * 1): a state, a result, an initial state, a check's states. Past it: STATE_INVALID (a result: NON_JSON_RESULT),
 * and the session goes on. Below the ~13,000 levels at which the C encoder overflowed the interpreter thread's
 * stack, and the ~4,000 at which V8's JSON.stringify overflows a main thread's; CPython's own json.dumps raises
 * RecursionError at 994 levels (3.11), 1,498 (3.12) and 9,999 (3.13).
 */
export const MAX_JSON_DEPTH = 1000;

/** What the error past MAX_JSON_DEPTH adds to what nests too deeply: why, and what to do. */
export const DEPTH_ADVICE = `: the Python runtime reads and writes JSON values up to ${MAX_JSON_DEPTH} levels of containers inside containers (CPython's own json.dumps gives up near there, with RecursionError); keep it flatter, e.g. a linked list as a list, a tree as a dict of nodes by id that name their children's ids`;

/**
 * What the errors past the state cap add to the sizes they give, in both runtimes: the setting, and what to do. A state
 * (every read of it) past the cap is most often an environment that keeps everything each call gives it.
 */
export const STATE_CAP_ADVICE = ' (ENVFLEET_SANDBOX_MAX_STATE_KB): keep in the state only what later calls need (an environment that keeps everything each call gives it, such as a copy of every result or a log of every request, grows past any cap), or raise ENVFLEET_SANDBOX_MAX_STATE_KB (a run uses the value it was submitted with)';
/** STATE_CAP_ADVICE for the initial state as the Python runtime measures it: the constructed instance's state. */
export const INITIAL_STATE_CAP_ADVICE = ' (ENVFLEET_SANDBOX_MAX_STATE_KB): give the scenario a smaller initial state (or build less of it in the constructor), or raise ENVFLEET_SANDBOX_MAX_STATE_KB (a run uses the value it was submitted with)';
/** After a result past the result cap: the setting, and what to do. An error past it names the setting only (its start follows). */
export const RESULT_CAP_ADVICE = ' (ENVFLEET_SANDBOX_MAX_RESULT_KB): a tool should return a page or the items asked for, not a whole collection; or raise ENVFLEET_SANDBOX_MAX_RESULT_KB (a run uses the value it was submitted with)';
export const RESULT_CAP_SETTING = ' (ENVFLEET_SANDBOX_MAX_RESULT_KB)';

/**
 * Whether a JSON text nests containers more than `max` levels deep (strings skipped; the scan stops there; no
 * recursion). The interpreter's C decoder has no bound of its own: ~21,000 levels overflowed the thread's stack and ended the
 * interpreter with every session on it. So every JSON text handed to it is held to MAX_JSON_DEPTH first, as the
 * harness holds what it writes (python-harness.mjs). A text that is not JSON gets an answer either way: the decoder's.
 * @param {string} text @param {number} max
 */
export function deeperThan(text, max) {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      // A string: to its closing quote, past escapes.
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 92) i++;
        else if (d === 34) break;
      }
    } else if (c === 91 || c === 123) {
      if (++depth > max) return true;
    } else if (c === 93 || c === 125) depth--;
  }
  return false;
}

export const HARNESS_PY = String.raw`
import ast as _ast, builtins as _builtins, copy as _copy, dataclasses as _dataclasses, datetime as _dt
import contextvars as _contextvars, decimal as _decimal, enum as _enum, json as _json, os as _os, random as _random, sys as _sys
import time as _time, types as _types, uuid as _uuid, calendar as _calendar, csv as _csv
import collections as _collections, gc as _gc
from importlib.machinery import ModuleSpec as _ModuleSpec

ALLOWED_IMPORTS = frozenset(__ALLOWED__)
MAX_DEPTH = __MAX_DEPTH__
DEPTH_ADVICE = __DEPTH_ADVICE__
# What an error past the state cap adds (the setting, and what to do): for a state, and for the initial state.
CAP_ADVICE = {'state': __STATE_CAP_ADVICE__, 'the initial state': __INITIAL_STATE_CAP_ADVICE__, 'result': __RESULT_CAP_ADVICE__}
# User-supplied pure-Python packages (ENVFLEET_PYTHON_PACKAGES): their top-level names, set by the interpreter
# thread before this runs. Environments and checks may import them too; each session gets its own copy.
PACKAGE_NAMES = frozenset(_json.loads(_PACKAGE_NAMES_JSON))
# sys's import tables as they are at load: the harness writes to these objects, never to whatever sys.modules names
# later, and the tamper check holds sys to them (a session that rebound sys.modules to a dict of its own would
# otherwise see, and could change, every later session's module while its source runs).
_MODULES = _sys.modules
# Attributes and names that only serve to walk the object graph or the interpreter's internals.
DENIED_ATTRS = frozenset(['__subclasses__', '__globals__', '__builtins__', '__code__', '__closure__', '__bases__', '__base__',
    '__mro__', '__import__', '__loader__', '__spec__', '__self__', '__func__', '__getattribute__', 'f_globals', 'f_locals',
    'f_back', 'f_builtins', 'gi_frame', 'cr_frame', 'ag_frame', 'tb_frame', 'gi_code', 'cr_code', 'co_code'])
# eval/exec/compile would run source this check never saw. (input is allowed: standard input is at its end, so
# input() raises EOFError, and a parameter or variable named input is common.)
DENIED_NAMES = frozenset(['__import__', '__builtins__', '__loader__', '__spec__', 'eval', 'exec', 'compile', 'breakpoint'])
# Modules no code in the interpreter may import at run time, whatever route it takes (a meta_path blocker).
BLOCKED_MODULES = frozenset(__BLOCKED__)

class Refused(Exception):
    pass

# The import check reads syntax trees with private references taken at load: the fields of each node class as they were
# then, and attribute reads past any hook. Code may change ast's classes later (a node class's _fields, a visitor's
# methods: class attributes, which the tamper check does not see); what is checked must stay what the parser made.
def _ast_fields():
    out, todo = {}, [_ast.AST]
    while todo:
        c = todo.pop()
        f = c.__dict__.get('_fields', ())
        out[c] = tuple(f) if type(f) is tuple else ()
        todo.extend(type.__subclasses__(c))
    return out

_FIELDS = _ast_fields()
_oga = object.__getattribute__
_type = type
_list = list
_AST_ONLY = _ast.PyCF_ONLY_AST
(_Import, _ImportFrom, _Attribute, _Name, _Tuple, _If, _Try) = (_ast.Import, _ast.ImportFrom, _ast.Attribute, _ast.Name, _ast.Tuple, _ast.If, _ast.Try)
_TryStar = getattr(_ast, 'TryStar', _ast.Try)
# Scopes whose body runs later, not where the try is: an import there is not guarded by it.
_SCOPES = (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef, _ast.Lambda)

def _get(node, name, default=None):
    try:
        return _oga(node, name)
    except AttributeError:
        return default

def _nodes(tree, stop=()):
    """Every node of a syntax tree, in ast.walk's order (breadth first), by _FIELDS; below a node whose type is in
    stop (the tree itself included), nothing."""
    out = [tree]
    i = 0
    while i < len(out):
        node = out[i]
        i += 1
        if _type(node) in stop:
            continue
        for name in _FIELDS.get(_type(node), ()):
            value = _get(node, name)
            if _type(value) is _list:
                for v in value:
                    if _type(v) in _FIELDS:
                        out.append(v)
            elif _type(value) in _FIELDS:
                out.append(value)
    return out

# What a handler must catch for the imports in its try's body to count as guarded: a failed import, or anything.
_IMPORT_ERROR_NAMES = frozenset(['ImportError', 'ModuleNotFoundError', 'Exception', 'BaseException'])

def _catches_import_error(handler):
    t = _get(handler, 'type')
    kinds = _get(t, 'elts', ()) if _type(t) is _Tuple else [t]
    return any(k is None or (_type(k) is _Name and _get(k, 'id') in _IMPORT_ERROR_NAMES)
               or (_type(k) is _Attribute and _get(k, 'attr') in _IMPORT_ERROR_NAMES) for k in kinds)

def _is_type_checking(test):
    return ((_type(test) is _Name and _get(test, 'id') == 'TYPE_CHECKING')
            or (_type(test) is _Attribute and _get(test, 'attr') == 'TYPE_CHECKING'))

def _guarded_imports(tree):
    """The ids of the import statements written to fail quietly: in the body of a try one of whose handlers catches
    ImportError (or a base of it, or everything), or under if TYPE_CHECKING:, and not inside a function, class or lambda
    there (its body runs later, unguarded). Model-written code often imports an optional module so (try: import numpy
    / except ImportError: numpy = None); CPython without the module runs on."""
    out = set()
    for node in _nodes(tree):
        body = ()
        if _type(node) in (_Try, _TryStar) and any(_catches_import_error(h) for h in _get(node, 'handlers', ())):
            body = _get(node, 'body', ())
        elif _type(node) is _If and _is_type_checking(_get(node, 'test')):
            body = _get(node, 'body', ())
        for stmt in body:
            for inner in _nodes(stmt, _SCOPES):
                if _type(inner) in (_Import, _ImportFrom):
                    out.add(id(inner))
    return out

def _raise_in_place(source, spans):
    """source with each span (line, col, end_line, end_col, name, prefix: the 1-based lines and UTF-8 byte columns of an
    import statement, the module it lacks, the imports it makes first) made a raise of ModuleNotFoundError (after the
    prefix): on the span's first line, its other lines joined to it with a
    backslash, so every later line keeps its number. None when a span does not hold an import statement's text."""
    lines = source.splitlines(keepends=True)
    for (line, col, end_line, end_col, name, prefix) in sorted(spans, reverse=True):
        if not (1 <= line <= end_line <= len(lines)):
            return None
        first = lines[line - 1].encode('utf-8')
        last = lines[end_line - 1].encode('utf-8')
        if not (first[col:].startswith(b'import') or first[col:].startswith(b'from')):
            return None
        msg = 'No module named %r (the sandbox does not offer it)' % name
        stmt = (prefix + 'raise ModuleNotFoundError(%r, name=%r)' % (msg, name)).encode('utf-8')
        joined = first[:col] + stmt + b' \\\n' * (end_line - line) + last[end_col:]
        lines[line - 1:end_line] = [joined.decode('utf-8')] + [''] * (end_line - line)
    return ''.join(lines)

def check_source(source, what, guarded=True):
    """(why, text): why is None, or why the source may not run (a syntax error, an unguarded import outside the
    allow-list, a denied name); text is what to compile: the source, each guarded import of a module outside the
    allow-list (_guarded_imports) made a raise of ModuleNotFoundError in its place. That text is checked again, with
    nothing guarded: what is compiled is always a text that passes the plain check, compiled from text."""
    try:
        tree = _compile(source, what, 'exec', _AST_ONLY, dont_inherit=True)
    except SyntaxError as e:
        return 'syntax error in %s, line %s: %s' % (what, e.lineno, e.msg), None
    guarded_ids = None
    spans = []
    for node in _nodes(tree):
        names = ()
        if _type(node) is _Import:
            names = [_get(a, 'name') for a in _get(node, 'names', ())]
        elif _type(node) is _ImportFrom:
            if _get(node, 'level'):
                return '%s, line %s: relative imports are not allowed' % (what, _get(node, 'lineno')), None
            names = [_get(node, 'module') or '']
        bad = [(name, str(name).split('.')[0]) for name in names]
        bad = [(name, top) for (name, top) in bad if top not in ALLOWED_IMPORTS and top not in PACKAGE_NAMES]
        if bad and guarded and not any(top in BLOCKED_MODULES for (_n, top) in bad):
            if guarded_ids is None:
                guarded_ids = _guarded_imports(tree)
            if id(node) in guarded_ids:
                # CPython imports the names of one statement left to right: those before the first it lacks are bound
                # (import json, numpy binds json), so they are imported before the raise, written from the tree's names.
                before = []
                if _type(node) is _Import:
                    for a in _get(node, 'names', ()):
                        n, asname = _get(a, 'name'), _get(a, 'asname')
                        if str(n).split('.')[0] not in ALLOWED_IMPORTS and str(n).split('.')[0] not in PACKAGE_NAMES:
                            break
                        before.append('%s as %s' % (n, asname) if asname else str(n))
                spans.append((_get(node, 'lineno'), _get(node, 'col_offset'), _get(node, 'end_lineno'), _get(node, 'end_col_offset'), bad[0][0],
                              'import %s; ' % ', '.join(before) if before else ''))
                bad = ()
        for (name, top) in bad[:1]:
            # A standard module cannot be supplied as a package (ENVFLEET_PYTHON_PACKAGES refuses a name that
            # shadows one): the only way is code that does without it.
            if top in _STDLIB_NAMES:
                hint = ('; "%s" is a standard module the sandbox does not offer (ENVFLEET_PYTHON_PACKAGES cannot supply a '
                        'standard module either): write the code with the allowed modules' % top)
            elif top in BLOCKED_MODULES:
                hint = '; "%s" is blocked in the sandbox: write the code without it' % top
            else:
                hint = ' (a pure-Python package can be supplied with ENVFLEET_PYTHON_PACKAGES)' if not PACKAGE_NAMES else ''
            return ('%s, line %s: import of "%s" is not allowed in the sandbox; allowed modules: %s%s%s'
                    % (what, _get(node, 'lineno'), name, ', '.join(sorted(ALLOWED_IMPORTS)),
                       '; supplied packages: %s' % ', '.join(sorted(PACKAGE_NAMES)) if PACKAGE_NAMES else '', hint)), None
        if _type(node) is _Attribute and _get(node, 'attr') in DENIED_ATTRS:
            return '%s, line %s: the attribute "%s" is not allowed in the sandbox' % (what, _get(node, 'lineno'), _get(node, 'attr')), None
        if _type(node) is _Name and _get(node, 'id') in DENIED_NAMES:
            return '%s, line %s: "%s" is not allowed in the sandbox' % (what, _get(node, 'lineno'), _get(node, 'id')), None
    if not spans:
        return None, source
    text = _raise_in_place(source, spans)
    why, _ = check_source(text, what, guarded=False) if text is not None else ('%s: an optional import could not be set aside' % what, None)
    return (why, None) if why else (None, text)

class _Blocker:
    # No instance attributes: a find_spec set on the instance would shadow the method, unseen by the class check.
    __slots__ = ()
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED_MODULES:
            raise ImportError('import of "%s" is not allowed in the sandbox' % name)
        return None

# --- user-supplied packages: a fresh copy per session ------------------------------------------------
# The interpreter thread compiles every module of the packages once, at start (build_packages, before any
# environment code runs), and keeps the table (a tuple of (module, code, is_package, file) tuples: immutable)
# on its JavaScript side; create() and checks_context() receive it with each session, which gets a lookup
# dict of its own. A package module is executed from that code the first time the session imports it, and
# lives in the session's own dict of modules: installed in sys.modules while the session runs (_enter),
# taken out when it stops (_leave). So no module state (mpmath's mp.dps, say) crosses sessions, and no code
# is ever loaded from the in-memory filesystem (which environment code can write).
_compile = compile
_exec = exec

class _PackageLoader:
    __slots__ = ('_code',)
    def __init__(self, code):
        self._code = code
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        _exec(self._code, module.__dict__)

class _PackageFinder:
    __slots__ = ()
    def find_spec(self, name, path=None, target=None):
        top = name.partition('.')[0]
        if top not in PACKAGE_NAMES:
            # In a session, a name that is neither standard, nor supplied, nor loaded at start is refused here,
            # before CPython's path finder could load it from the in-memory filesystem (which sessions can write):
            # a package's optional dependency (mpmath's gmpy2) is absent for every session alike.
            if _CURRENT[0] is not None and top not in _STDLIB_NAMES and top not in _AT_START:
                raise ModuleNotFoundError('No module named %r' % name, name=name)
            return None
        s = _CURRENT[0]
        table = s.packages if s is not None else None
        if table is None:
            raise ImportError('the package "%s" can only be imported by an environment or a check, in its session' % name)
        entry = table.get(name)
        if entry is None:
            return None
        s.pkgnames.add(name)
        spec = _ModuleSpec(name, _PackageLoader(entry[0]), origin=entry[2], is_package=entry[1])
        spec.has_location = True
        return spec

def build_packages(files_json):
    """The packages' table: every module compiled, as a tuple of (module, code, is_package, file) tuples.
    Called by the interpreter thread at start, before any environment code runs; it keeps the result."""
    table = []
    for f in _loads(files_json):
        origin = '/envfleet/packages/' + f['file']
        table.append((f['module'], _compile(f['source'], origin, 'exec', dont_inherit=True), bool(f['isPackage']), origin))
    return tuple(table)

def _package_dict(table):
    return {m: (c, p, o) for m, c, p, o in table} if table is not None else None

def _take_packages(s):
    """Takes the session's package modules out of sys.modules (those it had, and those its finder found
    since): only the finder makes them, so no scan of sys.modules is needed on every call. A package module
    put into sys.modules some other way is found by tamper_report's scan when the session ends. Each module
    goes straight from sys.modules into the session's dict, so a limit interrupting this leaves none behind
    that recover() cannot take."""
    mods = s.pkgmods
    for n in list(s.pkgnames) + list(mods):
        m = _sys.modules.pop(n, None)
        if m is not None:
            mods[n] = m
    s.pkgnames = set()

# --- determinism: a clock, random, uuid4 and urandom per session -------------------------------

EPOCH = 1735689600.0  # 2025-01-01T00:00:00Z: every session's clock starts here, and moves 1 s per tool call
_real_datetime = _dt.datetime
_real_date = _dt.date
_real_time_cls = _dt.time

class _Clock:
    now = EPOCH
_NO_SESSION = _Clock()
_CURRENT = [None]
_fallback_rng = _random.Random(0)

def _now():
    s = _CURRENT[0]
    return s.clock if s is not None else EPOCH

def _session_rng():
    s = _CURRENT[0]
    return s.aux_rng if s is not None else _fallback_rng

_orig_localtime, _orig_gmtime, _orig_ctime, _orig_strftime = _time.localtime, _time.gmtime, _time.ctime, _time.strftime
_time.time = lambda: _now()
_time.time_ns = lambda: int(_now() * 1_000_000_000)
_time.localtime = lambda secs=None: _orig_localtime(_now() if secs is None else secs)
_time.gmtime = lambda secs=None: _orig_gmtime(_now() if secs is None else secs)
_time.ctime = lambda secs=None: _orig_ctime(_now() if secs is None else secs)
_time.strftime = lambda fmt, t=None: _orig_strftime(fmt, _orig_localtime(_now()) if t is None else t)
_orig_asctime = _time.asctime
_time.asctime = lambda *t: _orig_asctime(*t) if t else _orig_asctime(_orig_localtime(_now()))  # asctime(None) refused, as CPython
# The wall clock through clock_gettime is the session's too; the other clocks stay real (below).
_orig_clock_gettime, _orig_clock_gettime_ns, _REALTIME = _time.clock_gettime, _time.clock_gettime_ns, _time.CLOCK_REALTIME
_time.clock_gettime = lambda clk, /: _now() if clk == _REALTIME else _orig_clock_gettime(clk)
_time.clock_gettime_ns = lambda clk, /: int(_now() * 1_000_000_000) if clk == _REALTIME else _orig_clock_gettime_ns(clk)
# monotonic and perf_counter run in real time (a busy wait on them ends), moved on by the session's virtual sleeps
# too, so a loop that sleeps until monotonic() passes a deadline ends as in CPython instead of spinning to the
# call's deadline.
def _slept():
    s = _CURRENT[0]
    return s.slept if s is not None else 0.0
_orig_monotonic, _orig_monotonic_ns = _time.monotonic, _time.monotonic_ns
_orig_perf_counter, _orig_perf_counter_ns = _time.perf_counter, _time.perf_counter_ns
_time.monotonic = lambda: _orig_monotonic() + _slept()
_time.monotonic_ns = lambda: _orig_monotonic_ns() + int(_slept() * 1_000_000_000)
_time.perf_counter = lambda: _orig_perf_counter() + _slept()
_time.perf_counter_ns = lambda: _orig_perf_counter_ns() + int(_slept() * 1_000_000_000)
for _f, _n in ((_time.asctime, 'asctime'), (_time.clock_gettime, 'clock_gettime'), (_time.clock_gettime_ns, 'clock_gettime_ns'),
               (_time.monotonic, 'monotonic'), (_time.monotonic_ns, 'monotonic_ns'), (_time.perf_counter, 'perf_counter'),
               (_time.perf_counter_ns, 'perf_counter_ns')):
    _f.__name__ = _f.__qualname__ = _n

def _sleep(secs, /):
    """Virtual: advances the session's clock by secs and returns at once (no real time passes)."""
    if not isinstance(secs, (int, float)):
        raise TypeError("'%s' object cannot be interpreted as an integer" % type(secs).__name__)
    secs = float(secs)
    if secs != secs:
        raise ValueError('Invalid value NaN (not a number)')
    if secs < 0:
        raise ValueError('sleep length must be non-negative')
    if secs > 9223372036.854775:  # as CPython: past what its 64-bit nanosecond time holds (infinity included)
        raise OverflowError('timestamp out of range for platform time_t')
    s = _CURRENT[0]
    if s is not None:
        s.clock += secs
        s.slept += secs
    return None
_sleep.__name__ = _sleep.__qualname__ = 'sleep'
_time.sleep = _sleep

# No metaclass to widen isinstance to the dates C code makes (dt.date(), date.min): one made a class deriving from
# date and Enum, or ABCMeta, a metaclass conflict (docs/sandbox.md lists isinstance as a difference from CPython).
class _FixedDate(_real_date):
    __slots__ = ()
    @classmethod
    def today(cls):
        return cls.fromtimestamp(_now())
    def __repr__(self):
        # The C repr names a subclass by its own name alone: 'date(2025, 3, 9)' where CPython's class gives 'datetime.date(2025, 3, 9)'.
        text = _real_date.__repr__(self)
        return 'datetime.' + text if type(self) is _FixedDate else text

class _FixedDatetime(_real_datetime, _FixedDate):
    __slots__ = ()
    def __repr__(self):
        text = _real_datetime.__repr__(self)
        return 'datetime.' + text if type(self) is _FixedDatetime else text
    @classmethod
    def now(cls, tz=None):
        return cls.fromtimestamp(_now(), tz)
    @classmethod
    def utcnow(cls):
        return cls.fromtimestamp(_now(), _dt.timezone.utc).replace(tzinfo=None)
    @classmethod
    def today(cls):
        return cls.fromtimestamp(_now())

_FixedDate.__name__ = _FixedDate.__qualname__ = 'date'
_FixedDatetime.__name__ = _FixedDatetime.__qualname__ = 'datetime'
_FixedDate.__module__ = _FixedDatetime.__module__ = 'datetime'
_dt.date = _FixedDate
_dt.datetime = _FixedDatetime

_rnd = _random._inst
_RNG_OWNER = [None]
_orig_seed = _random.Random.seed
def _seed(self, a=None, version=2):
    if a is None:
        a = _session_rng().getrandbits(64)
    return _orig_seed(self, a, version)
_random.Random.seed = _seed
_random.seed = _rnd.seed  # random.seed() is the global instance's method, bound at import before the line above
_urandom = lambda n: _session_rng().randbytes(n)
_os.urandom = _urandom
_random._urandom = _urandom
_uuid.uuid4 = lambda: _uuid.UUID(int=_session_rng().getrandbits(128), version=4)

# uuid1 would use the C generator (real time, real MAC) and the MAC getters: the pure-Python path only,
# whose node comes from os.urandom (the session's stream).
_uuid._generate_time_safe = None
_uuid._GETTERS = []

# Module-level state of the allowed modules that changes results, kept per session and swapped in
# with the session: uuid's caches (node, last timestamps), the decimal context, calendar's first
# weekday, csv's field size limit and dialects. (random's global instance is swapped with rng_state.)
_UUID_VARS = ('_node', '_last_timestamp', '_last_timestamp_v6', '_last_timestamp_v7', '_last_counter_v7')
_DEC_TEMPLATE = _decimal.getcontext().copy()

# decimal.DefaultContext, the template of new contexts (decimal.Context() copies its fields; in CPython a thread's first
# getcontext() too): one object for every session. Money code sets it at load (DefaultContext.prec = 6, rounding =
# ROUND_HALF_UP); the change held for every later session's decimal.Context(). Its fields are module state of each
# session (None: as at load), swapped in with it; and an environment's module loads with no current decimal context, as
# in a fresh CPython process, so its session's context is the one its code made or set, or one made from DefaultContext
# as the code left it (create).
_DEC_DEFAULT = _decimal.DefaultContext  # the object the C module copies; a name rebound later is not followed
_DEC_DEFAULT_REPR = repr(_DEC_DEFAULT)
_DEC_DEFAULT_AT_LOAD = _DEC_DEFAULT.copy()
_UNKNOWN = object()
_DEC_DEFAULT_SEEN = [_UNKNOWN]  # DefaultContext as the last save found it (until code runs again): skips a load

def _dec_default_now():
    d = _DEC_DEFAULT
    v = _DEC_DEFAULT_SEEN[0] = None if repr(d) == _DEC_DEFAULT_REPR else d.copy()
    return v

def _load_dec_default(c):
    seen, _DEC_DEFAULT_SEEN[0] = _DEC_DEFAULT_SEEN[0], _UNKNOWN
    if c is None and seen is None:
        return
    c = _DEC_DEFAULT_AT_LOAD if c is None else c
    d = _DEC_DEFAULT
    d.prec, d.rounding, d.Emin, d.Emax, d.capitals, d.clamp = c.prec, c.rounding, c.Emin, c.Emax, c.capitals, c.clamp
    d.traps, d.flags = dict(c.traps), dict(c.flags)
_CSV_LIMIT = _csv.field_size_limit()
_CSV_DIALECTS = {n: _csv.get_dialect(n) for n in _csv.list_dialects()}

# Module-level switches benign code sets (logging's, the float format old code gives json): each session has its
# own, swapped in with it like the state above, so setting one changes nothing for another session and is not
# tampering (the tamper check skips these names: _SWAPPED); drop() puts the values at load back. A name absent at
# load (FLOAT_REPR, gone from json.encoder) is absent again for the next session. logging's last-resort handler
# (lastResort = None silences it), logger class (setLoggerClass) and record factory (setLogRecordFactory) are code
# of the session's that logging runs, but only while the session is in: the loggers made under its class are in its
# own registry (below). Not here, so still tampering: captureWarnings (it rebinds warnings.showwarning for every
# session) and zoneinfo's TZPATH (a zone loaded through it stays in ZoneInfo's shared cache).
import logging as _logging, json.encoder as _json_encoder
_ABSENT = object()
_SESSION_NAMES = (
    (_logging, ('raiseExceptions', 'logThreads', 'logProcesses', 'logMultiprocessing', 'logAsyncioTasks', '_srcfile',
                'lastResort', '_loggerClass', '_logRecordFactory')),
    (_json_encoder, ('FLOAT_REPR',)),
)
_SESSION_SLOTS = tuple((m, n) for m, names in _SESSION_NAMES for n in names)

def _names_now():
    return [m.__dict__.get(n, _ABSENT) for m, n in _SESSION_SLOTS]

_NAMES_AT_LOAD = _names_now()

# Logging's registry: each session has its own root logger and manager (so its own loggers by name, handlers, levels
# and logging.disable), its own level names and named handlers. Otherwise a logger by a fixed name, with a handler
# that writes into one session's state, also got another session's records, and disable() or basicConfig() in one
# session held for the next. Swapped in with the session (logging.root and Logger.root, Logger.manager, the level
# dicts, the named handlers); the module-level names are skipped by the tamper check (_SWAPPED). A logger a standard
# module made at import keeps the root of load time.
import weakref as _weakref
_LOG_GLOBALS = ('root', '_levelToName', '_nameToLevel', '_handlers', '_handlerList')
def _logging_now():
    return (_logging.root, _logging.Logger.manager, _logging._levelToName, _logging._nameToLevel, _logging._handlers, _logging._handlerList)

_LOGGING_AT_LOAD = _logging_now()
_LEVELS_AT_LOAD = (dict(_logging._levelToName), dict(_logging._nameToLevel))

def _fresh_logging():
    root = _logging.RootLogger(_logging.WARNING)
    return (root, _logging.Manager(root), dict(_LEVELS_AT_LOAD[0]), dict(_LEVELS_AT_LOAD[1]), _weakref.WeakValueDictionary(), [])

def _load_logging(t):
    root, manager, to_name, to_level, handlers, handler_list = t
    _logging.root = _logging.Logger.root = root
    _logging.Logger.manager = manager
    _logging._levelToName, _logging._nameToLevel, _logging._handlers, _logging._handlerList = to_name, to_level, handlers, handler_list

_LAST_RESORT_SLOT = _SESSION_SLOTS.index((_logging, 'lastResort'))

def _last_resort(handler_list):
    """A last-resort handler of a session's own (its level and filters are the session's: logging's one object was
    shared, so a filter one session added ran on every other's records), registered in the session's handler list."""
    saved = _logging._handlerList
    _logging._handlerList = handler_list
    try:
        return _logging._StderrHandler(_logging.WARNING)
    finally:
        _logging._handlerList = saved

def _fresh_module_state(at_load=False):
    """A new session's module state; at_load: the values of load time (no session current), logging's own objects."""
    log = _LOGGING_AT_LOAD if at_load else _fresh_logging()
    names = list(_NAMES_AT_LOAD)
    if not at_load:
        names[_LAST_RESORT_SLOT] = _last_resort(log[5])
    return {
        'names': names,
        'logging': log,
        'uuid': {k: (0 if k == '_last_counter_v7' else None) for k in _UUID_VARS if k in _uuid.__dict__},
        'decimal': _DEC_TEMPLATE.copy(),
        'decimal_default': None,
        'firstweekday': 0,
        'csv_limit': _CSV_LIMIT,
        'csv_dialects': dict(_CSV_DIALECTS),
        'environ': {},
    }

def _save_module_state():
    return {
        'names': _names_now(),
        'logging': _logging_now(),
        'uuid': {k: _uuid.__dict__.get(k) for k in _UUID_VARS if k in _uuid.__dict__},
        'decimal': _decimal.getcontext(),
        'decimal_default': _dec_default_now(),
        'firstweekday': _calendar.firstweekday(),
        'csv_limit': _csv.field_size_limit(),
        'csv_dialects': {n: _csv.get_dialect(n) for n in _csv.list_dialects()},
        'environ': dict(_os.environ),
    }

def _load_module_state(m):
    for (mod, n), v in zip(_SESSION_SLOTS, m['names']):
        if v is _ABSENT:
            mod.__dict__.pop(n, None)
        else:
            mod.__dict__[n] = v
    _load_logging(m['logging'])
    for k, v in m['uuid'].items():
        setattr(_uuid, k, v)
    _decimal.setcontext(m['decimal'])
    _load_dec_default(m['decimal_default'])
    _calendar.setfirstweekday(m['firstweekday'])
    _csv.field_size_limit(m['csv_limit'])
    for n in _csv.list_dialects():
        _csv.unregister_dialect(n)
    for n, d in m['csv_dialects'].items():
        _csv.register_dialect(n, d)
    # os.environ (empty at load): a package reads it at import (mpmath: MPMATH_STRICT, MPMATH_NOGMPY, MPMATH_SAGE).
    if m['environ'] or _os.environ:
        _os.environ.clear()
        _os.environ.update(m['environ'])

def _copy_module_state(m):
    """A copy of module state m (_save_module_state's) that code can change without changing m: its own decimal
    context, uuid caches, csv dialects and os.environ, and a fresh logging registry."""
    c = dict(m)
    c['names'] = list(m['names'])
    c['uuid'] = dict(m['uuid'])
    c['decimal'] = m['decimal'].copy()
    c['csv_dialects'] = dict(m['csv_dialects'])
    c['environ'] = dict(m['environ'])
    c['logging'] = _fresh_logging()
    if c['names'][_LAST_RESORT_SLOT] is not None:
        c['names'][_LAST_RESORT_SLOT] = _last_resort(c['logging'][5])  # a level or filter set on it stays with this copy
    return c

def _check_start(s):
    """Puts back what the session's first check started from (taken then): its random streams, clock, module
    state (with a fresh logging registry) and the names its environment added to shared modules. A check that set the
    decimal precision, seeded random, slept or configured logging changed what the checks after it saw, and their
    results depended on their order."""
    base = s.check_base
    if base is None:
        base = s.check_base = (_rnd.getstate(), s.aux_rng.getstate(), s.clock, s.slept, _copy_module_state(_save_module_state()),
                               [(d, dict(names)) for d, names in s.added])
    _rnd.setstate(base[0])
    s.aux_rng.setstate(base[1])
    s.clock, s.slept = base[2], base[3]
    _load_module_state(_copy_module_state(base[4]))
    # The names its environment added to shared modules as it loaded, as they were (a check may rebind or delete one).
    _put_away(s)
    s.added = [(d, dict(names)) for d, names in base[5]]
    for d, names in s.added:
        d.update(names)

def _enter(s):
    owner = _RNG_OWNER[0]
    if owner is not s:
        if owner is not None and not owner.dropped:
            owner.rng_state = _rnd.getstate()
            owner.modstate = _save_module_state()
        # No owner while s's state goes in: should a limit (the interrupt at a deadline) land part-way, the next
        # _enter loads its session's state whole, where it took the mix for the owner's and kept or saved it.
        _RNG_OWNER[0] = None
        _rnd.setstate(s.rng_state)
        _load_module_state(s.modstate)
        _RNG_OWNER[0] = s
    _CURRENT[0] = s
    for d, names in s.added:
        d.update(names)
    if s.pkgmods:
        _sys.modules.update(s.pkgmods)
    # The environment's module is in sys.modules while its code runs (the constructor, a tool): a dataclass made at
    # call time looks its module up there for string annotations. _leave takes it out.
    if s.module is not None:
        _MODULES[s.module.__name__] = s.module

def _leave():
    # The package modules first, the session last: should a limit land in between, the session is still
    # current and recover() takes its modules.
    s = _CURRENT[0]
    if s is not None:
        if s.added:
            _put_away(s)
        if s.pkgmods or s.pkgnames:
            _take_packages(s)
        if s.module is not None:
            _MODULES.pop(s.module.__name__, None)
    _CURRENT[0] = None

def _in_session(s, fn, *args):
    """fn(s, *args) with the session entered (its clock, random streams and module state in), and left after."""
    try:
        _enter(s)
        return fn(s, *args)
    finally:
        _leave()

def recover():
    """After a limit (an interrupt at a deadline) escaped the harness between a session's code and its
    _leave: no session stays current, and no module of a supplied package stays in sys.modules, where the
    next session's import would find another session's copy."""
    s = _CURRENT[0]
    if s is not None:
        _put_away(s)
        _take_packages(s)
    _CURRENT[0] = None
    for n in [n for n in _MODULES if n.split('.')[0] in PACKAGE_NAMES or n == 'envfleet_check' or n.startswith('envfleet_env_')]:
        _MODULES.pop(n, None)
    return '{"ok":true}'

# --- canonical JSON ------------------------------------------------------------------------------

class NotJson(Exception):
    pass

# Private references, taken before any environment code runs: an environment or a check that rebinds
# json.dumps, copy.deepcopy or a global of json.encoder changes nothing the harness computes.
_deepcopy = _copy.deepcopy
import json.decoder as _json_decoder, json.encoder as _json_encoder
_loads = _json_decoder.JSONDecoder().decode
_c_make_encoder = _json_encoder.c_make_encoder
_encode_basestring = _json_encoder.encode_basestring
_PyEncoder = _json_encoder.JSONEncoder

_NIL = object()

def _copy_value(o, memo, keep):
    """copy.deepcopy(o, memo), with what JSON is made of copied here: a dict or a list (of exactly those types) is
    copied item by item, and a str, int, float, bool or None kept as deepcopy keeps them (they cannot change). The
    result is deepcopy's: a container held twice is copied once and held twice in the copy (memo, keyed by id as
    deepcopy keys it; keep, deepcopy's own keep-alive list at memo[id(memo)], holds each original until the copy is
    done, so that no id is reused meanwhile, should an object's own __deepcopy__ let go of one), and everything else
    (a tuple, a set, a date, a dataclass, an environment's own object, a dict or list subclass, a key that is not a
    str) goes to copy.deepcopy with the same memo. A state of plain JSON (τ-bench's database) is copied in 60-70 %
    of deepcopy's time, and no code of the environment's runs for its dicts and lists."""
    t = type(o)
    if t is dict:
        i = id(o)
        y = memo.get(i, _NIL)
        if y is not _NIL:
            return y
        y = memo[i] = {}
        keep.append(o)
        for k, v in dict.items(o):
            tv = type(v)
            if type(k) is str:
                y[k] = v if tv is str or tv is int or tv is float or tv is bool or v is None else _copy_value(v, memo, keep)
            else:
                v = v if tv is str or tv is int or tv is float or tv is bool or v is None else _copy_value(v, memo, keep)
                memo[_NOT_PLAIN] = True
                y[_deepcopy(k, memo)] = v  # the value first, as before
        return y
    if t is list:
        i = id(o)
        y = memo.get(i, _NIL)
        if y is not _NIL:
            return y
        y = memo[i] = []
        keep.append(o)
        append = y.append
        for v in o:
            tv = type(v)
            append(v if tv is str or tv is int or tv is float or tv is bool or v is None else _copy_value(v, memo, keep))
        return y
    if t is str or t is int or t is float or t is bool or o is None:
        return o
    memo[_NOT_PLAIN] = True
    return _deepcopy(o, memo)

# A key of _copy_value's memo (whose own keys are ints) set when it handed something to copy.deepcopy: the copy is then
# not plain JSON (dicts, lists, str, int, float, bool, None of exactly those types), whose encoding runs no code.
_NOT_PLAIN = '<not plain>'

def _copied(o):
    """A deep copy of o: what copy.deepcopy(o) gives (_copy_value)."""
    return _copied_plain(o)[0]

def _copied_plain(o):
    """_copied(o), and whether the copy is plain JSON (_NOT_PLAIN)."""
    memo, keep = {}, []
    memo[id(memo)] = keep
    y = _copy_value(o, memo, keep)
    return y, _NOT_PLAIN not in memo

def _encode(o):
    """Canonical JSON through the C encoder captured at load (no module global is looked up per call)."""
    if _c_make_encoder is not None:
        return ''.join(_c_make_encoder({}, _default, _encode_basestring, None, ':', ',', True, False, False)(o, 0))
    return _PyEncoder(sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(',', ':'), default=_default).encode(o)

# A set's items in canonical order, by the set's id, for the rest of one canonical(): a set inside a set was sorted
# again each time the encoder wrote it, which doubled the work at each level of frozensets inside frozensets (25
# levels ran past the call deadline). The set is kept with its order, so its id is not reused meanwhile.
_SET_ORDER = {}

def _default(o):
    if isinstance(o, (set, frozenset)):
        known = _SET_ORDER.get(id(o))
        if known is not None:
            return known[1]
        try:
            items = [(_encode(x), x) for x in o]
        except Exception as e:
            # Where in the item the value is, and the item's place once sorted, are not known here: _where says
            # "inside a set at" the set's own place instead.
            e.__notes__ = [_IN_SET]
            raise
        items.sort(key=lambda p: p[0])
        ordered = [x for _, x in items]
        _SET_ORDER[id(o)] = (o, ordered)
        return ordered
    if isinstance(o, (_real_datetime, _real_date, _real_time_cls)):
        return o.isoformat()
    if isinstance(o, _enum.Enum):
        return o.value
    if isinstance(o, _decimal.Decimal):
        return str(o)
    if _dataclasses.is_dataclass(o) and not isinstance(o, type):
        return _dataclasses.asdict(o)
    raise NotJson('a value of type %s is not JSON (allowed: dict, list, tuple, set, str, int, float, bool, None, datetime, Enum, Decimal, dataclass)' % type(o).__name__)

_IN_SET = 'envfleet: inside a set'

def _where(e):
    """Where in the value the encoder met e, as a JSON Pointer ('' when not known), from the notes the encoder adds
    as the error goes up through each container ("when serializing dict item 'avg'", innermost first)."""
    segs = []
    in_set = False
    try:
        for note in getattr(e, '__notes__', None) or ():
            if note is _IN_SET:
                in_set = True
                continue
            if type(note) is not str or not note.startswith('when serializing '):
                continue
            _kind, sep, item = note[17:].partition(' item ')
            if not sep:
                continue
            try:
                k = _ast.literal_eval(item)  # the key's or index's repr; literals only, no code runs
            except Exception:
                k = item
            if type(k) is str:
                segs.append((k if len(k) <= 40 else k[:40] + '…').replace('~', '~0').replace('/', '~1'))
            else:
                segs.append(_encode(k) if k is None or type(k) in (int, float, bool) else item)
    except Exception:
        return ''
    path = ''.join('/' + seg for seg in reversed(segs))
    return 'an item of the set at ' + (path or '/') if in_set else path

def _not_json(text, e):
    """NotJson saying what, where (when the encoder said) and, for a float JSON cannot write, what to do."""
    where = _where(e)
    advice = '; write None or a finite number there instead' if 'Out of range float' in text else ''
    return NotJson('%s (at %s)%s' % (text, where, advice) if where else text + advice)

def canonical(o):
    """JSON text: keys sorted, tuples as lists, sets as sorted lists, date/datetime/time as ISO 8601 strings."""
    try:
        try:
            return _encode(o)
        except TypeError:
            # Keys that cannot be sorted together (careless code keys a dict loaded with "1" by an int 2): written again
            # with those dicts keyed by their keys' JSON text (anything else that failed fails again, as it was).
            _SET_ORDER.clear()
            return _encode(_json_keyed(o))
    except NotJson as e:
        raise _not_json(_text(e) or 'NotJson', e) from None
    except (TypeError, ValueError) as e:
        raise _not_json(_text(e) or type(e).__name__, e) from None
    finally:
        _SET_ORDER.clear()

def _json_key(k):
    """The text JSON writes for a dict key (json.dumps's rules), or TypeError as json.dumps gives."""
    if isinstance(k, str):
        return k
    if k is None or isinstance(k, (int, float)):
        return _encode(k)  # true, false, null, an int's or a float's own text; NaN and infinities refused, as in values
    raise TypeError('keys must be str, int, float, bool or None, not %s' % type(k).__name__)

def _key_segment(k):
    """A dict key as a JSON Pointer segment (as _segment writes one)."""
    if type(k) is str:
        return (k if len(k) <= 40 else k[:40] + '…').replace('~', '~0').replace('/', '~1')
    return _encode(k) if k is None or type(k) in (int, float, bool) else '<%s>' % type(k).__name__

def _json_keyed(o, at=''):
    """o with each dict whose keys cannot be sorted together keyed by their JSON text instead (so they sort as text;
    a dict whose keys sort keeps them, and its order: ints as numbers); two keys with one text (1 and "1") are refused,
    and so is a key JSON cannot write (a tuple), each saying where (at: the JSON Pointer of o). Lists, tuples and
    dataclasses are walked; anything else is left to the encoder."""
    if isinstance(o, dict):
        # Its items as the encoder takes them (a subclass's own items()); the dict itself when nothing under it changed.
        items = [(k, v, _json_keyed(v, at + '/' + _key_segment(k))) for k, v in (dict.items(o) if type(o) is dict else o.items())]
        for k, _, _ in items:
            if not (k is None or isinstance(k, (str, int, float))):
                raise TypeError('keys must be str, int, float, bool or None, not %s (at %s); write such a key as a string, e.g. "|".join(map(str, key)) for a tuple' % (type(k).__name__, at or '/'))
        try:
            sorted(k for k, _, _ in items)
            return o if all(w is v for _, v, w in items) else {k: w for k, _, w in items}
        except TypeError:
            pass
        items = [(k, w) for k, _, w in items]
        out, first = {}, {}
        for k, v in items:
            text = _json_key(k)
            if text in out:
                raise ValueError('two keys of one dict are written as the same JSON key %s (%s and %s) at %s; keep one kind of key per dict, e.g. str(id)' % (_encode(text), _describe_key(first[text]), _describe_key(k), at or '/'))
            out[text], first[text] = v, k
        return out
    if isinstance(o, (list, tuple)):
        items = [(x, _json_keyed(x, '%s/%d' % (at, i))) for i, x in enumerate(o)]
        return o if all(w is x for x, w in items) else [w for _, w in items]
    if _dataclasses.is_dataclass(o) and not isinstance(o, type):
        d = _dataclasses.asdict(o)
        w = _json_keyed(d, at)
        return o if w is d else w
    return o

def _describe_key(k):
    return _encode(k) if k is None or type(k) in (int, float, bool, str) else '<%s>' % type(k).__name__

# --- nesting: at most MAX_DEPTH levels ---------------------------------------------------------------
# A value nested very deeply (careless code that keeps a linked list as dicts inside dicts) overflowed the
# interpreter thread's stack in the C encoder (a dict 13,000 levels deep; its json.dumps raises no RecursionError
# in Pyodide) and the interpreter was terminated with every other session on it; copy.deepcopy gave up at ~500
# levels. So every value the harness writes (a state, a result) is held to MAX_DEPTH levels of containers (a flat
# dict is 1 level), found while it is counted (_floor) before anything recurses in C, and every JSON text it reads
# is held to it by the child (python-child.mjs) before it is decoded. Copies and the count run with room for
# MAX_DEPTH levels (_deeply): the environment's own code keeps the recursion limit it had.

class TooDeep(Exception):
    pass

class _PastDepth(Exception):
    """Raised by _floor at the first container below MAX_DEPTH; trail: that container, then each one above it;
    sets: whether a set is on the way."""
    def __init__(self, child, sets=False):
        Exception.__init__(self)
        self.trail, self.sets = [child], sets

# A set counts as this many levels: _default sorts its items by their JSON text, encoding each in an encoder of its
# own while the outer one waits, so a frozenset inside a frozenset takes ~13 times the stack of a dict inside a
# dict (frozensets 950 levels deep overflowed the thread's stack).
_SET_LEVELS = 10

_get_limit, _set_limit = _sys.getrecursionlimit, _sys.setrecursionlimit
# Frames a level: _floor 1 (2 for a set or a dataclass), dataclasses.asdict 2, copy.deepcopy 2 (4 to 6 for a
# dataclass, a frozenset or a tuple of them). Measured in the interpreter thread: ~28,000 frames of deepcopy fit
# on its stack.
_DEEP_FRAMES = 6 * MAX_DEPTH + 500

def _deeply(fn, *args):
    """fn(*args) with the recursion limit raised to _DEEP_FRAMES (set back after)."""
    return _deeply_to(_DEEP_FRAMES, fn, *args)

def _deeply_to(frames, fn, *args):
    """fn(*args) with the recursion limit raised to frames, if it is lower (set back after)."""
    old = _get_limit()
    if old >= frames:
        return fn(*args)
    _set_limit(frames)
    try:
        return fn(*args)
    finally:
        _set_limit(old)

# The frames a copy or an encoding of a value takes, by the depth its count found (_DEPTH): only as many as its depth
# needs, since the environment's own code runs inside them (a __deepcopy__, an isoformat, dataclasses.asdict copying
# a field), and recursion through C (a forwarding __getattr__ on a copy that lacks the field it forwards to: copy
# makes the instance without __init__) overflows the interpreter thread's stack between 1,000 and 2,000 levels, which
# ended the interpreter and its co-tenants at _DEEP_FRAMES. With the environment's own limit (1,000 unless raised)
# such a recursion is the RecursionError CPython raises. A value nested deeper than ~80 levels still copies at a
# raised limit.
_DEPTH = [0]

def _frames_for(depth):
    return min(_DEEP_FRAMES, 6 * depth + 500)

def _segment(parent, child):
    """The JSON Pointer segment of child in parent: a key, an index, '*' for an item of a set (its place is its
    order), a dataclass's field; None for an Enum's value (written in its place); '?' when not found."""
    if isinstance(parent, dict):
        for k, x in dict.items(parent):
            if x is child:
                return _key_segment(k)
    elif isinstance(parent, (list, tuple)):
        for i, x in enumerate(parent):
            if x is child:
                return str(i)
    elif isinstance(parent, (set, frozenset)):
        return '*'
    elif isinstance(parent, _enum.Enum):
        return None
    elif _dataclasses.is_dataclass(parent):
        for f in _dataclasses.fields(parent):
            if getattr(parent, f.name, None) is child:
                return f.name
    return '?'

def _pointer(pairs):
    return ''.join('/' + seg for seg in (_segment(p, c) for p, c in pairs) if seg is not None)

def _too_deep(e, what):
    """The error for _PastDepth: NotJson for a cycle (the way down meets a container twice), else TooDeep saying
    where, and what to do."""
    trail = e.trail
    if len(set(map(id, trail))) < len(trail):  # all alive (the trail holds them): no id is reused
        return NotJson('Circular reference detected')
    down = trail[-2::-1]  # from the value itself (below the root wrapper) to the container past the bound
    pairs = list(zip(down, down[1:]))
    path = _pointer(pairs) if len(pairs) <= 8 else _pointer(pairs[:5]) + '/…' + _pointer(pairs[-2:])
    return TooDeep('%s nests containers more than %d levels deep (%d containers down to %s%s)%s' % (
        what, MAX_DEPTH, len(down), path or '/',
        '; a set counts as %d levels: its items are sorted by their JSON' % _SET_LEVELS if e.sets else '', DEPTH_ADVICE))

# Freeing such a value overflowed the thread's stack too: CPython frees a nested value recursively, and in Pyodide
# its guard against that (the trashcan, which defers the rest once the C stack runs low) watches the C stack in
# linear memory, which these frames hardly use, not the thread's own stack, which they fill (a dict chain 13,000
# levels deep, a list chain 21,000). So when a session's instance whose state was found too deep, or a result found
# too deep, is let go, every MAX_DEPTH-th level of it is held a while longer (_release): freeing it never recurses
# more than MAX_DEPTH levels, as for a value within the bound.

_referents = _gc.get_referents
_refcount = _sys.getrefcount
_CONTAINERS = frozenset([dict, list, tuple, set, frozenset])
_CONTAINER_BASES = (dict, list, tuple, set, frozenset, _collections.deque)
_LEAVES = frozenset([str, int, float, bool, type(None), bytes, complex, type, _types.FunctionType, _types.BuiltinFunctionType,
    _types.MethodType, _types.ModuleType, _types.CodeType, _real_datetime, _real_date, _real_time_cls, _decimal.Decimal])
# The objects MAX_DEPTH, 2 × MAX_DEPTH, ... levels down in values let go, shallowest first: each is let go (_sweep)
# once nothing else holds it, i.e. once what is above it down to the anchor above was freed.
_ANCHORS = []

def _holds(t):
    """Whether a t can hold an environment's values: a container, or an instance of one of its own classes."""
    try:
        if issubclass(t, _CONTAINER_BASES):
            return True
        m = type.__getattribute__(t, '__module__')
        return type(m) is str and m.startswith('envfleet_env_')
    except Exception:
        return False

def _release(box):
    """Empties box (a list holding the only references the caller keeps to what is in it) so that freeing what it
    held never recurses more than MAX_DEPTH levels: the containers and environment objects under it are walked
    breadth first, and those MAX_DEPTH, 2 × MAX_DEPTH, ... levels down kept in _ANCHORS; then box is emptied (what
    it held is freed down to the first anchors), and the anchors swept. Nothing is changed. What a cycle of the
    environment's own still holds (a bound method kept on the instance) is freed by the cycle collector later,
    down to the first anchors, and the anchors below at a later sweep."""
    anchors = []
    try:
        seen = set()
        level = list(box)
        depth = 0
        while level:
            fresh = []
            for o in level:
                i = id(o)
                if i not in seen:
                    seen.add(i)
                    fresh.append(o)
            depth += 1
            if depth % MAX_DEPTH == 0:
                anchors.extend(fresh)
            level = [c for c in _referents(*fresh) if (t := type(c)) in _CONTAINERS or (t not in _LEAVES and _holds(t))]
    except Exception:
        pass  # (a MemoryError): the anchors found so far are kept all the same
    finally:
        level = fresh = o = None
        _ANCHORS.extend(anchors)
        anchors = None
        box.clear()
    _sweep()

def _sweep():
    """Lets go of the anchors nothing else holds, shallowest first: each frees what is below it down to the next
    anchor, which is then let go in turn."""
    if not _ANCHORS:
        return
    kept = []
    for i in range(len(_ANCHORS)):
        if _refcount(_ANCHORS[i]) > 2:  # held by more than this list (and the call's argument)
            kept.append(_ANCHORS[i])
        _ANCHORS[i] = None
    _ANCHORS[:] = kept

_OPAQUE = [False]  # set by _floor_other when it meets an object that is not JSON

def _discard(s):
    """Drops the session's instance through _release when its state was found too deep, or not JSON (the
    objects it holds may chain deeply: a linked list of Node objects), when it was last read, or is when counted
    now (a call ran since: counted as far as the state cap, as a read would). A state past the cap (its depth is not
    known then) is dropped as before."""
    inst, s.inst = s.inst, None
    if inst is None or s.deep is False:
        return
    deep = s.deep
    if deep is None:
        _OPAQUE[0] = False
        try:
            deep = _deeply(_floor_of, _state_of(inst), s.cap) <= s.cap and _OPAQUE[0]
        except _PastDepth:
            deep = True
        except Exception:
            pass
    if deep:
        box = [inst]
        inst = None
        _release(box)

# --- the size caps, held before encoding ----------------------------------------------------------
# The C encoder cannot stop part-way (the interrupt at a deadline is only seen between bytecodes): a state or
# a result of 90 MB took seconds to encode, ran past the call deadline, and its interpreter was terminated with
# every other session on it. So the value is first counted, in one pass that stops as soon as the count passes
# the cap: a floor on its canonical JSON's UTF-8 bytes. Over the cap, nothing is encoded or copied; under it,
# the JSON is at most a few times the floor (multi-byte characters, escapes, the digits of floats), so the
# encoding that follows is bounded too, and its exact size is held against the cap as before.

class TooLarge(Exception):
    pass

_str_len = str.__len__

def _int_floor(v):
    b = int.bit_length(v)
    return 1 + (b - 1) * 3 // 10 + (v < 0) if b > 1 else 1 + (v < 0)

def _key_floor(k):
    return _str_len(k) + 2 if isinstance(k, str) else 3  # other keys are written as strings of one character or more

def _floor(o, room, depth):
    """A floor on the UTF-8 bytes of the canonical JSON of o (a dict, list or tuple, subclasses included, at
    nesting level depth), counted until it passes room (the count so far is then returned). A str counts its
    characters (each is one byte or more in UTF-8; escapes only add), a number, true, false and null their
    shortest text, a container its brackets and separators. Only base-type methods are called on dicts, lists,
    tuples and strs, as the C encoder reads them; sets and dataclasses are counted as _default writes them
    (_floor_other). A container below MAX_DEPTH levels raises _PastDepth, which collects the way down to it. The
    deepest level counted is kept in _DEPTH."""
    if depth > _DEPTH[0]:
        _DEPTH[0] = depth
    try:
        if isinstance(o, dict):
            k = dict.__len__(o)
            n = 1 + 4 * k  # the braces; an item's colon, comma and key quotes (one comma less: a brace counted once)
            try:
                n += sum(map(_str_len, dict.keys(o)))
            except TypeError:
                n += sum(map(_key_floor, dict.keys(o))) - 2 * k
            if n > room:
                return n
            items = dict.values(o)
        elif isinstance(o, list):
            n = 1 + list.__len__(o)
            items = list.__iter__(o)
        else:
            n = 1 + tuple.__len__(o)
            items = tuple.__iter__(o)
        for v in items:
            t = type(v)
            if t is str:
                n += len(v) + 2
            elif t is dict or t is list or t is tuple:
                if depth >= MAX_DEPTH:
                    raise _PastDepth(v)
                n += _floor(v, room - n, depth + 1)
            elif t is int:
                n += 1 if -0x7FFFFFFF < v < 0x7FFFFFFF else _int_floor(v)
            elif t is float:
                n += 3  # 0.0: repr writes a point or an exponent
            elif t is bool or v is None:
                n += 4
            else:
                n += _floor_other(v, room - n, depth)
            if n > room:
                return n
        return n
    except _PastDepth as e:
        e.trail.append(o)
        raise

def _floor_other(v, room, depth):
    """The floor of v, an item of a container at level depth that is not of an exact base type."""
    if isinstance(v, str):
        return _str_len(v) + 2
    if isinstance(v, int):
        return _int_floor(v)
    if isinstance(v, (dict, list, tuple)):
        if depth >= MAX_DEPTH:
            raise _PastDepth(v)
        return _floor(v, room, depth + 1)
    # Counted as _default writes them; past the bound, the trail names v rather than the list or dict made here.
    if isinstance(v, (set, frozenset)):
        if depth + _SET_LEVELS > MAX_DEPTH:
            raise _PastDepth(v, True)
        try:
            return _floor(list(v), room, depth + _SET_LEVELS)
        except _PastDepth as e:
            e.trail[-1], e.sets = v, True
            raise
    if _dataclasses.is_dataclass(v) and not isinstance(v, type):
        if depth >= MAX_DEPTH:
            raise _PastDepth(v)
        try:
            return _floor({f.name: getattr(v, f.name) for f in _dataclasses.fields(v)}, room, depth + 1)
        except _PastDepth as e:
            e.trail[-1] = v
            raise
    if isinstance(v, _enum.Enum):
        try:
            return _floor([v.value], room + 2, depth) - 2  # written as its value, at the Enum's own level
        except _PastDepth as e:
            e.trail[-1] = v
            raise
    if isinstance(v, (_real_date, _real_time_cls)):
        return 10  # "HH:MM:SS" or "YYYY-MM-DD", quoted
    if isinstance(v, _decimal.Decimal):
        return 3
    _OPAQUE[0] = True  # not JSON: the encoder refuses it; not entered here, so its depth is not known
    return 1

def _floor_of(o, room):
    """_floor for any value (a scalar too), at level 1; 0 when counting fails on the environment's own objects (a
    set or a dataclass whose code raises): the encoder then answers for them, as before. A limit is raised, and so
    is _PastDepth."""
    try:
        return _floor([o], room + 2, 0) - 2
    except (MemoryError, RecursionError, _PastDepth):
        raise
    except Exception:
        return 0

def capped(o, cap, what, cap_name):
    """canonical(o) and its UTF-8 bytes; TooLarge when they are more than cap, found before encoding when the
    floor is already past it (a state of 90 MB costs what a state at the cap costs to count: the count stops
    there); TooDeep past MAX_DEPTH levels, found while counting. what: 'the state', ...; cap_name: 'state' or
    'result', for the message."""
    _DEPTH[0] = 0
    try:
        floor = _deeply(_floor_of, o, cap)
    except _PastDepth as e:
        # Raised here, not kept in a local first: a local holding the error would make a cycle (the error, its
        # traceback, this frame) that keeps o, too deep, alive until the cycle collector runs.
        raise _too_deep(e, what) from None
    # The setting and what to do, past the state or the result cap.
    advice = (CAP_ADVICE['the initial state'] if what == 'the initial state' else CAP_ADVICE['state']) if cap_name == 'state' else CAP_ADVICE['result']
    if floor > cap:
        raise TooLarge('%s is more than the %s cap of %d bytes of JSON (at least %d bytes: counting stopped there, nothing was encoded)%s' % (what, cap_name, cap, floor, advice))
    text = _deeply_to(_frames_for(_DEPTH[0]), canonical, o)  # dataclasses.asdict recurses in Python
    data = None
    if text.isascii():
        size = len(text)
    else:
        try:
            data = text.encode('utf-8')
            size = len(data)
        except UnicodeEncodeError:
            # A lone surrogate (no UTF-8 holds one): written as its JSON escape (\ud800), which reads back as the same
            # str in Python and in JavaScript. Kept raw, it became U+FFFD wherever the text was stored as UTF-8 (a
            # trajectory's final state), so a check that passed in the episode failed on the stored state.
            text = _escape_surrogates(text)
            data = text.encode('utf-8')
            size = len(data)
    if size > cap:
        raise TooLarge('%s is %d bytes of JSON, more than the %s cap of %d%s' % (what, size, cap_name, cap, advice))
    return text, size, data

import re as _re
_SURROGATE = _re.compile('[\ud800-\udfff]')

def _escape_surrogates(text):
    """JSON text with each surrogate written as its escape: one can only be inside a JSON string of the text, where
    the escape means the same code unit."""
    return _SURROGATE.sub(_surrogate_escape, text)

def _surrogate_escape(m):
    return '\\u%04x' % ord(m.group())

# --- answers: text, or UTF-8 bytes when that crosses faster ---------------------------------------------
# Pyodide copies a str into JavaScript one character at a time unless it is ASCII (then TextDecoder does it at
# once): a state of 8 MB of JSON at the cap, with some CJK text, took 1-2.5 s to cross, more than reading it
# here. bytes cross as a view of the heap that the interpreter thread decodes at once (answerText, below the
# Python source): a long answer that is not ASCII is handed over as its UTF-8 (a lone surrogate in it is escaped
# first, capped).

_BYTES_FROM = 65536  # characters: below, a str crosses as fast or faster; past ~100,000 it takes 10 to 30 times as long (docs/benchmarks.md)

def _ok(text, data):
    """The answer {"ok": text}; data: text's UTF-8 (capped's), None when text is ASCII or holds a lone surrogate."""
    if data is not None and len(text) >= _BYTES_FROM:
        return b'{"ok":' + data + b'}'
    return '{"ok":' + text + '}'

def _answer(x):
    """An entry point's answer, made ready to cross: a long str that is not ASCII becomes its UTF-8."""
    if type(x) is not str or len(x) < _BYTES_FROM or x.isascii():
        return x
    try:
        return x.encode('utf-8')
    except UnicodeEncodeError:
        return x

def _crossing(fn):
    """fn (an entry point the interpreter thread calls), its answer passed through _answer."""
    def entry(*args):
        return _answer(fn(*args))
    entry.__name__ = entry.__qualname__ = fn.__name__
    entry.__doc__ = fn.__doc__
    return entry

def _err(code, message):
    return _encode({'err': code, 'message': message})

def _text(e):
    """str(e), or None when the exception's own __str__ fails (returns a non-str, reads an attribute it never set):
    environment code's exceptions are described without letting their failure escape the harness."""
    try:
        text = str(e)
    except Exception:
        return None
    return text if type(text) is str else None

def _describe(e):
    text = _text(e)
    if text is None:
        return '%s (its message could not be read: its __str__ failed)' % type(e).__name__
    return '%s: %s' % (type(e).__name__, text) if text else type(e).__name__

def _fail(e, code, message):
    """The answer for an exception out of environment or check code: a limit's error, else code and message. A
    KeyboardInterrupt is the deadline's only when an interrupt was sent, which the child knows: it carries what the
    answer is otherwise (own, raised), used when none was (python-child.mjs, answerEnvelope)."""
    if isinstance(e, KeyboardInterrupt):
        return _encode({'err': 'DEADLINE_EXCEEDED', 'message': 'the call ran past its deadline and was interrupted', 'own': code, 'raised': message})
    # The allocator's MemoryError carries no message (PyErr_NoMemory); one with a message is the code's own, as in
    # CPython ("raise MemoryError('storage full')"): an ordinary exception, and the session goes on.
    if isinstance(e, MemoryError) and not e.args:
        return _err('MEMORY_EXCEEDED', 'the interpreter ran out of memory (MemoryError)')
    if isinstance(e, OverflowError) and 'index-sized' in (_text(e) or ''):
        return _err('MEMORY_EXCEEDED', 'the call asked for more memory than a 32-bit WebAssembly interpreter can address (%s)' % e)
    if isinstance(e, RecursionError):
        return _err('STACK_OVERFLOW', 'the call recursed too deeply: ' + (_text(e) or 'RecursionError'))
    return _err(code, message)

# --- sessions ------------------------------------------------------------------------------------

class Session:
    __slots__ = ('sid', 'inst', 'tools', 'rng_state', 'aux_rng', 'clock', 'initial_state', 'initial_text', 'final_state', 'dropped', 'modstate', 'episode', 'packages', 'pkgmods', 'pkgnames',
                 'cap', 'deep', 'module', 'slept', 'frames', 'check_base', 'added')

SESSIONS = {}

def _new_session(sid, packages, rng_seed, aux_seed, tools=frozenset()):
    """A session before its environment or states: its own random state, module state, clock and packages."""
    s = Session()
    s.sid, s.inst, s.tools, s.final_state, s.dropped, s.episode, s.module = sid, None, tools, None, False, None, None
    s.initial_text = None  # the initial state's JSON as create wrote it, when its copy is not plain JSON (initial())
    # deep: whether the instance's state was found past MAX_DEPTH when last read (None: not read since a call)
    s.cap, s.deep = _sys.maxsize, None
    s.frames = _DEEP_FRAMES  # for copying its states: set from their depth when an environment's are counted
    s.check_base = None  # what each of its checks starts from (_check_start)
    s.added = []  # the names its code added to shared modules as it loaded, by module dict (_take_added)
    s.packages, s.pkgmods, s.pkgnames = _package_dict(packages), {}, set()
    s.rng_state = _random.Random(rng_seed).getstate()
    s.modstate = _fresh_module_state()
    s.aux_rng = _random.Random(aux_seed)
    s.clock, s.slept = EPOCH, 0.0
    return s

def compile_env(class_name, source):
    """The code of an environment source that passes the AST check, or the error envelope (a str).
    The interpreter thread keeps these code objects (by class name and source) on its JavaScript side,
    out of Python's reach, and hands one to create() instead of checking and compiling again."""
    why, text = check_source(source, 'the environment source')
    if why:
        return _err('SOURCE_LOAD_FAILED', why)
    try:
        return compile(text, '<environment %s>' % class_name, 'exec')
    except BaseException as e:
        return _fail(e, 'SOURCE_LOAD_FAILED', 'the environment source failed while loading: ' + _describe(e))

_type_dict = type.__dict__['__dict__'].__get__

def _class_module(cls):
    """The __module__ a class's own namespace holds (a str), read without running any of its code; None otherwise."""
    m = _type_dict(cls).get('__module__')
    return m if type(m) is str else None

def _state_of(inst):
    try:
        attrs = vars(inst)
    except TypeError:
        raise TypeError('an instance of %s has no __dict__ (its class declares __slots__), and the state is vars(instance): keep the state in ordinary attributes (no __slots__)' % type(inst).__name__) from None
    return {k: v for k, v in attrs.items() if not k.startswith('__')}

def _cap(text):
    """A cap handed over as a decimal string (only strings cross); none when not given."""
    return int(text) if text else _sys.maxsize

@_crossing
def create(sid, class_name, code, config_json, tools_json, seed_hex, packages=None, max_state_bytes=None):
    """Runs an environment's code (compile_env's, for its checked source) in a module of its own and builds
    the instance the EnvScaler way; returns the envelope, {"ok": the initial state's UTF-8 bytes}.
    packages: build_packages' table (or None); max_state_bytes: the state cap (a decimal string)."""
    seed = int(seed_hex, 16)
    _keep_walk_room()
    s = _new_session(sid, packages, seed, seed ^ 0x5DEECE66D, frozenset(_loads(tools_json)))
    try:
        config = _loads(config_json)
    except ValueError as e:
        return _err('STATE_INVALID', 'the initial state is not JSON: %s' % e)
    if not isinstance(config, dict):
        return _err('STATE_INVALID', 'the initial state of a Python environment must be a JSON object (its keys are set on the instance), not %s' % type(config).__name__)
    before = None
    try:
        _enter(s)
        before = _added_names()
        module = s.module = _types.ModuleType('envfleet_env_%s' % sid)
        _MODULES[module.__name__] = module  # until _leave: the constructor runs with it too
        # Run in a context of its own, where decimal has no current context yet, as in a fresh process: the session's
        # decimal context is then the one the module's code made or set, or, if it used none, the one a first
        # getcontext() makes now, from decimal.DefaultContext as the code left it (money code sets its prec or rounding).
        loading = _contextvars.Context()
        try:
            loading.run(exec, code, module.__dict__)
        except BaseException as e:
            return _fail(e, 'SOURCE_LOAD_FAILED', 'the environment source failed while loading: ' + _describe(e))
        _decimal.setcontext(loading.run(_decimal.getcontext))
        cls = module.__dict__.get(class_name)
        if not isinstance(cls, type):
            try:
                # Without running the environment's code: type() and the class's own __dict__, not isinstance or getattr
                # (a __class__ property, a metaclass's __module__ property would run, and may raise or loop).
                defined = sorted(n for n, v in dict.items(module.__dict__)
                                 if type(n) is str and issubclass(type(v), type) and _class_module(v) == module.__name__)
            except Exception:
                defined = []
            return _err('CLASS_MISSING', 'the source defines no class named %s%s' % (
                class_name, '; it defines %s: name the environment\'s class (className) as the source does' % (', '.join(defined[:10]) + (', …' if len(defined) > 10 else '')) if defined else ''))
        try:
            cfg = _deeply(_copied, config)
            try:
                inst = cls(cfg if cfg else {})
            except TypeError as e:
                # EnvScaler's fallback; should cls() fail too, both causes are said (cls()'s alone hid the real one,
                # a TypeError the constructor itself raised on the configuration).
                first = _describe(e)
                try:
                    inst = cls()
                except TypeError as e2:
                    return _err('CONSTRUCTOR_FAILED', 'constructing %s failed: %s(config) raised %s; then %s() raised %s' % (class_name, class_name, first, class_name, _describe(e2)))
            for key, value in cfg.items():
                try:
                    setattr(inst, key, value)
                except (AttributeError, TypeError) as e:
                    # Not the constructor's own code: EnvScaler sets each key of the initial state on the instance.
                    return _err('CONSTRUCTOR_FAILED', 'constructing %s failed: setting the initial state\'s key %r on the instance (EnvScaler sets each key as an attribute after %s(config)) raised %s' % (
                        class_name, key, class_name, _describe(e)))
        except BaseException as e:
            return _fail(e, 'CONSTRUCTOR_FAILED', 'constructing %s failed: %s' % (class_name, _describe(e)))
        s.inst, s.cap = inst, _cap(max_state_bytes)
        try:
            # Measured (against the cap, before a copy is made) on the live state, then copied for the checks.
            live = _state_of(inst)
            text, size = capped(live, s.cap, 'the initial state', 'state')[:2]
            s.frames = _frames_for(_DEPTH[0])  # the depth capped just counted
            s.initial_state, plain = _deeply_to(s.frames, _copied_plain, live)
            # For the checks outside the session (initial()): a copy of plain JSON is encoded again when asked (no code
            # runs; the same text); otherwise the text is kept as written, since encoding the copy would run the
            # environment's code again and may not give the same (a __getstate__ that leaves a field out).
            s.initial_text = None if plain else text
            # About how many objects the state is made of (the child weighs the room its end may take with it: a copy
            # of 40,000 small records is seven times their JSON, one of a long string about its length): counted in C.
            values = text.count(',') + text.count('{') + text.count('[') + 1
            text = None
            s.deep = False
            SESSIONS[sid] = s
            return _encode({'ok': size, 'values': values})  # UTF-8 bytes, as the caps count
        except TooLarge as e:
            failed = _err('STATE_TOO_LARGE', str(e))
        except TooDeep as e:
            failed = _err('STATE_INVALID', str(e))
            s.deep = True
        except NotJson as e:
            failed = _err('STATE_INVALID', 'the instance state is not JSON: %s' % e)
            s.deep = True  # what it holds may chain deeply
        except BaseException as e:
            failed = _fail(e, 'STATE_INVALID', 'the instance state cannot be copied: ' + _describe(e))
        inst = live = cfg = config = None  # the session's reference is then the only one _discard drops
        if s.deep is None:
            s.deep = False  # past the cap, not JSON, or a limit: dropped as before
        _discard(s)
        return failed
    finally:
        if before is not None:
            _take_added(s, before)
        _leave()

_NOT_HELD = (_types.ModuleType, _types.BuiltinFunctionType, _types.CodeType, _types.FrameType)
_C_SIZEOF = (type(object.__sizeof__), type(list.__sizeof__))  # a __sizeof__ written in C (method or slot wrapper)
_mro_of = type.__dict__['__mro__'].__get__

def _size_of(o, t):
    """sys.getsizeof(o) where the __sizeof__ it would call is C's (the built-in types, their subclasses: a defaultdict's
    table, a bytearray subclass's buffer), else object.__sizeof__: a __sizeof__ of the environment's is never called."""
    for c in _mro_of(t):
        f = _type_dict(c).get('__sizeof__')
        if f is not None:
            return _sys.getsizeof(o) if issubclass(type(f), _C_SIZEOF) else object.__sizeof__(o)
    return object.__sizeof__(o)

def _footprint(s, budget):
    """(bytes, whole) for session s: roughly the bytes its instance, its module's names and its kept states reach
    (sys.getsizeof, each object once), and whether the walk saw all of it (False: it stopped at budget objects, and the
    bytes are a lower bound). No code of the environment runs: gc.get_referents, the type's own dict for __sizeof__,
    identity tests on types (a metaclass's __hash__ or __eq__ is never called). Modules, and classes and functions from
    elsewhere, are shared, not counted."""
    own = s.module.__name__ if s.module is not None else None
    todo = [s.inst, s.module.__dict__ if s.module is not None else None, s.initial_state, s.final_state, s.episode]
    seen = set()
    total = 0
    while todo:
        if len(seen) >= budget:
            return total, False
        o = todo.pop()
        if o is None or id(o) in seen:
            continue
        seen.add(id(o))
        t = type(o)
        if issubclass(t, _NOT_HELD):
            continue
        if issubclass(t, type):
            if _class_module(o) != own:
                continue
            todo.append(_type_dict(o))
        elif t is _types.FunctionType and getattr(o, '__module__', None) != own:
            continue
        total += _size_of(o, t)
        todo.extend(_referents(o))
    return total, True

# Room for the walk at the full heap it is made for (its set of ids, its list of objects to see): taken when the
# interpreter starts (python-interpreter.mjs) or the first session opens, let go just before a walk, taken again after.
_WALK_ROOM = []

def _keep_walk_room():
    if not _WALK_ROOM:
        try:
            _WALK_ROOM.append(bytearray(12 << 20))
        except MemoryError:
            pass

@_crossing
def footprints(budget_text):
    """{"ok": {sid: [bytes, whole]}} for every session not yet dropped (see _footprint), or an error when the walk
    itself failed (no room even with the room kept for it)."""
    budget = int(budget_text)
    _WALK_ROOM.clear()
    try:
        return _encode({'ok': {sid: list(_footprint(s, budget)) for sid, s in SESSIONS.items() if s.inst is not None}})
    except BaseException as e:
        return _err('MEMORY_EXCEEDED' if isinstance(e, MemoryError) else 'ENV_DISPOSED', 'the sessions could not be measured: %s' % type(e).__name__)
    finally:
        _keep_walk_room()

@_crossing
def call(sid, tool, args_json, max_result_bytes=None):
    s = SESSIONS.get(sid)
    if s is None or s.inst is None:
        return _err('ENV_DISPOSED', 'the environment is gone')
    if tool not in s.tools:
        return _err('UNKNOWN_TOOL', 'unknown tool "%s"; the tools are: %s' % (tool, ', '.join(sorted(s.tools))))
    method = getattr(type(s.inst), tool, None)
    if method is None or not callable(method):
        return _err('UNKNOWN_TOOL', 'the class has no method "%s" (the tool is advertised but not implemented)' % tool)
    # In a function of its own: the result and the arguments (what the tool put into them) are freed as it returns,
    # in the session (a __del__ of theirs sees its clock and its random streams).
    return _in_session(s, _call, tool, args_json, max_result_bytes)

def _call(s, tool, args_json, max_result_bytes):
    args = _loads(args_json)
    s.clock += 1.0
    s.deep = None  # the tool may change the state
    try:
        result = getattr(s.inst, tool)(**args)
    except RecursionError as e:
        # The tool's own exception, as in CPython, where EnvScaler's rollouts show it as the call's error and go on
        # with the environment: the stack is unwound to here, so the session goes on too (a limit would end it).
        return _err('TOOL_THREW', _describe(e))
    except BaseException as e:
        return _fail(e, 'TOOL_THREW', _describe(e))
    try:
        return _ok(*capped(result, _cap(max_result_bytes), 'the result', 'result')[::2])
    except TooLarge as e:
        return _err('RESULT_TOO_LARGE', str(e))
    except TooDeep as e:
        failed = _err('NON_JSON_RESULT', str(e))
    except NotJson as e:
        return _err('NON_JSON_RESULT', 'the method returned something that is not JSON: %s' % e)
    except BaseException as e:
        return _fail(e, 'NON_JSON_RESULT', _describe(e))
    box = [result]  # a result built that deep: let go through _release
    result = args = None
    _release(box)
    return failed

# state(), finish() and drop() run the environment's code too (an isoformat, a __deepcopy__, a __del__ of what it
# held), so in its session, as a call does: outside it such code drew from the random stream of whichever session
# ran last, read the clock at its start, and could change that session's module state (a decimal context).

@_crossing
def state(sid, max_state_bytes=None):
    s = SESSIONS.get(sid)
    if s is None or s.inst is None:
        return _err('ENV_DISPOSED', 'the environment is gone')
    return _in_session(s, _state, max_state_bytes)

def _state(s, max_state_bytes):
    try:
        text, _, data = capped(_state_of(s.inst), _cap(max_state_bytes), 'the state', 'state')
        s.deep = False
        return _ok(text, data)
    except TooLarge as e:
        return _err('STATE_TOO_LARGE', str(e))
    except TooDeep as e:
        s.deep = True
        return _err('STATE_INVALID', str(e))
    except NotJson as e:
        s.deep = True  # what it holds may chain deeply
        return _err('STATE_INVALID', 'the instance state is not JSON: %s' % e)
    except BaseException as e:
        return _fail(e, 'STATE_INVALID', _describe(e))

@_crossing
def initial(sid):
    """The JSON of the initial state this session's checks see: the constructed instance's state as create wrote it
    (attributes its __init__ set, 0.0 kept a float), not the config it was given. For the checks that run outside
    the session (an episode's, a served session's reward preview, those of the other language). No code runs."""
    s = SESSIONS.get(sid)
    if s is None or s.inst is None:
        return _err('ENV_DISPOSED', 'the environment is gone')
    if s.initial_text is not None:
        return _ok(s.initial_text, None)  # a long text that is not ASCII crosses as UTF-8 all the same (_crossing)
    try:
        # Through capped, as create wrote it: a lone surrogate escaped, the depth counted before anything recurses.
        return _ok(*capped(s.initial_state, _sys.maxsize, 'the initial state', 'state')[::2])
    except BaseException as e:
        return _fail(e, 'STATE_INVALID', 'the initial state cannot be written again: ' + _describe(e))

@_crossing
def finish(sid, max_state_bytes=None):
    """The final state's JSON; the live state is kept (deep-copied) for the checks and the instance dropped.
    A state over the cap is neither encoded nor copied."""
    s = SESSIONS.get(sid)
    if s is None or s.inst is None:
        return _err('ENV_DISPOSED', 'the environment is gone')
    return _in_session(s, _finish, max_state_bytes)

def _finish(s, max_state_bytes):
    try:
        live = _state_of(s.inst)
        answer = _ok(*capped(live, _cap(max_state_bytes), 'the state', 'state')[::2])
        s.frames = max(s.frames, _frames_for(_DEPTH[0]))  # the depth capped just counted
        s.final_state = _deeply_to(s.frames, _copied, live)
        s.deep = False
    except TooLarge as e:
        answer = _err('STATE_TOO_LARGE', str(e))
    except TooDeep as e:
        s.deep = True
        answer = _err('STATE_INVALID', str(e))
    except NotJson as e:
        answer = _err('STATE_INVALID', 'the instance state is not JSON: %s' % e)
        s.deep = True  # what it holds may chain deeply
    except BaseException as e:
        answer = _fail(e, 'STATE_INVALID', _describe(e))
    finally:
        live = None
        if s.deep is None:
            s.deep = False  # past the cap, not JSON, or a limit: dropped as before
        _discard(s)
    return answer

@_crossing
def checks_context(sid, final_json, initial_json, episode_json='', packages=None):
    """A context for checks outside a session: both states parsed from JSON, and the episode (for episode checks) when given ('' when not)."""
    s = _new_session(sid, packages, 0, 1)
    try:
        s.final_state = _loads(final_json)
        s.initial_state = _loads(initial_json)
        if episode_json:
            s.episode = _loads(episode_json)
    except ValueError as e:
        return _err('STATE_INVALID', 'a state is not JSON: %s' % e)
    SESSIONS[sid] = s
    return '{"ok":true}'

@_crossing
def check(sid, source, with_episode=False):
    """Runs one check_func(final_state) with fresh globals {__builtins__, initial_state[, episode]}; only a bool passes."""
    s = SESSIONS.get(sid)
    if s is None or s.final_state is None:
        return _err('ENV_DISPOSED', 'the final state is gone')
    why, text = check_source(source, 'the check')
    if why:
        return _err('CHECK_INVALID', why)
    g = None
    try:
        _enter(s)
        _check_start(s)
        if with_episode and s.episode is None:
            return _err('CHECK_NEEDS_EPISODE', 'the check reads the episode (episode: true) but none was given: a served session has no transcript')
        # The check runs as module envfleet_check: a class it defines is of that module (without a __name__, of
        # 'builtins': a dataclass's generated methods were then compiled with builtins' own dict as their globals,
        # which put __builtins__ in it, and the tamper check replaced the interpreter, ending its co-tenants' sessions).
        m = _types.ModuleType('envfleet_check')
        g = m.__dict__
        g['__builtins__'] = _builtins
        try:
            # The environment's own copy hooks (a __getstate__ that drops a key) may fail on a copy of a copy.
            g['initial_state'] = _deeply_to(s.frames, _copied, s.initial_state)
            if with_episode:
                g['episode'] = _deeply(_copied, s.episode)
        except BaseException as e:
            return _fail(e, 'CHECK_THREW', 'the states could not be copied for the check: ' + _describe(e))
        _MODULES['envfleet_check'] = m  # while the check's code runs (its check_func too); out again below
        try:
            exec(compile(text, '<check>', 'exec'), g)
        except BaseException as e:
            return _fail(e, 'CHECK_INVALID', 'the check failed while loading: ' + _describe(e))
        fn = g.get('check_func')
        if not callable(fn):
            return _err('CHECK_INVALID', 'the check defines no function check_func(final_state)')
        try:
            result = fn(_deeply_to(s.frames, _copied, s.final_state))
        except BaseException as e:
            return _fail(e, 'CHECK_THREW', _describe(e))
        if type(result) is not bool:
            return _err('CHECK_NOT_BOOLEAN', 'check_func returned a %s, not a bool' % type(result).__name__)
        return '{"ok":true}' if result else '{"ok":false}'
    finally:
        _MODULES.pop('envfleet_check', None)
        if g is not None:
            # check_func and its globals are a cycle: emptied here, what the check held (its copies of the states) is
            # freed now, in the session, not by the cycle collector later in another's.
            g.clear()
        _leave()

def drop(sid, collect=False):
    """Forgets a session; answers what was tampered with in the interpreter ([]: nothing; else the child replaces it at once).
    collect: the cycle collector runs too (python-interpreter.mjs decides when); the answer says whether it ran to its end."""
    _COLLECTED[0] = False
    try:
        _drop(SESSIONS.pop(sid, None), collect)
        _sweep()  # anchors that garbage of the cycle collector held until now
    except (KeyboardInterrupt, MemoryError, RecursionError):
        # A limit (the deadline's interrupt) while the session's own code ran (a __del__) or its state went in: the
        # session is forgotten all the same, and the report below is still made (a change it made is not missed).
        pass
    return '{"ok":' + tamper_report() + (',"collected":true}' if _COLLECTED[0] else '}')

_COLLECTED = [False]  # whether the drop's or collect's collection ran to its end (not cut short by a limit)

def _collect(s):
    _gc.collect()
    _COLLECTED[0] = True

def collect():
    """Runs the cycle collector between sessions, for a creation waiting for room that what dropped sessions left in
    cycles may make fit (python-child.mjs asks). In a session of its own, then let go as a drop lets go: a __del__ of
    that garbage sees a fresh clock, random streams and module state, and changes no live session's. Answers what was
    tampered with, as drop does."""
    s = _new_session('<collect>', None, 0, 1)
    _COLLECTED[0] = False
    try:
        _in_session(s, _collect)
        _sweep()
    except (KeyboardInterrupt, MemoryError, RecursionError):
        pass  # as in drop: the report below is still made
    finally:
        s.dropped = True
        if _RNG_OWNER[0] is s:
            _RNG_OWNER[0] = None
            _load_module_state(_fresh_module_state(at_load=True))
    return '{"ok":' + tamper_report() + (',"collected":true}' if _COLLECTED[0] else '}')

def _free(s):
    _discard(s)
    s.initial_state = s.initial_text = s.final_state = s.episode = None

def _drop(s, collect=False):
    if s is None:
        return
    try:
        if s.inst is not None or (s.module is not None and (s.initial_state is not None or s.final_state is not None)):
            # What the session's environment made is freed in the session (a __del__ of it may run): its instance
            # when it was closed without finish(), the copies of its states kept for the checks.
            _in_session(s, _free)
    finally:
        s.dropped = True
        s.pkgmods, s.pkgnames, s.module, s.check_base = {}, set(), None, None
        # What the session made is garbage now, but much of it sits in cycles (its module's functions hold their
        # globals, a class is in its own __mro__): CPython's collector runs when containers are allocated, not bytes,
        # so a class-level memo of strings outlived its session, and the heap filled over sessions until a co-tenant
        # met MEMORY_EXCEEDED. typing's caches (lru_cache, 128 entries each) keyed by a session's classes held their
        # module globals too. Both are let go here; the collection, when asked for, runs in the session (a __del__
        # sees its own clock and streams).
        try:
            for clear in _TYPING_CLEARS:
                clear()
            if collect:
                _in_session(s, _collect)
        except Exception:
            pass  # a __del__ that raises is reported by the collector, not raised; anything else: best effort
        finally:
            # Also after a limit (the drop's deadline) met in the collection: the session is let go as owner.
            if _RNG_OWNER[0] is s:
                _RNG_OWNER[0] = None
                # Its module state stays installed until another session enters: code that runs before (a __del__ of
                # another session's object, freed in its finish) sees the values at load instead.
                _load_module_state(_fresh_module_state(at_load=True))

def tamper_report():
    """'[]' when the interpreter looks intact, else a JSON list of what changed."""
    changed = []
    if not (_sys.meta_path[:2] == [_BLOCKER, _PACKAGES] and type(_BLOCKER) is _Blocker and type(_PACKAGES) is _PackageFinder and _uuid.uuid4 is _UUID4 and _time.time is _TIME and _time.sleep is _sleep and _random.Random.seed is _seed
            and _dt.datetime is _FixedDatetime):
        changed.append('the harness hooks (import blocker, package finder, clock, uuid4, random seeding) were changed')
    if any(n.partition('.')[0] in PACKAGE_NAMES for n in _sys.modules):
        changed.append('a module of a supplied package was left in sys.modules outside its session')
    if _sys.modules is not _MODULES or _sys.meta_path is not _SYS_LISTS[0] or _sys.path is not _SYS_LISTS[1] or _sys.path_hooks is not _SYS_LISTS[2]:
        changed.append('sys.modules, sys.meta_path, sys.path or sys.path_hooks was rebound')
    if _sys.meta_path != _META_PATH or _sys.path != _PATH or _sys.path_hooks != _PATH_HOOKS:
        # A finder added after the package finder, a folder put first on sys.path or a path hook would answer the
        # standard modules a package imports that no one had imported yet (mpmath: cmath), in every later session.
        changed.append('sys.meta_path, sys.path or sys.path_hooks was changed')
    if any(_foreign(n) for n in _sys.modules):
        # Only an assignment puts one there (the package finder refuses such imports in a session): a package's
        # later import would take it (mpmath's optional gmpy2).
        changed.append('a module that is neither standard nor supplied was put in sys.modules')
    if any(n.split('.')[0] in BLOCKED_MODULES for n in _sys.modules):
        changed.append('a blocked module was imported')
    try:
        changed.extend(_copy_tables_changed()[:10])
    except Exception:  # a key of a session's own whose hash or comparison raises: something was put there
        changed.append("copy's dispatch tables hold a key that cannot be compared")
    return _encode(changed + _loads(integrity()))

# --- the route back to the host: removed ---------------------------------------------------------

_BLOCKER = _Blocker()
_PACKAGES = _PackageFinder()
_UUID4 = _uuid.uuid4
_TIME = _time.time
_sys.meta_path.insert(0, _PACKAGES)
_sys.meta_path.insert(0, _BLOCKER)
for _name in PACKAGE_NAMES:
    # Checked when the configuration loads; checked again here, against this interpreter's own modules.
    if _name in _sys.stdlib_module_names or _name in ALLOWED_IMPORTS or _name in BLOCKED_MODULES or _name in _sys.modules or _name.startswith('envfleet'):
        raise RuntimeError('the supplied package name %r shadows a module of the sandbox; rename it' % _name)
for _name in list(_sys.modules):
    if _name.split('.')[0] in BLOCKED_MODULES:
        del _sys.modules[_name]
_os.environ.clear()

# --- tamper detection: a shallow identity snapshot of the shared modules ----------------------------
# Every allowed module (imported now, with their submodules), os, builtins and this harness's own
# globals: each name's value by identity, and the set of names. integrity() compares; any rebinding,
# added or removed name retires the interpreter (python-child.mjs). Not caught: changes inside a value
# (a class attribute of a stdlib class, an entry of a module-level dict or list).
for _n in ALLOWED_IMPORTS:
    __import__(_n)
# And every submodule of an allowed package (html.parser, json.tool, logging.handlers, collections.abc): one loaded
# later by a session would not be watched, and a session could put a module of its own in its place (through
# sys.modules, reachable from an allowed module's sys) for every later session's import. A submodule whose own imports
# are blocked (logging.handlers needs socket) fails here as it would in a session; __main__ modules are not run.
import pkgutil as _pkgutil
for _n in ALLOWED_IMPORTS:
    _m = _sys.modules[_n]
    _subs = [i.name for i in _pkgutil.iter_modules(getattr(_m, '__path__', []), _n + '.')]  # [] searches nothing
    for _sub in _subs + (['collections.abc'] if _n == 'collections' else []):
        if not _sub.endswith('.__main__'):
            try:
                __import__(_sub)
            except Exception:
                pass
import base64 as _base64
_base64.a85encode(b''); _base64.b85encode(b''); _base64.b85decode(b'')  # fill their lazy module-level tables now
# Module globals the standard library binds on first use, bound now (before the snapshot below), so that ordinary code
# using them is not taken for tampering: Counter.most_common(n) (and statistics.mode) imports heapq into collections,
# seeding with a str or bytes binds random._sha512, typing makes Pattern, Match, ... on first access, ast.unparse and
# ast.get_source_segment bind _Unparser and _line_pattern.
import collections as _c0, typing as _t0, ast as _a0, statistics as _s0
_c0.Counter('ab').most_common(1); _s0.mode([1]); _random.Random('envfleet'); _random.Random(b'envfleet')
for _name in list(getattr(_t0, '__all__', ())):
    getattr(_t0, _name, None)
_a0.unparse(_a0.parse('x')); _a0.get_source_segment('x', _a0.parse('x').body[0])
# typing's cache-clearing functions, as they are at load: a session that appends its own function to the list does
# not have it run at every later session's end.
_TYPING_CLEARS = tuple(_t0._cleanups)
del _c0, _t0, _a0, _s0
_IGNORED_KEYS = frozenset(['__warningregistry__'])
_SWAPPED = {'uuid': frozenset(_UUID_VARS)}  # swapped per session by _enter
for _m, _names in _SESSION_NAMES:
    _SWAPPED[_m.__name__] = frozenset(_names)
_SWAPPED['logging'] = _SWAPPED['logging'] | frozenset(_LOG_GLOBALS)

# The import machinery: CPython calls _frozen_importlib._find_and_load (looked up by name) for every module not yet in
# sys.modules, i.e. for every package module each session imports afresh; a function rebound there would run in every
# later session's import.
_IMPORT_MACHINERY = ('_frozen_importlib', '_frozen_importlib_external', 'importlib', 'importlib._bootstrap',
    'importlib._bootstrap_external', 'importlib.machinery', 'importlib.util', 'importlib._abc')

def _watched():
    out = {n: m for n, m in list(_sys.modules.items()) if isinstance(m, _types.ModuleType) and (n.split('.')[0] in ALLOWED_IMPORTS or n in _IMPORT_MACHINERY)}
    out['builtins'] = _builtins
    out['os'] = _os
    return out

_BASELINE = {n: (m, dict(m.__dict__)) for n, m in _watched().items()}
_HARNESS = globals()

# The tables copy.deepcopy dispatches on (the harness copies every state through it, but for plain dicts and lists):
# entries of module-level dicts, which the identity snapshot above does not see. A session that put its own copier
# there for a standard type (a tuple, a date) would change the states and the checks of every later session, so each
# entry there at load (after preload_packages) is held to its value, and an entry added for a type that is not a
# session's own (by its __module__: an environment's or a supplied package's class, which can reach no other session)
# counts as a change. Narrow: it does not see an entry's function changed in place (its __defaults__), a hash-colliding
# key of a session's own class, a standard class relabelled through its __module__, copy._atomic_types grown, or
# copyreg's module functions replaced (docs/sandbox.md, "What the tamper check does not catch").
import copyreg as _copyreg
_COPY_TABLES = (('copy._deepcopy_dispatch', _copy._deepcopy_dispatch), ('copyreg.dispatch_table', _copyreg.dispatch_table))

def _copy_tables_base():
    return [(name, table, dict(table)) for name, table in _COPY_TABLES]

_COPY_BASE = _copy_tables_base()

def _standard_type(k):
    try:
        m = type.__getattribute__(k, '__module__')
    except Exception:
        return True
    return not (type(m) is str and (m.startswith('envfleet_env_') or m.partition('.')[0] in PACKAGE_NAMES))

def _type_name(k):
    try:
        n = type.__getattribute__(k, '__name__')
        return n if type(n) is str else '?'
    except Exception:
        return '?'

def _copy_tables_changed():
    out = []
    for name, table, base in _COPY_BASE:
        for k, v in base.items():
            if dict.get(table, k, _NIL) is not v:
                out.append('%s[%s] changed' % (name, _type_name(k)))
        if dict.__len__(table) != len(base) or out:
            out.extend('%s[%s] added' % (name, _type_name(k)) for k in list(dict.keys(table)) if k not in base and _standard_type(k))
    return out

def _str_key(k):
    """A str, or an instance of a str subclass that keeps str's own equality and hash (a StrEnum member given to
    setattr): one that looks itself up as the str it holds."""
    t = type(k)
    return t is str or (isinstance(k, str) and t.__hash__ is str.__hash__ and t.__eq__ is str.__eq__)

def _diff(name, cur, base, skip):
    out = []
    for k, v in base.items():
        if k in skip or k in _IGNORED_KEYS:
            continue
        if k not in cur:
            out.append('%s.%s removed' % (name, k))
        elif cur[k] is not v:
            out.append('%s.%s rebound' % (name, k))
    if len(out) < 10:
        for k in cur:
            # Before any lookup: a key of the session's own type decides what it equals and hashes to (one that equals
            # 'isinstance' passed as a name at load, while module lookups found it in its place).
            if not _str_key(k):
                out.append('%s: a key that is not a str was added' % name)
                continue
            if k in base or k in skip or k in _IGNORED_KEYS:
                continue
            v = cur[k]
            # A submodule imported later is bound on its parent: not a change.
            if isinstance(v, _types.ModuleType) and _sys.modules.get(name + '.' + k) is v:
                continue
            out.append('%s.%s added' % (name, k))
    return out

def integrity():
    """'[]' when every watched module, builtins and the harness are as at load; else what changed."""
    changed = []
    for name, (m, base) in _BASELINE.items():
        if name != 'builtins' and _sys.modules.get(name) is not m:
            changed.append('sys.modules[%r] replaced' % name)
        changed.extend(_diff(name, m.__dict__, base, _SWAPPED.get(name, ())))
    changed.extend(_diff('<harness>', _HARNESS, _HARNESS_BASE, frozenset(['_HARNESS_BASE'])))
    for c, label, base, names in _HOOK_BASE:
        d = c.__dict__
        changed.extend(_diff(label, d, base, frozenset(k for k in _CLASS_CACHES if k in d and _empty_cache(d[k]))))
        if (c.__name__, c.__qualname__, c.__bases__) != names:
            changed.append('%s: its name or bases were changed' % label)
    return _encode(changed[:20])

# Names an environment's code adds to a shared module while it loads (logging.TRACE = 5 after addLevelName, the
# custom-level recipe; shims such as collections.Mapping = collections.abc.Mapping or time.clock = time.perf_counter)
# belong to its session: taken out of the modules when its create ends and each time it is left, put back each time it
# is entered (its calls, state reads, checks and finish see them, as in CPython), so no other session sees them and
# they are not tampering. A name added later (in a tool or a check), rebound or removed is still taken for tampering.
def _added_names():
    """{module name: the names it holds beyond those of load time}, for the watched modules whose size is not their
    size at load (the swapped names, the ignored keys and submodules bound on their parent left out)."""
    out = {}
    for name, (m, base) in _BASELINE.items():
        d = m.__dict__
        if dict.__len__(d) == len(base):
            continue
        skip = _SWAPPED.get(name, ())
        keys = frozenset(k for k in list(d) if _str_key(k) and k not in base and k not in skip and k not in _IGNORED_KEYS
                         and not (isinstance(d[k], _types.ModuleType) and _sys.modules.get('%s.%s' % (name, k)) is d[k]))
        if keys:
            out[name] = keys
    return out

def _take_added(s, before):
    """Makes the names s's create added to shared modules (those not there before it: _added_names then) s's own;
    _leave takes them out."""
    for name, keys in _added_names().items():
        new = keys - before.get(name, frozenset())
        if new:
            d = _BASELINE[name][0].__dict__
            s.added.append((d, {k: d[k] for k in new}))

def _put_away(s):
    """Takes s's added names out of their modules again, keeping their values now (a name it deleted is forgotten)."""
    for d, names in s.added:
        for k in list(names):
            v = d.pop(k, _ABSENT)
            if v is _ABSENT:
                del names[k]
            else:
                names[k] = v

# Top-level names of the modules loaded now (Pyodide's own included): with the standard ones and the packages,
# the only names a session may import (_PackageFinder) or find in sys.modules (tamper_report).
_STDLIB_NAMES = frozenset(_sys.stdlib_module_names) | frozenset(_sys.builtin_module_names)
_AT_START = frozenset(n.partition('.')[0] for n in _sys.modules)
_META_PATH, _PATH, _PATH_HOOKS = list(_sys.meta_path), list(_sys.path), list(_sys.path_hooks)
_SYS_LISTS = (_sys.meta_path, _sys.path, _sys.path_hooks)

def _foreign(n):
    top = n.partition('.')[0]
    return top not in _STDLIB_NAMES and top not in _AT_START and top not in PACKAGE_NAMES

def preload_packages(table):
    """At start, before any session: imports every module of the supplied packages once, in a throw-away
    session, so the standard modules they import are loaded now and watched from here on like the allowed
    ones. Otherwise the first session to import a package would load such a module (mpmath's cmath) for the
    whole interpreter, unwatched, and could change it for every later session's import of the package.
    The package modules themselves are dropped again (each session imports its own)."""
    before = set(_sys.modules)
    s = _new_session('<preload>', table, 0, 1)
    try:
        _enter(s)
        for name in sorted(s.packages):
            try:
                __import__(name)
            except Exception:
                pass  # a module that does not import here (an optional dependency missing) fails the same way in sessions
    finally:
        recover()  # no session current, no package module left in sys.modules
        s.dropped = True
        if _RNG_OWNER[0] is s:
            _RNG_OWNER[0] = None
    for n in sorted(set(_sys.modules) - before):
        m = _sys.modules[n]
        if isinstance(m, _types.ModuleType) and n.partition('.')[0] in _STDLIB_NAMES:
            _BASELINE[n] = (m, dict(m.__dict__))
    # What the standard modules loaded for the packages put in copy's tables, or on the date classes, is part of the
    # interpreter from here on.
    _COPY_BASE[:] = _copy_tables_base()
    _HOOK_BASE[:] = _hook_base()
    return '{"ok":true}'

# The import hooks' classes: a method replaced on one of them (the package loader's exec_module, say) would run
# in every later session that imports. The fixed clock's date classes (datetime.date and datetime.datetime for every
# session): an attribute set on one (date.today replaced, a constant added) would hold for every later session.
# Not compared: the caches CPython itself writes into a class written in Python on first use (typing.get_type_hints
# and a dataclass deriving from date: the annotations; date.__getstate__: the slot names), which ordinary code fills.
# Skipped only while they hold what CPython puts there for these classes (None, {} or []): a function set as
# date.__annotate__, or slot names set on datetime, would run in or change every later session.
_CLASS_CACHES = frozenset(['__annotate_func__', '__annotations_cache__', '__annotations__', '__slotnames__'])
def _empty_cache(v):
    return v is None or (type(v) in (dict, list) and not v)
def _hook_base():
    return [(c, label, dict(c.__dict__), (c.__name__, c.__qualname__, c.__bases__)) for c, label in (
        (_Blocker, '<harness>._Blocker'), (_PackageFinder, '<harness>._PackageFinder'), (_PackageLoader, '<harness>._PackageLoader'),
        (_FixedDate, 'datetime.date'), (_FixedDatetime, 'datetime.datetime'))]
_HOOK_BASE = _hook_base()
_HARNESS_BASE = dict(globals())
# Everything the harness and the standard library made at load lives as long as the interpreter: left out of every
# collection (a session's open, call and close with a full collection at its end took ~24 ms, ~4 ms with this, as
# without a collection). Garbage of the load is collected first, not frozen. (The standard modules that supplied
# packages import when they are preloaded, after this, are not frozen.)
_gc.collect()
_gc.freeze()
`.replace('__ALLOWED__', JSON.stringify(ALLOWED_IMPORTS)).replace('__BLOCKED__', JSON.stringify(BLOCKED_MODULES))
  .replace('__MAX_DEPTH__', String(MAX_JSON_DEPTH)).replace('__DEPTH_ADVICE__', () => JSON.stringify(DEPTH_ADVICE))
  .replace('__STATE_CAP_ADVICE__', () => JSON.stringify(STATE_CAP_ADVICE)).replace('__INITIAL_STATE_CAP_ADVICE__', () => JSON.stringify(INITIAL_STATE_CAP_ADVICE)).replace('__RESULT_CAP_ADVICE__', () => JSON.stringify(RESULT_CAP_ADVICE));

const UTF8 = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * The text of a harness entry point's answer, as the interpreter thread receives it: a string as is; the UTF-8 bytes
 * of a long answer that is not ASCII (a PyProxy of a Python bytes, see "answers" in the Python source above) decoded
 * through a view of the heap, then released. Anything else is turned into a string.
 * @param {unknown} out @returns {string}
 */
export function answerText(out) {
  if (typeof out === 'string') return out;
  const proxy = /** @type {{ getBuffer?: (type: string) => { data: Uint8Array, release(): void }, destroy?: () => void } | null | undefined} */ (out);
  try {
    if (proxy && typeof proxy.getBuffer === 'function') {
      const view = proxy.getBuffer('u8');
      try {
        return UTF8.decode(view.data);
      } finally {
        view.release();
      }
    }
    return String(out);
  } finally {
    if (proxy && typeof proxy.destroy === 'function') proxy.destroy();
  }
}

/**
 * The first `max` UTF-16 units of `text`, one fewer where the cut would split a surrogate pair (as src/util/text.ts cutText).
 * @param {string} text @param {number} max @returns {string}
 */
export function cutChars(text, max) {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

/**
 * "Name: message" of a value thrown out of Pyodide, guarded: once Pyodide has failed, even reading an error can throw.
 * Emscripten also throws objects that are not Errors (ExitStatus: `{ name, message, status }`): their own name and
 * message, not "[object Object]"; any other object as its tag and (cut) JSON.
 * @param {unknown} thrown @returns {string}
 */
export function describeThrown(thrown) {
  try {
    if (thrown instanceof Error) return `${thrown.name}: ${thrown.message}`;
    if (typeof thrown === 'object' && thrown !== null) {
      const { name, message } = /** @type {{ name?: unknown, message?: unknown }} */ (thrown);
      if (typeof message === 'string') return `${typeof name === 'string' ? name : 'Error'}: ${message}`;
      let json = '';
      try {
        json = JSON.stringify(thrown)?.slice(0, 300) ?? '';
      } catch {
        // Cyclic, or a getter that throws: the tag alone.
      }
      // Emscripten's filesystem throws { name: 'ErrnoError', errno } without a message: its name and fields.
      return `${typeof name === 'string' ? name : Object.prototype.toString.call(thrown)} ${json}`.trim();
    }
    return String(thrown);
  } catch {
    return 'unknown error'; // an exotic throw value
  }
}
