import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import { STAGE_QUEUES } from '../../queues/pipeline.js';
import { waitForRun } from '../../queues/run-jobs.js';
import { submitRollouts, submitScenarios, submitSynthesis } from '../../queues/submit.js';
import { loadModelScript, parseModelScript, startModelServer, type ModelServer } from '../../src/model-server/index.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { startWorkerProcess } from '../../workers/main.js';
import { Redis } from 'ioredis';
import type { AppConfig } from '../../config/index.js';
import { DEMO, ENVFLEET_BIN, REDIS_URL, childEnv, dropPrefix, requireRedis, silentLogger, testConfig, until, useFleet } from '../helpers/integration.js';

/** The submitting commands as a user runs them (from dist/: `npm run build` first). */

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `envfleet ARGS` in `config`'s fleet and resolves with its exit code and output, whatever the code. */
function envfleet(config: AppConfig, args: readonly string[], env: Record<string, string> = {}): Promise<Ran> {
  return new Promise(resolve => {
    execFile(process.execPath, [ENVFLEET_BIN, ...args], { env: childEnv(config, env), timeout: 300_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('envfleet synth, scenarios and rollouts from the command line', function () {
  let server: ModelServer;
  let config: AppConfig;
  let redis: Redis;
  before(requireRedis);
  beforeEach(async () => {
    // A model endpoint that wants the key "good": with another key every request is a 401 (MODEL_AUTH, given up at once).
    server = await startModelServer({ script: await loadModelScript(DEMO), apiKey: 'good' });
    config = testConfig(server);
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  });
  afterEach(async () => {
    await server.close();
    redis.disconnect();
    await dropPrefix(config.redis.prefix);
  });

  const tasks = join(DEMO, 'source-tasks.jsonl');

  it('says which items failed and exits 1; run again once the key is fixed, it retries them; run again once finished, it adds nothing', async () => {
    const failed = await envfleet(config, ['synth', '--run', 'cp', '--tasks', tasks, '--workers'], { OPENAI_API_KEY: 'bad' });
    expect(failed.code, failed.stderr).to.equal(1);
    expect(failed.stdout).to.match(/run cp: 7 failed: MODEL_AUTH ×7 — fix the cause .* run the same command again to retry them/);

    const resumed = await envfleet(config, ['synth', '--run', 'cp', '--tasks', tasks, '--workers'], { OPENAI_API_KEY: 'good' });
    expect(resumed.code, resumed.stdout + resumed.stderr).to.equal(0);
    expect(resumed.stdout).to.match(/exists \(resuming\); 7 input items, 0 jobs added, 7 failed jobs retried/);
    expect(resumed.stdout).to.match(/run cp finished: \{"kept":3\}/);
    expect(resumed.stdout).not.to.match(/failed:/);
    // The failures were taken back: the funnel counts each task once.
    const counters = await createRedisRunStore(redis, config.redis.prefix).counters('cp');
    expect(counters['mine.judge']?.['failed:MODEL_AUTH'] ?? 0).to.equal(0);
    expect(Object.values(counters['mine.judge'] ?? {}).reduce((a, b) => a + b, 0)).to.equal(7);

    const again = await envfleet(config, ['synth', '--run', 'cp', '--tasks', tasks, '--workers'], { OPENAI_API_KEY: 'good' });
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.match(/exists \(resuming\); 7 input items, 0 jobs added\n/);
  });

  it("with --log-file, the workers of --workers log to that file (appended), not between the progress lines; it is refused without --workers and where it cannot be written", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-log-'));
    const log = join(dir, 'journal-été-🙂.log');
    await writeFile(log, 'an earlier line\n');
    const failed = await envfleet(config, ['synth', '--run', 'lf', '--tasks', tasks, '--workers', '--log-file', log], { OPENAI_API_KEY: 'bad', LOG_LEVEL: 'info' });
    expect(failed.code, failed.stderr).to.equal(1);
    expect(failed.stdout).to.match(/run lf: 7 failed: MODEL_AUTH ×7/);
    expect(failed.stderr).to.include(`the workers of this process log to ${log}`);
    expect(failed.stdout + failed.stderr).not.to.match(/"level":/);
    const lines = (await readFile(log, 'utf8')).trim().split('\n');
    expect(lines[0]).to.equal('an earlier line');
    const records = lines.slice(1).map(l => JSON.parse(l) as { service?: string; code?: string });
    expect(records.filter(r => r.service === 'envfleet' && r.code === 'MODEL_AUTH').length).to.be.greaterThan(0);

    const alone = await envfleet(config, ['synth', '--run', 'lf', '--tasks', tasks, '--log-file', log]);
    expect(alone.code).to.equal(1);
    expect(alone.stderr).to.match(/--log-file is where the workers of --workers log/);
    const nowhere = await envfleet(config, ['synth', '--run', 'lf', '--tasks', tasks, '--workers', '--log-file', join(dir, 'missing', 'w.log')], { OPENAI_API_KEY: 'good' });
    expect(nowhere.code).to.equal(1);
    expect(nowhere.stderr).to.match(/cannot write the workers' log to .*missing\/w\.log: .*\(its folder does not exist\)\. Give --log-file a file in a folder you can write to/);
  });

  it('pauses the run when the endpoint refuses the key during rollouts, instead of recording every episode as model-error for good; resumed with the key fixed, every episode runs', async () => {
    const synth = await envfleet(config, ['synth', '--run', 'ro', '--tasks', tasks, '--probe-steps', '8', '--workers'], { OPENAI_API_KEY: 'good' });
    expect(synth.code, synth.stderr).to.equal(0);
    await envfleet(config, ['scenarios', '--run', 'ro', '--per-env', '3', '--workers'], { OPENAI_API_KEY: 'good' });
    const store = createRedisRunStore(redis, config.redis.prefix);
    const ready = (await store.statusCounts('ro', 'scenario'))['ready'] ?? 0;
    expect(ready).to.be.greaterThan(0);

    // The key is revoked at hour six: the workers' key is refused (401).
    const revoked = testConfig(server, { OPENAI_API_KEY: 'revoked', ENVFLEET_REDIS_PREFIX: config.redis.prefix });
    const control = createRedisRunControl(redis, config.redis.prefix);
    const first = await startWorkerProcess(revoked, silentLogger());
    try {
      await submitRollouts(revoked, redis, { runId: 'ro', samples: 2, modes: ['non-conversational'] });
      await until(async () => (await control.get('ro')).state === 'paused', 'the run to pause');
      expect((await control.get('ro')).reason).to.match(/^the model endpoint refused the API key in an episode: 401 .* \[MODEL_AUTH\]; fix the key where the workers read it/);
    } finally {
      // A graceful stop: the jobs it runs finish (here: park) first.
      await first.stop();
    }
    expect(await store.listDocIds('ro', 'trajectory'), 'episodes recorded while the key was refused').to.deep.equal([]);
    expect((await store.counters('ro'))['rollout.run']).to.equal(undefined);

    // The key fixed, workers restarted, the run resumed: every planned episode runs, none as model-error.
    const fixed = testConfig(server, { OPENAI_API_KEY: 'good', ENVFLEET_REDIS_PREFIX: config.redis.prefix });
    const second = await startWorkerProcess(fixed, silentLogger());
    try {
      await control.resume('ro');
      await waitForRun(store, 'ro', () => undefined, { queues: { connection: redis, prefix: config.redis.prefix } });
    } finally {
      await second.stop();
    }
    const counts = (await store.counters('ro'))['rollout.run'] ?? {};
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).to.equal(ready * 2);
    expect(counts['model-error'] ?? 0).to.equal(0);
  });

  it('retries the scenarios dropped for a wrong key when envfleet scenarios runs again', async () => {
    const synth = await envfleet(config, ['synth', '--run', 'sc', '--tasks', tasks, '--workers'], { OPENAI_API_KEY: 'good' });
    expect(synth.code, synth.stderr).to.equal(0);

    const failed = await envfleet(config, ['scenarios', '--run', 'sc', '--per-env', '3', '--workers'], { OPENAI_API_KEY: 'bad' });
    expect(failed.code, failed.stderr).to.equal(1);
    expect(failed.stdout).to.match(/run sc: 9 failed: MODEL_AUTH ×9/);

    const resumed = await envfleet(config, ['scenarios', '--run', 'sc', '--per-env', '3', '--workers'], { OPENAI_API_KEY: 'good' });
    // The demo script answers no scenario.state request of its third environment (400, no rule matched): those stay failed, and say so.
    expect(resumed.code, resumed.stdout + resumed.stderr).to.equal(1);
    expect(resumed.stdout).to.match(/run sc: 3 failed: MODEL_BAD_REQUEST ×3 — /);
    expect(resumed.stdout).not.to.match(/MODEL_AUTH/);
    expect(resumed.stdout).to.match(/3 kept environments, 0 scenario.state jobs added, 9 failed jobs retried/);
    const store = createRedisRunStore(redis, config.redis.prefix);
    expect((await store.counters('sc'))['scenario.state']?.['dropped:MODEL_AUTH'] ?? 0).to.equal(0);
    const statuses = await store.statusCounts('sc', 'scenario');
    expect(statuses['ready'] ?? 0).to.be.greaterThan(0);
    expect(Object.values(statuses).reduce((a, b) => a + b, 0)).to.equal(9);
  });
});

describe('envfleet synth --workers interrupted', function () {
  const fleet = useFleet();

  it('stops its workers gracefully on Ctrl-C (SIGINT): the job it was running goes back to its queue, not left active, and it exits 130 saying so', async () => {
    const slow = parseModelScript({ rules: [{ name: 'slow-judge', stage: 'mine.judge', times: 1, fault: { type: 'delay', ms: 60_000 }, respond: { json: { needsEnvironment: true, reason: 'stateful loans' } } }] });
    const f = await fleet({ extra: slow, workers: false });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sigint-'));
    await writeFile(join(dir, 'tasks.jsonl'), `${JSON.stringify({ id: 't1', task: 'A library member wants to return two overdue books and pay the fine.' })}\n`);
    const child = spawn(process.execPath, [ENVFLEET_BIN, 'synth', '--run', 'int', '--tasks', join(dir, 'tasks.jsonl'), '--workers'], {
      env: childEnv(f.config, { ENVFLEET_SHUTDOWN_TIMEOUT_MS: '500' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    f.children.push(child);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(resolve => child.once('exit', (code, signal) => resolve({ code, signal })));
    const queue = new Queue('mine.judge', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      const jobId = STAGE_QUEUES['mine.judge'].jobId({ runId: 'int', taskId: 't1' });
      await until(async () => (await queue.getJob(jobId))?.getState().then(s => s === 'active') ?? false, 'the job to become active');
      await until(() => Promise.resolve(f.server.log().some(e => e.rule === 'slow-judge')), 'the model request to arrive');
      child.kill('SIGINT');
      expect(await exit, stderr).to.deep.equal({ code: 130, signal: null });
      expect(stderr).to.match(/SIGINT: stopping the workers of this process/).and.to.match(/the workers of this process stopped/).and.to.match(/run the same command again/);
      const after = await queue.getJob(jobId);
      expect(['waiting', 'delayed', 'wait']).to.include(await after!.getState());
      expect(after!.attemptsMade).to.equal(0);
    } finally {
      await queue.close();
    }
  });
});

describe('running a submission again retries items that failed past the entry', function () {
  const fleet = useFleet();

  it('retries scenarios dropped at scenario.task for a rejected key, each counted once', async () => {
    // The first two scenario.task requests are refused (401: MODEL_AUTH, given up at once); later ones are answered.
    const refused = parseModelScript({ rules: [{ name: 'refused-task', stage: 'scenario.task', times: 2, fault: { type: 'server_error', status: 401 } }] });
    const f = await fleet({ extra: refused });
    await submitSynthesis(f.config, f.redis, { runId: 'later', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun('later');
    await submitScenarios(f.config, f.redis, { runId: 'later', perEnv: 3 });
    await f.waitForRun('later');
    expect((await f.store.counters('later'))['scenario.task']?.['dropped:MODEL_AUTH']).to.equal(2);

    const again = await submitScenarios(f.config, f.redis, { runId: 'later', perEnv: 3 });
    expect(again).to.deep.include({ jobsAdded: 0, jobsRetried: 2 });
    await f.waitForRun('later');
    const counters = await f.store.counters('later');
    expect(counters['scenario.task']?.['dropped:MODEL_AUTH'] ?? 0).to.equal(0);
    const dropped = [];
    for (const id of await f.store.listDocIds('later', 'scenario')) {
      const s = await f.store.getDoc('later', 'scenario', id);
      if (s?.dropReason?.code === 'MODEL_AUTH') dropped.push(id);
    }
    expect(dropped).to.deep.equal([]);
    // Nothing failed any more: a third submission retries nothing.
    expect(await submitScenarios(f.config, f.redis, { runId: 'later', perEnv: 3 })).to.deep.include({ jobsAdded: 0, jobsRetried: 0 });
  });

  // The queue's stage, and the model stage of its calls that the endpoint refuses once.
  for (const [stage, modelStage] of [['check.probe', 'check.probe.tester'], ['check.verdict', 'check.repair']] as const) {
    it(`retries an environment that failed at ${stage} (once probing: a stranger's probe found it left building for ever, the run finished), and it goes on to its verdict`, async () => {
      const refused = parseModelScript({ rules: [{ name: `refused-${modelStage}`, stage: modelStage, times: 1, fault: { type: 'server_error', status: 401 } }] });
      const f = await fleet({ extra: refused });
      const run = `late-${stage.replace('.', '-')}`;
      await submitSynthesis(f.config, f.redis, { runId: run, tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
      await f.waitForRun(run);
      const envs = async () => Promise.all((await f.store.listDocIds(run, 'env')).map(async id => (await f.store.getDoc(run, 'env', id))!));
      const failed = (await envs()).filter(e => e.status === 'failed');
      expect(failed.map(e => [e.failure?.stage, e.failure?.code])).to.deep.equal([[stage, 'MODEL_AUTH']]);

      const again = await submitSynthesis(f.config, f.redis, { runId: run, tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
      expect(again).to.deep.include({ jobsAdded: 0, jobsRetried: 1 });
      await f.waitForRun(run);
      expect((await envs()).find(e => e.id === failed[0]!.id)?.status).to.be.oneOf(['kept', 'rejected']);
      const counts = await f.store.statusCounts(run, 'env');
      expect(counts['failed'] ?? 0).to.equal(0);
      expect(counts['building'] ?? 0).to.equal(0);
      expect(counts['probing'] ?? 0).to.equal(0);
    });
  }

  it('retries an environment that failed at skeleton.operations for a rejected key, and it goes on to its verdict', async () => {
    const refused = parseModelScript({ rules: [{ name: 'refused-operations', stage: 'skeleton.operations', times: 1, fault: { type: 'server_error', status: 401 } }] });
    const f = await fleet({ extra: refused });
    await submitSynthesis(f.config, f.redis, { runId: 'env-later', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun('env-later');
    const envs = async () => Promise.all((await f.store.listDocIds('env-later', 'env')).map(async id => (await f.store.getDoc('env-later', 'env', id))!));
    const failed = (await envs()).filter(e => e.status === 'failed');
    expect(failed.map(e => [e.failure?.stage, e.failure?.code])).to.deep.equal([['skeleton.operations', 'MODEL_AUTH']]);

    const again = await submitSynthesis(f.config, f.redis, { runId: 'env-later', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    expect(again).to.deep.include({ jobsAdded: 0, jobsRetried: 1 });
    await f.waitForRun('env-later');
    // It went through the rest of the pipeline, to a verdict.
    expect((await envs()).find(e => e.id === failed[0]!.id)?.status).to.be.oneOf(['kept', 'rejected']);
    expect((await f.store.statusCounts('env-later', 'env'))['failed'] ?? 0).to.equal(0);
    expect((await f.store.counters('env-later'))['skeleton.operations']?.['failed:MODEL_AUTH'] ?? 0).to.equal(0);
  });
});
