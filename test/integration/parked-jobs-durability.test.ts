import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { RedisServerProcess } from '../../cli/private-redis.js';
import { parsePendingKey } from '../../queues/enqueuer.js';
import { resumeRun, waitForRun } from '../../queues/run-jobs.js';
import { submitSynthesis } from '../../queues/submit.js';
import { loadModelScript, startModelServer, type ModelServer } from '../../src/model-server/index.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { DEMO, ENVFLEET_BIN, childEnv, exited, testConfig, until } from '../helpers/integration.js';

const LIBRARY = {
  summary: 'Library circulation system',
  introduction: 'A public library circulation system that tracks members, the book catalogue with copies on the shelf, and loans with their due days. Staff and members look up members and books, lend and take back copies, and settle overdue fines. It enforces loan limits and blocks lending to members with unpaid fines.',
};


/**
 * A parked job is plain BullMQ state (a delayed job) plus a record in Redis: nothing of it lives
 * in a worker. It survives its worker being killed and Redis being killed and started again.
 */
describe('parked jobs survive a worker crash and a Redis restart (real workers, a redis-server of its own)', function () {
  let redisServer: RedisServerProcess | undefined;
  let server: ModelServer | undefined;
  const children: ChildProcess[] = [];
  let queue: Queue | undefined;
  let redis: Redis | undefined;
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await queue?.close();
    redis?.disconnect();
    await server?.close();
    await redisServer?.remove();
  });

  it('keeps a paused run’s job parked through both, and runs it after resume', async () => {
    // A redis-server of the test's own that keeps every write on disk (so it can be killed and started again with its data).
    redisServer = await RedisServerProcess.start({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    server = await startModelServer({ script: await loadModelScript(DEMO) });
    const config = testConfig(server, { REDIS_URL: redisServer.url });
    const client = new Redis(redisServer.url, { maxRetriesPerRequest: null });
    client.on('error', () => undefined);
    redis = client;
    const prefix = config.redis.prefix;
    const store = createRedisRunStore(client, prefix);
    const control = createRedisRunControl(client, prefix);
    const worker = () => {
      const child = spawn(process.execPath, [ENVFLEET_BIN, 'worker'], { env: childEnv(config), stdio: 'ignore' });
      children.push(child);
      return child;
    };
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-durable-'));
    await writeFile(join(dir, 'd.jsonl'), `${JSON.stringify(LIBRARY)}\n`);

    const first = worker();
    await control.pause('durable', 'held for the test');
    await submitSynthesis(config, client, { runId: 'durable', descriptions: join(dir, 'd.jsonl'), probeSteps: 8 });
    const [key] = await store.pending('durable');
    const { queue: name, jobId } = parsePendingKey(key!);
    const q = new Queue(name, { connection: client, prefix });
    queue = q;
    const parkedKeys = async () => {
      const keys: string[] = [];
      for await (const batch of control.parked('durable')) keys.push(...batch.map(p => p.key));
      return keys;
    };
    await until(async () => (await q.getJobState(jobId)) === 'delayed' && (await parkedKeys()).length === 1, 'the job to be parked', 300_000);

    // The worker dies, then Redis dies and comes back from its append-only file.
    first.kill('SIGKILL');
    await exited(first);
    await redisServer.killAndRestart(0);
    await until(async () => (await client.ping().catch(() => '')) === 'PONG', 'the client to reconnect');
    expect(await q.getJobState(jobId)).to.equal('delayed');
    expect(await parkedKeys()).to.deep.equal([key]);
    expect((await control.get('durable')).state).to.equal('paused');
    expect(server.log()).to.have.length(0);

    const { released } = await resumeRun({ connection: client, prefix }, control, 'durable');
    expect(released).to.equal(1);
    worker();
    await waitForRun(store, 'durable', () => undefined);
    const [env] = await Promise.all((await store.listDocIds('durable', 'env')).map(id => store.getDoc('durable', 'env', id)));
    expect(env!.status).to.equal('kept');
    const job = await q.getJob(jobId);
    expect(job?.attemptsStarted).to.equal(2);
    expect(await parkedKeys()).to.deep.equal([]);
  });
});
