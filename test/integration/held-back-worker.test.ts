import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { submitSynthesis } from '../../queues/submit.js';
import { loadModelScript } from '../../src/model-server/index.js';
import { DEMO, ENVFLEET_BIN, childEnv, exited, until, useFleet, type Fleet } from '../helpers/integration.js';

const LIBRARY = {
  summary: 'Library circulation system',
  introduction: 'A public library circulation system that tracks members, the book catalogue with copies on the shelf, and loans with their due days. Staff and members look up members and books, lend and take back copies, and settle overdue fines. It enforces loan limits and blocks lending to members with unpaid fines.',
};

/**
 * A worker held back past its lock (SIGSTOP: a suspended machine, a stopped container, a pause of minutes) while it
 * probes an environment: another worker takes the job over from its checkpoint. When the first one goes on, it finds
 * the step it was making recorded by the other, lets the job go without failing it or using an attempt, and says so
 * plainly. Real worker processes, real Redis, the scripted model.
 */
describe('a worker held back past its lock (real worker processes, real Redis, scripted server)', function () {
  const fleet = useFleet();
  let f: Fleet;

  function worker(): { child: ChildProcess; lines: () => Record<string, unknown>[] } {
    const child = spawn(process.execPath, [ENVFLEET_BIN, 'worker'], { env: childEnv(f.config, { LOG_LEVEL: 'info' }), stdio: ['ignore', 'pipe', 'pipe'] });
    f.children.push(child);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
    const lines = () =>
      out
        .split('\n')
        .filter(l => l.startsWith('{'))
        .map(l => JSON.parse(l) as Record<string, unknown>);
    return { child, lines };
  }

  it('lets the job go to the worker that took it over, with no failure, no attempt of its own and no error logged', async function () {
    f = await fleet({ workers: false, overrides: { ENVFLEET_LOCK_DURATION_MS: '2000', ENVFLEET_STALLED_INTERVAL_MS: '1000' } });
    // Every probe step of the library takes a while, so the probe is under way when the first worker is stopped.
    const demo = await loadModelScript(DEMO);
    f.server.setScript({ ...demo, rules: (demo.rules ?? []).map(r => (r.stage === 'check.probe.tester' ? { ...r, fault: { type: 'delay' as const, ms: 300 } } : r)) });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-held-'));
    await writeFile(join(dir, 'd.jsonl'), `${JSON.stringify(LIBRARY)}\n`);
    const first = worker();
    await submitSynthesis(f.config, f.redis, { runId: 'held', descriptions: join(dir, 'd.jsonl'), probeSteps: 8 });
    const probes = () => f.server.log().filter(e => e.stage === 'check.probe.tester').length;
    await until(() => Promise.resolve(probes() >= 2), 'the probe to be under way', 120_000);
    first.child.kill('SIGSTOP');
    const atStop = probes();
    // Another worker takes the job over once the lock has expired, and makes steps of its own from the checkpoint.
    const second = worker();
    await until(() => Promise.resolve(probes() >= atStop + 2), 'the second worker to go on with the probe', 120_000);
    first.child.kill('SIGCONT');
    await f.waitForRun('held');
    const [id] = await f.store.listDocIds('held', 'env');
    const env = (await f.store.getDoc('held', 'env', id!))!;
    expect(env.failure, JSON.stringify(env.failure)).to.equal(null);
    expect(env.status).to.be.oneOf(['kept', 'rejected']);
    // The first worker said what happened, once, and logged no failure or error for it.
    await until(() => Promise.resolve(first.lines().some(l => l['code'] === 'JOB_TAKEN_OVER')), 'the first worker to let the job go (JOB_TAKEN_OVER)', 60_000);
    const firstLines = first.lines();
    expect(firstLines.filter(l => Number(l['level']) >= 50), JSON.stringify(firstLines.filter(l => Number(l['level']) >= 50))).to.deep.equal([]);
    expect(firstLines.filter(l => l['code'] === 'UNEXPECTED' || /job failed/.test(String(l['msg'])))).to.deep.equal([]);
    expect(second.lines().filter(l => Number(l['level']) >= 50)).to.deep.equal([]);
    for (const w of [first, second]) w.child.kill('SIGTERM');
    await Promise.all([exited(first.child), exited(second.child)]);
  });
});
