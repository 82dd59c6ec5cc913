import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { pino } from 'pino';
import OpenAI from 'openai';
import { z } from 'zod';
import { loadConfig, type EnvVarName } from '../../../config/index.js';
import { createModelGateway, retryAfterMs, tokenCount, type ModelGateway } from '../../../src/llm/gateway.js';
import { createMemoryLedger, createMemoryLimiter, createMemoryResponseCache } from '../../helpers/memory-ports.js';
import type { EndpointLimiter, Ledger, ResponseCache } from '../../../src/llm/ports.js';
import { parseModelScript, startModelServer, type ModelServer } from '../../../src/model-server/index.js';
import { rejection } from '../../helpers/assert.js';
import { Redis } from 'ioredis';
import { createRedisResponseCache } from '../../../src/llm/redis-cache.js';
import { createRedisLedger } from '../../../src/llm/redis-ledger.js';
import { createRedisLimiter } from '../../../src/llm/redis-limiter.js';
import { createRedisRunControl } from '../../../src/runs/control.js';
import { REDIS_URL, dropPrefix, recordingRedis, requireRedis } from '../../helpers/integration.js';

describe('model gateway (scripted HTTP server, in-memory ports)', function () {
  this.timeout(20_000);
  let server: ModelServer;
  let ledger: Ledger;
  let cache: ReturnType<typeof createMemoryResponseCache>;

  async function gatewayFor(script: unknown, env: Partial<Record<EnvVarName, string>> = {}): Promise<ModelGateway> {
    server = await startModelServer({ script: parseModelScript(script) });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url, ...env } });
    ledger = createMemoryLedger();
    cache = createMemoryResponseCache();
    return createModelGateway({ config, cache, limiter: createMemoryLimiter(), ledger, logger: pino({ level: 'silent' }) });
  }

  afterEach(() => server.close());

  /** Names what a recording connection sent: the limiter's step is the script whose keys are the endpoint's limit keys. */
  const limiterStep = (command: Parameters<Redis['sendCommand']>[0]) => (command.args.some(a => typeof a === 'string' && a.endsWith(':cooldown')) ? 'limiter-step' : command.name);

  /**
   * One test on the real Redis: a scripted server answering `script` (in `server`), a connection made by `connect` and a
   * key prefix of the test's own, dropped afterwards with the connection.
   */
  async function onRealRedis<C extends { readonly redis: Redis }>(script: unknown, connect: () => C, body: (c: C & { readonly prefix: string; readonly url: string }) => Promise<void>): Promise<void> {
    await requireRedis();
    server = await startModelServer({ script: parseModelScript(script) });
    const prefix = `envfleet-test-gw-${randomUUID().slice(0, 8)}`;
    const connection = connect();
    try {
      await body({ ...connection, prefix, url: server.url });
    } finally {
      await dropPrefix(prefix);
      connection.redis.disconnect();
    }
  }
  const plainRedis = () => ({ redis: new Redis(REDIS_URL) });

  it('sends the stage header and the stage profile, and returns tool calls and reasoning', async () => {
    const gateway = await gatewayFor({
      rules: [{ stage: 'rollout.policy', respond: { toolCalls: [{ name: 'get_book', arguments: { id: 7 } }], reasoning: 'look it up' } }],
    });
    const result = await gateway.chat(
      { runId: 'r', stage: 'rollout.policy' },
      {
        messages: [{ role: 'user', content: 'find book 7' }],
        tools: [{ type: 'function', function: { name: 'get_book', parameters: { type: 'object', properties: { id: { type: 'integer' } } } } }],
      },
    );
    const call = result.message.tool_calls?.[0];
    expect(call?.type === 'function' && call.function.name).to.equal('get_book');
    expect(call?.type === 'function' && JSON.parse(call.function.arguments)).to.deep.equal({ id: 7 });
    expect(result.message.reasoning_content).to.equal('look it up');
    const [entry] = server.log();
    expect(entry?.stage).to.equal('rollout.policy');
    expect(entry?.model).to.equal('gpt-4o-mini');
    expect(entry?.body).to.deep.include({ temperature: 1, max_tokens: 4096 });
  });

  it('hands on what a model said cut inside a character with U+FFFD for each lone half (content, reasoning, tool arguments), so that no later request carries one', async () => {
    const gateway = await gatewayFor({
      rules: [{ stage: 'rollout.policy', respond: { content: 'cut \ud83d, whole 😀', reasoning: '\udc00why', toolCalls: [{ name: 'get_book', arguments: { title: 'x\ud800' } }] } }],
    });
    const result = await gateway.chat({ runId: 'r', stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'find it' }], tools: [{ type: 'function', function: { name: 'get_book', parameters: { type: 'object' } } }] });
    expect(result.message.content).to.equal('cut \ufffd, whole 😀');
    expect(result.message.reasoning_content).to.equal('\ufffdwhy');
    const call = result.message.tool_calls?.[0];
    expect(call?.type === 'function' && JSON.parse(call.function.arguments)).to.deep.equal({ title: 'x\ufffd' });
  });

  it('sends through a given openai client (clientFor) the same request and reads the same answer as through its own POST', async () => {
    server = await startModelServer({ script: parseModelScript({ rules: [{ stage: 'rollout.policy', respond: { toolCalls: [{ name: 'get_book', arguments: { id: 7 } }] } }] }) });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    const ports = () => ({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const own = createModelGateway(ports());
    const viaSdk = createModelGateway({ ...ports(), clientFor: e => new OpenAI({ baseURL: e.baseURL, apiKey: e.apiKey, maxRetries: 0 }) });
    const request = { messages: [{ role: 'user' as const, content: 'find book 7' }], tools: [{ type: 'function' as const, function: { name: 'get_book', parameters: { type: 'object', properties: { id: { type: 'integer' } } } } }] };
    const a = await own.chat({ runId: 'r', stage: 'rollout.policy' }, request);
    const b = await viaSdk.chat({ runId: 'r', stage: 'rollout.policy' }, request);
    // The scripted server numbers its tool-call ids by request.
    const same = (r: unknown) => JSON.parse(JSON.stringify(r).replace(/call_\d+_/g, 'call_N_')) as unknown;
    expect(same(b)).to.deep.equal(same(a));
    const [first, second] = server.log();
    expect(second?.body).to.deep.equal(first?.body);
  });

  it('caches rollout stages only per named sample and turn: each sample is a new request, a replayed turn is not', async () => {
    const gateway = await gatewayFor({ rules: [{ stage: 'rollout.policy', respond: { content: 'hi' } }] });
    const req = { messages: [{ role: 'user' as const, content: 'same' }] };
    await gateway.chat({ runId: 'r', stage: 'rollout.policy' }, req);
    await gateway.chat({ runId: 'r', stage: 'rollout.policy' }, req);
    expect(server.log()).to.have.length(2);
    expect(cache.size()).to.equal(0);
    await gateway.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'sample-0:turn-1' }, req);
    await gateway.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'sample-1:turn-1' }, req);
    const replay = await gateway.chat({ runId: 'r', stage: 'rollout.policy', cacheSalt: 'sample-0:turn-1' }, req);
    expect(server.log()).to.have.length(4);
    expect(replay.cached).to.equal(true);
  });

  it('stops at a per-run and a per-stage budget given by the run', async () => {
    server = await startModelServer({ script: parseModelScript({ rules: [{ respond: { content: 'x', usage: { prompt_tokens: 40, completion_tokens: 10 } } }] }) });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    const budgets = { usd: 0, tokens: 0, byStage: { 'mine.topic': { usd: 0, tokens: 60 } } };
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }), budgets: () => Promise.resolve(budgets) });
    await gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'a' }] });
    await gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'b' }] });
    const err = await rejection(gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'c' }] }));
    expect(err).to.have.property('code', 'BUDGET_EXCEEDED');
    expect(String(err)).to.match(/stage mine.topic used 100 tokens, its budget is 60/);
    // Other stages are not limited by that stage budget.
    await gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'd' }] });
  });

  it("shares a run's budget reads among the calls that check it together, and still stops at the budget (real Redis)", async () => {
    // Counts what the gateway's connection sends.
    await onRealRedis({ rules: [{ respond: { content: 'é', usage: { prompt_tokens: 40, completion_tokens: 10 } } }] }, () => recordingRedis(limiterStep), async ({ redis, sent, prefix, url }) => {
      // An endpoint without fleet-wide limits: its limiter step only reads the cool-down, and is shared as well.
      const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: url, ENVFLEET_MODEL_MAX_CONCURRENCY: '0' } });
      const control = createRedisRunControl(redis, prefix);
      const runId = `run-${randomUUID().slice(0, 8)}`;
      await control.setBudgets(runId, { usd: 0, tokens: 0, byStage: { 'rollout.policy': { usd: 0, tokens: 2_000 } } });
      const ledger = createRedisLedger(redis, prefix);
      const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createRedisLimiter(redis, prefix), ledger, logger: pino({ level: 'silent' }), budgets: id => control.budgets(id) });
      // Warm: the scripts known to Redis (a first EVALSHA may be answered NOSCRIPT and sent again as EVAL).
      await gateway.chat({ runId, stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'warm' }] });
      sent.length = 0;
      // 30 calls of one turn, made together: one read of the budgets, one of the ledger's totals, one limiter step.
      const turn = await Promise.all([...Array(30).keys()].map(i => gateway.chat({ runId, stage: 'rollout.policy' }, { messages: [{ role: 'user', content: `客 ${i} 🛎️` }] })));
      expect(turn.every(r => r.message.content === 'é')).to.equal(true);
      expect(sent.filter(name => name === 'hget')).to.have.length(1);
      expect(sent.filter(name => name === 'hgetall')).to.have.length(1);
      expect(sent.filter(name => name === 'limiter-step')).to.have.length(1);
      expect(server.log()).to.have.length(31);
      expect((await ledger.totals(runId)).requests).to.equal(31);
      // 1,550 tokens spent of 2,000: the next calls made together still go (their reads are new ones, after the turn's).
      await Promise.all([...Array(10).keys()].map(i => gateway.chat({ runId, stage: 'rollout.policy' }, { messages: [{ role: 'user', content: `b ${i}` }] })));
      // 2,050 tokens: a read made after them sees it, and the call is refused before anything is sent.
      const err = await rejection(gateway.chat({ runId, stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'one more' }] }));
      expect(err).to.have.property('code', 'BUDGET_EXCEEDED');
      expect(String(err)).to.match(/stage rollout.policy used 2050 tokens, its budget is 2000/);
      expect(server.log()).to.have.length(41);
      // A budget raised meanwhile counts from the next read on.
      await control.setBudgets(runId, { usd: 0, tokens: 0, byStage: { 'rollout.policy': { usd: 0, tokens: 10_000 } } });
      await gateway.chat({ runId, stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'raised' }] });
      expect(server.log()).to.have.length(42);
    });
  });

  it('asks for an unlimited endpoint with the cache lookup, and takes a limited one only once the cache has missed (real Redis)', async () => {
    // What the gateway's connection sends, in order.
    await onRealRedis({ rules: [{ respond: { content: 'Zoë 李 🌸' } }] }, () => recordingRedis(limiterStep), async ({ redis, sent, prefix, url }) => {
      const ask = async (maxConcurrency: string, content: string) => {
        const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: url, ENVFLEET_MODEL_MAX_CONCURRENCY: maxConcurrency } });
        const gateway = createModelGateway({ config, cache: createRedisResponseCache(redis, prefix), limiter: createRedisLimiter(redis, prefix), ledger: createRedisLedger(redis, prefix), logger: pino({ level: 'silent' }) });
        // Warm: the scripts known to Redis (a first EVALSHA may be answered NOSCRIPT and sent again as EVAL).
        await gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: `warm ${content}` }] });
        sent.length = 0;
        const missed = await gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content }] });
        const onMiss = sent.filter(name => name === 'get' || name === 'limiter-step');
        sent.length = 0;
        const hit = await gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content }] });
        const onHit = sent.filter(name => name === 'get' || name === 'limiter-step');
        expect([missed.cached, hit.cached, hit.message.content]).to.deep.equal([false, true, 'Zoë 李 🌸']);
        return { onMiss, onHit };
      };
      // Without fleet-wide limits, asking takes nothing (the step reads the cool-down): it goes out before the cache's
      // answer is in, so a miss does not wait a second round trip before the request is sent.
      expect(await ask('0', 'un 客')).to.deep.equal({ onMiss: ['limiter-step', 'get'], onHit: ['limiter-step', 'get'] });
      // A limited endpoint's slot is taken after the cache missed, and not at all when it answers.
      expect(await ask('4', 'deux 客')).to.deep.equal({ onMiss: ['get', 'limiter-step'], onHit: ['get'] });
      expect(server.log()).to.have.length(4);
    });
  });

  it('does not send a call whose endpoint started cooling down while its cache lookup was out, though it was asked for before (real Redis)', async () => {
    await onRealRedis({ rules: [{ fault: { type: 'rate_limit', retryAfterS: 30 } }] }, plainRedis, async ({ redis, prefix, url }) => {
      const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: url, ENVFLEET_MODEL_MAX_CONCURRENCY: '0' } });
      const limiter = createRedisLimiter(redis, prefix);
      // Observers only: how often the limiter was asked and when the first ask is answered, and the first cache lookup
      // held until told.
      let asks = 0;
      let asked!: () => void;
      const firstAsk = new Promise<void>(resolve => (asked = resolve));
      const watched: EndpointLimiter = {
        ...limiter,
        acquire: (endpoint, options) => {
          asks += 1;
          return limiter.acquire(endpoint, options).finally(() => asked());
        },
      };
      const cache = createRedisResponseCache(redis, prefix);
      let lookups = 0;
      let lookingUp!: () => void;
      const lookupBegan = new Promise<void>(resolve => (lookingUp = resolve));
      let open!: () => void;
      const held = new Promise<void>(resolve => (open = resolve));
      const slow: ResponseCache = {
        ...cache,
        get: async slot => {
          if (lookups++ > 0) return cache.get(slot);
          lookingUp();
          return held.then(() => cache.get(slot));
        },
      };
      const gateway = createModelGateway({ config, cache: slow, limiter: watched, ledger: createRedisLedger(redis, prefix), logger: pino({ level: 'silent' }) });
      // Y asks for the endpoint (not cooling then) while its cache lookup is held; X meanwhile gets a 429.
      const y = gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'y 客' }] });
      y.catch(() => undefined);
      await lookupBegan;
      expect(asks, 'Y asks the limiter while its cache lookup is out').to.equal(1);
      await firstAsk;
      const x = await rejection(gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'x 🛎️' }] }));
      expect(x).to.have.property('code', 'MODEL_RATE_LIMITED');
      expect(server.log()).to.have.length(1);
      // Y's lookup misses after the 429: the endpoint is cooling, so Y is turned away here, without a request.
      open();
      const refused = await rejection(y);
      expect(refused).to.have.property('retryAfterMs').that.is.above(1_000);
      expect(server.log()).to.have.length(1);
    });
  });

  it('gives back what it asked the limiter for early when the cache answers or the budget refuses (real Redis)', async () => {
    await onRealRedis({ rules: [{ respond: { content: 'ok', usage: { prompt_tokens: 60, completion_tokens: 50 } } }] }, plainRedis, async ({ redis, prefix, url }) => {
      const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: url, ENVFLEET_MODEL_MAX_CONCURRENCY: '0', ENVFLEET_BUDGET_TOKENS: '100' } });
      const limiter = createRedisLimiter(redis, prefix);
      let held = 0;
      // Counts the leases out: every one asked for must come back, used or not (the limiter's contract).
      const counting: EndpointLimiter = {
        ...limiter,
        acquire: async (endpoint, options) => {
          const lease = await limiter.acquire(endpoint, options);
          held += 1;
          let back = false;
          return { release: async () => { if (!back) { back = true; held -= 1; } await lease.release(); } };
        },
      };
      const gateway = createModelGateway({ config, cache: createRedisResponseCache(redis, prefix), limiter: counting, ledger: createRedisLedger(redis, prefix), logger: pino({ level: 'silent' }) });
      const ask = (content: string) => gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content }] });
      expect((await ask('été')).cached).to.equal(false);
      // 110 tokens spent of 100: a cached answer is still served, a new call is refused before it is sent.
      expect((await ask('été')).cached).to.equal(true);
      expect(await rejection(ask('hiver'))).to.have.property('code', 'BUDGET_EXCEEDED');
      await new Promise(resolve => setImmediate(resolve));
      expect(held).to.equal(0);
      expect(server.log()).to.have.length(1);
    });
  });

  it('caches synthesis stages per run and per salt', async () => {
    const gateway = await gatewayFor({ rules: [{ stage: 'mine.topic', respond: { content: 'x' } }] });
    const req = { messages: [{ role: 'user' as const, content: 'same' }] };
    const first = await gateway.chat({ runId: 'r', stage: 'mine.topic' }, req);
    const again = await gateway.chat({ runId: 'r', stage: 'mine.topic' }, req);
    await gateway.chat({ runId: 'other', stage: 'mine.topic' }, req);
    await gateway.chat({ runId: 'r', stage: 'mine.topic', cacheSalt: 'sample-2' }, req);
    expect(first.cached).to.equal(false);
    expect(again.cached).to.equal(true);
    expect(server.log()).to.have.length(3);
    expect((await ledger.totals('r')).cachedRequests).to.equal(1);
  });

  it('stops a run at its token budget before sending more', async () => {
    const gateway = await gatewayFor(
      { rules: [{ stage: 'mine.topic', respond: { content: 'x', usage: { prompt_tokens: 60, completion_tokens: 50 } } }] },
      { ENVFLEET_BUDGET_TOKENS: '100' },
    );
    await gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'one' }] });
    const error = await rejection(gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'two' }] }));
    expect(error).to.have.property('code', 'BUDGET_EXCEEDED');
    expect(String(error)).to.match(/used 110 tokens, its budget is 100/);
    expect(server.log()).to.have.length(1);
  });

  it('reads the budget again after waiting for a fleet-wide slot: calls queued for a slot while others spent the budget are not sent (the whole queue of them was)', async () => {
    server = await startModelServer({ script: parseModelScript({ rules: [{ stage: 'mine.topic', respond: { content: 'x', usage: { prompt_tokens: 60, completion_tokens: 50 } } }] }) });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url, ENVFLEET_MODEL_MAX_CONCURRENCY: '1', ENVFLEET_BUDGET_TOKENS: '100' } });
    const memory = createMemoryLedger();
    let released = 0;
    // One slot: a call waits while the one before it is answered and spends 110 tokens (over the budget of 100).
    let busy: Promise<void> = Promise.resolve();
    const limiter: EndpointLimiter = {
      acquire: async () => {
        const before = busy;
        let free!: () => void;
        busy = new Promise<void>(resolve => (free = resolve));
        await before;
        // (a wait long enough to be read again after: 100 ms, RECHECK_AFTER_WAIT_MS)
        await new Promise(resolve => setTimeout(resolve, 150));
        return { release: () => ((released += 1), free(), Promise.resolve()) };
      },
      coolDown: () => Promise.resolve(),
    };
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter, ledger: memory, logger: pino({ level: 'silent' }) });
    const calls = ['un', 'deux — 二', 'trois 🚦'].map(content => gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content }] }).then(() => 'ok', (err: unknown) => String((err as { code?: unknown }).code)));
    expect(await Promise.all(calls)).to.deep.equal(['ok', 'BUDGET_EXCEEDED', 'BUDGET_EXCEEDED']);
    expect(server.log()).to.have.length(1);
    // Every slot taken was given back.
    expect(released).to.equal(3);
  });

  it('sends no request of a run paused while its job runs (RUN_PAUSED: the job is parked there), as none of a cancelled one', async () => {
    server = await startModelServer({ script: parseModelScript({ rules: [{ stage: 'mine.topic', respond: { content: 'x' } }] }) });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    let state: 'running' | 'paused' = 'running';
    const gateway = createModelGateway({
      config,
      cache: createMemoryResponseCache(),
      limiter: createMemoryLimiter(),
      ledger: createMemoryLedger(),
      logger: pino({ level: 'silent' }),
      gate: () => Promise.resolve({ budgets: null, cancelled: null, paused: state === 'paused' ? { reason: 'week-end — 周末' } : null }),
    });
    const req = { messages: [{ role: 'user' as const, content: 'même question' }] };
    await gateway.chat({ runId: 'r', stage: 'mine.topic' }, req);
    state = 'paused';
    const error = await rejection(gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'autre' }] }));
    expect(error).to.have.property('code', 'RUN_PAUSED');
    expect(String(error)).to.include('week-end — 周末');
    // A call the cache answers is no request: an episode parked mid-way replays its calls up to where it was.
    expect((await gateway.chat({ runId: 'r', stage: 'mine.topic' }, req)).cached).to.equal(true);
    expect(server.log()).to.have.length(1);
    // Asked without a call (an episode whose environment waits for room): the same answer, nothing sent.
    const asked = await rejection(gateway.checkRun!('r'));
    expect(asked).to.have.property('code', 'RUN_PAUSED');
    state = 'running';
    await gateway.checkRun!('r');
    expect(server.log()).to.have.length(1);
  });

  it("sends a call again after a 5xx of its own, up to ENVFLEET_MODEL_RETRIES times, before failing it (each one cost its job an attempt: a probe of 60 calls failed for good at 6 % of 500s)", async () => {
    const flaky = (times: number) => ({ rules: [{ stage: 'mine.judge', times, fault: { type: 'server_error', status: 500 } }, { stage: 'mine.judge', respond: { content: 'enfin ✓ 完了' } }] });
    const gateway = await gatewayFor(flaky(2));
    const answered = await gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] });
    expect(answered.message.content).to.equal('enfin ✓ 完了');
    expect(server.log().filter(l => l.stage === 'mine.judge')).to.have.length(3);
    // The ledger counts the answer (the 500s were not answers).
    expect((await ledger.totals('r')).requests).to.equal(1);
    await server.close();

    // One failure more than it sends again: the job's failure, after 1 + 2 requests.
    const exhausted = await gatewayFor(flaky(3));
    expect(await rejection(exhausted.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] }))).to.have.property('code', 'MODEL_SERVER_ERROR');
    expect(server.log().filter(l => l.stage === 'mine.judge')).to.have.length(3);
    await server.close();

    // 0: never sent again.
    const never = await gatewayFor(flaky(1), { ENVFLEET_MODEL_RETRIES: '0' });
    expect(await rejection(never.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] }))).to.have.property('code', 'MODEL_SERVER_ERROR');
    expect(server.log().filter(l => l.stage === 'mine.judge')).to.have.length(1);
  });

  it('turns a 401 into MODEL_AUTH and a 429 into a rate limit carrying retry-after', async () => {
    const gateway = await gatewayFor({ rules: [{ stage: 'mine.judge', fault: { type: 'rate_limit', retryAfterS: 2.5 } }] });
    const error = await rejection(gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] }));
    expect(error).to.have.property('code', 'MODEL_RATE_LIMITED');
    expect(error).to.have.property('retryAfterMs', 2500);
    // The endpoint now cools down for every caller, without another request.
    const second = await rejection(gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'y' }] }));
    expect(second).to.have.property('code', 'MODEL_RATE_LIMITED');
    expect(server.log()).to.have.length(1);
  });

  it('keeps the answer, and its ledger entry, when giving the slot back fails (Redis gone mid-reply), with no unhandled rejection, on success and on failure', async () => {
    server = await startModelServer({ script: parseModelScript({ rules: [{ stage: 'mine.judge', respond: { content: 'ok ✓ 完了' } }, { stage: 'rollout.policy', fault: { type: 'server_error', status: 500 } }] }) });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    const memory = createMemoryLedger();
    // The release fails while the ledger's write is still on its way (as when a connection drops under both).
    const ledgerSlow: Ledger = { record: entry => new Promise(r => setTimeout(r, 30)).then(() => memory.record(entry)), totals: runId => memory.totals(runId) };
    const limiter: EndpointLimiter = {
      acquire: () => Promise.resolve({ release: () => new Promise<void>((_, reject) => setTimeout(() => reject(new Error('Command aborted due to connection close')), 5)) }),
      coolDown: () => Promise.resolve(),
    };
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter, ledger: ledgerSlow, logger: pino({ level: 'silent' }) });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const result = await gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] });
      expect(result.message.content).to.equal('ok ✓ 完了');
      expect((await memory.totals('r')).requests).to.equal(1);
      // The endpoint's error is what the caller gets, not the release's.
      const error = await rejection(gateway.chat({ runId: 'r', stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'y' }] }));
      expect(error).to.have.property('code').that.matches(/^MODEL_/);
      await new Promise(r => setTimeout(r, 50));
      expect(unhandled).to.deep.equal([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('answers without waiting for the cache to take the answer (a write that never ends, one that fails), and a request sent again at once is served from the real Redis cache', async () => {
    server = await startModelServer({ script: parseModelScript({ rules: [{ stage: 'mine.topic', respond: { content: 'kept 😀 保存' } }] }) });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    const req = { messages: [{ role: 'user' as const, content: 'Zoë asks 客房?' }] };
    // A cache whose writes never end (a Redis that stopped answering): the caller has its answer anyway
    // (before, this call waited for the write and the test ran out of time).
    const stuck: ResponseCache = { ...createMemoryResponseCache(), set: () => new Promise<void>(() => undefined) };
    const ledgerStuck = createMemoryLedger();
    const waiting = createModelGateway({ config, cache: stuck, limiter: createMemoryLimiter(), ledger: ledgerStuck, logger: pino({ level: 'silent' }) });
    expect((await waiting.chat({ runId: 'r', stage: 'mine.topic' }, req)).message.content).to.equal('kept 😀 保存');
    expect((await ledgerStuck.totals('r')).requests).to.equal(1);
    // A write that fails is logged, and is no unhandled rejection.
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const failing: ResponseCache = { ...createMemoryResponseCache(), set: () => Promise.reject(new Error('Connection is closed.')) };
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const failingGateway = createModelGateway({ config, cache: failing, limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger });
      expect((await failingGateway.chat({ runId: 'r', stage: 'mine.topic' }, req)).cached).to.equal(false);
      await new Promise(r => setImmediate(r));
      expect(warnings.join('')).to.include('could not cache a model answer');
      expect(unhandled).to.deep.equal([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    // On a real Redis, the write goes out before the call returns: the same request sent right after is a hit.
    await requireRedis();
    const redis = new Redis(REDIS_URL, { enableAutoPipelining: true });
    const prefix = `envfleet-test-${randomUUID().slice(0, 8)}`;
    try {
      const gateway = createModelGateway({ config, cache: createRedisResponseCache(redis, prefix), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
      const before = server.log().length;
      const first = await gateway.chat({ runId: 'r', stage: 'mine.topic' }, req);
      const again = await gateway.chat({ runId: 'r', stage: 'mine.topic' }, req);
      expect([first.cached, again.cached]).to.deep.equal([false, true]);
      expect(again.message.content).to.equal('kept 😀 保存');
      expect(server.log().length - before).to.equal(1);
    } finally {
      await dropPrefix(prefix);
      redis.disconnect();
    }
  });

  it('writes a paid call\'s ledger entry again when a write fails after it ran (its reply lost), counting it once, and answers when the cache cannot take the answer', async () => {
    server = await startModelServer({ script: parseModelScript({ rules: [{ stage: 'mine.judge', respond: { content: 'paid once' } }] }) });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    const memory = createMemoryLedger();
    let failures = 2;
    // Each of the first two writes reaches the ledger, then fails as a connection dropped before its reply would.
    const lossy: Ledger = {
      record: async entry => {
        await memory.record(entry);
        if (failures-- > 0) throw new Error('Command aborted due to connection close');
      },
      totals: runId => memory.totals(runId),
    };
    const cacheDown = { ...createMemoryResponseCache(), set: () => Promise.reject(new Error('Connection is closed.')) };
    const gateway = createModelGateway({ config, cache: cacheDown, limiter: createMemoryLimiter(), ledger: lossy, logger: pino({ level: 'silent' }) });
    const result = await gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] });
    expect(result.message.content).to.equal('paid once');
    expect(await memory.totals('r')).to.deep.include({ requests: 1 });
    expect(failures).to.equal(-1); // written three times
  });

  it('keys the cache by what a request says, not by its objects: another worker replaying a turn with objects of its own is served, a turn that differs in one character is asked', async () => {
    const gateway = await gatewayFor({ rules: [{ stage: 'rollout.policy', respond: { content: 'réponse 😀' } }] });
    const tool = () => ({ type: 'function' as const, function: { name: 'get_guest', description: 'Fiche client — 客户', parameters: { type: 'object', properties: { id: { type: 'string' } } } } });
    const turn = (last: string) => ({
      messages: [
        { role: 'system' as const, content: 'Agent de réservation 🏨' },
        { role: 'user' as const, content: 'Réservez la chambre 12, s’il vous plaît' },
        { role: 'assistant' as const, content: null, tool_calls: [{ id: 't1', type: 'function' as const, function: { name: 'get_guest', arguments: '{"id":"G1"}' } }] },
        { role: 'tool' as const, tool_call_id: 't1', content: last },
      ],
      tools: [tool()],
    });
    const ctx = { runId: 'r', stage: 'rollout.policy' as const, cacheSalt: 'sample-0:turn-2' };
    expect((await gateway.chat(ctx, turn('{"name":"Zoë","city":"東京"}'))).cached).to.equal(false);
    // A second gateway on the same cache (another worker process), its own objects, keys in another order.
    const other = createModelGateway({ config: loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } }), cache, limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const reordered = turn('{"name":"Zoë","city":"東京"}');
    const replay = await other.chat(ctx, { tools: reordered.tools.map(t => ({ function: { parameters: t.function.parameters, description: t.function.description, name: t.function.name }, type: t.type })), messages: reordered.messages });
    expect(replay.cached).to.equal(true);
    expect(replay.message.content).to.equal('réponse 😀');
    // One character of one message apart (ë → e): a different request.
    expect((await other.chat(ctx, turn('{"name":"Zoe","city":"東京"}'))).cached).to.equal(false);
    // A tool apart in its description: a different request too.
    const changedTool = turn('{"name":"Zoë","city":"東京"}');
    changedTool.tools[0]!.function.description = 'Fiche client — 客戶';
    expect((await other.chat(ctx, changedTool)).cached).to.equal(false);
    expect(server.log()).to.have.length(3);
  });

  it('never answers a request with the cached answer to its tools as they were: a tool it remembered cannot be changed in place', async () => {
    const gateway = await gatewayFor({ rules: [{ stage: 'mine.judge', respond: { content: 'answer' } }] });
    const tool = { type: 'function' as const, function: { name: 'find', description: 'Finds a book', parameters: { type: 'object', properties: { id: { type: 'integer' } } } } };
    await gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }], tools: [tool] });
    expect(() => { (tool.function as { description: string }).description = 'Deletes a book'; }).to.throw(TypeError);
    expect(() => { (tool.function.parameters.properties as Record<string, unknown>)['title'] = { type: 'string' }; }).to.throw(TypeError);
    // A changed copy is a new request: asked, not served from the cache.
    const changed = { ...tool, function: { ...tool.function, description: 'Deletes a book' } };
    const second = await gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }], tools: [changed] });
    expect(second.cached).to.equal(false);
    expect(server.log()).to.have.length(2);
  });

  it("never shows the credentials an endpoint's base URL carries in its errors (a password; a key in a query, which the configuration refuses)", async () => {
    // A base URL with a query is refused at start (the client would put the path after it), without showing the key.
    const refused = await rejection(Promise.resolve().then(() => loadConfig({}, { overrides: { OPENAI_BASE_URL: 'http://bob:PASSWORDLEAK@127.0.0.1:1/v1?api-key=QUERYKEYLEAK' } })));
    expect(String(refused)).to.include('query string').and.not.match(/PASSWORDLEAK|QUERYKEYLEAK/);
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: 'http://bob:PASSWORDLEAK@127.0.0.1:1/v1' } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const error = await rejection(gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] }));
    expect(error).to.have.property('code', 'MODEL_UNREACHABLE');
    expect(String((error as Error).message)).to.include('127.0.0.1:1').and.not.match(/PASSWORDLEAK|QUERYKEYLEAK/);
    expect(JSON.stringify(error)).not.to.match(/PASSWORDLEAK|QUERYKEYLEAK/);
  });

  it('names a rejected key', async () => {
    server = await startModelServer({ script: parseModelScript({ rules: [] }), apiKey: 'right' });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'wrong' } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const error = await rejection(gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] }));
    expect(error).to.have.property('code', 'MODEL_AUTH');
    expect(String(error)).to.match(/OPENAI_API_KEY/);
  });

  it('treats a reply cut at the token limit as invalid and asks again', async () => {
    const gateway = await gatewayFor({
      rules: [{ stage: 'mine.judge', responses: [{ content: '{"a": ', finishReason: 'length' }, { json: { a: 1 } }] }],
    });
    const result = await gateway.structured({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }], schema: z.object({ a: z.number() }) });
    expect(result).to.deep.include({ value: { a: 1 }, calls: 2 });
    const repair = server.log()[1]!.body as { messages: { content: string }[] };
    expect(repair.messages.at(-1)!.content).to.match(/cut off at the token limit/);
  });

  it('names the setting to raise when every reply of a structured stage is cut off at the token limit', async () => {
    const gateway = await gatewayFor({ rules: [{ stage: 'skeleton.state', respond: { content: '{"className": "Réservation', finishReason: 'length' } }] });
    const error = await rejection(gateway.structured({ runId: 'r', stage: 'skeleton.state' }, { messages: [{ role: 'user', content: 'x' }], schema: z.object({ className: z.string() }) }));
    expect(error).to.have.property('code', 'MODEL_OUTPUT_INVALID');
    expect(String(error)).to.match(/3 of the 3 replies were cut off at the token limit: raise the maxTokens of the skeleton\.state profile in ENVFLEET_MODELS_FILE \(now \d+\)/);
  });

  it('writes one full stop between the last problem, said as a sentence, and the advice on cut-off replies (it read "…without raising.. 1 of the 3 replies")', async () => {
    const gateway = await gatewayFor({ rules: [{ stage: 'skeleton.state', responses: [{ content: '{"className": "Réser', finishReason: 'length' }, { json: { className: 'Ré' } }, { json: { className: 'Ré' } }] }] });
    const error = await rejection(
      gateway.structured({ runId: 'r', stage: 'skeleton.state' }, { messages: [{ role: 'user', content: 'x' }], schema: z.object({ className: z.string() }), check: () => Promise.resolve('the class name must be longer — plus long.') }),
    );
    expect(String(error)).to.include('the class name must be longer — plus long. 1 of the 3 replies were cut off at the token limit');
  });

  it("treats a reply the endpoint's content filter withheld as invalid and asks again, even when its text parses", async () => {
    const gateway = await gatewayFor({
      rules: [{ stage: 'mine.judge', responses: [{ json: { a: 0 }, finishReason: 'content_filter' }, { json: { a: 1 } }] }],
    });
    const result = await gateway.structured({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }], schema: z.object({ a: z.number() }) });
    expect(result).to.deep.include({ value: { a: 1 }, calls: 2 });
    const repair = server.log()[1]!.body as { messages: { content: string }[] };
    expect(repair.messages.at(-1)!.content).to.match(/content filter withheld or cut the reply/);
  });

  it('returns embeddings in input order with usage in the ledger', async () => {
    const gateway = await gatewayFor({ rules: [] });
    const { vectors } = await gateway.embed({ runId: 'r', stage: 'mine.dedup' }, ['a library', 'a library', 'weather poem']);
    expect(vectors).to.have.length(3);
    expect(vectors[0]).to.deep.equal(vectors[1]);
    const totals = await ledger.totals('r');
    expect(totals.byModel['text-embedding-3-small']?.promptTokens).to.equal(server.log()[0]!.usage!.prompt_tokens);
  });
});

