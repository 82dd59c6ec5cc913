import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { AppConfig } from '../../config/index.js';
import { QUEUE_NAMES } from '../../queues/index.js';
import { loadModelScript, mergeModelScripts, parseModelScript, startModelServer, type ModelScript, type ModelServer } from '../../src/model-server/index.js';
import { createRedisSynthesisStore } from '../../src/synthesis/store.js';
import type { EnvironmentRecord, ProbeStepRecord } from '../../src/synthesis/types.js';
import { startWorkerProcess, type RunningWorker } from '../../workers/main.js';
import { exportRun, submitSynthesis, waitForRun } from '../../workers/synth-cli.js';
import { REDIS_URL, requireRedis, tearDown, silentLogger, testConfig, until } from '../helpers/integration.js';

const DEMO = 'fixtures/demo';
const DESCRIPTIONS = [
  { summary: 'Library circulation system', introduction: 'A public library circulation system that tracks members, the book catalogue with copies on the shelf, and loans with their due days. Staff and members look up members and books, lend and take back copies, and settle overdue fines. It enforces loan limits and blocks lending to members with unpaid fines.' },
  { summary: 'Parking garage management', introduction: 'A multi-level parking garage with spots of different sizes, the tickets issued to vehicles as they enter, and the fees charged when they leave. Attendants find free spots, admit and release vehicles and review occupancy by level. Each spot holds at most one vehicle and fees follow an hourly rate.' },
  { summary: 'Clinic appointment scheduling', introduction: "An outpatient clinic's scheduling system holding doctors with their specialties, registered patients, and appointments in day and time slots. Receptionists list doctors, book, look up and cancel appointments and review a patient's visits. A doctor can see one patient per slot." },
];

