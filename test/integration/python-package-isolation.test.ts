import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { loadConfig } from '../../config/index.js';
import { EnvironmentCode } from '../../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner, type PythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { MPMATH_MISSING, mpmathPackage } from '../helpers/mpmath.js';

/**
 * User-supplied packages are imported afresh by every session (docs/sandbox.md, "A fresh copy per
 * session"): whatever the package's module code reads at import time from state shared by the whole
 * interpreter (the import hooks, sys.modules, the in-memory filesystem on sys.path, os.environ) is a way
 * for one session to plant code or state that a later session of another environment runs. Each test
 * lets an attacker session plant and end, then opens a victim session of another environment on the
 * same (single) interpreter: the victim must get the package as written.
 */

const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 2_000, createDeadlineMs: 20_000, checkDeadlineMs: 2_000 };

const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object', properties: {}, required: [] } } });
const python = (source: string, tools: string[], className = 'Env'): EnvironmentCode =>
  EnvironmentCode.parse({ name: className, language: 'python', className, source, tools: tools.map(tool) });

describe('user-supplied packages: no session plants what a later session imports', function () {
  this.timeout(300_000);
  let dir: string;
  let r: PythonSandboxRunner;
  let mpmath: string | null = null;

  // The victim: another environment, which only imports the packages and reports what it got.
  const VICTIM = python(
    'import counter_pkg\nimport mpmath\nclass Victim:\n    def __init__(self, c=None):\n        self.x = 0\n' +
      '    def report(self):\n        g = mpmath.libmp.backend.gmpy\n' +
      "        return {'level': counter_pkg.LEVEL, 'gmpy': None if g is None else getattr(g, 'calls', 'present'), 'strict': mpmath.libmp.backend.STRICT, 'log': str(mpmath.log(8, 2))}\n",
    ['report'],
    'Victim',
  );
  const CLEAN = { level: 1, gmpy: null, strict: false, log: '3.0' };

  /** Opens the attacker, runs its tool, closes it; then the victim's report. */
  const afterAttack = async (source: string): Promise<unknown> => {
    const a = await r.openSession(python(source, ['attack']), {}, LIMITS);
    const done = await a.call('attack', {}).catch((err: unknown) => ({ result: String(err) }));
    if (process.env['ENVFLEET_TEST_VERBOSE']) console.log('    attack:', JSON.stringify(done));
    await a.close();
    const v = await r.openSession(VICTIM, {}, LIMITS);
    try {
      return (await v.call('report', {})).result;
    } finally {
      await v.close();
    }
  };

  let packages: ReturnType<typeof loadConfig>['python']['packages'] = [];
  before(function () {
    mpmath = mpmathPackage('the package isolation tests import mpmath');
    if (!mpmath) {
      console.log(`    skipped: ${MPMATH_MISSING}`);
      this.skip();
    }
    dir = mkdtempSync(join(tmpdir(), 'envfleet-py-isolation-'));
    mkdirSync(join(dir, 'counter_pkg'));
    writeFileSync(join(dir, 'counter_pkg', '__init__.py'), 'LEVEL = 1\n');
    // A package that reads a standard module nothing else loads (and environments may not import) at import time.
    mkdirSync(join(dir, 'std_pkg'));
    writeFileSync(join(dir, 'std_pkg', '__init__.py'), 'import colorsys\nONE_THIRD = colorsys.ONE_THIRD\n');
    packages = loadConfig({ ENVFLEET_PYTHON_PACKAGES: [join(dir, 'counter_pkg'), join(dir, 'std_pkg'), mpmath].join(delimiter) }).python.packages;
  });
  // A runner of its own per test (one interpreter): what one attack leaves behind cannot fail the next test.
  beforeEach(async function () {
    if (!mpmath) this.skip();
    r = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 256, packages, logger: pino({ level: 'silent' }) });
    await r.started();
    expect(await afterAttack('class Env:\n    def attack(self):\n        return 0\n')).to.deep.equal(CLEAN);
  });
  afterEach(async () => {
    await r?.close();
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('an attribute set on the package finder instance (find_spec) does not outlive the session', async function () {
    if (!mpmath) this.skip();
    const attack =
      "import time\nclass Env:\n    def attack(self):\n        g = getattr(time.time, '__glo' + 'bals__')\n        finder = g['_PACKAGES']\n        real = finder.find_spec\n" +
      '        def evil(name, path=None, target=None):\n            spec = real(name, path, target)\n' +
      "            if spec is not None and name == 'counter_pkg':\n                run = spec.loader.exec_module\n" +
      '                def exec_module(module):\n                    run(module)\n                    module.LEVEL = 666\n' +
      '                spec.loader.exec_module = exec_module\n            return spec\n        finder.find_spec = evil\n        return 1\n';
    expect(await afterAttack(attack)).to.deep.equal(CLEAN);
  });

  it('the package finder swapped for another class (__class__) does not outlive the session', async function () {
    if (!mpmath) this.skip();
    const attack =
      'import time\ndef _find_spec(self, name, path=None, target=None):\n    spec = REAL(name, path, target)\n' +
      "    if spec is not None and name == 'counter_pkg':\n        run = spec.loader.exec_module\n" +
      '        def exec_module(module):\n            run(module)\n            module.LEVEL = 667\n' +
      '        try:\n            spec.loader.exec_module = exec_module\n        except AttributeError:\n            pass\n    return spec\n' +
      'class EvilDict:\n    find_spec = _find_spec\nclass EvilSlots:\n    __slots__ = ()\n    find_spec = _find_spec\n' +
      "REAL = None\nclass Env:\n    def attack(self):\n        global REAL\n        g = getattr(time.time, '__glo' + 'bals__')\n        finder = g['_PACKAGES']\n" +
      "        REAL = getattr(type(finder), 'find_spec').__get__(finder)\n        try:\n            finder.__class__ = EvilDict\n        except TypeError:\n            finder.__class__ = EvilSlots\n        return 1\n";
    const report = (await afterAttack(attack)) as { level: number };
    // The loader may refuse the instance attribute; either way the finder must not stay swapped.
    expect(report).to.deep.equal(CLEAN);
  });

  it("mpmath's optional gmpy2 planted in sys.modules (through mpmath.libmp.backend.sys, no built-up names) is not imported by a later session", async function () {
    if (!mpmath) this.skip();
    const attack =
      'from mpmath.libmp.backend import sys\nclass Env:\n    def attack(self):\n        fake = type(sys)(\'gmpy2\')\n        fake.calls = 0\n' +
      "        def version():\n            fake.calls += 1\n            return '1.0'\n        fake.version = version\n        fake.mpz = int\n        sys.modules['gmpy2'] = fake\n        return 1\n";
    expect(await afterAttack(attack)).to.deep.equal(CLEAN);
  });

  it("mpmath's optional gmpy2 written as a file on sys.path is not imported by a later session", async function () {
    if (!mpmath) this.skip();
    const attack =
      'from mpmath.libmp.backend import sys, os\nclass Env:\n    def attack(self):\n        wrote = []\n        for d in sys.path:\n' +
      "            try:\n                if os.path.isdir(d):\n                    with open(os.path.join(d, 'gmpy2.py'), 'w') as f:\n" +
      "                        f.write(\"calls = 'from a file'\\ndef version():\\n    return '1.0'\\nmpz = int\\n\")\n                    wrote.append(d)\n" +
      '            except OSError:\n                pass\n        return wrote\n';
    expect(await afterAttack(attack)).to.deep.equal(CLEAN);
  });

  it('the import machinery (_frozen_importlib._find_and_load, reached through mpmath.libmp.backend.sys) patched by one session does not run in a later one', async function () {
    if (!mpmath) this.skip();
    const attack =
      "from mpmath.libmp.backend import sys\nclass Env:\n    def attack(self):\n        bi = sys.modules['_frozen_importlib']\n        real = bi._find_and_load\n" +
      "        def evil(name, *rest):\n            m = real(name, *rest)\n            if name == 'counter_pkg':\n                m.LEVEL = 668\n            return m\n" +
      '        bi._find_and_load = evil\n        return 1\n';
    expect(await afterAttack(attack)).to.deep.equal(CLEAN);
  });

  it('a finder added to sys.meta_path (it would answer the standard modules a package imports later, cmath for mpmath) replaces the interpreter', async function () {
    if (!mpmath) this.skip();
    const n0 = (await r.stats()).interpreters[0]!.n;
    const attack =
      "from mpmath.libmp.backend import sys\nclass Finder:\n    def find_spec(self, name, path=None, target=None):\n        return None\n" +
      'class Env:\n    def attack(self):\n        sys.meta_path.append(Finder())\n        return 1\n';
    expect(await afterAttack(attack)).to.deep.equal(CLEAN);
    expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(n0);
  });

  it('a standard module a package imports (colorsys, loaded for no one else) patched through the package does not reach a later session', async function () {
    if (!mpmath) this.skip();
    // Ordinary use of the packages (mpmath's arithmetic and printing, at several precisions) is not taken for tampering.
    const n0 = (await r.stats()).interpreters[0]!.n;
    for (const dps of [5, 50]) {
      const use = await r.openSession(python(`import mpmath\nimport std_pkg\nclass U:\n    def use(self):\n        mpmath.mp.dps = ${dps}\n        return [str(mpmath.log(10) / mpmath.log(3)), repr(mpmath.sqrt(2)), str(mpmath.mpc(1, 2) ** 2), std_pkg.ONE_THIRD]\n`, ['use'], 'U'), {}, LIMITS);
      expect(((await use.call('use', {})).result as unknown[]).length).to.equal(4);
      await use.close();
    }
    expect((await r.stats()).interpreters[0]!.n).to.equal(n0);
    const attack = 'import std_pkg\nclass Env:\n    def attack(self):\n        std_pkg.colorsys.ONE_THIRD = 0.5\n        return 1\n';
    const a = await r.openSession(python(attack, ['attack']), {}, LIMITS);
    expect((await a.call('attack', {})).result).to.equal(1);
    await a.close();
    const v = await r.openSession(python('import std_pkg\nclass V:\n    def report(self):\n        return std_pkg.ONE_THIRD\n', ['report'], 'V'), {}, LIMITS);
    try {
      expect((await v.call('report', {})).result).to.equal(1 / 3);
    } finally {
      await v.close();
    }
  });

  it('os.environ set by one session (MPMATH_STRICT) does not change mpmath in a later session', async function () {
    if (!mpmath) this.skip();
    const attack = "from mpmath.libmp.backend import os\nclass Env:\n    def attack(self):\n        os.environ['MPMATH_STRICT'] = '1'\n        return 1\n";
    expect(await afterAttack(attack)).to.deep.equal(CLEAN);
  });
});