describe('retryAfterMs', () => {
  it('reads retry-after-ms, retry-after seconds and HTTP dates', () => {
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '150' }))).to.equal(150);
    expect(retryAfterMs(new Headers({ 'retry-after': '2' }))).to.equal(2000);
    const date = retryAfterMs(new Headers({ 'retry-after': new Date(Date.now() + 60_000).toUTCString() }));
    expect(date).to.be.within(55_000, 60_000);
    expect(retryAfterMs(new Headers())).to.equal(null);
    // No wait at all is no usable hint (the caller waits its fallback): taken at its word, it made a hot loop of 429s.
    expect(retryAfterMs(new Headers({ 'retry-after': '0' }))).to.equal(null);
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '0' }))).to.equal(null);
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '0', 'retry-after': '3' }))).to.equal(3000);
    expect(retryAfterMs(new Headers({ 'retry-after': new Date(Date.now() - 60_000).toUTCString() }))).to.equal(null);
  });
});

describe('model gateway: replies with no answer in their content (a raw HTTP endpoint)', function () {
  this.timeout(20_000);
  let endpoint: http.Server;
  afterEach(() => {
    endpoint.closeAllConnections();
    endpoint.close();
  });
  /** An endpoint answering its n-th chat request (from 1) with the message `messageOf(n)`; the bodies it was sent. */
  async function endpointSaying(messageOf: (n: number) => Record<string, unknown>): Promise<{ url: string; bodies: { messages: { role: string; content: string }[] }[] }> {
    const bodies: { messages: { role: string; content: string }[] }[] = [];
    endpoint = http.createServer((req, res) => {
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => {
        bodies.push(JSON.parse(text) as (typeof bodies)[number]);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: `c${bodies.length}`, object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', ...messageOf(bodies.length) } }], usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } }));
      });
    });
    await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1`, bodies };
  }
  const gatewayAt = (url: string) =>
    createModelGateway({ config: loadConfig({}, { overrides: { OPENAI_BASE_URL: url } }), cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });

  it("says a refusal (OpenAI's refusal field) is one, to the model and in the stage's error, not that the reply was empty", async () => {
    const server = await endpointSaying(() => ({ content: null, refusal: "I can't help with designing that système — 抱歉." }));
    const error = await rejection(gatewayAt(server.url).structured({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }], schema: z.object({ a: z.number() }) }));
    expect(error).to.have.property('code', 'MODEL_OUTPUT_INVALID');
    expect(String(error)).to.include(`the model refused to answer ("I can't help with designing that système — 抱歉."); a JSON value was expected`);
    expect(server.bodies[1]!.messages.at(-1)!.content).to.match(/^Your previous reply could not be used: the model refused to answer/);
  });

  it("says a reply of reasoning only (vLLM's reasoning or reasoning_content, or a <think> block with nothing after it) held no answer, and asks again", async () => {
    for (const empty of [{ content: '', reasoning: 'Let me think about the schéma… 考虑' }, { content: null, reasoning_content: 'Hmm.' }, { content: '<think>Long thoughts 🤔</think>\n' }]) {
      const server = await endpointSaying(n => (n === 1 ? empty : { content: '{"a": 1}' }));
      const result = await gatewayAt(server.url).structured({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }], schema: z.object({ a: z.number() }) });
      expect(result, JSON.stringify(empty)).to.deep.include({ value: { a: 1 }, calls: 2 });
      expect(server.bodies[1]!.messages.at(-1)!.content, JSON.stringify(empty)).to.match(/^Your previous reply could not be used: the reply held only reasoning \(\d+ characters\) and no answer after it; write the JSON value itself after reasoning/);
      endpoint.closeAllConnections();
      endpoint.close();
    }
    // vLLM's newer field reaches the reply as reasoning_content (kept in trajectories and exports like the older one's).
    const server = await endpointSaying(() => ({ content: 'Done.', reasoning: 'checked the 日程' }));
    const reply = await gatewayAt(server.url).chat({ runId: 'r', stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'x' }] });
    expect(reply.message).to.deep.include({ content: 'Done.', reasoning_content: 'checked the 日程' });
  });

  it("keeps Magistral's thinking parts as the reply's reasoning_content, beside its text (they were dropped)", async () => {
    const server = await endpointSaying(() => ({
      content: [
        { type: 'thinking', thinking: [{ type: 'text', text: 'Le client veut le livre 7 — ' }, { type: 'text', text: 'vérifions 📚' }] },
        { type: 'text', text: 'Voici le livre 7.' },
      ],
    }));
    const reply = await gatewayAt(server.url).chat({ runId: 'r', stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'x' }] });
    expect(reply.message).to.deep.include({ content: 'Voici le livre 7.', reasoning_content: 'Le client veut le livre 7 — vérifions 📚' });
  });
});

describe('model gateway: embeddings answers that are no embeddings (a raw HTTP endpoint)', function () {
  this.timeout(20_000);
  let endpoint: http.Server;
  afterEach(() => {
    endpoint.closeAllConnections();
    endpoint.close();
  });

  /** An endpoint answering its n-th request (from 1) with `answer(n)`: [status, content type, body]. */
  async function endpointAnswering(answer: (n: number) => [number, string, string]): Promise<{ url: string; requests: () => number }> {
    let n = 0;
    endpoint = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        n += 1;
        const [status, type, body] = answer(n);
        res.writeHead(status, { 'content-type': type });
        res.end(body);
      });
    });
    await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1`, requests: () => n };
  }
  const good = JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.6, 0.8] }], model: 'm', usage: { prompt_tokens: 2, total_tokens: 2 } });

  for (const [what, first] of [
    ['too few vectors', [200, 'application/json', JSON.stringify({ object: 'list', data: [], usage: { prompt_tokens: 2 } })]],
    ['an error object with status 200', [200, 'application/json', JSON.stringify({ error: { message: 'model text-embedding-3-small is still loading' } })]],
    ['a page that is not JSON', [200, 'text/html', '<html><body>Sign in to the proxy</body></html>']],
  ] as const) {
    it(`never caches ${what}: the retry asks the endpoint again and gets the vectors; the failure says what came back`, async () => {
      const server = await endpointAnswering(n => (n === 1 ? [...first] : [200, 'application/json', good]));
      const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
      const cache = createMemoryResponseCache();
      const gateway = createModelGateway({ config, cache, limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
      const error = await rejection(gateway.embed({ runId: 'r', stage: 'mine.dedup' }, ['a library']));
      expect(error).to.have.property('code', 'MODEL_RESPONSE_MALFORMED');
      expect(String(error)).to.match(/unusable embeddings answer .*stage mine\.dedup/);
      if (what === 'an error object with status 200') expect(String(error)).to.include('still loading');
      if (what === 'a page that is not JSON') expect(String(error)).to.include('not JSON');
      expect(cache.size()).to.equal(0);
      const again = await gateway.embed({ runId: 'r', stage: 'mine.dedup' }, ['a library']);
      expect(again).to.deep.include({ vectors: [[0.6, 0.8]], cached: false });
      expect(server.requests()).to.equal(2);
    });
  }

  it('masks the configured key in an error object an endpoint answers with status 200 (chat and embeddings)', async () => {
    const key = 'sk-echo-0123456789';
    const server = await endpointAnswering(() => [200, 'application/json', JSON.stringify({ error: { message: `quota exceeded for key ${key} — clé 🔑` } })]);
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: key } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const chat = await rejection(gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'a' }] }));
    expect(String(chat)).to.include('quota exceeded for key [redacted] — clé 🔑').and.not.to.include(key);
    const embed = await rejection(gateway.embed({ runId: 'r', stage: 'mine.dedup' }, ['a library']));
    expect(String(embed)).to.include('[redacted]').and.not.to.include(key);
  });

  it('counts the requests answered without token usage in the ledger (real Redis), and warns once per endpoint', async function () {
    await requireRedis();
    const bare = (usage: unknown) => JSON.stringify({ id: 'c', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'réponse 好 🙂' } }], ...(usage === undefined ? {} : { usage }) });
    const server = await endpointAnswering(n => [200, 'application/json', n === 1 ? bare(undefined) : n === 2 ? bare(null) : n === 3 ? bare({ prompt_tokens: null, completion_tokens: null }) : bare({ prompt_tokens: 5, completion_tokens: 2 })]);
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    const redis = new Redis(REDIS_URL);
    const prefix = `unmetered-${randomUUID()}`;
    const lines: string[] = [];
    try {
      const ledger = createRedisLedger(redis, prefix);
      const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
      const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger, logger });
      for (let i = 0; i < 4; i++) await gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: `question ${i}` }] });
      const totals = await ledger.totals('r');
      expect(totals).to.deep.include({ requests: 4, unmeteredRequests: 3, promptTokens: 5, completionTokens: 2 });
      expect(totals.byStage['mine.topic']).to.deep.include({ unmeteredRequests: 3 });
      const warned = lines.filter(l => l.includes('without token usage'));
      expect(warned).to.have.length(1);
    } finally {
      await dropPrefix(prefix);
      redis.disconnect();
    }
  });

  it('counts an odd usage block as the ledger can (a numeric string as its number, "n/a", a negative or 1e400 as 0), and the call still succeeds', async () => {
    const chat = JSON.stringify({ id: 'c', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'réponse 好' } }], usage: { prompt_tokens: '12', completion_tokens: 'n/a' } });
    const odd = `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.6,0.8]}],"model":"m","usage":{"prompt_tokens":1e400}}`;
    const server = await endpointAnswering(n => [200, 'application/json', n === 1 ? chat : n === 2 ? odd : good.replace('"prompt_tokens":2', '"prompt_tokens":-3')]);
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    const ledger = createMemoryLedger();
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger, logger: pino({ level: 'silent' }) });
    const answer = await gateway.chat({ runId: 'r', stage: 'mine.topic' }, { messages: [{ role: 'user', content: 'a' }] });
    expect(answer.usage).to.deep.equal({ promptTokens: 12, completionTokens: 0 });
    expect(await gateway.embed({ runId: 'r', stage: 'mine.dedup' }, ['a library'])).to.deep.include({ vectors: [[0.6, 0.8]] });
    expect(await gateway.embed({ runId: 'r', stage: 'mine.dedup' }, ['another library'])).to.deep.include({ vectors: [[0.6, 0.8]] });
    const totals = await ledger.totals('r');
    expect(totals).to.deep.include({ requests: 3, promptTokens: 12, completionTokens: 0 });
    expect(tokenCount(7.6)).to.equal(8);
    expect([tokenCount(null), tokenCount(''), tokenCount(NaN), tokenCount(Number.MAX_VALUE), tokenCount(true)]).to.deep.equal([0, 0, 0, 0, 0]);
  });

  it('passes over an unusable answer already in the cache (stored by an older worker) and asks the endpoint', async () => {
    const server = await endpointAnswering(() => [200, 'application/json', good]);
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    const memory = createMemoryResponseCache();
    const slots: Parameters<ResponseCache['set']>[0][] = [];
    const cache: ResponseCache = { get: slot => memory.get(slot), set: (slot, value, ttl) => (slots.push(slot), memory.set(slot, value, ttl)) };
    const gateway = createModelGateway({ config, cache, limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    await gateway.embed({ runId: 'r', stage: 'mine.dedup' }, ['a library']);
    expect(slots).to.have.length(1);
    await memory.set(slots[0]!, { body: { object: 'list', data: [] }, storedAt: new Date().toISOString() }, 60);
    const again = await gateway.embed({ runId: 'r', stage: 'mine.dedup' }, ['a library']);
    expect(again).to.deep.include({ vectors: [[0.6, 0.8]], cached: false });
    expect(server.requests()).to.equal(2);
  });
});