async function descriptionsFile(items: readonly unknown[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-synth-'));
  const path = join(dir, 'descriptions.jsonl');
  await writeFile(path, `${items.map(i => JSON.stringify(i)).join('\n')}\n`);
  return path;
}

async function envs(config: AppConfig, runId: string): Promise<EnvironmentRecord[]> {
  const redis = new Redis(REDIS_URL);
  try {
    const store = createRedisSynthesisStore(redis, config.redis.prefix);
    const ids = await store.listDocIds(runId, 'env');
    return (await Promise.all(ids.map(id => store.getDoc<EnvironmentRecord>(runId, 'env', id)))).filter((e): e is EnvironmentRecord => !!e);
  } finally {
    redis.disconnect();
  }
}

const bySummary = (list: readonly EnvironmentRecord[], summary: string) => list.find(e => e.description.summary === summary)!;

describe('environment synthesis (real Redis, real workers, scripted server)', function () {
  this.timeout(120_000);
  let server: ModelServer | undefined;
  let running: RunningWorker | undefined;
  let config: AppConfig;
  const children: ChildProcess[] = [];

  before(requireRedis);
  afterEach(async () => {
    await tearDown({ children, running, server, config });
    running = undefined;
    server = undefined;
  });

  async function start(script: ModelScript, overrides: Parameters<typeof testConfig>[1] = {}, workers = true) {
    server = await startModelServer({ script });
    config = testConfig(server, overrides);
    if (workers) running = await startWorkerProcess(config, silentLogger());
  }

  it('mines, deduplicates, builds, probes and exports the demo set, as the fixtures imply', async () => {
    await start(await loadModelScript(DEMO));
    const request = { runId: 'e2e', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 };
    const submission = await submitSynthesis(config, running!.ctx.redis, request);
    expect(submission.problems.map(p => p.line)).to.deep.equal([8, 9]);
    await waitForRun(running!.ctx.store, 'e2e', () => undefined);

    const dir = await mkdtemp(join(tmpdir(), 'envfleet-export-'));
    const exported = await exportRun(running!.ctx.store, 'e2e', dir);
    expect(exported.byStatus).to.deep.equal({ kept: 2, rejected: 1 });
    const lines = (await readFile(exported.path, 'utf8')).trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>);
    for (const line of lines) {
      for (const field of ['id', 'name', 'summary', 'introduction', 'stateSchema', 'rules', 'tools', 'className', 'source', 'quality', 'lineage']) {
        expect(line, `${String(line['summary'])} ${field}`).to.have.property(field).that.is.not.equal(null);
      }
    }
    const list = await envs(config, 'e2e');
    const library = bySummary(list, 'Library circulation system');
    expect(library.status).to.equal('kept');
    expect(library.quality).to.deep.include({ verdict: 'kept', notFailRate: 1 });
    expect(library.lineage.sourceTaskId).to.equal('t1');
    expect(library.lineage.prompts['check.probe.checker']).to.equal('checker-v1');

    const parking = bySummary(list, 'Parking garage management');
    expect(parking.status).to.equal('kept');
    expect(parking.assembleRepairs).to.have.length(1);
    expect(parking.assembleRepairs![0]!.methods).to.deep.equal(['exit_vehicle']);
    expect(parking.source).to.include('exit_vehicle({ ticket_id })');

    const clinic = bySummary(list, 'Clinic appointment scheduling');
    expect(clinic.status).to.equal('rejected');
    expect(clinic.quality?.repair).to.deep.include({ attempted: true, saved: false, methods: ['book_appointment'] });
    expect(clinic.quality?.rejectionReason).to.match(/book_appointment ×2/);
    expect(clinic.qualityHistory).to.have.length(2);

    const funnel = await running!.ctx.store.funnel('e2e');
    expect(funnel['mine.judge']).to.deep.equal({ 'needs-environment': 5, 'no-environment': 2 });
    expect(funnel['mine.topic']).to.deep.equal({ candidate: 4, 'low-scores': 1 });
    expect(funnel['mine.dedup']).to.deep.equal({ kept: 3, duplicate: 1 });
    const dedup = await running!.ctx.store.getDoc<{ kept: boolean; nearest: { taskId: string; similarity: number } }>('e2e', 'dedup', 't4');
    expect(dedup).to.deep.include({ kept: false });
    expect(dedup!.nearest.taskId).to.equal('t1');
    expect(dedup!.nearest.similarity).to.be.at.least(0.9);

    // Re-running the same command adds no job and sends no model request.
    const before = server!.log().length;
    const again = await submitSynthesis(config, running!.ctx.redis, request);
    expect(again).to.deep.include({ created: false, jobsAdded: 0 });
    await waitForRun(running!.ctx.store, 'e2e', () => undefined);
    expect(server!.log().length).to.equal(before);
  });

  it('ends an item whose model output stays invalid with the reason, and the run goes on', async () => {
    const broken = parseModelScript({
      rules: [{ stage: 'skeleton.state', matchAny: 'Environment: Broken domain', respond: { json: { className: 'Broken', entities: [] } } }],
    });
    await start(mergeModelScripts([broken, await loadModelScript(DEMO)]), { ENVFLEET_REPAIR_ATTEMPTS: '1' });
    const file = await descriptionsFile([DESCRIPTIONS[0]!, { summary: 'Broken domain', introduction: 'A domain whose state the model never describes properly.' }, 'not an object']);
    const submission = await submitSynthesis(config, running!.ctx.redis, { runId: 'bad-output', descriptions: file, probeSteps: 8 });
    expect(submission.problems).to.have.length(1);
    await waitForRun(running!.ctx.store, 'bad-output', () => undefined);
    const list = await envs(config, 'bad-output');
    expect(bySummary(list, 'Library circulation system').status).to.equal('kept');
    const failed = bySummary(list, 'Broken domain');
    expect(failed.status).to.equal('failed');
    expect(failed.failure).to.deep.include({ stage: 'skeleton.state', code: 'MODEL_OUTPUT_INVALID' });
    expect(failed.failure!.message).to.match(/after 2 calls/).and.to.match(/entities/);
  });

  it('resumes check.probe after a worker is SIGKILLed mid-step, repeating only the call in flight', async () => {
    const slow = parseModelScript({
      rules: [{ name: 'slow-checker', stage: 'check.probe.checker', matchAny: 'Arguments:[^}]*8\\.5', times: 1, fault: { type: 'delay', ms: 60_000 }, respond: { json: { analysis: 'x', verdict: 'pass', reason: 'no error' } } }],
    });
    await start(mergeModelScripts([slow, await loadModelScript(DEMO)]), {}, false);
    const file = await descriptionsFile([DESCRIPTIONS[0]!]);
    const child = spawn(process.execPath, ['bin/envfleet.js', 'worker'], {
      env: { ...process.env, REDIS_URL, ENVFLEET_REDIS_PREFIX: config.redis.prefix, OPENAI_BASE_URL: server!.url, OPENAI_API_KEY: 'k', ENVFLEET_LOCK_DURATION_MS: '2000', ENVFLEET_STALLED_INTERVAL_MS: '1000', LOG_LEVEL: 'silent' },
      stdio: 'ignore',
    });
    children.push(child);
    const producer = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    try {
      await submitSynthesis(config, producer, { runId: 'kill', descriptions: file, probeSteps: 8 });
      await until(() => Promise.resolve(server!.log().some(e => e.rule === 'slow-checker')), 'the slow checker call', 60_000);
      child.kill('SIGKILL');
      await new Promise(resolve => child.once('exit', resolve));
    } finally {
      producer.disconnect();
    }
    running = await startWorkerProcess(config, silentLogger());
    await waitForRun(running.ctx.store, 'kill', () => undefined, undefined, { redis: running.ctx.redis, prefix: config.redis.prefix });
    const [library] = await envs(config, 'kill');
    expect(library!.status).to.equal('kept');
    const steps = await running.ctx.store.steps<ProbeStepRecord>('kill', library!.id, 1);
    expect(steps.map(s => s.index)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
    const log = server!.log();
    const testers = log.filter(e => e.stage === 'check.probe.tester');
    const checkers = log.filter(e => e.stage === 'check.probe.checker');
    expect(testers).to.have.length(8); // every tester call answered once: the resumed job read them from the cache
    const judged = steps.filter(s => s.judgedBy === 'checker').length;
    expect(checkers).to.have.length(judged + 1); // only the call in flight was sent again
  });

  it('spreads one run over two worker processes, and exports the same result as one worker', async () => {
    const script = await loadModelScript(DEMO);
    await start(script, {}, false);
    const file = await descriptionsFile(DESCRIPTIONS);
    const env = { ...process.env, REDIS_URL, ENVFLEET_REDIS_PREFIX: config.redis.prefix, OPENAI_BASE_URL: server!.url, OPENAI_API_KEY: 'k', ENVFLEET_WORKER_CONCURRENCY: '2', LOG_LEVEL: 'silent' };
    for (let i = 0; i < 2; i += 1) children.push(spawn(process.execPath, ['bin/envfleet.js', 'worker'], { env, stdio: 'ignore' }));
    const producer = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    try {
      const store = createRedisSynthesisStore(producer, config.redis.prefix);
      await submitSynthesis(config, producer, { runId: 'two', descriptions: file, probeSteps: 8 });
      await waitForRun(store, 'two', () => undefined);
      const processedBy = new Set<string>();
      for (const name of QUEUE_NAMES) {
        const q = new Queue(name, { connection: producer, prefix: config.redis.prefix });
        for (const job of await q.getJobs(['completed'])) if (job.processedBy) processedBy.add(job.processedBy.split(':')[1]!);
        await q.close();
      }
      expect([...processedBy].sort()).to.deep.equal(children.map(c => String(c.pid)).sort());
    } finally {
      producer.disconnect();
    }
    for (const c of children.splice(0)) {
      c.kill('SIGTERM');
      await new Promise(resolve => c.once('exit', resolve));
    }
    // The same descriptions with one (in-process) worker and a fresh scripted server.
    await server!.close();
    server = await startModelServer({ script });
    const single = testConfig(server, { ENVFLEET_REDIS_PREFIX: config.redis.prefix });
    running = await startWorkerProcess(single, silentLogger());
    await submitSynthesis(single, running.ctx.redis, { runId: 'one', descriptions: file, probeSteps: 8 });
    await waitForRun(running.ctx.store, 'one', () => undefined);
    const summary = (list: EnvironmentRecord[]) =>
      list.map(e => ({ summary: e.description.summary, status: e.status, source: e.source, notFail: e.quality?.notFailRate, tools: e.tools?.length })).sort((a, b) => a.summary.localeCompare(b.summary));
    expect(summary(await envs(config, 'two'))).to.deep.equal(summary(await envs(config, 'one')));
  });
});
