import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig } from '../../config/index.js';
import { runOptionsFrom } from '../../queues/submit.js';
import { createModelGateway } from '../../src/llm/gateway.js';
import { loadModelScript, mergeModelScripts, parseModelScript, startModelServer, type ModelServer } from '../../src/model-server/index.js';
import { computeGroup, runRollout, type RolloutDeps } from '../../src/rollouts/stages.js';
import { createRedisTrajectoryStream } from '../../src/rollouts/stream.js';
import type { RolloutConfig } from '../../src/rollouts/types.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { runKeys } from '../../src/runs/keys.js';
import { createLocalSandboxRunner } from '../../src/sandbox/runner.js';
import { generateScenarioChecklist, generateScenarioChecks, generateScenarioState, generateScenarioTask } from '../../src/scenarios/stages.js';
import type { StageDeps } from '../../src/stage-deps.js';
import { decideEnvironment, makeTestConfig, probeEnvironment } from '../../src/synthesis/check.js';
import { createEnvironment, failEnv } from '../../src/synthesis/environments.js';
import { readTasksFile } from '../../src/synthesis/inputs.js';
import { dedupDescriptions, inferTopic, judgeTask } from '../../src/synthesis/mining.js';
import { assembleEnvironment, buildMethod, buildOperations, buildState } from '../../src/synthesis/skeleton.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { createMemoryLedger, createMemoryLimiter, createMemoryResponseCache } from '../helpers/memory-ports.js';
import { DEMO, REDIS_URL, dropPrefix, requireRedis } from '../helpers/integration.js';

/**
 * Counts made apart from a document write: a process that dies right after the write loses them. Only
 * these stand alone, each for a reason given where it is made (no document goes with it).
 */
const SEPARATE = /^(skeleton\.method\|invalid|check\.probe\|(done|round-\d+))$/;

/** A run of the demo's tasks, judged, given topics and deduplicated (the pipeline's first stages): its environments' ids. */
async function mineDemo(deps: StageDeps, real: RunStore, run: string, options: ReturnType<typeof runOptionsFrom>): Promise<readonly string[]> {
  await real.createRun({ id: run, createdAt: new Date().toISOString(), input: 'tasks', options });
  const { items } = await readTasksFile(join(DEMO, 'source-tasks.jsonl'));
  for (const task of items) await real.putDoc(run, 'task', task.id, task);
  for (const task of items) if ((await judgeTask(deps, run, task.id)).needsEnvironment) await inferTopic(deps, run, task.id);
  return (await dedupDescriptions(deps, run)).envIds;
}

/** The demo's model script without its one 429: here no job is there to retry it. */
async function demoScript() {
  const demo = await loadModelScript(DEMO);
  return { ...demo, rules: (demo.rules ?? []).filter(r => r.fault?.type !== 'rate_limit') };
}