describe('model gateway: error answers as proxies and gateways send them (a raw HTTP endpoint)', function () {
  this.timeout(20_000);
  let endpoint: http.Server;
  afterEach(() => {
    endpoint.closeAllConnections();
    endpoint.close();
  });
  async function gatewayAnswering(status: number, type: string, body: string): Promise<ModelGateway> {
    endpoint = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': type });
        res.end(body);
      });
    });
    await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve));
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1` } });
    return createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
  }
  const ask = (gateway: ModelGateway) => rejection(gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] }));

  it('says what a 429 said (an exhausted quota, which waiting does not fix), and waits its fallback, not 0 ms, for a Retry-After of no wait', async () => {
    const quota = JSON.stringify({ error: { message: 'You exceeded your current quota, please check your plan — 配额', type: 'insufficient_quota', code: 'insufficient_quota' } });
    const error = await ask(await gatewayAnswering(429, 'application/json', quota));
    expect(error).to.have.property('code', 'MODEL_RATE_LIMITED');
    expect(error).to.have.property('retryAfterMs', 5_000);
    expect(String((error as Error).message)).to.include('You exceeded your current quota, please check your plan — 配额').and.to.include('the fleet waits 5000 ms (ENVFLEET_RATE_LIMIT_FALLBACK_MS');
  });

  it('takes "upstream gone" answers in a row from a gateway that lists its models itself for an outage, and an answer between them for a request\'s own', async () => {
    // LiteLLM while the model server behind it is down: GET /models 200 (its own list), every chat request 502.
    const chat: number[] = [502, 502, 200, 502, 502, 502];
    endpoint = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const status = req.url?.endsWith('/models') ? 0 : (chat.shift() ?? 200);
        if (status === 0) res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"}]}');
        else if (status === 200) res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'réponse ✓' } }] }));
        else res.writeHead(status, { 'content-type': 'application/json' }).end('{"error":{"message":"litellm.BadGatewayError: upstream http://vllm:8000 refused — 拒绝"}}');
      });
    });
    await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve));
    // Each answer's meaning, one request each: not sent again (ENVFLEET_MODEL_RETRIES 0; sent again, the first request got the 200).
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1`, ENVFLEET_MODEL_RETRIES: '0' } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const codes: string[] = [];
    for (let i = 0; i < 6; i += 1) {
      // A request sent in the millisecond of the last answer counts as answered since (the gateway's clock is Date.now()).
      await new Promise(resolve => setTimeout(resolve, 2));
      codes.push(await gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: `x${i}` }] }).then(
        () => 'ok',
        (err: unknown) => String((err as { code?: unknown }).code),
      ));
    }
    // Two in a row are each request's own (attempts used); the answer between resets the count; the third in a row is an outage.
    expect(codes).to.deep.equal(['MODEL_SERVER_ERROR', 'MODEL_SERVER_ERROR', 'ok', 'MODEL_SERVER_ERROR', 'MODEL_SERVER_ERROR', 'MODEL_UNAVAILABLE']);
  });

  it("names a 503 HTML page by its title, not with the page's kilobytes", async () => {
    const page = `<!DOCTYPE html><html><head><style>body{color:red}</style><title>503 Service Temporarily Unavailable</title></head><body><h1>nginx</h1>${'<p>padding</p>'.repeat(400)}</body></html>`;
    const error = await ask(await gatewayAnswering(503, 'text/html', page));
    // The endpoint's first answer, and a 503: taken for an outage, waited for (MODEL_UNAVAILABLE).
    expect(error).to.have.property('code', 'MODEL_UNAVAILABLE');
    const message = String((error as Error).message);
    expect(message).to.include('Service Temporarily Unavailable').and.to.include(`an HTML page of ${page.length} characters`);
    expect(message).to.not.include('<p>');
    expect(message.length).to.be.below(500);
  });

  it('shows a long plain-text error body cut short (whole characters), with its length', async () => {
    const text = `upstream connect error — 上游错误 😀 ${'reset reason: overflow '.repeat(200)}`;
    const error = await ask(await gatewayAnswering(502, 'text/plain', text));
    expect(error).to.have.property('code', 'MODEL_UNAVAILABLE');
    const message = String((error as Error).message);
    expect(message).to.include('upstream connect error — 上游错误 😀').and.to.match(/… \(\d+ characters\), and no answer from it yet/);
    expect(message.length).to.be.below(600);
  });

  it('says what an error object sent with status 200 said', async () => {
    const error = await ask(await gatewayAnswering(200, 'application/json', JSON.stringify({ error: { message: "This model's maximum context length is 8192 tokens", code: 400 } })));
    expect(error).to.have.property('code', 'MODEL_RESPONSE_MALFORMED');
    expect(String((error as Error).message)).to.match(/response without a choice .*the endpoint answered with an error: This model's maximum context length is 8192 tokens/);
  });
});

