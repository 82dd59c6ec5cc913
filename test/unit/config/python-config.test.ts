import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { expect } from 'chai';
import { ConfigError, loadConfig, readPythonPackages, PYTHON_SANDBOX_NAMES, PYTHON_STDLIB_NAMES } from '../../../config/index.js';
import { ALLOWED_IMPORTS, BLOCKED_MODULES } from '../../../src/sandbox/python/python-harness.mjs';

describe('config: the Python runtime', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'envfleet-python-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults the snapshot folder to envfleet/pyodide under the OS temporary folder, one interpreter, a 512 MiB heap', () => {
    expect(loadConfig({}).python).to.deep.equal({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 512, packages: [] });
  });

  it('takes an absolute folder, existing or not', () => {
    expect(loadConfig({ ENVFLEET_PYTHON_SNAPSHOT_DIR: dir }).python.snapshotDir).to.equal(dir);
    expect(loadConfig({ ENVFLEET_PYTHON_SNAPSHOT_DIR: join(dir, 'later') }).python.snapshotDir).to.equal(join(dir, 'later'));
  });

  it('refuses a relative path and a file, naming the variable', () => {
    expect(() => loadConfig({ ENVFLEET_PYTHON_SNAPSHOT_DIR: 'cache/pyodide' })).to.throw(ConfigError, /ENVFLEET_PYTHON_SNAPSHOT_DIR="cache\/pyodide": expected an absolute path/);
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    expect(() => loadConfig({ ENVFLEET_PYTHON_SNAPSHOT_DIR: file })).to.throw(ConfigError, /ENVFLEET_PYTHON_SNAPSHOT_DIR=.*a-file: this is a file, not a folder/);
  });

  it('refuses a folder under /proc or /sys', () => {
    for (const bad of ['/proc/self/cwd', '/sys/kernel', '/proc', '/sys/../proc/x']) {
      expect(() => loadConfig({ ENVFLEET_PYTHON_SNAPSHOT_DIR: bad }), bad).to.throw(ConfigError, /\/proc and \/sys are kernel interfaces/);
    }
    expect(loadConfig({ ENVFLEET_PYTHON_SNAPSHOT_DIR: '/processes/cache' }).python.snapshotDir).to.equal('/processes/cache');
  });

  it('bounds the interpreters and the heap', () => {
    expect(() => loadConfig({ ENVFLEET_PYTHON_INTERPRETERS: '0' })).to.throw(ConfigError, /ENVFLEET_PYTHON_INTERPRETERS/);
    expect(() => loadConfig({ ENVFLEET_PYTHON_HEAP_MB: '32' })).to.throw(ConfigError, /ENVFLEET_PYTHON_HEAP_MB/);
    expect(loadConfig({ ENVFLEET_PYTHON_INTERPRETERS: '3', ENVFLEET_PYTHON_HEAP_MB: '256' }).python).to.include({ interpreters: 3, heapMb: 256 });
  });
});

