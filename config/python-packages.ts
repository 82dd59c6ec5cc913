import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, delimiter, dirname, extname, join, relative, resolve, sep } from 'node:path';

/**
 * ENVFLEET_PYTHON_PACKAGES: pure-Python packages (or single `.py` modules) the operator supplies to the
 * Python sandbox, so that environments and checks may import them (docs/sandbox.md, "User-supplied
 * packages"). Validated when the configuration loads; the Python runner reads the files with
 * `readPythonPackages` (in the parent process) and hands their text to its interpreters.
 */

/** One configured package: its top-level import name and where it is. */
export interface PythonPackageSpec {
  /** The top-level name environments import (`mpmath`). */
  readonly name: string;
  /** Absolute path of the package folder (holding `__init__.py`) or of the `.py` module. */
  readonly path: string;
  readonly kind: 'package' | 'module';
}

/** One module of a package, read: what the interpreters compile and import. */
export interface PythonPackageFile {
  /** Dotted module name: `mpmath`, `mpmath.libmp.backend`. */
  readonly module: string;
  /** Path relative to the folder that holds the package: `mpmath/libmp/backend.py`. */
  readonly file: string;
  /** An `__init__.py`: the module is a package (submodules may be imported from it). */
  readonly isPackage: boolean;
  readonly source: string;
}

/** Why a package cannot be used: the path, and what to do about it. Thrown as ConfigError by loadConfig. */
export class PythonPackageError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Compiled extension modules: Pyodide cannot load a host's native code (and the sandbox would not let it). */
const EXTENSION = /\.(so|pyd|dll|dylib)$|\.so\.[0-9.]+$/i;
/** Caps on what one setting carries to every interpreter (the sources are held in memory, compiled in each). */
export const PYTHON_PACKAGES_MAX_FILES = 5_000;
export const PYTHON_PACKAGES_MAX_BYTES = 64 * 1024 * 1024;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const KEYWORDS = new Set([
  'False', 'None', 'True', 'and', 'as', 'assert', 'async', 'await', 'break', 'class', 'continue', 'def', 'del', 'elif', 'else', 'except',
  'finally', 'for', 'from', 'global', 'if', 'import', 'in', 'is', 'lambda', 'nonlocal', 'not', 'or', 'pass', 'raise', 'return', 'try',
  'while', 'with', 'yield',
]);

/**
 * `sys.stdlib_module_names` of the sandbox's Python (Pyodide 314.0.8: CPython 3.14.2). A package may not
 * take one of these names: it would shadow the standard module for every environment on the runner.
 */
export const PYTHON_STDLIB_NAMES: ReadonlySet<string> = new Set([
  '__future__', '_abc', '_aix_support', '_android_support', '_apple_support', '_ast', '_ast_unparse', '_asyncio', '_bisect',
  '_blake2', '_bz2', '_codecs', '_codecs_cn', '_codecs_hk', '_codecs_iso2022', '_codecs_jp', '_codecs_kr', '_codecs_tw',
  '_collections', '_collections_abc', '_colorize', '_compat_pickle', '_contextvars', '_csv', '_ctypes', '_curses',
  '_curses_panel', '_datetime', '_dbm', '_decimal', '_elementtree', '_frozen_importlib', '_frozen_importlib_external',
  '_functools', '_gdbm', '_hashlib', '_heapq', '_hmac', '_imp', '_interpchannels', '_interpqueues', '_interpreters', '_io',
  '_ios_support', '_json', '_locale', '_lsprof', '_lzma', '_markupbase', '_md5', '_multibytecodec', '_multiprocessing',
  '_opcode', '_opcode_metadata', '_operator', '_osx_support', '_overlapped', '_pickle', '_posixshmem', '_posixsubprocess',
  '_py_abc', '_py_warnings', '_pydatetime', '_pydecimal', '_pyio', '_pylong', '_pyrepl', '_queue', '_random',
  '_remote_debugging', '_scproxy', '_sha1', '_sha2', '_sha3', '_signal', '_sitebuiltins', '_socket', '_sqlite3', '_sre', '_ssl',
  '_stat', '_statistics', '_string', '_strptime', '_struct', '_suggestions', '_symtable', '_sysconfig', '_thread',
  '_threading_local', '_tkinter', '_tokenize', '_tracemalloc', '_types', '_typing', '_uuid', '_warnings', '_weakref',
  '_weakrefset', '_winapi', '_wmi', '_zoneinfo', '_zstd', 'abc', 'annotationlib', 'antigravity', 'argparse', 'array', 'ast',
  'asyncio', 'atexit', 'base64', 'bdb', 'binascii', 'bisect', 'builtins', 'bz2', 'cProfile', 'calendar', 'cmath', 'cmd', 'code',
  'codecs', 'codeop', 'collections', 'colorsys', 'compileall', 'compression', 'concurrent', 'configparser', 'contextlib',
  'contextvars', 'copy', 'copyreg', 'csv', 'ctypes', 'curses', 'dataclasses', 'datetime', 'dbm', 'decimal', 'difflib', 'dis',
  'doctest', 'email', 'encodings', 'ensurepip', 'enum', 'errno', 'faulthandler', 'fcntl', 'filecmp', 'fileinput', 'fnmatch',
  'fractions', 'ftplib', 'functools', 'gc', 'genericpath', 'getopt', 'getpass', 'gettext', 'glob', 'graphlib', 'grp', 'gzip',
  'hashlib', 'heapq', 'hmac', 'html', 'http', 'idlelib', 'imaplib', 'importlib', 'inspect', 'io', 'ipaddress', 'itertools',
  'json', 'keyword', 'linecache', 'locale', 'logging', 'lzma', 'mailbox', 'marshal', 'math', 'mimetypes', 'mmap', 'modulefinder',
  'msvcrt', 'multiprocessing', 'netrc', 'nt', 'ntpath', 'nturl2path', 'numbers', 'opcode', 'operator', 'optparse', 'os',
  'pathlib', 'pdb', 'pickle', 'pickletools', 'pkgutil', 'platform', 'plistlib', 'poplib', 'posix', 'posixpath', 'pprint',
  'profile', 'pstats', 'pty', 'pwd', 'py_compile', 'pyclbr', 'pydoc', 'pydoc_data', 'pyexpat', 'queue', 'quopri', 'random', 're',
  'readline', 'reprlib', 'resource', 'rlcompleter', 'runpy', 'sched', 'secrets', 'select', 'selectors', 'shelve', 'shlex',
  'shutil', 'signal', 'site', 'smtplib', 'socket', 'socketserver', 'sqlite3', 'sre_compile', 'sre_constants', 'sre_parse', 'ssl',
  'stat', 'statistics', 'string', 'stringprep', 'struct', 'subprocess', 'symtable', 'sys', 'sysconfig', 'syslog', 'tabnanny',
  'tarfile', 'tempfile', 'termios', 'textwrap', 'this', 'threading', 'time', 'timeit', 'tkinter', 'token', 'tokenize', 'tomllib',
  'trace', 'traceback', 'tracemalloc', 'tty', 'turtle', 'turtledemo', 'types', 'typing', 'unicodedata', 'unittest', 'urllib',
  'uuid', 'venv', 'warnings', 'wave', 'weakref', 'webbrowser', 'winreg', 'winsound', 'wsgiref', 'xml', 'xmlrpc', 'zipapp',
  'zipfile', 'zipimport', 'zlib', 'zoneinfo',
]);

