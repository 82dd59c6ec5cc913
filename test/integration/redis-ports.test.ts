import { randomUUID } from 'node:crypto';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { EndpointConfig } from '../../config/index.js';
import { createRedisResponseCache } from '../../src/llm/redis-cache.js';
import { runKeys } from '../../src/runs/keys.js';
import { createRedisLedger } from '../../src/llm/redis-ledger.js';
import { createRedisLimiter } from '../../src/llm/redis-limiter.js';
import { createRedisMetrics } from '../../src/runs/metrics.js';
import { hashOf } from '../../src/util/canonical.js';
import { REDIS_URL, dropPrefix, recordingRedis, requireRedis, until } from '../helpers/integration.js';
import { rejection } from '../helpers/assert.js';

function endpoint(overrides: Partial<EndpointConfig> = {}): EndpointConfig {
  return {
    name: 'e',
    baseURL: `http://127.0.0.1:1/${randomUUID()}`,
    apiKey: 'k',
    timeoutMs: 10_000,
    maxConcurrency: 0,
    requestsPerMinute: 0,
    ...overrides,
  };
}


describe('Redis implementations of the gateway ports', () => {
  const prefix = `envfleet-test-${randomUUID().slice(0, 8)}`;
  // Two connections stand for two worker processes of the fleet.
  let a: Redis;
  let b: Redis;

  before(async () => {
    await requireRedis();
    a = new Redis(REDIS_URL);
    b = new Redis(REDIS_URL);
  });
  after(async () => {
    await dropPrefix(prefix);
    a.disconnect();
    b.disconnect();
  });

  it('shares the concurrency limit between processes and frees a slot on release', async () => {
    const e = endpoint({ maxConcurrency: 2 });
    const limA = createRedisLimiter(a, prefix);
    const limB = createRedisLimiter(b, prefix);
    const first = await limA.acquire(e, { maxWaitMs: 0 });
    await limB.acquire(e, { maxWaitMs: 0 });
    const err = await rejection(limB.acquire(e, { maxWaitMs: 0 }));
    expect(err).to.have.property('code', 'MODEL_RATE_LIMITED');
    expect(String(err)).to.match(/concurrency limit/);
    await first.release();
    await limB.acquire(e, { maxWaitMs: 0 });
  });

  it('frees the slot of a process that dies holding it after its lease, not after the request timeout; a live holder keeps it past its lease by renewing', async () => {
    const e = endpoint({ maxConcurrency: 1, timeoutMs: 600_000 });
    const live = createRedisLimiter(a, prefix, { leaseMs: 300 });
    const held = await live.acquire(e, { maxWaitMs: 0 });
    // Several leases later the live holder still has its slot (renewed every third of a lease).
    await new Promise(resolve => setTimeout(resolve, 1_200));
    expect(await rejection(createRedisLimiter(b, prefix).acquire(e, { maxWaitMs: 0 }))).to.have.property('code', 'MODEL_RATE_LIMITED');
    await held.release();
    // A process killed with its request in flight: no release, no renewal (its connection is gone). Its slot frees
    // after its lease; before, after the request timeout + 30 s (a kill -9 stalled the fleet for 150 s).
    const c = new Redis(REDIS_URL);
    await createRedisLimiter(c, prefix, { leaseMs: 300 }).acquire(e, { maxWaitMs: 0 });
    c.disconnect();
    const next = await createRedisLimiter(b, prefix).acquire(e, { maxWaitMs: 60_000 });
    await next.release();
  });

  it('waits for a slot that frees up within the allowed wait', async () => {
    const e = endpoint({ maxConcurrency: 1 });
    const lim = createRedisLimiter(a, prefix);
    const held = await lim.acquire(e, { maxWaitMs: 0 });
    setTimeout(() => void held.release(), 100);
    const lease = await lim.acquire(e, { maxWaitMs: 5_000 });
    await lease.release();
  });

  it('hands a slot freed in the same process to the longest waiter at once, without polling', async function () {
    const e = endpoint({ maxConcurrency: 1 });
    // A minute between polls: a waiter only gets the slot within the test's time if a release wakes it.
    const lim = createRedisLimiter(a, prefix, { maxPollMs: 60_000 });
    const held = await lim.acquire(e, { maxWaitMs: 0 });
    const order: string[] = [];
    const first = lim.acquire(e, { maxWaitMs: 120_000 }).then(lease => (order.push('first'), lease));
    await new Promise(resolve => setTimeout(resolve, 50));
    const second = lim.acquire(e, { maxWaitMs: 120_000 }).then(lease => (order.push('second'), lease));
    await new Promise(resolve => setTimeout(resolve, 50));
    await held.release();
    const firstLease = await first;
    expect(order).to.deep.equal(['first']);
    // Releasing twice frees one slot, not two: the second waiter still waits for the first's lease.
    await held.release();
    await firstLease.release();
    const secondLease = await second;
    expect(order).to.deep.equal(['first', 'second']);
    await secondLease.release();
  });

  it('hands a slot freed in another process to a waiter here at once, through pub/sub', async function () {
    const e = endpoint({ maxConcurrency: 1 });
    const subB = new Redis(REDIS_URL);
    try {
      const limA = createRedisLimiter(a, prefix, { maxPollMs: 60_000 });
      const limB = createRedisLimiter(b, prefix, { maxPollMs: 60_000, subscriber: subB });
      const held = await limA.acquire(e, { maxWaitMs: 0 });
      const waiting = limB.acquire(e, { maxWaitMs: 120_000 });
      // The waiter has asked Redis, been refused and subscribed before the slot is freed.
      const channel = `${prefix}:limit:${hashOf(e.baseURL, 16)}:inflight:freed`;
      await until(async () => Number(((await a.pubsub('NUMSUB', channel)) as [string, number])[1]) === 1, 'the waiter to subscribe');
      await held.release();
      const lease = await waiting;
      await lease.release();
    } finally {
      subB.disconnect();
    }
  });

  it('stops waiting for a slot when the signal aborts', async () => {
    const e = endpoint({ maxConcurrency: 1 });
    const lim = createRedisLimiter(a, prefix, { maxPollMs: 60_000 });
    const held = await lim.acquire(e, { maxWaitMs: 0 });
    const controller = new AbortController();
    const waiting = lim.acquire(e, { maxWaitMs: 120_000, signal: controller.signal });
    controller.abort(new Error('job cancelled'));
    expect(String(await rejection(waiting))).to.match(/job cancelled/);
    await held.release();
    const lease = await lim.acquire(e, { maxWaitMs: 0 });
    await lease.release();
  });

  it('enforces requests per minute across processes', async () => {
    const e = endpoint({ requestsPerMinute: 3 });
    await createRedisLimiter(a, prefix).acquire(e, { maxWaitMs: 0 });
    await createRedisLimiter(b, prefix).acquire(e, { maxWaitMs: 0 });
    await createRedisLimiter(a, prefix).acquire(e, { maxWaitMs: 0 });
    const err = await rejection(createRedisLimiter(b, prefix).acquire(e, { maxWaitMs: 0 }));
    expect(String(err)).to.match(/requests-per-minute/);
    expect((err as { retryAfterMs: number }).retryAfterMs).to.be.within(1, 60_000);
  });

  it('makes every process wait out a 429 cool-down', async () => {
    const e = endpoint();
    await createRedisLimiter(a, prefix).coolDown(e, 5_000);
    const err = await rejection(createRedisLimiter(b, prefix).acquire(e, { maxWaitMs: 60_000 }));
    expect(String(err)).to.match(/cooling down/);
    expect((err as { retryAfterMs: number }).retryAfterMs).to.be.within(1, 5_000);
    // A shorter cool-down never shortens a longer one.
    await createRedisLimiter(b, prefix).coolDown(e, 10);
    expect(await rejection(createRedisLimiter(a, prefix).acquire(e, { maxWaitMs: 0 }))).to.have.property('code', 'MODEL_RATE_LIMITED');
  });

  it('keeps the longest of cool-downs set at the same moment by several processes (a storm of 429s: an hour asked for by one, seconds by the others)', async () => {
    // Read and set apart, two processes that both read no cool-down set theirs in turn, and the last one won.
    const cooling = (r: Redis) => createRedisLimiter(r, prefix);
    for (let round = 0; round < 20; round++) {
      const e = endpoint({ baseURL: `http://storm-${round}.invalid/v1` });
      const [first, second] = round % 2 === 0 ? [a, b] : [b, a];
      await Promise.all([cooling(first).coolDown(e, 3_600_000, 'MODEL_RATE_LIMITED'), ...[1, 2, 3].map(() => cooling(second).coolDown(e, 5_000, 'MODEL_UNREACHABLE'))]);
      const err = await rejection(cooling(a).acquire(e, { maxWaitMs: 0 }));
      expect((err as { retryAfterMs: number }).retryAfterMs, `round ${round}`).to.be.greaterThan(3_000_000);
      // (and the reason is the hour's: the one that set it)
      expect(String((err as Error).message), `round ${round}`).to.match(/cooling down \(after a 429\)/);
    }
  });

  it('says why an endpoint cools down in every process\'s refusal: a 429, or found down (a run paused by the refusals said "rate limited" while the server was down)', async () => {
    for (const [cause, said] of [['MODEL_UNREACHABLE', 'found down: it cannot be reached'], ['MODEL_UNAVAILABLE', 'found down: it serves nothing'], ['MODEL_RATE_LIMITED', 'after a 429']] as const) {
      const e = endpoint({ baseURL: `http://cooling-${cause.toLowerCase()}.invalid/v1` });
      await createRedisLimiter(a, prefix).coolDown(e, 5_000, cause);
      const err = await rejection(createRedisLimiter(b, prefix).acquire(e, { maxWaitMs: 0 }));
      expect(err, cause).to.have.property('code', cause);
      expect(String((err as Error).message)).to.match(new RegExp(`^endpoint "[^"]+" is cooling down \\(${said}\\); the job waits \\d+ ms in its queue$`));
    }
  });

  it('sends one step for the requests that take an unlimited endpoint together, and each of them sees a cool-down set before', async () => {
    const { redis: via, sent } = recordingRedis();
    try {
      const e = endpoint();
      const limited = endpoint({ maxConcurrency: 100 });
      const lim = createRedisLimiter(via, prefix);
      await (await lim.acquire(e, { maxWaitMs: 0 })).release();
      sent.length = 0;
      const leases = await Promise.all([...Array(50).keys()].map(() => lim.acquire(e, { maxWaitMs: 0 })));
      expect(sent).to.deep.equal(['evalsha']);
      await Promise.all(leases.map(l => l.release()));
      // An endpoint with a fleet-wide limit takes a slot per request, one step each.
      sent.length = 0;
      const slots = await Promise.all([...Array(5).keys()].map(() => lim.acquire(limited, { maxWaitMs: 0 })));
      expect(sent.filter(name => name === 'evalsha' || name === 'eval')).to.have.length(5);
      await Promise.all(slots.map(l => l.release()));
      // Another process cools the endpoint down: every request that asks after it is refused.
      await createRedisLimiter(b, prefix).coolDown(e, 5_000);
      sent.length = 0;
      const refused = await Promise.all([...Array(50).keys()].map(() => rejection(lim.acquire(e, { maxWaitMs: 0 }))));
      expect(refused.every(err => /cooling down/.test(String(err)))).to.equal(true);
      expect(sent).to.deep.equal(['evalsha']);
    } finally {
      via.disconnect();
    }
  });

  it('adds ledger entries from several processes exactly, per stage and model', async () => {
    const la = createRedisLedger(a, prefix);
    const lb = createRedisLedger(b, prefix);
    const entry = { runId: 'run', stage: 'mine.judge' as const, model: 'm', usage: { promptTokens: 10, completionTokens: 3 }, costUsd: 0.1, priced: true, cached: false };
    await Promise.all([...Array(10).keys()].map(i => (i % 2 ? la : lb).record({ ...entry, id: randomUUID() })));
    await la.record({ ...entry, id: randomUUID(), cached: true });
    await lb.record({ ...entry, id: randomUUID(), stage: 'mine.topic', model: 'n', priced: false, costUsd: 0 });
    const totals = await la.totals('run');
    expect(totals).to.deep.include({ requests: 11, cachedRequests: 1, promptTokens: 110, completionTokens: 33, savedPromptTokens: 10, unpricedRequests: 1 });
    expect(totals.costUsd).to.equal(1);
    expect(totals.byStage['mine.judge']?.requests).to.equal(10);
    expect(totals.byModel['n']?.promptTokens).to.equal(10);
  });

  it('commits the records of one moment as one script per run, counting an id sent twice in a batch once', async () => {
    // Counts the commands the ledger's connection sends.
    const { redis: via, sent } = recordingRedis();
    try {
      const ledger = createRedisLedger(via, prefix);
      const runs = [`batch-${randomUUID()}`, `batch-${randomUUID()}`];
      const entry = { stage: 'rollout.policy' as const, model: '模型-é', usage: { promptTokens: 1_000_003, completionTokens: 7 }, costUsd: 0.012345, priced: true, cached: false };
      // Connected, and the script known to Redis: a command queued before the connection is sent again from the
      // offline queue, and a first EVALSHA may be answered NOSCRIPT and sent as EVAL.
      await ledger.record({ ...entry, runId: `warm-${randomUUID()}`, id: randomUUID() });
      sent.length = 0;
      const twice = randomUUID();
      // 600 records at one moment over two runs (more than one script's batch of 256), one id among them three times.
      await Promise.all([
        ...[...Array(600).keys()].map(i => ledger.record({ ...entry, runId: runs[i % 2]!, id: randomUUID() })),
        ...[0, 1, 2].map(() => ledger.record({ ...entry, runId: runs[0]!, id: twice })),
      ]);
      const scripts = sent.filter(name => name === 'evalsha' || name === 'eval');
      // 303 and 300 records queued (301 and 300 ids): two batches of the first run (256 + 47), two of the second (256 + 44).
      expect(scripts).to.have.length(4);
      expect(sent.filter(name => name === 'hincrby')).to.have.length(0);
      const first = await ledger.totals(runs[0]!);
      expect(first).to.deep.include({ requests: 301, promptTokens: 301 * 1_000_003, completionTokens: 301 * 7 });
      expect(first.costUsd).to.be.closeTo(301 * 0.012345, 1e-9);
      expect(first.byModel['模型-é']?.requests).to.equal(301);
      expect(first.byStage['rollout.policy']?.promptTokens).to.equal(301 * 1_000_003);
      expect((await ledger.totals(runs[1]!)).requests).to.equal(300);
      // Sent again later (a retry after a lost reply), the id is still not counted again.
      await ledger.record({ ...entry, runId: runs[0]!, id: twice });
      expect((await ledger.totals(runs[0]!)).requests).to.equal(301);
      // A record made while a batch is on its way goes in the next one, and is counted.
      const later = ledger.record({ ...entry, runId: runs[1]!, id: randomUUID() });
      await Promise.all([later, new Promise<void>(resolve => setImmediate(() => void ledger.record({ ...entry, runId: runs[1]!, id: randomUUID() }).then(resolve)))]);
      expect((await ledger.totals(runs[1]!)).requests).to.equal(302);
    } finally {
      via.disconnect();
    }
  });

  it("keeps one call's odd usage out of its batch: that record fails alone, the others of the moment count", async () => {
    const ledger = createRedisLedger(a, prefix);
    const runId = `odd-${randomUUID()}`;
    const entry = { runId, stage: 'rollout.policy' as const, model: 'm', usage: { promptTokens: 100, completionTokens: 1 }, costUsd: 0.001, priced: true, cached: false };
    const odd = [{ promptTokens: Number.NaN, completionTokens: 1 }, { promptTokens: 'n/a' as unknown as number, completionTokens: 1 }, { promptTokens: Infinity, completionTokens: 1 }, { promptTokens: -4, completionTokens: 1 }, { promptTokens: 1e16, completionTokens: 1 }];
    const results = await Promise.allSettled([
      ...[...Array(9).keys()].map(() => ledger.record({ ...entry, id: randomUUID() })),
      ...odd.map(usage => ledger.record({ ...entry, id: randomUUID(), usage })),
      ledger.record({ ...entry, id: randomUUID(), costUsd: Number.NaN }),
    ]);
    expect(results.map(r => r.status)).to.deep.equal([...Array<string>(9).fill('fulfilled'), ...Array<string>(6).fill('rejected')]);
    expect(String((results[9] as PromiseRejectedResult).reason)).to.match(/promptTokens is NaN, not a whole number/);
    const totals = await ledger.totals(runId);
    expect(totals).to.deep.include({ requests: 9, promptTokens: 900, completionTokens: 9 });
    expect(totals.costUsd).to.be.closeTo(0.009, 1e-12);
  });

  it("writes each run's records on their own: a run whose write is held does not hold up another run's", async () => {
    const via = new Redis(REDIS_URL);
    try {
      const ledger = createRedisLedger(via, prefix);
      const entry = { stage: 'rollout.policy' as const, model: 'm', usage: { promptTokens: 1, completionTokens: 1 }, costUsd: 0, priced: true, cached: false };
      await ledger.record({ ...entry, runId: `warm-${randomUUID()}`, id: randomUUID() });
      const held = `held-${randomUUID()}`;
      const free = `free-${randomUUID()}`;
      // The held run's script waits until let go, as on a Redis Cluster node that is failing over.
      let letGo!: () => void;
      const gate = new Promise<void>(resolve => (letGo = resolve));
      const send = via.sendCommand.bind(via);
      via.sendCommand = (command, stream) => {
        if (command.args.some(arg => String(arg).includes(held))) {
          void gate.then(() => send(command, stream));
          return command.promise;
        }
        return send(command, stream);
      };
      let heldDone = false;
      const first = ledger.record({ ...entry, runId: held, id: randomUUID() }).then(() => (heldDone = true));
      await new Promise(resolve => setImmediate(resolve));
      await new Promise(resolve => setImmediate(resolve));
      // Without a loop per run this record waits behind the held one, and the race below ends on the guard instead.
      const outcome = await Promise.race([ledger.record({ ...entry, runId: free, id: randomUUID() }).then(() => 'written'), new Promise(resolve => setTimeout(resolve, 10_000, 'held up'))]);
      expect(outcome).to.equal('written');
      expect(heldDone).to.equal(false);
      letGo();
      await first;
      expect((await ledger.totals(held)).requests).to.equal(1);
      expect((await ledger.totals(free)).requests).to.equal(1);
    } finally {
      via.disconnect();
    }
  });

  it('rejects every record of a batch Redis refuses, and the next batch goes on', async () => {
    const via = new Redis(REDIS_URL);
    try {
      const ledger = createRedisLedger(via, prefix);
      const runId = `refused-${randomUUID()}`;
      // The ledger's key holds a string instead of a hash: the batch is refused with WRONGTYPE.
      await via.set(runKeys(prefix, runId).ledger, 'not a hash');
      const entry = { runId, stage: 'rollout.policy' as const, model: 'm', usage: { promptTokens: 1, completionTokens: 1 }, costUsd: 0, priced: true, cached: false };
      const ids = [...Array(5).keys()].map(() => randomUUID());
      const results = await Promise.allSettled(ids.map(id => ledger.record({ ...entry, id })));
      expect(results.map(r => r.status)).to.deep.equal(Array(5).fill('rejected'));
      expect(String((results[0] as PromiseRejectedResult).reason)).to.match(/WRONGTYPE/);
      // Nothing of the refused batch was kept: its ids sent again count (a retry after the fault loses nothing).
      await via.del(runKeys(prefix, runId).ledger);
      await Promise.all(ids.map(id => ledger.record({ ...entry, id })));
      expect((await ledger.totals(runId)).requests).to.equal(5);
    } finally {
      via.disconnect();
    }
  });

  it('counts an entry once when its reply is lost and the client sends it again after reconnecting', async () => {
    // A proxy between the client and Redis that, when armed, cuts the connection on Redis's next reply: Redis ran
    // the command, the client never heard, and ioredis sends it again once it has reconnected.
    const target = new URL(REDIS_URL);
    let armed = false;
    let watched = '';
    let sentTimes = 0;
    const sockets = new Set<Socket>();
    const proxy = createServer(client => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      sockets.add(client).add(upstream);
      client.on('data', (chunk: Buffer) => {
        if (watched && chunk.includes(watched)) sentTimes += 1;
        upstream.write(chunk);
      });
      upstream.on('data', chunk => {
        if (armed) {
          armed = false;
          client.destroy();
          upstream.destroy();
          return;
        }
        client.write(chunk);
      });
      const end = () => { client.destroy(); upstream.destroy(); };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve));
    const via = new Redis({ host: '127.0.0.1', port: (proxy.address() as AddressInfo).port, db: Number(target.pathname.slice(1) || 0), retryStrategy: () => 20 });
    try {
      const ledger = createRedisLedger(via, prefix);
      const entry = { runId: 'resent', stage: 'mine.judge' as const, model: 'm', usage: { promptTokens: 7, completionTokens: 1 }, costUsd: 0, priced: true, cached: false };
      await ledger.record({ ...entry, id: randomUUID() }); // the scripts are loaded on this connection
      const id = randomUUID();
      watched = id;
      armed = true;
      await ledger.record({ ...entry, id });
      // The write reached Redis twice (the client sent it again after reconnecting), and counted once.
      expect(sentTimes).to.equal(2);
      expect((await ledger.totals('resent')).requests).to.equal(2);
    } finally {
      via.disconnect();
      for (const s of sockets) s.destroy();
      await new Promise(resolve => proxy.close(resolve));
    }
  });

  it('records histogram observations from several processes, gathered and written in one command per series, read back cumulative (series written before per-bucket counts too)', async () => {
    const ma = createRedisMetrics(a, prefix);
    const mb = createRedisMetrics(b, prefix);
    const labels = { queue: 'rollout.run', état: 'fini-漢字' };
    const seconds = [0.001, 0.02, 0.02, 0.7, 1_000];
    seconds.forEach((x, i) => (i % 2 ? ma : mb).observe('job', labels, x));
    // A series of the old layout: cumulative counts under LE itself (one observation of 0.3 s).
    const key = `${prefix}:metrics:job`;
    await until(async () => Number(await a.hget(key, 'queue=rollout.run,état=fini-漢字|count')) === seconds.length, 'the observations');
    for (const le of [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, '+Inf']) await a.hincrby(key, `old=1|${le}`, 1);
    await a.hincrby(key, 'old=1|count', 1);
    const read = await ma.read('job');
    const now = read.find(h => h.labels['queue'] === 'rollout.run')!;
    expect(now.labels).to.deep.equal(labels);
    const at = (h: (typeof read)[number], le: string) => h.buckets.find(x => x.le === le)!.count;
    expect([at(now, '0.005'), at(now, '0.025'), at(now, '0.5'), at(now, '1'), at(now, '600'), at(now, '+Inf')]).to.deep.equal([1, 3, 3, 4, 4, 5]);
    expect(now.count).to.equal(5);
    expect(now.sum).to.be.closeTo(1_000.741, 1e-9);
    const old = read.find(h => h.labels['old'] === '1')!;
    expect([at(old, '0.25'), at(old, '0.5'), at(old, '+Inf')]).to.deep.equal([0, 1, 1]);
  });

  it('stores and expires cached responses under their run, counts their bytes by stage, and drops a damaged entry', async () => {
    const cache = createRedisResponseCache(a, prefix);
    const slot = (key: string) => ({ runId: 'run', stage: 'mine.judge', key });
    await cache.set(slot('k1'), { body: { x: 1, text: 'déjà vu 😀' }, storedAt: 'now' }, 60);
    expect(await cache.get(slot('k1'))).to.deep.equal({ body: { x: 1, text: 'déjà vu 😀' }, storedAt: 'now' });
    const keys = runKeys(prefix, 'run');
    expect(await a.ttl(keys.cache('k1'))).to.be.within(1, 60);
    expect(Number(await a.hget(keys.bytes, 'cache:mine.judge'))).to.equal(await a.strlen(keys.cache('k1')));
    // A large response (embeddings) goes as bytes on its own: the same value comes back, its bytes counted.
    const vectors = Array.from({ length: 40 }, (_, i) => Array.from({ length: 96 }, (_, j) => Math.sin(i * 96 + j)));
    await cache.set(slot('k3'), { body: { data: vectors, note: '向量 ✓' }, storedAt: 'now' }, 60);
    expect(await a.strlen(keys.cache('k3'))).to.be.above(16_384);
    expect(await cache.get(slot('k3'))).to.deep.equal({ body: { data: vectors, note: '向量 ✓' }, storedAt: 'now' });
    expect(Number(await a.hget(keys.bytes, 'cache:mine.judge'))).to.equal((await a.strlen(keys.cache('k1'))) + (await a.strlen(keys.cache('k3'))));
    // The same slot stored again (a twin of a job with its own answer): its bytes replace the first one's (counted twice).
    await cache.set(slot('k1'), { body: { x: 2, text: 'jamais vu — 未见 🙈, plus longue' }, storedAt: 'later' }, 60);
    expect(Number(await a.hget(keys.bytes, 'cache:mine.judge'))).to.equal((await a.strlen(keys.cache('k1'))) + (await a.strlen(keys.cache('k3'))));
    expect(await cache.get({ ...slot('k1'), runId: 'another run' })).to.equal(null);
    await a.set(keys.cache('k2'), '{not json');
    expect(await cache.get(slot('k2'))).to.equal(null);
    expect(await a.exists(keys.cache('k2'))).to.equal(0);
  });
});
