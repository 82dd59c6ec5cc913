import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../../config/index.js';

describe('config: the Python runtime', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'envfleet-python-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults the snapshot folder to envfleet/pyodide under the OS temporary folder, one interpreter, a 512 MiB heap', () => {
    expect(loadConfig({}).python).to.deep.equal({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 512 });
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