/**
 * Names of the sandbox itself: Pyodide's own modules, the JavaScript bridges the harness blocks, the
 * package manager, and the harness's module names (`envfleet_env_<session>`; every name starting with
 * `envfleet` is kept for it).
 */
export const PYTHON_SANDBOX_NAMES: ReadonlySet<string> = new Set(['js', 'pyodide', 'pyodide_js', '_pyodide', '_pyodide_core', 'micropip', 'pyodide_http', '__main__', '__hello__', '__phello__']);

/** Why `name` may not be a package's top-level name, or null. */
export function reservedPythonName(name: string): string | null {
  if (!IDENTIFIER.test(name)) return `"${name}" is not an import name (ASCII letters, digits and _, not starting with a digit)`;
  if (KEYWORDS.has(name)) return `"${name}" is a Python keyword`;
  if (PYTHON_STDLIB_NAMES.has(name)) return `"${name}" would shadow the standard library module of that name`;
  if (PYTHON_SANDBOX_NAMES.has(name) || name.toLowerCase().startsWith('envfleet')) return `"${name}" is a name of the sandbox itself (Pyodide, its JavaScript bridges or envfleet's harness)`;
  return null;
}

const WHAT = 'Each entry must be the folder of a pure-Python package (holding __init__.py) or a single .py module';

/**
 * The entries of ENVFLEET_PYTHON_PACKAGES (paths separated by the OS path delimiter, `:` on POSIX, as in
 * PYTHONPATH), each checked: it exists, it is a package folder or a `.py` file, its name is an import name
 * that shadows nothing, no two share a name, and no compiled extension module is inside. Relative paths
 * are resolved against `cwd`.
 */
