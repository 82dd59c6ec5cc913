import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '../../config/index.js';
import { runOptionsFrom } from '../../queues/submit.js';
import { createRedisTrajectoryStream } from '../../src/rollouts/stream.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { ENVFLEET_BIN, REDIS_URL } from '../helpers/integration.js';

const run = promisify(execFile);

/**
 * `envfleet runs delete` from the command line (the build in dist/), on real Redis under a prefix of its own: a name is
 * a run's name, never a pattern (`--run 'd*'` emptied 23 runs of a stranger's probe, running ones too), and a run
 * whose trajectories no sink has written is kept unless --force (Redis holds their only copy).
 */
describe('envfleet runs delete (build in dist/, real Redis)', function () {
  this.timeout(120_000);
  const prefix = `envfleet-test-runs-delete-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  before(() => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  async function envfleet(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(process.execPath, [ENVFLEET_BIN, ...args], { env: { ...process.env, REDIS_URL, ENVFLEET_REDIS_PREFIX: prefix } });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }
  const store = () => createRedisRunStore(redis, prefix);
  /** A finished run with a document (and `trajectories` entries in its stream, none written by a sink). */
  async function runWith(id: string, trajectories = 0) {
    await store().createRun({ id, createdAt: new Date(Date.now() - 60_000).toISOString(), input: 'tasks', options: runOptionsFrom(loadConfig({})) });
    await store().putDoc(id, 'task', 't1', { id: 't1', index: 0, task: 'Réserver une table — 予約 🍣' });
    for (let i = 0; i < trajectories; i += 1) await createRedisTrajectoryStream(redis, prefix).publish(id, `trj-${i}`);
  }
  const keysOf = async (id: string) => (await redis.keys(`${prefix}:run:${id}*`)).length;

  it('refuses a name with a wildcard (or any name no run can have) before touching anything', async () => {
    await runWith('d1');
    await runWith('d2');
    const [d1, d2] = [await keysOf('d1'), await keysOf('d2')];
    expect(d1).to.be.greaterThan(0);
    for (const name of ['d*', '?1', 'd[12]', '*']) {
      const { code, stderr } = await envfleet(['runs', 'delete', '--run', name]);
      expect(code, name).to.equal(1);
      expect(stderr, name).to.match(/run name/).and.not.match(/\n\s+at /);
      const dry = await envfleet(['runs', 'delete', '--run', name, '--dry-run']);
      expect(dry.code, name).to.equal(1);
    }
    expect([await keysOf('d1'), await keysOf('d2')]).to.deep.equal([d1, d2]);
    expect(await store().listRuns()).to.include.members(['d1', 'd2']);
    expect((await envfleet(['runs', 'delete', '--run', 'd1'])).stdout).to.match(/^deleted run d1: \d+ Redis keys/);
    // A run an earlier version made under a name today's rules refuse is still deleted by its name.
    await runWith('ancien-été');
    // The other commands take it by its name too (they refused it as a name no run can have).
    expect((await envfleet(['pause', '--run', 'ancien-été'])).code).to.equal(0);
    expect((await envfleet(['cancel', '--run', 'ancien-été'])).code).to.equal(0);
    expect((await envfleet(['runs', 'delete', '--run', 'ancien-été', '--dry-run'])).stdout).to.equal('would delete: ancien-été\n');
    expect((await envfleet(['runs', 'delete', '--run', 'ancien-été'])).stdout).to.match(/^deleted run ancien-été: \d+ Redis keys/);
    expect(await keysOf('ancien-été')).to.equal(0);
    expect(await keysOf('d1')).to.equal(0);
    expect(await keysOf('d2')).to.equal(d2);
  });

  it('keeps a run whose trajectories no sink has written unless --force, says so in --dry-run, and keeps it out of --finished-before (the others go)', async () => {
    await runWith('unsunk', 3);
    await runWith('written');
    const refused = await envfleet(['runs', 'delete', '--run', 'unsunk']);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.include('run "unsunk" has 3 trajectories that no envfleet sink has written to disk').and.include('envfleet sink --run unsunk --out DIR').and.include('--force');
    expect(await keysOf('unsunk')).to.be.greaterThan(0);
    expect((await envfleet(['runs', 'delete', '--run', 'unsunk', '--dry-run'])).stdout).to.equal('would delete: unsunk (refused without --force: 3 trajectories no envfleet sink has written)\n');

    const bulk = await envfleet(['runs', 'delete', '--finished-before', new Date(Date.now() + 60_000).toISOString()]);
    expect(bulk.code).to.equal(1);
    expect(bulk.stdout).to.include('deleted run written:');
    expect(bulk.stderr).to.include('kept run unsunk: run "unsunk" has 3 trajectories').and.include('were kept (said above); the others were deleted');
    expect(await store().listRuns()).to.include('unsunk').and.not.include('written');

    expect((await envfleet(['runs', 'delete', '--run', 'unsunk', '--force'])).stdout).to.match(/^deleted run unsunk: \d+ Redis keys/);
    expect(await keysOf('unsunk')).to.equal(0);

    // What a run left without its record (Redis lost it): the sink cannot write its trajectories, and says so.
    for (let i = 0; i < 2; i += 1) await createRedisTrajectoryStream(redis, prefix).publish('ghost', `trj-${i}`);
    const ghost = await envfleet(['runs', 'delete', '--run', 'ghost']);
    expect(ghost.code).to.equal(1);
    expect(ghost.stderr).to.include('"ghost" has no run record').and.include('2 trajectories no envfleet sink has written').and.include('pass --force').and.not.include('envfleet sink --run');
    expect((await envfleet(['runs', 'delete', '--run', 'ghost', '--force'])).stdout).to.match(/^deleted run ghost: 1 Redis keys/);
  });

  it('pausing or cancelling a finished run says it had finished (it said jobs were parked, and nothing was)', async () => {
    await runWith('fini');
    const paused = await envfleet(['pause', '--run', 'fini']);
    expect(paused.code).to.equal(0);
    expect(paused.stdout).to.equal('run fini paused; it had finished (no outstanding job), so nothing is held now: work added to it later (envfleet rollouts --run fini, …) waits until envfleet resume --run fini\n');
    await envfleet(['resume', '--run', 'fini']);
    const cancelled = await envfleet(['cancel', '--run', 'fini']);
    expect(cancelled.stdout).to.equal('run fini cancelled (it had finished: its results stay as they are, and it takes no new work): 0 waiting jobs removed, 0 running jobs end at their next model call\n');
    // A run with outstanding jobs is told as before.
    await runWith('encours');
    await store().addPending('encours', ['rollout.run|r-2']);
    expect((await envfleet(['pause', '--run', 'encours'])).stdout).to.equal('run encours paused; its jobs are parked until resume (a running one at its next model call: it goes on from there)\n');
  });

  it('resuming a cancelled imported run says to import it again into another run (it said to synthesize new scenarios)', async () => {
    await store().createRun({ id: 'importé', createdAt: new Date().toISOString(), input: 'tau-bench', options: runOptionsFrom(loadConfig({})) });
    expect((await envfleet(['cancel', '--run', 'importé'])).code).to.equal(0);
    const refused = await envfleet(['resume', '--run', 'importé']);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.include('Import the same files into another run to go on (envfleet import tau-bench --from PATH --run NEW)').and.not.include('envfleet scenarios');
  });

  it("envfleet resume of a running run whose queue is paused in BullMQ names the queue (it said only: nothing to resume)", async () => {
    await runWith('bloqué');
    await store().addPending('bloqué', ['rollout.run|r-1']);
    const queue = new Queue('rollout.run', { connection: redis, prefix });
    try {
      await queue.pause();
      const { code, stdout } = await envfleet(['resume', '--run', 'bloqué']);
      expect(code).to.equal(0);
      expect(stdout).to.equal("run bloqué is running, not paused, and has no parked job: nothing to resume\nrun bloqué: the queue rollout.run, where jobs of the run wait, is paused in BullMQ (the dashboard's queue view at /queues, or a Queue.pause): no job there starts until it is resumed there (envfleet resume resumes runs, not queues)\n");
      await queue.resume();
      expect((await envfleet(['resume', '--run', 'bloqué'])).stdout).to.equal('run bloqué is running, not paused, and has no parked job: nothing to resume\n');
    } finally {
      await queue.close();
    }
  });
});
