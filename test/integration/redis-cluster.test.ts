import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FlowProducer } from 'bullmq';
import { expect } from 'chai';
import type { AppConfig } from '../../config/index.js';
import { waitForRun } from '../../queues/run-jobs.js';
import { runStatus } from '../../queues/run-status.js';
import { submitRollouts, submitScenarios, submitSynthesis } from '../../queues/submit.js';
import { exportRun } from '../../src/datasets/export.js';
import { runSink } from '../../src/datasets/sink.js';
import { createRedisLedger } from '../../src/llm/redis-ledger.js';
import { loadModelScript, startModelServer } from '../../src/model-server/index.js';
import { createRedisConnection, isCluster, isRedisConnectionError, waitForRedis, type Redis } from '../../src/redis/connection.js';
import { redisScript } from '../../src/redis/scripts.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { startWorkerProcess } from '../../workers/main.js';
import { DEMO, ENVFLEET_BIN, childEnv, silentLogger, testConfig, useFleet } from '../helpers/integration.js';
import { startLocalCluster, type LocalCluster } from '../helpers/redis-cluster.js';

const run = promisify(execFile);

/** Where one demo run happens: its configuration, a producer connection and the run store on it. */
interface Where {
  readonly config: AppConfig;
  readonly redis: Redis;
  readonly store: RunStore;
}

/**
 * The demo from source tasks to datasets: synthesis, 3 scenarios per kept environment, rollouts of
 * both modes (2 samples), the sink, then the export. Returns what must not depend on where Redis is:
 * the funnel, each environment's, scenario's and trajectory's outcome, and every dataset file's lines
 * (without the run's timestamps).
 */
