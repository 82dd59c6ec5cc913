import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import { pino } from 'pino';
import { RedisServerProcess } from '../../cli/private-redis.js';
import { waitNotes } from '../../cli/progress.js';
import type { AppConfig } from '../../config/index.js';
import { waitForRun, type RunProgress } from '../../queues/run-jobs.js';
import { submitSynthesis } from '../../queues/submit.js';
import { loadModelScript, startModelServer, type ModelServer } from '../../src/model-server/index.js';
import { createRedisConnection, waitForRedis, type Redis } from '../../src/redis/connection.js';
import { runSink } from '../../src/datasets/sink.js';
import { createRedisTrajectoryStream } from '../../src/rollouts/stream.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { runKey, runKeys } from '../../src/runs/keys.js';
import { runOptionsFrom } from '../../queues/submit.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { startWorkerProcess, type RunningWorker } from '../../workers/main.js';
import { DEMO, silentLogger, testConfig, until } from '../helpers/integration.js';

/**
 * A command that waits for a run (envfleet synth / scenarios / rollouts, which also hold the in-process
 * workers of --workers) watches it for hours, and its Redis may restart meanwhile. A private redis-server
 * per test, killed and started again on the same port: with its data (AOF) and without (nothing on disk).
 */
describe('a Redis restart under a command waiting for its run (private redis-server)', function () {
  let redisServer: RedisServerProcess | undefined;
  let server: ModelServer | undefined;
  let producer: Redis | undefined;
  let workers: RunningWorker | undefined;
  afterEach(async () => {
    await workers?.stop();
    producer?.disconnect();
    await server?.close();
    await redisServer?.remove();
    workers = undefined;
    producer = undefined;
    server = undefined;
    redisServer = undefined;
  });

  /** A run with outstanding jobs and no worker yet, and a command's wait on it (as cli/submit.ts waits). */
  async function waiting(args: readonly string[]): Promise<{ config: AppConfig; store: RunStore; reports: RunProgress[]; wait: Promise<RunProgress> }> {
    redisServer = await RedisServerProcess.start({ args });
    server = await startModelServer({ script: await loadModelScript(DEMO) });
    const config = testConfig(server, { REDIS_URL: redisServer.url });
    // The commands' own connection: it fails at once while Redis is down.
    producer = createRedisConnection(config.redis, 'producer');
    await waitForRedis(producer, config.redis);
    const store = createRedisRunStore(producer, config.redis.prefix);
    await submitSynthesis(config, producer, { runId: 'watched', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    expect(await store.pendingCount('watched')).to.be.greaterThan(0);
    const reports: RunProgress[] = [];
    const wait = waitForRun(store, 'watched', p => reports.push(p), {
      queues: { connection: producer, prefix: config.redis.prefix },
      control: createRedisRunControl(producer, config.redis.prefix),
      redisAwayMs: 120_000,
      redisAt: config.redis,
    });
    wait.catch(() => undefined);
    await until(() => Promise.resolve(reports.length > 0), 'the first report');
    return { config, store, reports, wait };
  }

  it('rides out a restart that keeps the data, says Redis is away meanwhile, and waits on until the run is done', async () => {
    const { config, store, reports, wait } = await waiting(['--appendonly', 'yes', '--appendfsync', 'always']);
    await redisServer!.killAndRestart(300);
    // The workers come after the restart: the run can only finish if the wait is still on.
    workers = await startWorkerProcess(config, silentLogger());
    const final = await wait;
    expect(final.outstanding).to.equal(0);
    const away = reports.find(p => p.redisAway);
    expect(away, 'a report while Redis was away').not.to.equal(undefined);
    expect(waitNotes('watched', away!).join('\n')).to.match(/^run watched: Redis does not answer \(.+\); a restart keeps the run if Redis keeps its data \(AOF or RDB\)\. This command waits for it up to ENVFLEET_REDIS_STARTUP_WAIT_MS$/);
    expect((await store.statusCounts('watched', 'env'))['kept']).to.be.greaterThan(0);
  });

  it('says the run is gone when Redis restarts without its data, instead of reporting it finished', async () => {
    const { wait } = await waiting([]);
    await redisServer!.killAndRestart(300);
    const error = await wait.then(
      p => new Error(`the wait ended as if the run were done: ${JSON.stringify(p)}`),
      (err: unknown) => err,
    );
    expect(error).to.have.property('code', 'RUN_GONE');
    expect(String((error as Error).message)).to.match(/^run "watched" is no longer in Redis at redis:\/\/127\.0\.0\.1:\d+, which has just come back: Redis restarted without its data \(persistence off/);
  });

  it('ends the jobs of a run that is gone (deleted, or Redis emptied under the workers) without retries or error lines: RUN_GONE said once per run', async () => {
    // A stranger's probe: Redis restarted empty under running workers gave "run \"mk\" does not exist" as UNEXPECTED, retried
    // five times per job, and raw BullMQ "Missing key for job" worker errors.
    redisServer = await RedisServerProcess.start({ args: [] });
    server = await startModelServer({ script: await loadModelScript(DEMO) });
    const config = testConfig(server, { REDIS_URL: redisServer.url, LOG_LEVEL: 'info' });
    producer = createRedisConnection(config.redis, 'producer');
    await waitForRedis(producer, config.redis);
    const store = createRedisRunStore(producer, config.redis.prefix);
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    // 1. The run's keys gone before any job of it runs (as after envfleet runs delete, or Redis emptied but for the queues):
    // every job ends at once.
    await submitSynthesis(config, producer, { runId: 'deleted', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    const queued = (await store.pendingByStage('deleted'))['mine.judge'] ?? 0;
    expect(queued).to.be.greaterThan(0);
    const runKeysNow = [runKeys(config.redis.prefix, 'deleted').record, ...(await producer.keys(`${runKey(config.redis.prefix, 'deleted')}:*`))];
    await producer.del(...runKeysNow);
    workers = await startWorkerProcess(config, logger);
    const judge = new Queue('mine.judge', { connection: producer, prefix: config.redis.prefix });
    try {
      await until(async () => (await judge.getJobCounts('failed'))['failed'] === queued, 'every job of the deleted run ended');
      const failed = await judge.getFailed();
      expect(failed.map(j => [j.attemptsMade, j.failedReason.startsWith('[RUN_GONE] run "deleted" is no longer in Redis: it was deleted')])).to.deep.equal(failed.map(() => [1, true]));
    } finally {
      await judge.close();
    }
    const said = lines.filter(l => l.includes('"code":"RUN_GONE"'));
    expect(said).to.have.length(1);
    expect(said[0]).to.include('jobs of a run that is no longer in Redis end without a retry (said once per run)');
    // Nothing of the run was written again (no counters, outcomes or marks of a run that is gone).
    expect(await producer.keys(`${runKey(config.redis.prefix, 'deleted')}*`)).to.deep.equal([]);
    // 2. Redis emptied while the workers run a run: whatever was in flight, no error line and no retry of a gone job.
    await submitSynthesis(config, producer, { runId: 'emptied', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await until(async () => (await store.counters('emptied'))['mine.judge'] !== undefined, 'the run under way');
    await producer.flushall();
    await new Promise(r => setTimeout(r, 5_000));
    const errors = lines.filter(l => (JSON.parse(l) as { level: number }).level >= 50);
    expect(errors, errors.join('\n')).to.deep.equal([]);
    expect(lines.filter(l => l.includes('it will be retried if attempts remain'))).to.deep.equal([]);
  });

  it('says Redis is away in a warning now and then while it restarts under running workers, not an error line with a stack per reconnection of every queue', async () => {
    // A stranger's probe: about 100 error lines a second ("worker error", "queue connection error", each with its stack),
    // 565 for a 30 s restart, and no line saying what was going on.
    redisServer = await RedisServerProcess.start({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    server = await startModelServer({ script: await loadModelScript(DEMO) });
    const config = testConfig(server, { REDIS_URL: redisServer.url, LOG_LEVEL: 'info' });
    producer = createRedisConnection(config.redis, 'producer');
    await waitForRedis(producer, config.redis);
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    workers = await startWorkerProcess(config, logger);
    await redisServer.killAndRestart(2_000);
    // (The producer connection fails at once while it reconnects: asked again until it answers.)
    await until(() => producer!.ping().then(() => true, () => false), 'Redis to answer again');
    // The workers are back: a run submitted now is done by them.
    const store = createRedisRunStore(producer, config.redis.prefix);
    await submitSynthesis(config, producer, { runId: 'after', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await waitForRun(store, 'after', () => undefined);
    const parsed = lines.map(l => JSON.parse(l) as { level: number; msg: string; code?: string });
    const errors = parsed.filter(l => l.level >= 50);
    expect(errors, JSON.stringify(errors.slice(0, 3))).to.deep.equal([]);
    const away = parsed.filter(l => l.code === 'REDIS_UNAVAILABLE');
    expect(away.length, 'Redis away was said').to.be.greaterThan(0);
    expect(away.length, 'said now and then, not per reconnection').to.be.at.most(2);
    expect(away[0]!.msg).to.match(/^Redis does not answer: the workers reconnect by themselves/);
  });

  /** A run with a sink following it (as `envfleet sink --follow` runs, on a connection that waits through reconnects). */
  async function sinking(args: readonly string[]) {
    redisServer = await RedisServerProcess.start({ args });
    const config = testConfig(null, { REDIS_URL: redisServer.url });
    producer = createRedisConnection(config.redis, 'worker');
    await waitForRedis(producer, config.redis);
    const store = createRedisRunStore(producer, config.redis.prefix);
    await store.createRun({ id: 'sunk', createdAt: new Date().toISOString(), input: 'tasks', options: runOptionsFrom(config) });
    const stream = createRedisTrajectoryStream(producer, config.redis.prefix);
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sink-restart-'));
    const written: number[] = [];
    const sink = runSink({ redis: producer, prefix: config.redis.prefix, store, runId: 'sunk', dir, follow: true, gatherMs: 0, onProgress: n => written.push(n) });
    sink.catch(() => undefined);
    /** Stores a trajectory and publishes it, as a rollout job does (without a summary: the sink reads the document). */
    const publish = async (id: string) => {
      await store.putDocText('sunk', 'trajectory', id, JSON.stringify({ id, runId: 'sunk', reward: 1 }));
      await stream.publish('sunk', id);
    };
    const lines = async () => (await readFile(join(dir, 'trajectories', 'part-00000.jsonl'), 'utf8')).split('\n').filter(Boolean);
    return { config, store, sink, publish, lines, written, lockKey: runKeys(config.redis.prefix, 'sunk').sinkLock };
  }

  it('stops the sink saying the run is gone when Redis restarts without its data, instead of a bare NOGROUP', async () => {
    const { sink, publish, lines } = await sinking([]);
    await publish('trj-1');
    await until(async () => (await lines().catch(() => [])).length === 1, 'the first line');
    await redisServer!.killAndRestart(300);
    const error = await sink.then(
      () => new Error('the sink ended as if the run were done'),
      (err: unknown) => err,
    );
    expect(error).to.have.property('code', 'RUN_GONE');
    expect(String((error as Error).message)).to.match(/^run "sunk" is no longer in Redis, which has just come back: Redis restarted without its data/);
    expect(await lines()).to.have.length(1);
  });

  it('stops a sink that lost its lock to another sink (Redis away longer than the lock lives) before it writes anything more', async () => {
    const { sink, publish, lines, lockKey } = await sinking(['--appendonly', 'yes']);
    await publish('trj-1');
    await until(async () => (await lines().catch(() => [])).length === 1, 'the first line');
    // The state after an outage longer than the lock's life: it expired, and another sink took it.
    await producer!.set(lockKey, 'another-sink', 'PX', 60_000);
    await publish('trj-2');
    const error = await sink.then(
      () => new Error('the sink ended by itself'),
      (err: unknown) => err,
    );
    expect(error).to.have.property('code', 'SINK_LOCK_LOST');
    expect(String((error as Error).message)).to.match(/^the sink of run "sunk" lost its lock \(.+:sink-lock\) while Redis was away or restarted, or while the sink was held back longer than the lock lives, and another sink holds it now; this one stopped before writing anything more/);
    expect(await lines(), 'nothing written once the lock was lost').to.have.length(1);
    expect(await producer!.get(lockKey)).to.equal('another-sink');
  });
});