describe("model gateway: tool calls in other servers' shapes (a raw HTTP endpoint)", function () {
  this.timeout(20_000);
  let endpoint: http.Server;
  afterEach(() => {
    endpoint.closeAllConnections();
    endpoint.close();
  });

  async function answering(message: unknown): Promise<ModelGateway> {
    const body = JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, finish_reason: 'tool_calls', message }] });
    endpoint = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body);
      });
    });
    await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve));
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1` } });
    return createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
  }
  const ask = (gateway: ModelGateway) => gateway.chat({ runId: 'r', stage: 'rollout.policy' }, { messages: [{ role: 'user', content: 'Réservez — 预订' }] });

  it('reads a call without "type" (Mistral) and arguments sent as a JSON object as OpenAI calls', async () => {
    const gateway = await answering({
      role: 'assistant',
      content: '',
      tool_calls: [
        { id: 'D681PevKs', function: { name: 'get_guest', arguments: '{"guest_id": "G0001"}' } },
        { id: 'x2', type: 'function', function: { name: 'book', arguments: { guest_id: 'G0001', note: 'chambre calme — 安静 🛏️' } } },
        { id: 'x3', type: 'function', function: { name: 'list_rooms', arguments: null } },
      ],
    });
    const { message } = await ask(gateway);
    expect(message.tool_calls).to.deep.equal([
      { id: 'D681PevKs', type: 'function', function: { name: 'get_guest', arguments: '{"guest_id": "G0001"}' } },
      { id: 'x2', type: 'function', function: { name: 'book', arguments: '{"guest_id":"G0001","note":"chambre calme — 安静 🛏️"}' } },
      { id: 'x3', type: 'function', function: { name: 'list_rooms', arguments: '' } },
    ]);
  });

  it('reads "tool_calls": null as no call', async () => {
    const { message } = await ask(await answering({ role: 'assistant', content: 'Done — 完成 ✅', tool_calls: null }));
    expect(message).to.not.have.property('tool_calls');
    expect(message.content).to.equal('Done — 完成 ✅');
  });
});

describe('model gateway: connections that fail (a raw HTTP endpoint)', function () {
  this.timeout(20_000);
  let endpoint: http.Server | null = null;
  afterEach(() => {
    endpoint?.closeAllConnections();
    endpoint?.close();
    endpoint = null;
  });
  const gatewayAt = (url: string) => {
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: url } });
    return createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
  };
  const ask = (gateway: ModelGateway, content = 'x') => gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content }] });
  const body = JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'ok' } }] });

  it('an answer whose connection closes mid-body is an incomplete answer, says how much came, and is not sent again on the kept-alive connection', async () => {
    let requests = 0;
    endpoint = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        requests += 1;
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
        if (requests === 1) return void res.end(body);
        res.write(body.slice(0, 20));
        setTimeout(() => req.socket.destroy(), 20);
      });
    });
    await new Promise<void>(resolve => endpoint!.listen(0, '127.0.0.1', resolve));
    const gateway = gatewayAt(`http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1`);
    await ask(gateway);
    // The second request goes out on the first one's connection, which closes after 20 bytes of the answer.
    const error = await rejection(ask(gateway, 'another question'));
    expect(error).to.have.property('code', 'MODEL_RESPONSE_MALFORMED');
    expect(String((error as Error).message)).to.match(/incomplete answer from endpoint "default".*closed while the answer was read \(status 200, 20 bytes of the body of \d+/);
    expect(requests).to.equal(2);
  });

  it('an endpoint that refuses connections is named with the reason (not only "Connection error.")', async () => {
    const closed = http.createServer();
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>(resolve => closed.close(() => resolve()));
    const error = await rejection(ask(gatewayAt(`http://127.0.0.1:${port}/v1`)));
    expect(error).to.have.property('code', 'MODEL_UNREACHABLE');
    expect(String((error as Error).message)).to.match(new RegExp(`cannot reach endpoint "default" .*: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
  });
});

describe('model gateway: an endpoint down, or one request it fails (a raw HTTP endpoint)', function () {
  this.timeout(20_000);
  let endpoint: http.Server;
  afterEach(() => {
    endpoint.closeAllConnections();
    endpoint.close();
  });
  /** An endpoint whose chat completions answer `chat` and whose GET /models answers `models` (status, or a hang). */
  async function gatewayWhere(chat: number, models: number | 'hang', env: Partial<Record<EnvVarName, string>> = {}) {
    const seen: string[] = [];
    endpoint = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        seen.push(`${req.method} ${req.url}`);
        const status = req.url?.endsWith('/models') ? models : chat;
        if (status === 'hang') return;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(status === 200 ? JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model', created: 1, owned_by: 'x' }] }) : JSON.stringify({ error: { message: `upstream said ${status} — 上游` } }));
      });
    });
    await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve));
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1`, ENVFLEET_RATE_LIMIT_FALLBACK_MS: '60000', ...env } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    return { gateway, seen };
  }
  const ask = (gateway: ModelGateway) => rejection(gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: 'x' }] }));

  for (const models of [200, 404, 401]) {
    it(`a 500 to a lone request while GET /models answers ${models} is the request's own: retried with attempts (MODEL_SERVER_ERROR)`, async () => {
      const { gateway, seen } = await gatewayWhere(500, models);
      const error = await ask(gateway);
      expect(error).to.have.property('code', 'MODEL_SERVER_ERROR');
      // Sent again twice (ENVFLEET_MODEL_RETRIES) before the job's failure; GET /models asked once (per ENVFLEET_RATE_LIMIT_FALLBACK_MS).
      expect(seen).to.deep.equal(['POST /v1/chat/completions', 'GET /v1/models', 'POST /v1/chat/completions', 'POST /v1/chat/completions']);
    });
  }

  for (const [chat, models] of [[503, 503], [502, 502], [500, 504]] as const) {
    it(`a ${chat} while GET /models answers ${models} is an outage: waited for, no attempt used (MODEL_UNAVAILABLE), the endpoint cooled down`, async () => {
      const { gateway, seen } = await gatewayWhere(chat, models);
      const error = await ask(gateway);
      expect(error).to.have.property('code', 'MODEL_UNAVAILABLE');
      expect(error).to.have.property('retryAfterMs', 60_000);
      expect(String((error as Error).message)).to.include(`upstream said ${chat} — 上游`).and.to.include(`(GET /models: ${models}): the endpoint looks down; the fleet waits 60000 ms`);
      // Cooled down: the next request of this endpoint waits instead of being sent, and says why (the outage, not a 429:
      // a run paused by such waits said "rate limited" while the server was down).
      const cooling = await ask(gateway);
      expect(cooling).to.have.property('code', 'MODEL_UNAVAILABLE');
      expect(String((cooling as Error).message)).to.match(/^endpoint "default" is cooling down \(found down: it serves nothing\); the job waits \d+ ms in its queue$/);
      expect(seen).to.deep.equal(['POST /v1/chat/completions', 'GET /v1/models']);
    });
  }

  // Cloudflare in front of a model server answers its own 52x when the origin is down or does not answer: 520 (an empty or
  // unknown answer), 521 (refused), 522 (connect timed out), 523 (unreachable), 524 (no answer within 100 s).
  for (const [chat, models] of [[521, 521], [522, 522], [523, 523], [520, 524], [503, 521]] as const) {
    it(`a ${chat} while GET /models answers ${models} (Cloudflare, its origin down) is an outage (MODEL_UNAVAILABLE)`, async () => {
      const { gateway, seen } = await gatewayWhere(chat, models);
      const error = await ask(gateway);
      expect(error).to.have.property('code', 'MODEL_UNAVAILABLE');
      expect(String((error as Error).message)).to.include(`(GET /models: ${models})`);
      expect(seen).to.deep.equal(['POST /v1/chat/completions', 'GET /v1/models']);
    });
  }

  it('a 503 that carries Retry-After waits that long when the endpoint is down', async () => {
    endpoint = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(503, { 'retry-after': '7' });
        res.end('loading the model');
      });
    });
    await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve));
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1` } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const error = await ask(gateway);
    expect(error).to.have.property('code', 'MODEL_UNAVAILABLE');
    expect(error).to.have.property('retryAfterMs', 7_000);
  });

  it('says where the wait of an outage comes from: a Retry-After of 40 days is kept as a day, and said so; without one, the setting', async () => {
    endpoint = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(503, req.url?.includes('/chat/') ? { 'retry-after': String(40 * 86_400) } : {});
        res.end('down for maintenance');
      });
    });
    await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve));
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1` } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const error = await ask(gateway);
    expect(error).to.have.property('code', 'MODEL_UNAVAILABLE');
    expect(error).to.have.property('retryAfterMs', 86_400_000);
    expect(String((error as Error).message)).to.include('the fleet waits 86400000 ms (its Retry-After asked for 3456000000 ms; at most a day is kept)');
    endpoint.closeAllConnections();
    endpoint.close();
    const { gateway: plain } = await gatewayWhere(502, 502);
    expect(String((await ask(plain) as Error).message)).to.include('the fleet waits 60000 ms (ENVFLEET_RATE_LIMIT_FALLBACK_MS)');
  });

  it('no answer from the chat request nor from GET /models is an outage, said so', async () => {
    const { gateway } = await gatewayWhere(200, 'hang', { ENVFLEET_MODEL_TIMEOUT_MS: '300' });
    endpoint.removeAllListeners('request');
    endpoint.on('request', (req: http.IncomingMessage) => req.resume()); // nothing answered at all
    const error = await ask(gateway);
    expect(error).to.have.property('code', 'MODEL_UNAVAILABLE');
    expect(String((error as Error).message)).to.include('no answer within 300 ms').and.to.include('(GET /models: no answer within 300 ms)');
  });

  it('asks GET /models once for the failures of a fallback period, however many requests fail', async () => {
    const { gateway, seen } = await gatewayWhere(500, 200, { ENVFLEET_RATE_LIMIT_FALLBACK_MS: '60000' });
    const errors = await Promise.all(Array.from({ length: 5 }, (_, i) => rejection(gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: `question ${i}` }] }))));
    for (const e of errors) expect(e).to.have.property('code', 'MODEL_SERVER_ERROR');
    expect(seen.filter(s => s.endsWith('/models'))).to.have.length(1);
  });
});