describe('funnel counts go in the write of their document (real Redis, scripted server, sandbox)', function () {
  const prefix = `envfleet-test-counts-${randomUUID().slice(0, 8)}`;
  let server: ModelServer;
  let redis: Redis;

  before(async () => {
    await requireRedis();
    server = await startModelServer({ script: await demoScript() });
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  });
  after(async () => {
    await server.close();
    redis.disconnect();
    await dropPrefix(prefix);
  });

  it('the demo run, stage by stage, with every separate count lost as in a crash after the write', async () => {
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'test-key', LOG_LEVEL: 'silent' } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const real = createRedisRunStore(redis, prefix);
    // The run store as a process sees it that dies after each document write: a count made on its own
    // never reaches Redis. (Recorded here, to say which ones.)
    const lost: string[] = [];
    const store: RunStore = {
      ...real,
      count: (_runId, stage, outcome) => {
        lost.push(`${stage}|${outcome}`);
        return Promise.resolve();
      },
    };
    const deps: StageDeps = { gateway, sandbox: createLocalSandboxRunner(), store };
    const run = 'counts';
    const options = runOptionsFrom(config, { probeSteps: 8 });

    // Synthesis, in the pipeline's order (queues/pipeline.ts).
    const envIds = await mineDemo(deps, real, run, options);
    for (const envId of envIds) {
      await buildState(deps, run, envId);
      const { operations = [] } = await buildOperations(deps, run, envId);
      for (const op of operations) await buildMethod(deps, run, envId, op);
      await assembleEnvironment(deps, run, envId);
      await makeTestConfig(deps, run, envId);
      for (let round: number | undefined = 1; round !== undefined; ) {
        await probeEnvironment(deps, run, envId, round);
        round = (await decideEnvironment(deps, run, envId, round)).nextRound;
      }
    }
    // An environment ended by a job that failed for good (workers/item-endings.ts calls failEnv).
    const extra = await createEnvironment(store, run, options, { summary: 'Lighthouse keeping', introduction: 'A lighthouse log of lamps, keepers and shifts.' });
    await failEnv(deps, run, extra, 'skeleton.state', 'MODEL_SERVER_ERROR', '[MODEL_SERVER_ERROR] 503');

    // Scenarios: three states per kept environment.
    await real.putDoc(run, 'scenario-config', 'current', { perEnv: 3, verifyWith: null, tries: 1 });
    const ready: string[] = [];
    for (const envId of envIds) {
      if ((await real.getDoc(run, 'env', envId))?.status !== 'kept') continue;
      for (let index = 0; index < 3; index += 1) {
        const { ok, scenarioId } = await generateScenarioState(deps, run, envId, index, 3);
        if (!ok || !(await generateScenarioTask(deps, run, scenarioId)).ok) continue;
        await generateScenarioChecklist(deps, run, scenarioId);
        if ((await generateScenarioChecks(deps, run, scenarioId)).ok) ready.push(scenarioId);
      }
    }
    // A group whose two samples left no trajectory, computed twice (a retried rollout.group job): counted once.
    await computeGroup(store, run, ready[0]!, 'non-conversational', 2);
    await computeGroup(store, run, ready[0]!, 'non-conversational', 2);
    // A retried mine.dedup job (its worker died before the job ended) decides every description again:
    // nothing is counted twice.
    await dedupDescriptions(deps, run);

    expect(lost.filter(c => !SEPARATE.test(c)), 'counts made apart from their document').to.deep.equal([]);
    const counters = await real.counters(run);
    expect(counters).to.deep.include({
      'mine.judge': { 'needs-environment': 5, 'no-environment': 2 },
      'mine.topic': { candidate: 4, 'low-scores': 1 },
      'mine.dedup': { kept: 3, duplicate: 1 },
      environments: { created: 4 },
      'skeleton.state': { done: 3, 'failed:MODEL_SERVER_ERROR': 1 },
      'skeleton.operations': { done: 3, operations: 14 },
      'skeleton.method': { done: 13 },
      'skeleton.assemble': { assembled: 2, 'assembled-after-repair': 1 },
      'check.config': { done: 3 },
      'check.verdict': { kept: 2, 'repair-round': 1, 'rejected-after-repair': 1 },
      'scenario.state': { done: 5, 'dropped:DUPLICATE_STATE': 1 },
      'scenario.task': { done: 4, 'dropped:DUPLICATE_TASK': 1 },
      'scenario.checklist': { done: 4, items: 10 },
      'scenario.check': { ready: 3, 'ready-after-repair': 1 },
      'rollout.group': { done: 1, 'samples-missing': 2 },
      // Runtime errors of probe calls, counted in the step's write.
      sandbox: { INVALID_ARGUMENTS: 2 },
    });

    // A rollout job run twice at once (a stalled job taken again while its first run still went on): both
    // runs play the episode, the first to store it stands, counted once; the other is dropped.
    const settings: RolloutConfig = {
      samples: 1,
      modes: ['non-conversational'],
      limits: { 'non-conversational': { maxSteps: 30, maxTokens: 0, maxWallMs: 600_000 }, conversational: { maxSteps: 40, maxTokens: 0, maxWallMs: 600_000 } },
      policyModel: null,
      userModel: null,
      temperature: 0,
      maxTokensPerTurn: 512,
    };
    await real.putDoc(run, 'rollout-config', 'current', settings);
    const rolloutDeps: RolloutDeps = { ...deps, store: real, stream: createRedisTrajectoryStream(redis, prefix) };
    const twice = await Promise.all([0, 1].map(() => runRollout(rolloutDeps, run, ready[0]!, 'non-conversational', 0)));
    const episodes = Object.values((await real.counters(run))['rollout.run'] ?? {}).reduce((a, b) => a + b, 0);
    expect(episodes, 'episodes counted').to.equal(1);
    const stored = (await real.getDoc(run, 'trajectory', twice[0]!.id))!;
    expect(twice.map(t => t.timings.startedAt)).to.deep.equal([stored.timings.startedAt, stored.timings.startedAt]);
    expect(await real.listDocIds(run, 'trajectory')).to.deep.equal([stored.id]);
  });

  /**
   * The demo's synthesis to its assemble stage, where the parking environment's class needs a repair round: its worker
   * dies (a store that throws) right after the write `dieAfter` names, and the job runs again. The chaos run's datasets
   * differed once: its worker was SIGKILLed mid-round, and the retried job found the method made again, assembled at
   * round 0 and wrote the parking environment without the round's record (assembled, not assembled-after-repair).
   */
  async function assembleThatDies(run: string, dieAfter: 'the round record' | 'a method of the round'): Promise<void> {
    // (a server of its own: the demo's script answers the broken method once, and the first test took that answer)
    const own = await startModelServer({ script: await demoScript() });
    try {
      const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: own.url, OPENAI_API_KEY: 'test-key', LOG_LEVEL: 'silent' } });
      const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
      const real = createRedisRunStore(redis, prefix);
      class WorkerDied extends Error {}
      let armed = false;
      const die = (what: string) => {
        if (!armed) return;
        armed = false;
        throw new WorkerDied(`the worker died right after writing ${what}`);
      };
      const written: string[] = [];
      const store: RunStore = {
        ...real,
        putDoc: (async (runId: string, kind: Parameters<RunStore['putDoc']>[1], id: string, value: never, counts?: Parameters<RunStore['putDoc']>[4]) => {
          await real.putDoc(runId, kind, id, value, counts);
          if (kind !== 'method') return;
          written.push(id);
          if (dieAfter === 'a method of the round') die(id);
        }),
        putDocIf: (async (runId: string, kind: 'env', id: string, value: EnvironmentRecord, ifStatus: string, counts?: Parameters<RunStore['putDoc']>[4]) => {
          const wrote = await real.putDocIf(runId, kind, id, value, ifStatus, counts);
          if (dieAfter === 'the round record' && value.assemblePending) die(`the round record of ${id}`);
          return wrote;
        }) as RunStore['putDocIf'],
      };
      const deps: StageDeps = { gateway, sandbox: createLocalSandboxRunner(), store };
      const envIds = await mineDemo(deps, real, run, runOptionsFrom(config, { probeSteps: 8 }));
      const died: string[] = [];
      for (const envId of envIds) {
        await buildState(deps, run, envId);
        const { operations = [] } = await buildOperations(deps, run, envId);
        for (const op of operations) await buildMethod(deps, run, envId, op);
        written.length = 0;
        armed = true;
        try {
          await assembleEnvironment(deps, run, envId);
        } catch (err) {
          if (!(err instanceof WorkerDied)) throw err;
          died.push(envId);
          // The job again, on another worker.
          await assembleEnvironment(deps, run, envId);
        }
        armed = false;
        if (died.at(-1) === envId) expect(written, 'methods written by the round and its retried job').to.have.length(1);
      }
      expect(died, 'environments whose assemble repair was cut short').to.have.length(1);
      const env = (await real.getDoc(run, 'env', died[0]!))!;
      expect(env.description.summary).to.equal('Parking garage management');
      expect(env.source, 'assembled').to.be.a('string');
      expect(env.assembleRepairs).to.have.length(1);
      expect(env.assembleRepairs![0]!.methods).to.deep.equal(['exit_vehicle']);
      expect(env).not.to.have.property('assemblePending');
      expect((await real.counters(run))['skeleton.assemble']).to.deep.equal({ assembled: 2, 'assembled-after-repair': 1 });
    } finally {
      await own.close();
    }
  }

  it("keeps an assemble repair's record when the worker dies right after a method of the round is written: the retried job makes no round again and no method twice", async () => {
    await assembleThatDies('assemble-died', 'a method of the round');
  });

  it("goes on from an assemble repair's record when the worker dies right after writing it, before any method of the round is made again: the retried job makes the round's method once and no round again", async () => {
    await assembleThatDies('assemble-died-early', 'the round record');
  });

  it('counts an item whose job runs twice at once (a twin taken over past its lock, each asking the model) once: judges, topics, environments created, methods', async () => {
    // The twins' answers differ in their words (two processes with the cache off; a model is not deterministic), so each
    // write is a new value: the same value written twice was counted once before too.
    const demo = await demoScript();
    const reworded = (v: unknown, key = ''): unknown => {
      if (typeof v === 'string') return key === 'source' ? `// jumeau — 孪生\n${v}` : key === 'reason' || key === 'introduction' ? `${v} (jumeau — 孪生)` : v;
      if (Array.isArray(v)) return v.map(x => reworded(x));
      return v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reworded(x, k)])) : v;
    };
    const servers = [
      await startModelServer({ script: demo }),
      // (and one of its judges decides otherwise: the twins go on with the stored decision, whichever it is)
      await startModelServer({
        script: {
          ...demo,
          rules: (demo.rules ?? []).map(r => {
            const worded = ['mine.judge', 'mine.topic', 'skeleton.method'].includes(r.stage ?? '') ? (reworded(r) as typeof r) : r;
            return worded.name === 'judge-clinic' ? (JSON.parse(JSON.stringify(worded).replace('"needsEnvironment":true', '"needsEnvironment":false')) as typeof r) : worded;
          }),
        },
      }),
    ];
    try {
      const real = createRedisRunStore(redis, prefix);
      const twin = (url: string): StageDeps => ({
        gateway: createModelGateway({ config: loadConfig({}, { overrides: { OPENAI_BASE_URL: url, OPENAI_API_KEY: 'test-key', LOG_LEVEL: 'silent' } }), cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) }),
        sandbox: createLocalSandboxRunner(),
        store: real,
      });
      const [a, b] = servers.map(s => twin(s.url)) as [StageDeps, StageDeps];
      const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: servers[0]!.url, OPENAI_API_KEY: 'test-key', LOG_LEVEL: 'silent' } });
      const run = 'twins';
      await real.createRun({ id: run, createdAt: new Date().toISOString(), input: 'tasks', options: runOptionsFrom(config, { probeSteps: 8 }) });
      const { items } = await readTasksFile(join(DEMO, 'source-tasks.jsonl'));
      for (const task of items) await real.putDoc(run, 'task', task.id, task);
      let needing = 0;
      for (const task of items) {
        const judged = await Promise.all([a, b].map(d => judgeTask(d, run, task.id)));
        expect(judged[0], `the twins of task ${task.id} go on alike`).to.deep.equal(judged[1]);
        if (!judged[0]!.needsEnvironment) continue;
        needing += 1;
        await Promise.all([a, b].map(d => inferTopic(d, run, task.id)));
      }
      const { envIds } = (await Promise.all([a, b].map(d => dedupDescriptions(d, run))))[0]!;
      const envId = envIds[0]!;
      // An environment created by a twin that read none before the other wrote (a moment later: its record differs).
      const stale: RunStore = { ...real, getDoc: () => Promise.resolve(null) };
      const desc = { summary: 'Observatoire — 天文台 🔭', introduction: 'Nuits réservées aux télescopes.' };
      const created = await createEnvironment(real, run, runOptionsFrom(config), desc);
      await new Promise(resolve => setTimeout(resolve, 5));
      expect(await createEnvironment(stale, run, runOptionsFrom(config), desc)).to.equal(created);
      await buildState(a, run, envId);
      const { operations = [] } = await buildOperations(a, run, envId);
      for (const op of operations) await Promise.all([a, b].map(d => buildMethod(d, run, envId, op)));
      const counters = await real.counters(run);
      const total = (stage: string) => Object.values(counters[stage] ?? {}).reduce((x, y) => x + y, 0);
      // (each twin counted its own write: twice the tasks judged, the topics, the environments and the methods)
      expect(total('mine.judge'), 'judged').to.equal(items.length);
      expect(total('mine.topic'), 'topics').to.equal(needing);
      expect(counters['environments'], 'created').to.deep.equal({ created: envIds.length + 1 });
      expect(await real.statusCounts(run, 'env')).to.deep.equal({ building: envIds.length + 1 });
      expect(counters['skeleton.method'], 'methods').to.deep.equal({ done: operations.length });
      // (both twins asked: the answers were theirs to write)
      for (const server of servers) expect(server.log().filter(e => e.stage === 'mine.judge').length).to.be.at.least(items.length);
    } finally {
      for (const server of servers) await server.close();
    }
  });

  it('counts a write sent twice once (ioredis sends again what Redis kept but never answered), and a new value again', async () => {
    const store = createRedisRunStore(redis, prefix);
    const run = 'resent';
    const doc = { id: 'trj-1', note: 'épisode — 回合 🎲' } as never;
    const counts = [{ stage: 'rollout.run', outcome: 'agent-finished', n: 1 }];
    await store.putDoc(run, 'trajectory', 'trj-1', doc, counts);
    await store.putDoc(run, 'trajectory', 'trj-1', doc, counts);
    expect((await store.counters(run))['rollout.run']).to.deep.equal({ 'agent-finished': 1 });
    await store.putDoc(run, 'trajectory', 'trj-1', { id: 'trj-1', note: 'changed' } as never, counts);
    expect((await store.counters(run))['rollout.run']).to.deep.equal({ 'agent-finished': 2 });
  });

  it('writes a document over a status only while it is still that status: nothing written or counted once it moved, a write sent twice still true', async () => {
    const store = createRedisRunStore(redis, prefix);
    const run = 'guarded';
    const building = { id: 'env-1', runId: run, status: 'building', description: { summary: 'Bibliothèque — 图书馆 📚', introduction: '' }, failure: null } as never as EnvironmentRecord;
    await store.putDoc(run, 'env', 'env-1', building, [{ stage: 'environments', outcome: 'created', n: 1 }]);
    const probing = { ...building, status: 'probing' as const, testState: { note: 'état — 状态 🧪' } };
    const done = [{ stage: 'check.config', outcome: 'done', n: 1 }];
    expect(await store.putDocIf(run, 'env', 'env-1', probing, 'building', done)).to.equal(true);
    // The same write again (a client resending it): true, counted once.
    expect(await store.putDocIf(run, 'env', 'env-1', probing, 'building', done)).to.equal(true);
    expect((await store.counters(run))['check.config']).to.deep.equal({ done: 1 });
    // Moved meanwhile (a cancel): a job that read it building writes nothing and counts nothing.
    await store.putDoc(run, 'env', 'env-1', { ...probing, status: 'failed', failure: { stage: 'run', code: 'RUN_CANCELLED', message: 'annulé' } });
    expect(await store.putDocIf(run, 'env', 'env-1', { ...probing, probeRound: 2 }, 'probing', [{ stage: 'check.verdict', outcome: 'repair-round', n: 1 }])).to.equal(false);
    expect((await store.getDoc(run, 'env', 'env-1'))!.status).to.equal('failed');
    expect(await store.counters(run)).to.not.have.property('check.verdict');
    expect(await store.statusCounts(run, 'env')).to.deep.equal({ failed: 1 });
    // A document stored before statuses were kept beside it: its own status is read.
    await redis.hdel(runKeys(prefix, run, false).statusOf('env'), 'env-1');
    expect(await store.putDocIf(run, 'env', 'env-1', { ...probing, probeRound: 2 }, 'probing')).to.equal(false);
    expect(await store.putDocIf(run, 'env', 'env-1', { ...probing, status: 'failed', failure: { stage: 'run', code: 'RUN_CANCELLED', message: 'annulé — 取消' } }, 'failed')).to.equal(true);
    expect((await store.getDoc(run, 'env', 'env-1'))!.failure!.message).to.equal('annulé — 取消');
  });

  it('records a topic the model never gives in a usable form, counted with the record, and asks once', async () => {
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'test-key', LOG_LEVEL: 'silent', ENVFLEET_REPAIR_ATTEMPTS: '1' } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    const store = createRedisRunStore(redis, prefix);
    const deps: StageDeps = { gateway, sandbox: createLocalSandboxRunner(), store };
    const demo = await loadModelScript(DEMO);
    const unusable = parseModelScript({ rules: [{ name: 'topic-unusable', stage: 'mine.topic', matchAny: 'return two overdue books', respond: { json: { summary: 'Library' } } }] });
    server.setScript(mergeModelScripts([unusable, { ...demo, rules: (demo.rules ?? []).filter(r => r.fault?.type !== 'rate_limit') }]));
    const run = 'topic-fails';
    await store.createRun({ id: run, createdAt: new Date().toISOString(), input: 'tasks', options: runOptionsFrom(config) });
    const task = (await readTasksFile(join(DEMO, 'source-tasks.jsonl'))).items.find(t => t.id === 't1')!;
    await store.putDoc(run, 'task', task.id, task);
    await judgeTask(deps, run, task.id);

    expect(await inferTopic(deps, run, task.id)).to.deep.equal({ candidate: false });
    const asked = server.log().filter(e => e.rule === 'topic-unusable').length;
    expect(asked).to.equal(2);
    const record = await store.getDoc(run, 'topic', task.id);
    expect(record).to.deep.include({ taskId: 't1', candidate: false, failed: true });
    expect(record!.reason).to.match(/^unusable model output: /);
    // A retried job finds the record: no model call, no second count.
    expect(await inferTopic(deps, run, task.id)).to.deep.equal({ candidate: false });
    expect(server.log().filter(e => e.rule === 'topic-unusable')).to.have.length(asked);
    expect((await store.counters(run))['mine.topic']).to.deep.equal({ 'failed:MODEL_OUTPUT_INVALID': 1 });
    // And dedup passes it by.
    expect(await dedupDescriptions(deps, run)).to.deep.equal({ envIds: [] });
  });
});
