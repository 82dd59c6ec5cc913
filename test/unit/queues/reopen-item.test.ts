import { expect } from 'chai';
import { reopenItem } from '../../../queues/submit.js';
import { trajectoryIdOf } from '../../../src/runs/ids.js';
import type { RunStore } from '../../../src/runs/store.js';

/**
 * What a resubmission retries of a rollout job that failed for good: an episode recorded as failed (model-error,
 * environment-error) stays so; one whose record was never written (Redis refused the writes at its maxmemory) has
 * nothing recorded and is retried, as a cancelled one is.
 */
describe('reopenItem: rollout.run jobs that failed for good', () => {
  const data = { runId: 'r', scenarioId: 'scn-1', mode: 'conversational' as const, sample: 0, policy: undefined };
  const storeWith = (docs: Record<string, string>) =>
    ({ getDocText: (_run: string, kind: string, id: string) => Promise.resolve(kind === 'trajectory' ? (docs[id] ?? null) : null) }) as unknown as RunStore;
  const id = trajectoryIdOf(data.runId, data.scenarioId, data.mode, data.sample, data.policy);

  it('retries an episode with no trajectory recorded, and a cancelled one; keeps a recorded failure', async () => {
    expect(await reopenItem(storeWith({}))('rollout.run', data, 'UNEXPECTED')).to.equal(true);
    expect(await reopenItem(storeWith({}))('rollout.run', data, 'REDIS_FULL')).to.equal(true);
    expect(await reopenItem(storeWith({ [id]: '{"termination":{"reason":"model-error"}}' }))('rollout.run', data, 'MODEL_BAD_REQUEST')).to.equal(false);
    expect(await reopenItem(storeWith({ [id]: '{}' }))('rollout.run', data, 'RUN_CANCELLED')).to.equal(true);
  });
});