describe('model gateway: a profile served by several endpoints, one of them down or cooling (raw HTTP endpoints)', function () {
  this.timeout(20_000);
  const servers: http.Server[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      s.close();
    }
  });
  const completion = (text: string) => JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: text } }] });
  /** A raw endpoint: `answer` gives status, headers and body for each request; returns its URL and what it was sent. */
  async function endpointAt(answer: (path: string) => { status: number; headers?: Record<string, string>; body: string }) {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        seen.push(`${req.method} ${req.url}`);
        const a = answer(req.url ?? '');
        res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
        res.end(a.body);
      });
    });
    servers.push(server);
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, seen };
  }
  async function refusedUrl() {
    const closed = http.createServer();
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>(resolve => closed.close(() => resolve()));
    return `http://127.0.0.1:${port}/v1`;
  }
  /** A gateway whose mine.judge profile spreads requests over replicas a (weight 3) and b (weight 1), as docs/configuration.md's example. */
  function gatewayOver(a: string, b: string, limiter: EndpointLimiter = createMemoryLimiter()) {
    const models = `endpoints:\n  replica-a: { baseURL: "${a}", apiKeyEnv: K }\n  replica-b: { baseURL: "${b}", apiKeyEnv: K }\nprofiles:\n  mine.judge:\n    endpoint:\n      - { name: replica-a, weight: 3 }\n      - { name: replica-b, weight: 1 }\n`;
    const config = loadConfig({ ENVFLEET_MODELS_FILE: 'models.yaml', K: 'sk-replicas', ENVFLEET_RATE_LIMIT_FALLBACK_MS: '60000', ENVFLEET_CACHE: 'false' }, { readFile: () => models });
    return createModelGateway({ config, cache: createMemoryResponseCache(), limiter, ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
  }
  const ask = (gateway: ModelGateway, i: number) => gateway.chat({ runId: 'r', stage: 'mine.judge' }, { messages: [{ role: 'user', content: `question ${i} — 问题` }] });

  it('sends the requests of a replica that refuses connections to the other one, and no more to it while it cools down', async () => {
    const b = await endpointAt(() => ({ status: 200, body: completion('from b — 乙') }));
    const gateway = gatewayOver(await refusedUrl(), b.url);
    for (let i = 0; i < 12; i += 1) expect((await ask(gateway, i)).message.content).to.equal('from b — 乙');
    expect(b.seen.filter(s => s.endsWith('/chat/completions'))).to.have.length(12);
  });

  it('sends the requests of a replica answering 503 to everything (down behind its proxy) to the other one', async () => {
    const a = await endpointAt(() => ({ status: 503, body: '{"error":{"message":"upstream down"}}' }));
    const b = await endpointAt(() => ({ status: 200, body: completion('from b') }));
    const gateway = gatewayOver(a.url, b.url);
    for (let i = 0; i < 12; i += 1) expect((await ask(gateway, i)).message.content).to.equal('from b');
    // Found down once (its chat request and its GET /models), then passed over while it cools down.
    expect(a.seen).to.deep.equal(['POST /v1/chat/completions', 'GET /v1/models']);
  });

  it('sends the request of a replica that answers 429 to the other one', async () => {
    const a = await endpointAt(() => ({ status: 429, headers: { 'retry-after': '30' }, body: '{"error":{"message":"slow down"}}' }));
    const b = await endpointAt(() => ({ status: 200, body: completion('from b') }));
    const gateway = gatewayOver(a.url, b.url);
    for (let i = 0; i < 8; i += 1) expect((await ask(gateway, i)).message.content).to.equal('from b');
    expect(a.seen.length).to.be.at.most(1);
  });

  it('passes over a replica another process found cooling down (the fleet-wide limiter says so)', async () => {
    const a = await endpointAt(() => ({ status: 200, body: completion('from a') }));
    const b = await endpointAt(() => ({ status: 200, body: completion('from b') }));
    const limiter = createMemoryLimiter();
    const gateway = gatewayOver(a.url, b.url, limiter);
    await limiter.coolDown({ name: 'replica-a', baseURL: a.url } as never, 60_000);
    for (let i = 0; i < 8; i += 1) expect((await ask(gateway, i)).message.content).to.equal('from b');
    expect(a.seen).to.deep.equal([]);
  });

  it('keeps the replicas\' shares when one has a fleet-wide limit and the other none, with the cache on', async () => {
    const a = await endpointAt(() => ({ status: 200, body: completion('from a') }));
    const b = await endpointAt(() => ({ status: 200, body: completion('from b') }));
    // replica-a (weight 3) is limited, replica-b (weight 1) is not: a request is picked once, before its cache lookup.
    const models = `endpoints:\n  replica-a: { baseURL: "${a.url}", apiKeyEnv: K, maxConcurrency: 8 }\n  replica-b: { baseURL: "${b.url}", apiKeyEnv: K }\nprofiles:\n  mine.judge:\n    endpoint:\n      - { name: replica-a, weight: 3 }\n      - { name: replica-b, weight: 1 }\n`;
    const config = loadConfig({ ENVFLEET_MODELS_FILE: 'models.yaml', K: 'sk-replicas' }, { readFile: () => models });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    for (let i = 0; i < 400; i += 1) expect((await ask(gateway, i)).cached).to.equal(false);
    const toA = a.seen.filter(s => s.endsWith('/chat/completions')).length;
    expect(toA + b.seen.filter(s => s.endsWith('/chat/completions')).length).to.equal(400);
    // 300 expected (binomial, σ ≈ 8.7): within ±5σ. Picking again after a miss whenever the first pick was the limited one gave 225.
    expect(toA).to.be.within(257, 343);
  });

  it('keeps a failure that is the request\'s own (a 400) on the replica that gave it', async () => {
    const a = await endpointAt(() => ({ status: 400, body: '{"error":{"message":"bad request"}}' }));
    const b = await endpointAt(() => ({ status: 400, body: '{"error":{"message":"bad request"}}' }));
    const gateway = gatewayOver(a.url, b.url);
    expect(await rejection(ask(gateway, 0))).to.have.property('code', 'MODEL_BAD_REQUEST');
    expect(a.seen.length + b.seen.length).to.equal(1);
  });

  it('waits (the error of the last replica tried) only when every replica is down', async () => {
    const a = await endpointAt(() => ({ status: 503, body: '{"error":{"message":"a down"}}' }));
    const gateway = gatewayOver(a.url, await refusedUrl());
    const error = await rejection(ask(gateway, 0));
    expect(['MODEL_UNAVAILABLE', 'MODEL_UNREACHABLE']).to.include((error as { code: string }).code);
    expect(error).to.have.property('retryAfterMs', 60_000);
    // Both now cooling: the next request is not sent to either, and the wait says the replica was found down.
    expect(['MODEL_UNAVAILABLE', 'MODEL_UNREACHABLE']).to.include((await rejection(ask(gateway, 1)) as { code: string }).code);
  });
});