export function parsePythonPackages(value: string, cwd: string = process.cwd()): PythonPackageSpec[] {
  const entries = value.split(delimiter).map(s => s.trim()).filter(s => s !== '');
  const out: PythonPackageSpec[] = [];
  const seen = new Map<string, string>();
  for (const entry of entries) {
    const path = resolve(cwd, entry);
    const at = `ENVFLEET_PYTHON_PACKAGES: ${path}${path !== entry ? ` (from "${entry}")` : ''}`;
    let st;
    try {
      st = statSync(path);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read (${(err as Error).message})`;
      throw new PythonPackageError(`${at} ${why}. ${WHAT}; fix the path or remove the entry.`);
    }
    let spec: PythonPackageSpec;
    if (st.isDirectory()) {
      if (!isFile(join(path, '__init__.py'))) {
        throw new PythonPackageError(`${at} is a folder without __init__.py, so it is not a package (namespace packages are not supported). ${WHAT}: point at the package folder itself (the one holding __init__.py), not at the folder that contains it.`);
      }
      spec = { name: basename(path), path, kind: 'package' };
    } else if (st.isFile()) {
      if (EXTENSION.test(path)) throw new PythonPackageError(`${at} is a compiled extension module: Pyodide cannot load native code, and the sandbox takes pure Python only. Remove the entry, or supply a pure-Python version of the module.`);
      if (extname(path) !== '.py') throw new PythonPackageError(`${at} is not a .py file. ${WHAT}.`);
      spec = { name: basename(path, '.py'), path, kind: 'module' };
    } else {
      throw new PythonPackageError(`${at} is neither a file nor a folder. ${WHAT}.`);
    }
    const reserved = reservedPythonName(spec.name);
    if (reserved) throw new PythonPackageError(`${at}: ${reserved}; environments could not import it as a package of its own. Rename the ${spec.kind === 'package' ? 'folder' : 'file'} (and its imports), or remove the entry.`);
    const first = seen.get(spec.name);
    if (first) throw new PythonPackageError(`${at}: the name "${spec.name}" is also the name of ${first}; two packages cannot share a top-level name. Keep one of them.`);
    seen.set(spec.name, path);
    // The walk refuses extension modules inside and checks the caps now, at start-up.
    packageFiles(spec);
    out.push(spec);
  }
  return out;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * The importable modules of a package: every `.py` file of the folder and of its subfolders that hold
 * `__init__.py` (subpackages), named by their dotted path. `__pycache__` folders and `.pyc` files are
 * ignored (the sandbox compiles the sources itself); other files (data) are not carried; a compiled
 * extension module anywhere inside is refused. Symbolic links are followed, each real folder once.
 */
function packageFiles(spec: PythonPackageSpec): { module: string; abs: string; file: string; isPackage: boolean }[] {
  const at = `ENVFLEET_PYTHON_PACKAGES: ${spec.path}`;
  if (spec.kind === 'module') return [{ module: spec.name, abs: spec.path, file: basename(spec.path), isPackage: false }];
  const base = dirname(spec.path);
  const out: { module: string; abs: string; file: string; isPackage: boolean }[] = [];
  const seenDirs = new Set<string>();
  let bytes = 0;
  const walk = (dir: string, dotted: string, importable: boolean, depth: number) => {
    const real = realpathSync(dir);
    if (seenDirs.has(real) || depth > 32) return;
    seenDirs.add(real);
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      let st;
      try {
        st = statSync(abs);
      } catch {
        continue; // a dangling link
      }
      if (st.isDirectory()) {
        if (name === '__pycache__') continue;
        const sub = importable && IDENTIFIER.test(name) && isFile(join(abs, '__init__.py'));
        walk(abs, `${dotted}.${name}`, sub, depth + 1);
        continue;
      }
      if (!st.isFile()) continue;
      if (EXTENSION.test(name)) {
        throw new PythonPackageError(`${at}: ${relative(base, abs).split(sep).join('/')} is a compiled extension module; Pyodide cannot load native code and the sandbox takes pure-Python packages only. Supply a pure-Python build of the package, or remove the entry.`);
      }
      if (!importable || !name.endsWith('.py')) continue;
      const stem = name.slice(0, -3);
      if (!IDENTIFIER.test(stem)) continue;
      bytes += st.size;
      out.push({ module: stem === '__init__' ? dotted : `${dotted}.${stem}`, abs, file: relative(base, abs).split(sep).join('/'), isPackage: stem === '__init__' });
      if (out.length > PYTHON_PACKAGES_MAX_FILES) throw new PythonPackageError(`${at}: more than ${PYTHON_PACKAGES_MAX_FILES} modules; the sandbox compiles every module of a package in each interpreter. Supply a smaller package.`);
      if (bytes > PYTHON_PACKAGES_MAX_BYTES) throw new PythonPackageError(`${at}: more than ${PYTHON_PACKAGES_MAX_BYTES >> 20} MiB of Python source; the sandbox holds and compiles it in each interpreter. Supply a smaller package.`);
    }
  };
  walk(spec.path, spec.name, true, 0);
  return out;
}

/**
 * The modules of the configured packages with their source text, read now (by the process that starts the
 * Python runtime). A source that is not UTF-8 is refused, naming the file.
 */
export function readPythonPackages(specs: readonly PythonPackageSpec[]): PythonPackageFile[] {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const out: PythonPackageFile[] = [];
  for (const spec of specs) {
    for (const f of packageFiles(spec)) {
      let source: string;
      try {
        source = decoder.decode(readFileSync(f.abs));
      } catch (err) {
        throw new PythonPackageError(`ENVFLEET_PYTHON_PACKAGES: ${f.abs}: ${err instanceof TypeError ? 'not UTF-8 text; the sandbox reads Python sources as UTF-8' : `cannot be read (${(err as Error).message})`}.`);
      }
      out.push({ module: f.module, file: f.file, isPackage: f.isPackage, source });
    }
  }
  return out;
}
