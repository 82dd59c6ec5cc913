import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { childEnv, requireRedis, testConfig } from '../helpers/integration.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * A worker whose sandbox pool cannot start its threads (issue 11, item 10) must fail at start-up,
 * loudly, instead of taking jobs that then wait. The installed package is copied (its build,
 * bin/ and package.json, with envfleet's dependencies linked in) and its thread file broken, and
 * the worker is started from another directory, as an installed command is.
 */
describe('a worker whose sandbox threads cannot start', function () {
  before(requireRedis);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-broken-install-'));
    await cp(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
    await cp(join(ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
    await cp(join(ROOT, 'package.json'), join(dir, 'package.json'));
    await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  });
  after(() => rm(dir, { recursive: true, force: true }));
  // A worker that does not exit (the failure this guards against) is not left behind.
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  async function startWorker(): Promise<{ code: number | null; stderr: string }> {
    const child = spawn(process.execPath, [join(dir, 'bin', 'envfleet.js'), 'worker'], {
      cwd: tmpdir(),
      env: childEnv(testConfig(null), { ENVFLEET_POOL_THREADS: '2' }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>(resolve => child.once('exit', c => resolve(c)));
    return { code, stderr };
  }

  it('exits 1, naming the thread file and the cause, when the thread file is missing', async () => {
    await rm(join(dir, 'dist', 'workers', 'sandbox-thread.js'));
    const { code, stderr } = await startWorker();
    expect(code).to.equal(1);
    expect(stderr).to.include(`the sandbox pool cannot start its threads from ${join(dir, 'dist', 'workers', 'sandbox-thread.js')}`);
    expect(stderr).to.match(/Cannot find module/);
  });

  it('exits 1 when the thread file does not load', async () => {
    await writeFile(join(dir, 'dist', 'workers', 'sandbox-thread.js'), "throw new Error('this build is broken');\n");
    const { code, stderr } = await startWorker();
    expect(code).to.equal(1);
    expect(stderr).to.match(/the sandbox pool cannot start its threads from .*: this build is broken/);
  });
});