describe('model gateway: a refused API key names the variable the endpoint reads its key from', function () {
  this.timeout(20_000);
  let server: http.Server;
  afterEach(() => {
    server.closeAllConnections();
    server.close();
  });
  it('OPENAI_API_KEY for the default endpoint, the apiKeyEnv of a models-file endpoint, and one period between sentences', async () => {
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'Incorrect API key provided.', code: 'invalid_api_key' } }));
      });
    });
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    const models = `endpoints:\n  vllm-a: { baseURL: "${url}", apiKeyEnv: VLLM_A_KEY }\n  local: { baseURL: "${url}" }\nprofiles:\n  mine.judge: { endpoint: vllm-a }\n  check.probe.checker: { endpoint: local }\n`;
    const config = loadConfig({ ENVFLEET_MODELS_FILE: 'models.yaml', VLLM_A_KEY: 'sk-a', OPENAI_BASE_URL: url, OPENAI_API_KEY: 'sk-default' }, { readFile: () => models });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const said = async (stage: 'mine.judge' | 'check.probe.checker' | 'scenario.task') => {
      const e = await rejection(gateway.chat({ runId: 'r', stage }, { messages: [{ role: 'user', content: 'x' }] }));
      expect(e).to.have.property('code', 'MODEL_AUTH');
      return String((e as Error).message);
    };
    const fileEndpoint = await said('mine.judge');
    expect(fileEndpoint).to.include('Set VLLM_A_KEY to a valid key (it is endpoints.vllm-a.apiKeyEnv in ENVFLEET_MODELS_FILE)').and.not.to.include('OPENAI_API_KEY');
    expect(fileEndpoint).to.not.include('..');
    expect(await said('check.probe.checker')).to.include('placeholder key envfleet-local: add apiKeyEnv: VAR under endpoints.local');
    expect(await said('scenario.task')).to.include('Set OPENAI_API_KEY to a valid key');
  });
});
