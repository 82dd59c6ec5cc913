import { expect } from 'chai';
import { z } from 'zod';
import { defineQueue } from '../../../queues/define-queue.js';
import { STAGE_QUEUES } from '../../../queues/pipeline.js';

const def = defineQueue({
  name: 'test.q',
  description: 'test',
  data: z.strictObject({ a: z.number(), b: z.string().optional() }),
  result: z.strictObject({ ok: z.boolean() }),
  jobOptions: jobs => ({ attempts: jobs.attempts }),
  identity: d => ({ a: d.a, b: d.b }),
});

describe('defineQueue', () => {
  it('derives the same job id from equal inputs, whatever the key order, and no ":"', () => {
    const id = def.jobId({ a: 1, b: 'x' });
    expect(def.jobId({ b: 'x', a: 1 })).to.equal(id);
    expect(def.jobId({ a: 2, b: 'x' })).not.to.equal(id);
    expect(id).not.to.include(':');
    expect(id).to.match(/^test\.q-[0-9a-f]{40}$/);
  });

  it('rejects invalid data with the queue name and the path of the problem', () => {
    expect(() => def.parseData({ a: 'one' })).to.throw(/invalid job data for queue "test.q"[\s\S]*at a:/);
    try {
      def.parseData({ a: 1, extra: true });
    } catch (err) {
      expect(err).to.have.property('code', 'INVALID_JOB_DATA');
    }
  });

  it('refuses a queue name with ":"', () => {
    expect(() => defineQueue({ ...def, name: 'a:b' })).to.throw(/must not contain ":"/);
  });

  it('round-trips stage job data through JSON, and names each job by its stage', () => {
    const data = { runId: 'r', scenarioId: 'scn-1', mode: 'conversational' as const, sample: 3 };
    expect(STAGE_QUEUES['rollout.run'].parseData(JSON.parse(JSON.stringify(data)))).to.deep.equal(data);
    expect(STAGE_QUEUES['rollout.run'].jobId(data)).to.match(/^rollout\.run-[0-9a-f]{40}$/);
  });
});
