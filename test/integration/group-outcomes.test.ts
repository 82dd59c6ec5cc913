import { expect } from 'chai';
import { computeGroup, recordFailedRollout } from '../../src/rollouts/stages.js';
import { createRedisTrajectoryStream } from '../../src/rollouts/stream.js';
import { groupIdOf, trajectoryIdOf } from '../../src/runs/ids.js';
import { runKeys } from '../../src/runs/keys.js';
import type { RunStore } from '../../src/runs/store.js';
import { useRunStore } from '../helpers/integration.js';

/** The store, counting the trajectories read whole (the outcomes are read apart). */
function counting(store: RunStore): { store: RunStore; reads: () => number } {
  let reads = 0;
  const wrapped = new Proxy(store, {
    get(target, key, receiver) {
      if (key !== 'getDoc') return Reflect.get(target, key, receiver) as unknown;
      return (runId: string, kind: 'trajectory', id: string) => {
        if (kind === 'trajectory') reads += 1;
        return target.getDoc(runId, kind, id);
      };
    },
  });
  return { store: wrapped, reads: () => reads };
}

describe('a group job reads the outcomes kept beside its trajectories (real Redis)', function () {
  this.timeout(30_000);
  const fixture = useRunStore('group-outcomes');

  it('writes each outcome with its trajectory, reads none of the stored trajectories for the group, drops them after, and gives the same statistics from the trajectories', async () => {
    const { redis, store, prefix } = fixture;
    const run = 'r';
    const scenario = 'scénario-客房-🏨';
    const mode = 'non-conversational' as const;
    const deps = { store, stream: createRedisTrajectoryStream(redis, prefix) };
    const samples = 5;
    for (let sample = 0; sample < samples; sample++) {
      await recordFailedRollout(deps, run, scenario, mode, sample, sample % 2 ? 'model-error' : 'time-limit', `sample ${sample}: détail 😀`);
    }
    const key = runKeys(prefix, run).outcomes(groupIdOf(scenario, mode));
    const group = groupIdOf(scenario, mode);
    // A second write of a trajectory stored already writes nothing, its outcome included.
    const before = await redis.hgetall(key);
    const bytesBefore = (await store.bytes(run))['outcomes'];
    const other = JSON.stringify({ id: trajectoryIdOf(run, scenario, mode, 0), sample: 0, reward: 1, solved: true, termination: { reason: 'agent-finished', detail: null } });
    expect(await store.addDocText(run, 'trajectory', trajectoryIdOf(run, scenario, mode, 0), '{"id":"another document"}', [], { group, json: other })).to.equal(false);
    expect(await redis.hgetall(key)).to.deep.equal(before);
    expect((await store.bytes(run))['outcomes']).to.equal(bytesBefore);
    const kept = before;
    expect(Object.keys(kept).sort()).to.deep.equal(Array.from({ length: samples }, (_, i) => trajectoryIdOf(run, scenario, mode, i)).sort());
    expect(JSON.parse(kept[trajectoryIdOf(run, scenario, mode, 0)]!)).to.deep.equal({ id: trajectoryIdOf(run, scenario, mode, 0), sample: 0, reward: null, solved: false, termination: { reason: 'time-limit', detail: null } });
    const bytes = Object.entries(kept).reduce((n, [f, v]) => n + Buffer.byteLength(f) + Buffer.byteLength(v), 0);
    expect((await store.bytes(run))['outcomes']).to.equal(bytes);

    // Planned 6 samples: the sixth has no trajectory and counts as missing.
    const first = counting(store);
    const stats = await computeGroup(first.store, run, scenario, mode, samples + 1);
    // Only the sample with no outcome is looked up (and found missing).
    expect(first.reads(), 'trajectories read whole').to.equal(1);
    expect(stats).to.deep.include({ samples: samples + 1, rewards: [0, 0, 0, 0, 0, 0], unscored: samples + 1, solved: 0, terminations: { 'time-limit': 3, 'model-error': 2, missing: 1 } });
    expect(stats.trajectoryIds).to.have.length(samples);
    // Stored with the group's statistics, the outcomes are let go, and their bytes with them.
    expect(await redis.exists(key)).to.equal(0);
    expect((await store.bytes(run))['outcomes'] ?? 0).to.equal(0);

    // A retried group job (or one for a trajectory an older worker stored, with no outcome) reads the trajectories.
    const again = counting(store);
    expect(await computeGroup(again.store, run, scenario, mode, samples + 1)).to.deep.equal(stats);
    expect(again.reads()).to.equal(samples + 1);

    // A trajectory written once the group's statistics are stored keeps no outcome: that group job will not run
    // again to let it go (a retried or later one reads the trajectories).
    await recordFailedRollout(deps, run, scenario, mode, samples, 'model-error', 'late');
    expect(await store.getDoc(run, 'trajectory', trajectoryIdOf(run, scenario, mode, samples))).to.not.equal(null);
    expect(await redis.exists(key)).to.equal(0);
    expect((await store.bytes(run))['outcomes'] ?? 0).to.equal(0);

    // A kept value that is not this trajectory's outcome is passed over for the trajectory itself (written here as a
    // store would, its bytes counted, so that the drop after takes the count back to 0).
    const odd1 = JSON.stringify({ id: 'another', sample: 1, reward: 1, solved: true, termination: { reason: 'agent-finished' } });
    const odd2 = 'not json';
    const f1 = trajectoryIdOf(run, scenario, mode, 1);
    const f2 = trajectoryIdOf(run, scenario, mode, 2);
    await redis.hset(key, f1, odd1, f2, odd2);
    await redis.hincrby(runKeys(prefix, run).bytes, 'outcomes', Buffer.byteLength(f1 + odd1 + f2 + odd2));
    await redis.del(runKeys(prefix, run).doc('group', group));
    const odd = counting(store);
    const oddStats = await computeGroup(odd.store, run, scenario, mode, samples + 1);
    // The late trajectory now counts for the sixth sample.
    expect(oddStats).to.deep.include({ samples: samples + 1, unscored: samples + 1, terminations: { 'time-limit': 3, 'model-error': 3 } });
    expect(odd.reads()).to.equal(samples + 1);
    expect(await redis.exists(key)).to.equal(0);
    expect((await store.bytes(run))['outcomes'] ?? 0).to.equal(0);
  });

  it('moves the samples-missing count when a group is written again with its missing samples back (a resubmission re-ran them)', async () => {
    const { redis, store, prefix } = fixture;
    const run = 'r-missing';
    const scenario = 'scn-再';
    const mode = 'conversational' as const;
    const deps = { store, stream: createRedisTrajectoryStream(redis, prefix) };
    for (const sample of [0, 1]) await recordFailedRollout(deps, run, scenario, mode, sample, 'model-error', 'x');
    const missing = async () => (await store.counters(run))['rollout.group']?.['samples-missing'] ?? 0;
    // Four planned, two stored: two missing, counted once however often the group is computed.
    await computeGroup(store, run, scenario, mode, 4);
    await computeGroup(store, run, scenario, mode, 4);
    expect(await missing()).to.equal(2);
    // The missing two come back (a resubmission ran them): the group written again, the count back to 0.
    for (const sample of [2, 3]) await recordFailedRollout(deps, run, scenario, mode, sample, 'model-error', 'y');
    const stats = await computeGroup(store, run, scenario, mode, 4);
    expect(stats.terminations).to.deep.equal({ 'model-error': 4 });
    expect(await missing()).to.equal(0);
    expect((await store.counters(run))['rollout.group']?.['done']).to.equal(1);
  });
});
