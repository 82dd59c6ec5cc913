import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Queue } from 'bullmq';
import { PIPELINE_STAGES } from '../../queues/pipeline.js';
import { submitSynthesis } from '../../queues/submit.js';
import { exportRun } from '../../src/datasets/export.js';
import { parseModelScript } from '../../src/model-server/index.js';
import type { RunStore } from '../../src/runs/store.js';
import { qualityOf } from '../../src/synthesis/check.js';
import { formatStatus } from '../../cli/runs.js';
import { runStatus } from '../../queues/run-status.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { DEMO, exited, until, useFleet } from '../helpers/integration.js';

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

async function envs(store: RunStore, runId: string): Promise<EnvironmentRecord[]> {
  const ids = await store.listDocIds(runId, 'env');
  return (await Promise.all(ids.map(id => store.getDoc(runId, 'env', id)))).filter((e): e is EnvironmentRecord => !!e);
}

const bySummary = (list: readonly EnvironmentRecord[], summary: string) => list.find(e => e.description.summary === summary)!;

describe('environment synthesis (real Redis, real workers, scripted server)', function () {
  const fleet = useFleet();

  it('mines, deduplicates, builds, probes and exports the demo set, as the fixtures imply', async () => {
    const f = await fleet();
    const request = { runId: 'e2e', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 };
    const submission = await submitSynthesis(f.config, f.redis, request);
    expect(submission.problems.map(p => p.line)).to.deep.equal([8, 9]);
    await f.waitForRun('e2e');

    const dir = await mkdtemp(join(tmpdir(), 'envfleet-export-'));
    const exported = await exportRun(f.store, 'e2e', dir);
    expect(exported.byStatus).to.deep.equal({ kept: 2, rejected: 1 });
    const lines = (await readFile(exported.path, 'utf8')).trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>);
    for (const line of lines) {
      for (const field of ['id', 'name', 'summary', 'introduction', 'stateSchema', 'rules', 'tools', 'className', 'source', 'quality', 'lineage']) {
        expect(line, `${String(line['summary'])} ${field}`).to.have.property(field).that.is.not.equal(null);
      }
    }
    const list = await envs(f.store, 'e2e');
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

    const counters = await f.store.counters('e2e');
    expect(counters['mine.judge']).to.deep.equal({ 'needs-environment': 5, 'no-environment': 2 });
    expect(counters['mine.topic']).to.deep.equal({ candidate: 4, 'low-scores': 1 });
    expect(counters['mine.dedup']).to.deep.equal({ kept: 3, duplicate: 1 });
    const dedup = await f.store.getDoc('e2e', 'dedup', 't4');
    expect(dedup).to.deep.include({ kept: false });
    expect(dedup!.nearest!.taskId).to.equal('t1');
    expect(dedup!.nearest!.similarity).to.be.at.least(0.9);

    // Re-running the same command adds no job and sends no model request.
    const before = f.server.log().length;
    const again = await submitSynthesis(f.config, f.redis, request);
    expect(again).to.deep.include({ created: false, jobsAdded: 0 });
    await f.waitForRun('e2e');
    expect(f.server.log().length).to.equal(before);
  });

  it('fails a method that runs past its deadline by rule, even when the checker passes everything, and calls every tool', async () => {
    const loop = { helpers: [], source: 'search_books({ query }) {\n  const seen = [];\n  while (true) seen.length = 0;\n}\n' };
    const lenient = parseModelScript({
      rules: [
        { name: 'loop-search', stage: 'skeleton.method', matchAny: 'Environment: Library circulation system[\\s\\S]*Write the method for operation search_books:', respond: { json: loop } },
        { name: 'loop-repair', stage: 'check.repair', matchAny: 'Library circulation system', respond: { json: loop } },
        { name: 'lenient-checker', stage: 'check.probe.checker', respond: { json: { analysis: 'Looks fine to me — très bien 👍', verdict: 'pass', reason: 'no error' } } },
      ],
    });
    const f = await fleet({ extra: lenient, overrides: { ENVFLEET_SANDBOX_DEADLINE_MS: '200' } });
    await submitSynthesis(f.config, f.redis, { runId: 'gate', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun('gate');
    const library = bySummary(await envs(f.store, 'gate'), 'Library circulation system');
    expect(library.status, JSON.stringify(library.failure)).to.equal('rejected');
    // Round 1: the looping method failed by rule (the lenient checker was never asked about it), every
    // tool was called, and the round was rejected on the per-tool floor although 7 of 8 calls passed.
    const steps = await f.store.steps('gate', library.id, 1);
    const looped = steps.filter(s => s.tool === 'search_books');
    expect(looped.length).to.be.at.least(1);
    for (const s of looped) expect(s).to.deep.include({ verdict: 'fail', judgedBy: 'runtime', runtimeError: 'DEADLINE_EXCEEDED' });
    const first = qualityOf(library, steps, 1, 0.85);
    expect(first.notFailRate).to.be.at.least(0.85);
    expect(first.rejectionReason).to.equal('every judged call of search_books failed');
    expect(library.qualityHistory![0]).to.deep.include({ round: 1, verdict: 'rejected' });
    for (const tool of library.tools!) expect(steps.some(s => s.tool === tool.function.name), tool.function.name).to.equal(true);
  });

  it('sends back only the method whose helper breaks the assembled class, with its helpers and its own error (every method went back)', async () => {
    const source = "search_books({ query }) {\n  const q = String(query).trim().toLowerCase();\n  if (!q) return { success: false, error: 'query must not be empty' };\n  return { success: true, data: Object.values(this.state.books).filter(b => b.title.toLowerCase().includes(q)).map(b => ({ book_id: b.book_id, title: b.title, available: b.available })) };\n}\n";
    const script = parseModelScript({
      rules: [
        { name: 'fixed-search', stage: 'skeleton.method', matchAny: 'constructor\\(s\\)[\\s\\S]*That method does not work: the class with this method and its helpers does not load', respond: { json: { helpers: [], source } } },
        { name: 'clashing-helper', stage: 'skeleton.method', matchAny: 'Environment: Library circulation system[\\s\\S]*Write the method for operation search_books:', respond: { json: { helpers: ['constructor(s) { this.state = s; /* « état » 🙂 */ }'], source } } },
      ],
    });
    const f = await fleet({ extra: script });
    const file = await descriptionsFile([DESCRIPTIONS[0]!]);
    await submitSynthesis(f.config, f.redis, { runId: 'helper', descriptions: file, probeSteps: 8 });
    await f.waitForRun('helper');
    const library = bySummary(await envs(f.store, 'helper'), 'Library circulation system');
    expect(library.status, JSON.stringify(library.failure)).to.equal('kept');
    expect(library.assembleRepairs).to.have.length(1);
    expect(library.assembleRepairs![0]!.methods).to.deep.equal(['search_books']);
    expect(library.assembleRepairs![0]!.problems[0]).to.match(/^search_books: the class with this method and its helpers does not load or instantiate: /);
    expect(library.source).not.to.include('« état »');
  });

  it('ends an item whose model output stays invalid with the reason, and the run goes on', async () => {
    const broken = parseModelScript({
      rules: [
        { stage: 'skeleton.state', matchAny: 'Environment: Broken domain', respond: { json: { className: 'Broken', entities: [] } } },
        { stage: 'mine.judge', matchAny: 'Mauvais juge', respond: { json: { verdict: 'peut-être 🤷' } } },
      ],
    });
    const f = await fleet({ extra: broken, overrides: { ENVFLEET_REPAIR_ATTEMPTS: '1' } });
    const file = await descriptionsFile([DESCRIPTIONS[0]!, { summary: 'Broken domain', introduction: 'A domain whose state the model never describes properly.' }, 'not an object']);
    const submission = await submitSynthesis(f.config, f.redis, { runId: 'bad-output', descriptions: file, probeSteps: 8 });
    expect(submission.problems).to.have.length(1);
    await f.waitForRun('bad-output');
    const list = await envs(f.store, 'bad-output');
    expect(bySummary(list, 'Library circulation system').status).to.equal('kept');
    const failed = bySummary(list, 'Broken domain');
    expect(failed.status).to.equal('failed');
    expect(failed.failure).to.deep.include({ stage: 'skeleton.state', code: 'MODEL_OUTPUT_INVALID' });
    expect(failed.failure!.message).to.match(/after 2 calls/).and.to.match(/entities/);
    // Status says what the code means for this run: one item's reason per failure (a mining task's was only in the
    // workers' log: status said "7 failed:MODEL_OUTPUT_INVALID" and nothing else).
    const status = async (runId: string) => formatStatus((await runStatus({ store: f.store, ledger: f.workers.ctx.ledger, control: f.workers.ctx.runControl }, runId))!);
    expect(await status('bad-output')).to.match(/\nwhy, one example of each[^\n]*\n {2}skeleton\.state failed:MODEL_OUTPUT_INVALID: .*after 2 calls.*entities/);
    const tasks = await descriptionsFile([{ id: 'j1', task: 'Mauvais juge : réserver une table pour deux — 预订 🍽️' }]);
    await submitSynthesis(f.config, f.redis, { runId: 'bad-judge', tasks, probeSteps: 8 });
    await f.waitForRun('bad-judge');
    expect(await status('bad-judge')).to.match(/\n {2}mine\.judge failed:MODEL_OUTPUT_INVALID: task j1: unusable model output: .*needsEnvironment/);
  });

  it('resumes check.probe after a worker is SIGKILLed mid-step, repeating only the call in flight', async () => {
    const slow = parseModelScript({
      rules: [{ name: 'slow-checker', stage: 'check.probe.checker', matchAny: 'Arguments:[^}]*8\\.5', times: 1, fault: { type: 'delay', ms: 60_000 }, respond: { json: { analysis: 'x', verdict: 'pass', reason: 'no error' } } }],
    });
    const f = await fleet({ extra: slow, workers: false });
    const file = await descriptionsFile([DESCRIPTIONS[0]!]);
    const child = f.spawnWorker();
    await submitSynthesis(f.config, f.redis, { runId: 'kill', descriptions: file, probeSteps: 8 });
    await until(() => Promise.resolve(f.server.log().some(e => e.rule === 'slow-checker')), 'the slow checker call', 300_000);
    child.kill('SIGKILL');
    await exited(child);
    await f.startWorkers();
    await f.waitForRun('kill');
    const [library] = await envs(f.store, 'kill');
    expect(library!.status).to.equal('kept');
    const steps = await f.store.steps('kill', library!.id, 1);
    expect(steps.map(s => s.index)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
    // Steps keep what changed, not the states; the state after the latest step is kept once, to resume from.
    expect(steps.filter(s => 'stateBefore' in s || 'stateAfter' in s)).to.deep.equal([]);
    expect(JSON.parse((await f.store.probeStateJson('kill', library!.id, 1))!)).to.be.an('object');
    const log = f.server.log();
    const testers = log.filter(e => e.stage === 'check.probe.tester');
    const checkers = log.filter(e => e.stage === 'check.probe.checker');
    expect(testers).to.have.length(8); // every tester call answered once: the resumed job read them from the cache
    const judged = steps.filter(s => s.judgedBy === 'checker').length;
    expect(checkers).to.have.length(judged + 1); // only the call in flight was sent again
  });

  it('spreads one run over two worker processes, one started outside the checkout, and exports the same result as one worker', async () => {
    const f = await fleet({ workers: false });
    const file = await descriptionsFile(DESCRIPTIONS);
    // The second worker runs from another directory: its sandbox threads must load all the same.
    const elsewhere = await mkdtemp(join(tmpdir(), 'envfleet-elsewhere-'));
    const children = [f.spawnWorker({ ENVFLEET_WORKER_CONCURRENCY: '2' }), f.spawnWorker({ ENVFLEET_WORKER_CONCURRENCY: '2' }, elsewhere)];
    await submitSynthesis(f.config, f.redis, { runId: 'two', descriptions: file, probeSteps: 8 });
    await f.waitForRun('two');
    const processedBy = new Set<string>();
    for (const name of PIPELINE_STAGES) {
      const q = new Queue(name, { connection: f.redis, prefix: f.config.redis.prefix });
      for (const job of await q.getJobs(['completed'])) if (job.processedBy) processedBy.add(job.processedBy.split(':')[1]!);
      await q.close();
    }
    expect([...processedBy].sort()).to.deep.equal(children.map(c => String(c.pid)).sort());
    for (const c of children) {
      c.kill('SIGTERM');
      await exited(c);
    }
    // The same descriptions with one (in-process) worker and a fresh scripted server.
    const single = await f.restartServer();
    await f.startWorkers({ config: single });
    await submitSynthesis(single, f.redis, { runId: 'one', descriptions: file, probeSteps: 8 });
    await f.waitForRun('one');
    const summary = (list: EnvironmentRecord[]) =>
      list.map(e => ({ summary: e.description.summary, status: e.status, source: e.source, notFail: e.quality?.notFailRate, tools: e.tools?.length })).sort((a, b) => a.summary.localeCompare(b.summary));
    expect(summary(await envs(f.store, 'two'))).to.deep.equal(summary(await envs(f.store, 'one')));
  });
});
