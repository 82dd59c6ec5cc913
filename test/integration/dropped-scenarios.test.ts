import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { submitScenarios, submitSynthesis } from '../../queues/submit.js';
import { exportRun } from '../../src/datasets/export.js';
import { parseModelScript } from '../../src/model-server/index.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { DEMO, useFleet } from '../helpers/integration.js';

/** Check functions that throw on the initial state whatever the model is told (loans and members are objects, not arrays or maps). */
const NEVER_VALID = parseModelScript({
  rules: [
    { name: 'm3-fines-throws', stage: 'scenario.check', matchAny: 'Checklist item: Has member M3 with no unpaid fines', respond: { json: { check: "function check(f) { return f.members.get('M3').fines === 0; }" } } },
    { name: 'b5-loan-throws', stage: 'scenario.check', matchAny: 'Checklist item: Has an active loan of book B5 for member M7', respond: { json: { check: "function check(f) { return f.loans.find(l => l.book_id === 'B5') !== undefined; }" } } },
  ],
});

interface DroppedLine {
  id: string;
  reason: { stage: string; code: string; message: string; item?: string };
  task: string | null;
  checklist: { item: string; check: string | null }[] | null;
  validation: { onInitialState: unknown[]; repairs: { item: string; problem: string }[] } | null;
}

describe('a scenario dropped while its checks are written (real Redis, real workers, scripted server)', function () {
  const fleet = useFleet();

  it('keeps the checklist, the checks written and the repairs, and names the item whose check stayed invalid', async () => {
    const f = await fleet({ extra: NEVER_VALID });
    await submitSynthesis(f.config, f.redis, { runId: 'drop', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun('drop');
    await submitScenarios(f.config, f.redis, { runId: 'drop', perEnv: 3 });
    await f.waitForRun('drop');

    const scenarios: ScenarioRecord[] = [];
    for (const id of await f.store.listDocIds('drop', 'scenario')) scenarios.push((await f.store.getDoc('drop', 'scenario', id))!);
    const iris = scenarios.find(s => s.task?.includes('Iris Vance'))!;
    const oskar = scenarios.find(s => s.task?.includes('Oskar Lind'))!;
    const calls = 1 + f.config.gateway.repairAttempts;

    // Dropped at its third item: the first two checks stay, and the third item's repairs are recorded.
    expect(iris.status).to.equal('dropped');
    expect(iris.dropReason).to.deep.include({ stage: 'scenario.check', code: 'MODEL_OUTPUT_INVALID', item: 'Has an active loan of book B5 for member M7' });
    expect(iris.dropReason!.message).to.include('checklist item 3').and.include('Has an active loan of book B5 for member M7');
    expect(iris.checklist!.map(c => c.item)).to.deep.equal(['Has loan L21 marked as returned', 'Has member M7 with no unpaid fines']);
    expect(iris.validation!.repairs).to.have.length(calls);
    for (const r of iris.validation!.repairs) {
      expect(r.item).to.equal('Has an active loan of book B5 for member M7');
      expect(r.problem).to.match(/CHECK_THREW/);
    }
    // Dropped at its first item: nothing was stored before, yet the record has the item's repairs.
    expect(oskar.status).to.equal('dropped');
    expect(oskar.dropReason).to.deep.include({ stage: 'scenario.check', code: 'MODEL_OUTPUT_INVALID', item: 'Has member M3 with no unpaid fines' });
    expect(oskar.checklist).to.deep.equal([]);
    expect(oskar.validation!.repairs.map(r => r.item)).to.deep.equal(Array(calls).fill('Has member M3 with no unpaid fines'));

    const counters = await f.store.counters('drop');
    expect(counters['scenario.check']).to.deep.include({ 'dropped:MODEL_OUTPUT_INVALID': 2 });

    const dir = await mkdtemp(join(tmpdir(), 'envfleet-dropped-'));
    const exported = await exportRun(f.store, 'drop', dir);
    expect(exported.scenarios).to.deep.include({ ready: 2, dropped: 4 });
    const lines = (await readFile(join(dir, 'scenarios-dropped.jsonl'), 'utf8')).trim().split('\n').map(l => JSON.parse(l) as DroppedLine);
    const irisLine = lines.find(l => l.id === iris.id)!;
    expect(irisLine.reason.item).to.equal('Has an active loan of book B5 for member M7');
    expect(irisLine.checklist!.map(c => [c.item, c.check === null])).to.deep.equal([
      ['Has loan L21 marked as returned', false],
      ['Has member M7 with no unpaid fines', false],
      ['Has an active loan of book B5 for member M7', true],
    ]);
    expect(irisLine.checklist![0]!.check).to.equal(iris.checklist![0]!.check);
    expect(irisLine.validation!.repairs).to.have.length(calls);
    const oskarLine = lines.find(l => l.id === oskar.id)!;
    expect(oskarLine.checklist).to.deep.equal([
      { item: 'Has member M3 with no unpaid fines', check: null },
      { item: 'Has an active loan of book B9 for member M3', check: null },
    ]);
    expect(oskarLine.validation!.repairs).to.have.length(calls);
    // Scenarios dropped before they had a checklist keep the line they had.
    const early = lines.filter(l => l.reason.code.startsWith('DUPLICATE_'));
    expect(early).to.have.length(2);
    for (const l of early) expect(l).to.deep.include({ checklist: null, validation: null });
  });
});
