import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import { submitScenarios, submitSynthesis } from '../../queues/submit.js';
import { exportRun } from '../../src/datasets/export.js';
import { loadModelScript, parseModelScript } from '../../src/model-server/index.js';
import type { RunStore } from '../../src/runs/store.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { DEMO, ENVFLEET_BIN, exited, until, useFleet, type Fleet } from '../helpers/integration.js';

const run = promisify(execFile);

async function scenariosOf(store: RunStore, runId: string): Promise<{ scenario: ScenarioRecord; env: EnvironmentRecord }[]> {
  const out = [];
  for (const id of await store.listDocIds(runId, 'scenario')) {
    const scenario = (await store.getDoc(runId, 'scenario', id))!;
    out.push({ scenario, env: (await store.getDoc(runId, 'env', scenario.environmentId))! });
  }
  return out;
}

async function synthesize(f: Fleet, runId: string) {
  await submitSynthesis(f.config, f.redis, { runId, tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
  await f.waitForRun(runId);
}

describe('scenario generation (real Redis, real workers, scripted server)', function () {
  const fleet = useFleet();

  it('produces the scenarios the fixtures imply, with the dropped ones and their reasons; checks hold up in `envfleet sandbox check`', async () => {
    const f = await fleet();
    await synthesize(f, 'scn');
    const submission = await submitScenarios(f.config, f.redis, { runId: 'scn', perEnv: 3 });
    expect(submission).to.deep.include({ items: 2, jobsAdded: 6 });
    await f.waitForRun('scn');

    const all = await scenariosOf(f.store, 'scn');
    const ready = all.filter(s => s.scenario.status === 'ready');
    const dropped = all.filter(s => s.scenario.status === 'dropped');
    expect(ready).to.have.length(4);
    expect(dropped.map(d => `${d.env.description.summary}:${d.scenario.dropReason?.code}`).sort()).to.deep.equal([
      'Library circulation system:DUPLICATE_STATE',
      'Parking garage management:DUPLICATE_TASK',
    ]);
    const iris = ready.find(s => s.scenario.task?.includes('Iris Vance'))!.scenario;
    expect(iris.validation!.repairs).to.have.length(1);
    expect(iris.validation!.repairs[0]!.problem).to.match(/CHECK_THREW/);
    expect(iris.userGoal!.facts).to.include('My member id is M7');
    expect(iris.validation!.onInitialState.map(r => r.passed)).to.deep.equal([false, true, false]);

    const dir = await mkdtemp(join(tmpdir(), 'envfleet-scn-'));
    const exported = await exportRun(f.store, 'scn', dir);
    expect(exported.scenarios).to.deep.include({ ready: 4, dropped: 2 });
    const lines = (await readFile(join(dir, 'scenarios.jsonl'), 'utf8')).trim().split('\n').map(l => JSON.parse(l) as { id: string; environmentId: string; initialState: unknown; task: string; userGoal: unknown; checklist: { item: string; check: string }[]; validation: unknown; lineage: unknown });
    expect(lines).to.have.length(4);
    const droppedLines = (await readFile(join(dir, 'scenarios-dropped.jsonl'), 'utf8')).trim().split('\n').map(l => JSON.parse(l) as { reason: { code: string } });
    expect(droppedLines.map(d => d.reason.code).sort()).to.deep.equal(['DUPLICATE_STATE', 'DUPLICATE_TASK']);

    // Every exported scenario's checks, run from the command line on its initial state, are
    // booleans without errors and not all true.
    for (const line of lines) {
      for (const field of ['id', 'environmentId', 'initialState', 'task', 'userGoal', 'checklist', 'validation', 'lineage']) expect(line).to.have.property(field);
      const checks = join(dir, `${line.id}.checks.json`);
      const initial = join(dir, `${line.id}.initial.json`);
      await writeFile(checks, JSON.stringify(line.checklist));
      await writeFile(initial, JSON.stringify(line.initialState));
      const { stdout } = await run(process.execPath, [ENVFLEET_BIN, 'sandbox', 'check', checks, '--initial', initial, '--final', initial]);
      const result = JSON.parse(stdout) as { results: { passed: unknown; error?: string }[]; solved: boolean };
      expect(result.results.length).to.be.greaterThan(0);
      for (const r of result.results) {
        expect(r.error, line.task).to.equal(undefined);
        expect(r.passed).to.be.a('boolean');
      }
      expect(result.solved, line.task).to.equal(false);
    }

    // Again: nothing added, no model request.
    const before = f.server.log().length;
    const again = await submitScenarios(f.config, f.redis, { runId: 'scn', perEnv: 3 });
    expect(again.jobsAdded).to.equal(0);
    await f.waitForRun('scn');
    expect(f.server.log().length).to.equal(before);
  });

  it('loses nothing when a worker is killed in the middle of scenario.check', async () => {
    const slow = parseModelScript({
      rules: [{ name: 'slow-check', stage: 'scenario.check', matchAny: 'Checklist item: Has member M7 with no unpaid fines', times: 1, fault: { type: 'delay', ms: 60_000 }, respond: { json: { check: 'function check(f) { return f.members.M7.fines === 0; }' } } }],
    });
    const f = await fleet({ extra: slow });
    await synthesize(f, 'kill');
    await f.stopWorkers();
    const child = f.spawnWorker();
    await submitScenarios(f.config, f.redis, { runId: 'kill', perEnv: 3 });
    await until(() => Promise.resolve(f.server.log().some(e => e.rule === 'slow-check')), 'the slow check call', 300_000);
    child.kill('SIGKILL');
    await exited(child);
    await f.startWorkers();
    await f.waitForRun('kill');
    const all = await scenariosOf(f.store, 'kill');
    expect(all.filter(s => s.scenario.status === 'ready')).to.have.length(4);
    expect(all.filter(s => s.scenario.status === 'dropped')).to.have.length(2);
    const iris = all.find(s => s.scenario.task?.includes('Iris Vance'))!.scenario;
    expect(iris.checklist).to.have.length(3);
    // The check already written before the kill (item 1) was not asked again.
    expect(f.server.log().filter(e => e.stage === 'scenario.check' && JSON.stringify(e.body).includes('Checklist item: Has loan L21 marked as returned'))).to.have.length(1);
  });

  it('decides duplicates in index order: the lower index is kept even when its answer comes last', async () => {
    // Library states 1 and 3 of the demo are equal. State 1's first request hangs in a worker that is
    // then killed, so state 3 is answered first; the scenario with index 0 must still be the one kept.
    const demo = await loadModelScript(DEMO);
    const first = demo.rules!.find(r => r.name === 'library-scenario-state-1')!;
    const hang = parseModelScript({ rules: [{ ...first, name: 'hang-state-1', matchAny: 'Environment: Library circulation system[\\s\\S]*This is state 1 of 3', times: 1, fault: { type: 'delay', ms: 600_000 } }] });
    const f = await fleet({ extra: hang });
    await synthesize(f, 'order');
    await f.stopWorkers();
    const child = f.spawnWorker();
    await submitScenarios(f.config, f.redis, { runId: 'order', perEnv: 3 });
    const answered = (state: number) => () =>
      Promise.resolve(f.server.log().some(e => e.stage === 'scenario.state' && e.status === 200 && JSON.stringify(e.body).includes('Library circulation system') && JSON.stringify(e.body).includes(`This is state ${state} of 3`)));
    await until(() => Promise.resolve(f.server.log().some(e => e.rule === 'hang-state-1')), 'the hanging request of state 1');
    await until(answered(3), 'state 3 to be answered');
    // Index 2's job has done what it can: claimed its state (completed) or found index 0 unclaimed (delayed).
    const libraryId = (await scenariosOf(f.store, 'order')).find(s => s.env.description.summary === 'Library circulation system')!.env.id;
    const states = new Queue('scenario.state', { connection: f.redis, prefix: f.config.redis.prefix });
    await until(async () => (await states.getJobs(['delayed', 'completed'])).some(j => (j.data as { envId: string; index: number }).envId === libraryId && (j.data as { index: number }).index === 2), "index 2's scenario.state job to get past its answer");
    await states.close();
    child.kill('SIGKILL');
    await exited(child);
    await f.startWorkers();
    await f.waitForRun('order');
    const library = (await scenariosOf(f.store, 'order')).filter(s => s.env.description.summary === 'Library circulation system').map(s => s.scenario);
    expect(library.map(s => [s.index, s.status, s.dropReason?.code ?? null]).sort()).to.deep.equal([
      [0, 'ready', null],
      [1, 'ready', null],
      [2, 'dropped', 'DUPLICATE_STATE'],
    ]);
  });

  it('generates scenarios for environments imported from an environments.jsonl export', async () => {
    const f = await fleet();
    await synthesize(f, 'source');
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-import-'));
    const exported = await exportRun(f.store, 'source', dir);
    await writeFile(exported.path, `${await readFile(exported.path, 'utf8')}{"id": "broken"}\n`);
    const submission = await submitScenarios(f.config, f.redis, { runId: 'imported', perEnv: 3, environments: exported.path });
    expect(submission.items).to.equal(2); // the rejected clinic is not imported
    expect(submission.problems).to.have.length(1);
    expect(submission.problems[0]!.line).to.equal(4);
    await f.waitForRun('imported');
    const all = await scenariosOf(f.store, 'imported');
    expect(all.filter(s => s.scenario.status === 'ready')).to.have.length(4);
  });
});