async function demoResults(at: Where, runId: string) {
  const { config, redis, store } = at;
  const wait = () => waitForRun(store, runId, () => undefined, { queues: { connection: redis, prefix: config.redis.prefix } });
  await submitSynthesis(config, redis, { runId, tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
  await wait();
  await submitScenarios(config, redis, { runId, perEnv: 3 });
  await wait();
  await submitRollouts(config, redis, { runId, samples: 2, modes: ['non-conversational', 'conversational'] });
  await wait();
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-cluster-export-'));
  try {
    const sunk = await runSink({ redis, prefix: config.redis.prefix, store, runId, dir });
    const exported = await exportRun(store, runId, dir);
    const status = (await runStatus({ store, ledger: createRedisLedger(redis, config.redis.prefix), control: createRedisRunControl(redis, config.redis.prefix) }, runId))!;
    const outcomes = async (kind: 'env' | 'scenario' | 'trajectory') => {
      const out: Record<string, unknown> = {};
      for (const id of await store.listDocIds(runId, kind)) {
        const d = (await store.getDoc(runId, kind, id))! as unknown as Record<string, unknown>;
        out[id] = kind === 'trajectory' ? { reward: d['reward'], solved: d['solved'], termination: d['termination'] } : d['status'];
      }
      return out;
    };
    // Dataset lines with the volatile parts (times, durations, the scripted server's call numbers) left out, sorted.
    const volatile = /(^|_)(created|updated|started|ended|finished|archived)(At|_at)?$|At$|Ms$|_ms$|^(time|timestamp|duration|latency|elapsed)/i;
    const stable = (v: unknown): unknown =>
      Array.isArray(v) ? v.map(stable) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([k]) => !volatile.test(k)).map(([k, x]) => [k, stable(x)])) : v;
    const files: Record<string, string[]> = {};
    for (const name of (await readdir(dir)).filter(n => n.endsWith('.jsonl')).sort()) {
      const text = await readFile(join(dir, name), 'utf8');
      files[name] = text
        .split('\n')
        .filter(Boolean)
        // Tool-call ids are numbered by the scripted server in the order requests reach it.
        .map(l => JSON.stringify(stable(JSON.parse(l))).replace(/call_\d+_/g, 'call_'))
        .sort();
    }
    return {
      funnel: await store.counters(runId),
      environments: await outcomes('env'),
      scenarios: await outcomes('scenario'),
      trajectories: await outcomes('trajectory'),
      sunk: sunk.written,
      datasets: exported.datasets,
      trajectoryCount: status.trajectories.count,
      files,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** How many keys under `prefix` each master holds. */
async function keysPerMaster(redis: Redis, prefix: string): Promise<number[]> {
  if (!isCluster(redis)) throw new Error('not a cluster connection');
  const counts: number[] = [];
  for (const node of redis.nodes('master')) {
    let n = 0;
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1_000);
      cursor = next;
      n += keys.length;
    } while (cursor !== '0');
    counts.push(n);
  }
  return counts;
}

describe('a fleet on a Redis Cluster (3 local masters, real workers, scripted server)', function () {
  const fleet = useFleet();
  let cluster: LocalCluster | undefined;
  const stops: (() => Promise<void>)[] = [];

  before(async () => {
    cluster = await startLocalCluster(3);
  });
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  });
  after(async () => {
    await cluster?.stop();
  });

  /** A fleet of in-process workers on the cluster, under its own prefix. */
  async function clusterFleet(): Promise<Where & { prefix: string }> {
    const server = await startModelServer({ script: await loadModelScript(DEMO) });
    stops.push(() => server.close());
    const config = testConfig(server, { ENVFLEET_REDIS_CLUSTER_NODES: cluster!.nodes.join(',') });
    const redis = createRedisConnection(config.redis, 'worker');
    stops.push(async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
    await waitForRedis(redis, config.redis);
    expect(isCluster(redis)).to.equal(true);
    const workers = await startWorkerProcess(config, silentLogger());
    stops.push(() => workers.stop());
    return { config, redis, store: createRedisRunStore(redis, config.redis.prefix), prefix: config.redis.prefix };
  }

  it('runs the demo pipeline to the same datasets as on one Redis, with its keys on every master; the command line shows and deletes the run', async () => {
    const single = await fleet();
    const expected = await demoResults(single, 'demo');
    expect(expected.trajectoryCount).to.be.greaterThan(0);
    expect(Object.values(expected.environments)).to.include('kept');

    const c = await clusterFleet();
    const got = await demoResults(c, 'demo');
    expect(got).to.deep.equal(expected);

    // The keys spread: each queue (or flow) and the run are under their own hash tag, on every master.
    const counts = await keysPerMaster(c.redis, c.prefix);
    expect(counts).to.have.length(3);
    for (const n of counts) expect(n, `keys per master: ${counts.join(', ')}`).to.be.greaterThan(0);
    // Every key of the run is in the run's slot; a flow's queues share one slot.
    const slots = new Set<number>();
    if (!isCluster(c.redis)) throw new Error('not a cluster connection');
    for (const node of c.redis.nodes('master')) {
      const [, keys] = await node.scan('0', 'MATCH', `${c.prefix}:run:{demo}:*`, 'COUNT', 100_000);
      for (const k of keys) slots.add(Number(await node.cluster('KEYSLOT', k)));
    }
    expect(slots.size).to.equal(1);

    // The command line on the cluster (producer connections): status, then deleting the run takes
    // every key of it off every master, and its finished jobs out of the queues.
    const env = childEnv(c.config, { ENVFLEET_REDIS_CLUSTER_NODES: cluster!.nodes.join(',') });
    const status = JSON.parse((await run(process.execPath, [ENVFLEET_BIN, 'status', '--run', 'demo', '--json'], { env })).stdout) as { trajectories: { count: number } };
    expect(status.trajectories.count).to.equal(expected.trajectoryCount);
    await run(process.execPath, [ENVFLEET_BIN, 'runs', 'delete', '--run', 'demo'], { env });
    const left = await keysPerMaster(c.redis, `${c.prefix}:run:{demo}`);
    expect(left).to.deep.equal([0, 0, 0]);
    expect(await c.store.getRun('demo')).to.equal(null);
  });

  it('needs one hash tag for the queues of a flow: under two tags the flow is refused', async () => {
    const c = await clusterFleet();
    const flows = new FlowProducer({ connection: c.redis });
    stops.push(() => flows.close());
    const flow = (childTag: string) => ({
      name: 'parent',
      queueName: 'toy.parent',
      prefix: `${c.prefix}:{toy.parent}`,
      data: {},
      children: [{ name: 'child', queueName: 'toy.child', prefix: `${c.prefix}:{${childTag}}`, data: {} }],
    });
    const refused = await flows.add(flow('toy.child')).then(
      () => null,
      (err: unknown) => err,
    );
    // ioredis refuses it before sending (a Cluster MULTI must stay in one slot); Redis would answer CROSSSLOT.
    expect(String(refused)).to.match(/All keys in the pipeline should belong to the same slots? allocation group|CROSSSLOT/);
    // Under the parent's tag it is taken.
    const added = await flows.add(flow('toy.parent'));
    expect(added.children).to.have.length(1);
  });

  it('runs Lua scripts by their SHA on every master, and again after SCRIPT FLUSH on all of them', async () => {
    const config = testConfig(null, { ENVFLEET_REDIS_CLUSTER_NODES: cluster!.nodes.join(',') });
    for (const options of [{}, { enableAutoPipelining: true }]) {
      const redis = createRedisConnection(config.redis, 'worker', options);
      try {
        await waitForRedis(redis, config.redis, 10_000);
        if (!isCluster(redis)) throw new Error('not a cluster connection');
        const incr = redisScript('cluster_test_incr', "return redis.call('INCRBY', KEYS[1], ARGV[1])", 1);
        // Keys in slots of every master ({b} 3300, {c} 7365, {a} 15495): each master gets the script.
        const keys = ['{a}:n', '{b}:n', '{c}:n', '{d}:n', '{e}:n', '{f}:n'].map(k => `${config.redis.prefix}:${k}`);
        for (const k of keys) await redis.del(k);
        expect(await Promise.all(keys.map(k => incr(redis, [k], [2])))).to.deep.equal(keys.map(() => 2));
        for (const node of redis.nodes('master')) expect(await node.script('EXISTS', incr.sha)).to.deep.equal([1]);
        for (const node of redis.nodes('master')) await node.script('FLUSH');
        expect(await Promise.all(keys.map(k => incr(redis, [k], [3])))).to.deep.equal(keys.map(() => 5));
        // The run store's scripts too (PUT_DOC, ADD_PENDING, DONE_PENDING), after another flush.
        for (const node of redis.nodes('master')) await node.script('FLUSH');
        const store = createRedisRunStore(redis, config.redis.prefix);
        const runId = `scripts-${Object.keys(options).length}`;
        await store.putDoc(runId, 'group', 'g', { id: 'g' } as never, [{ stage: 's', outcome: 'o', n: 1 }]);
        await store.addPending(runId, ['q|1']);
        await store.donePending(runId, 'q|1');
        expect(await store.getDoc(runId, 'group', 'g')).to.deep.equal({ id: 'g' });
        expect(await store.counters(runId)).to.deep.equal({ s: { o: 1 } });
        expect(await store.finishedAt(runId)).to.be.a('string');
        for (const k of keys) await redis.del(k);
      } finally {
        redis.disconnect();
      }
    }
  });

  it('checks cluster_state, not only a PING: a cluster with a slot unassigned is REDIS_UNAVAILABLE and says so', async () => {
    const cliAt = async (p: number, ...args: string[]) => (await run('redis-cli', ['-p', String(p), ...args])).stdout;
    /** Until every node says `state` (the change reaches the others by gossip). */
    const settle = async (state: string) => {
      for (let i = 0; i < 200; i++) {
        const infos = await Promise.all(cluster!.ports.map(p => cliAt(p, 'cluster', 'info')));
        if (infos.every(info => info.includes(`cluster_state:${state}`))) return;
        await new Promise(resolve => setTimeout(resolve, 50));
      }
      throw new Error(`the cluster never reached cluster_state:${state}`);
    };
    const config = testConfig(null, { ENVFLEET_REDIS_CLUSTER_NODES: cluster!.nodes.join(',') });
    const redis = createRedisConnection(config.redis, 'worker');
    try {
      await waitForRedis(redis, config.redis, 10_000);
      // `redis-cli --cluster create` gives the first node the first slots (0 to 5460): a key of one of them, whose slot
      // every node forgets the owner of.
      let key = '';
      let slot = -1;
      for (let i = 0; slot < 0 || slot > 5460; i++) slot = Number((await cliAt(cluster!.ports[0]!, 'cluster', 'keyslot', (key = `clé-${i}`))).trim());
      const producer = createRedisConnection(config.redis, 'producer');
      await waitForRedis(producer, config.redis, 10_000);
      for (const p of cluster!.ports) await cliAt(p, 'cluster', 'delslots', String(slot));
      try {
        await settle('fail');
        const err = await waitForRedis(redis, config.redis, 10_000).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).to.have.property('code', 'REDIS_UNAVAILABLE');
        expect(String((err as Error).message)).to.match(/cluster_state is fail.*cluster_state:ok/);
        // A command meanwhile fails the way a node outage does, and is taken for Redis away, to be waited out (a waiting
        // command and the sink ended with "Too many Cluster redirections … CLUSTERDOWN" and a stack: a stranger's probe).
        const refused = await producer.get(key).then(
          () => null,
          (e: unknown) => e,
        );
        expect(String((refused as Error | null)?.message)).to.match(/CLUSTERDOWN|Too many Cluster redirections/);
        expect(isRedisConnectionError(refused)).to.equal(true);
        // A connection made meanwhile is not ready: the same.
        const late = createRedisConnection(config.redis, 'producer');
        const notReady = await late.get(key).then(
          () => null,
          (e: unknown) => e,
        );
        late.disconnect();
        expect(isRedisConnectionError(notReady), String(notReady)).to.equal(true);
      } finally {
        producer.disconnect();
        await cliAt(cluster!.ports[0]!, 'cluster', 'addslots', String(slot));
      }
      await settle('ok');
      await waitForRedis(redis, config.redis, 10_000);
    } finally {
      redis.disconnect();
    }
  });
});
