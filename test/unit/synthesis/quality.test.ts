import { expect } from 'chai';
import { qualityOf } from '../../../src/synthesis/check.js';
import type { EnvironmentRecord, ProbeStepRecord } from '../../../src/synthesis/types.js';

const env = { tools: ['lookup', 'reserve', 'cancel'].map(name => ({ type: 'function', function: { name, description: name, parameters: { type: 'object', properties: {} } } })) } as unknown as EnvironmentRecord;

let index = 0;
function step(tool: string, verdict: ProbeStepRecord['verdict'], judgedBy: ProbeStepRecord['judgedBy'] = 'checker', caseType: ProbeStepRecord['caseType'] = 'positive'): ProbeStepRecord {
  return { index: index++, tool, arguments: { note: 'réservation — 预约 📅' }, caseType, thought: '', result: null, runtimeError: judgedBy === 'runtime' ? 'DEADLINE_EXCEEDED' : null, diff: { changed: [] } as never, verdict, judgedBy, checker: { analysis: '', reason: '' } };
}

describe('synthesis quality gate (qualityOf)', () => {
  it('keeps an environment whose every tool was called and none failed all its calls', () => {
    const q = qualityOf(env, [step('lookup', 'pass'), step('reserve', 'pass'), step('reserve', 'fail'), step('cancel', 'pass'), step('cancel', 'pass'), step('lookup', 'pass'), step('lookup', 'pass'), step('reserve', 'pass')], 1, 0.85);
    expect(q).to.deep.include({ verdict: 'kept', notFailRate: 0.875, rejectionReason: null });
  });

  it('sinks the environment when one tool failed every judged call, whatever the average', () => {
    const steps = [...Array.from({ length: 18 }, (_, i) => step(i % 2 ? 'lookup' : 'reserve', 'pass')), step('cancel', 'fail'), step('cancel', 'fail')];
    const q = qualityOf(env, steps, 1, 0.85);
    expect(q.notFailRate).to.equal(0.9);
    expect(q.verdict).to.equal('rejected');
    expect(q.rejectionReason).to.equal('every judged call of cancel failed');
  });

  it('counts a runtime stop as a failure by rule, and a tool never called as a reason to reject', () => {
    const q = qualityOf(env, [step('lookup', 'pass'), step('lookup', 'pass'), step('reserve', 'pass'), step('reserve', 'fail', 'runtime')], 1, 0.5);
    expect(q.counts).to.deep.include({ total: 4, fail: 1 });
    expect(q.runtimeFailures).to.equal(1);
    expect(q.verdict).to.equal('rejected');
    expect(q.rejectionReason).to.equal('never called: cancel');
  });

  it('does not count a negative case the tool schema refused as a pass of the method, nor as its method run', () => {
    const refused = { ...step('cancel', 'not-judged', 'schema', 'negative'), runtimeError: 'INVALID_ARGUMENTS' };
    const q = qualityOf(env, [step('lookup', 'pass'), step('reserve', 'pass'), refused], 1, 0.85);
    expect(q.counts.total).to.equal(2);
    expect(q.perTool['cancel']).to.deep.include({ total: 0, pass: 0 });
    expect(q).to.deep.include({ schemaRefusals: 1, testerErrors: 0, verdict: 'rejected', rejectionReason: 'never called: cancel' });
    expect(qualityOf(env, [step('lookup', 'pass'), step('reserve', 'pass'), refused, step('cancel', 'pass')], 1, 0.85).verdict).to.equal('kept');
  });
});