describe('config: ENVFLEET_PYTHON_PACKAGES', () => {
  let dir: string;
  /** Writes files (path → text) under a fresh folder; returns its path. */
  const tree = (name: string, files: Record<string, string>) => {
    const root = join(dir, name);
    for (const [rel, text] of Object.entries(files)) {
      mkdirSync(join(root, rel, '..'), { recursive: true });
      writeFileSync(join(root, rel), text);
    }
    return root;
  };
  const load = (value: string) => loadConfig({ ENVFLEET_PYTHON_PACKAGES: value }).python.packages;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'envfleet-python-packages-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('takes package folders and single modules, under a path with multi-byte names, separated by the path delimiter', () => {
    const base = tree('модули-数据-é', { 'pkg_a/__init__.py': 'X = 1\n', 'pkg_a/sub/__init__.py': '', 'pkg_a/sub/deep.py': 'Y = 2\n', 'pkg_a/__pycache__/x.cpython-311.pyc': 'bytes', 'pkg_a/data.txt': 'not carried', 'helper_b.py': 'Z = 3\n' });
    const got = load([join(base, 'pkg_a'), join(base, 'helper_b.py')].join(delimiter));
    expect(got).to.deep.equal([
      { name: 'pkg_a', path: join(base, 'pkg_a'), kind: 'package' },
      { name: 'helper_b', path: join(base, 'helper_b.py'), kind: 'module' },
    ]);
    const files = readPythonPackages(got);
    expect(files.map(f => [f.module, f.file, f.isPackage])).to.deep.equal([
      ['pkg_a', 'pkg_a/__init__.py', true],
      ['pkg_a.sub', 'pkg_a/sub/__init__.py', true],
      ['pkg_a.sub.deep', 'pkg_a/sub/deep.py', false],
      ['helper_b', 'helper_b.py', false],
    ]);
    expect(files[2]!.source).to.equal('Y = 2\n');
  });

  it('resolves a relative path against the working folder, and an unset or blank value is no packages', () => {
    expect(loadConfig({}).python.packages).to.deep.equal([]);
    expect(load('  ')).to.deep.equal([]);
    const base = tree('rel', { 'rel_pkg/__init__.py': '' });
    const cwd = process.cwd();
    process.chdir(base);
    try {
      expect(load('rel_pkg')).to.deep.equal([{ name: 'rel_pkg', path: join(base, 'rel_pkg'), kind: 'package' }]);
    } finally {
      process.chdir(cwd);
    }
  });

  it('refuses a missing path, naming it and what to put there', () => {
    const missing = join(dir, 'модули-数据-é', 'nowhere');
    expect(() => load(missing)).to.throw(ConfigError, new RegExp(`ENVFLEET_PYTHON_PACKAGES: ${missing} does not exist\\. Each entry must be the folder of a pure-Python package`));
  });

  it('refuses a folder that is not a package, and a file that is not .py', () => {
    const base = tree('not-pkg', { 'plain/mod.py': '', 'notes.txt': '' });
    expect(() => load(join(base, 'plain'))).to.throw(ConfigError, /plain is a folder without __init__\.py, so it is not a package.*point at the package folder itself/);
    expect(() => load(join(base, 'notes.txt'))).to.throw(ConfigError, /notes\.txt is not a \.py file/);
  });

  it('refuses an extension module given directly or found anywhere inside a package', () => {
    const base = tree('ext', { 'fast.cpython-312-x86_64-linux-gnu.so': '', 'winmod.pyd': '', 'natpkg/__init__.py': '', 'natpkg/inner/_speed.so': '' });
    expect(() => load(join(base, 'fast.cpython-312-x86_64-linux-gnu.so'))).to.throw(ConfigError, /is a compiled extension module: Pyodide cannot load native code/);
    expect(() => load(join(base, 'winmod.pyd'))).to.throw(ConfigError, /winmod\.pyd is a compiled extension module/);
    expect(() => load(join(base, 'natpkg'))).to.throw(ConfigError, /natpkg: natpkg\/inner\/_speed\.so is a compiled extension module/);
  });

  it('refuses names that shadow a standard module, an allowed or blocked one, or the sandbox and harness, and names that are not import names', () => {
    const base = tree('names', { 'json/__init__.py': '', 'socket.py': '', 'js/__init__.py': '', 'pyodide.py': '', 'envfleet_env_s1.py': '', 'bad-name/__init__.py': '', 'class.py': '' });
    expect(() => load(join(base, 'json'))).to.throw(ConfigError, /"json" would shadow the standard library module of that name.*Rename the folder/);
    expect(() => load(join(base, 'socket.py'))).to.throw(ConfigError, /"socket" would shadow the standard library module.*Rename the file/);
    expect(() => load(join(base, 'js'))).to.throw(ConfigError, /"js" is a name of the sandbox itself/);
    expect(() => load(join(base, 'pyodide.py'))).to.throw(ConfigError, /"pyodide" is a name of the sandbox itself/);
    expect(() => load(join(base, 'envfleet_env_s1.py'))).to.throw(ConfigError, /"envfleet_env_s1" is a name of the sandbox itself/);
    expect(() => load(join(base, 'bad-name'))).to.throw(ConfigError, /"bad-name" is not an import name/);
    expect(() => load(join(base, 'class.py'))).to.throw(ConfigError, /"class" is a Python keyword/);
    const multi = tree('модули-数据-é-2', { 'модули-数据-é/__init__.py': '' });
    expect(() => load(join(multi, 'модули-数据-é'))).to.throw(ConfigError, /"модули-数据-é" is not an import name/);
  });

  it('reserves every module the harness allows or blocks', () => {
    const reserved = (n: string) => PYTHON_STDLIB_NAMES.has(n) || PYTHON_SANDBOX_NAMES.has(n);
    expect([...ALLOWED_IMPORTS, ...BLOCKED_MODULES].filter(n => !reserved(n))).to.deep.equal([]);
  });

  it('refuses two entries with one name, and follows a symbolic link to a package', () => {
    const a = tree('dup-a', { 'same/__init__.py': '' });
    const b = tree('dup-b', { 'same.py': '' });
    expect(() => load([join(a, 'same'), join(b, 'same.py')].join(delimiter))).to.throw(ConfigError, /the name "same" is also the name of .*dup-a\/same; two packages cannot share a top-level name/);
    const linkDir = join(dir, 'links');
    mkdirSync(linkDir);
    symlinkSync(join(a, 'same'), join(linkDir, 'linked'));
    expect(load(join(linkDir, 'linked'))).to.deep.equal([{ name: 'linked', path: join(linkDir, 'linked'), kind: 'package' }]);
  });

  it('refuses a source that is not UTF-8 when the runner reads it', () => {
    const base = tree('latin', { 'latin_pkg/__init__.py': '' });
    writeFileSync(join(base, 'latin_pkg', 'old.py'), Buffer.from([0x23, 0x20, 0xe9, 0x0a]));
    const specs = load(join(base, 'latin_pkg'));
    expect(() => readPythonPackages(specs)).to.throw(/latin_pkg\/old\.py: not UTF-8 text/);
  });
});
