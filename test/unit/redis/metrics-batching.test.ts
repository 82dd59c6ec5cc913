import { expect } from 'chai';
import type { Redis } from '../../../src/redis/connection.js';
import { createRedisMetrics } from '../../../src/runs/metrics.js';

/**
 * A connection that records each script call as EVAL's arguments would be (text, number of keys, keys, args):
 * the scripts are defined on it as ioredis commands (src/redis/scripts.ts) and run by their SHA.
 */
function scriptRecorder(calls: unknown[][]): Redis {
  const fake: Record<string, unknown> = {
    defineCommand(name: string, def: { lua: string; numberOfKeys: number }) {
      fake[name] = (...args: unknown[]) => (calls.push([def.lua, def.numberOfKeys, ...args]), Promise.resolve(1));
    },
  };
  return fake as unknown as Redis;
}

describe('metrics: observations gathered in the process', () => {
  it('writes the observations of each series in one command per flush (counts, per-bucket counts and sums added up), nothing before', async () => {
    const calls: unknown[][] = [];
    const fake = scriptRecorder(calls);
    const metrics = createRedisMetrics(fake, 'p', { flushMs: 60_000 });
    metrics.observe('model_request', { stage: 'rollout.policy', outcome: 'ok' }, 0.5);
    metrics.observe('model_request', { stage: 'rollout.policy', outcome: 'ok' }, 0.25);
    metrics.observe('model_request', { stage: 'rollout.policy', outcome: 'ok' }, 0.3);
    metrics.observe('job', { queue: 'rollout.run', status: 'completed' }, 3);
    expect(calls).to.have.length(0);
    await metrics.flush();
    expect(calls).to.have.length(2);
    const [model, job] = calls as [unknown[], unknown[]];
    expect(model.slice(1, 5)).to.deep.equal([2, 'p:metrics:model_request', 'p:metrics:series', 'model_request']);
    const fields = (c: unknown[]): Record<string, number> => Object.fromEntries(Array.from({ length: (c.length - 5) / 2 }, (_, i): [string, number] => [String(c[5 + 2 * i]), Number(c[6 + 2 * i])]));
    expect(fields(model)).to.deep.equal({
      'outcome=ok,stage=rollout.policy|b:0.5': 2,
      'outcome=ok,stage=rollout.policy|b:0.25': 1,
      'outcome=ok,stage=rollout.policy|sum': 1.05,
      'outcome=ok,stage=rollout.policy|count': 3,
    });
    expect(fields(job)).to.deep.equal({ 'queue=rollout.run,status=completed|b:5': 1, 'queue=rollout.run,status=completed|sum': 3, 'queue=rollout.run,status=completed|count': 1 });
    await metrics.flush();
    expect(calls).to.have.length(2);
  });

  it('writes by itself after the flush interval', async () => {
    const calls: unknown[][] = [];
    const fake = scriptRecorder(calls);
    const metrics = createRedisMetrics(fake, 'p', { flushMs: 20 });
    metrics.observe('job', { queue: 'q' }, 0.001);
    await new Promise(r => setTimeout(r, 80));
    expect(calls).to.have.length(1);
  });
});
