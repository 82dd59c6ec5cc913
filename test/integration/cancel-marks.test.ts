import { expect } from 'chai';
import { cancelRun } from '../../queues/run-jobs.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import type { RunStore } from '../../src/runs/store.js';
import { createRedisTrajectoryStream } from '../../src/rollouts/stream.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { writeEnv } from '../../src/synthesis/environments.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { RunCancelledError } from '../../src/errors.js';
import type { ModelGateway } from '../../src/llm/gateway.js';
import { endEnvfleetItem } from '../../workers/item-endings.js';
import { rejection } from '../helpers/assert.js';
import { useRunStore } from '../helpers/integration.js';

const env = (runId: string, id: string, status: EnvironmentRecord['status']): EnvironmentRecord =>
  ({ id, runId, status, description: { summary: 'Bibliothèque — 图书馆 📚', introduction: 'prêts et retours' }, failure: null }) as never;
const scenario = (runId: string, id: string, status: ScenarioRecord['status']): ScenarioRecord =>
  ({ id, runId, environmentId: 'env-1', index: 0, status, dropReason: null, task: 'Rendre le livre — 还书 📖' }) as never;

describe('what a cancel marks (real Redis)', function () {
  const fixture = useRunStore('cancel-marks');
  const { prefix } = fixture;

  it("leaves an environment its verdict kept, and a scenario its check made ready, between the cancel reading them and marking them, with their results; one whose round report was written then is marked with that report", async () => {
    const real = fixture.store;
    const run = 'cancel-race';
    await real.putDoc(run, 'env', 'env-1', env(run, 'env-1', 'probing'));
    await real.putDoc(run, 'env', 'env-2', env(run, 'env-2', 'building'));
    await real.putDoc(run, 'env', 'env-3', env(run, 'env-3', 'probing'));
    await real.putDoc(run, 'scenario', 'scn-1', scenario(run, 'scn-1', 'building'));
    // The store as the cancel sees it while the jobs of env-1, env-3 and scn-1 write: each right after the cancel read it
    // to mark it, after it listed it as being built.
    const listed: string[] = [];
    const wroteBetween: string[] = [];
    const report = { round: 1, verdict: 'rejected', notFailRate: 0.5, note: 'rapport — 报告 📋' };
    const store: RunStore = {
      ...real,
      idsWithStatus: async (runId, kind, statuses) => {
        const ids = await real.idsWithStatus(runId, kind, statuses);
        listed.push(...ids);
        return ids;
      },
      getDocBuffer: async (runId, kind, id) => {
        const read = await real.getDocBuffer(runId, kind, id);
        if (read && listed.includes(id) && !wroteBetween.includes(id)) {
          wroteBetween.push(id);
          const doc = JSON.parse(read.toString('utf8')) as never;
          if (id === 'env-1') await real.putDoc(runId, 'env', id, { ...(doc as EnvironmentRecord), status: 'kept' }, [{ stage: 'check.verdict', outcome: 'kept', n: 1 }]);
          if (id === 'env-3') await real.putDoc(runId, 'env', id, { ...(doc as EnvironmentRecord), quality: report as never });
          if (id === 'scn-1') await real.putDoc(runId, 'scenario', id, { ...(doc as ScenarioRecord), status: 'ready' }, [{ stage: 'scenario.check', outcome: 'ready', n: 1 }]);
        }
        return read;
      },
    };
    await cancelRun({ connection: fixture.redis, prefix }, store, createRedisRunControl(fixture.redis, prefix), run, 'annulé — 取消 🛑');
    expect([...listed].sort(), 'listed as being built').to.deep.equal(['env-1', 'env-2', 'env-3', 'scn-1']);
    expect([...wroteBetween].sort(), 'the jobs wrote between the reads and the marks').to.deep.equal(['env-1', 'env-2', 'env-3', 'scn-1']);
    // (the cancel wrote its copy read before, failed, over the kept one: its report lost, its count saying kept)
    expect((await real.getDoc(run, 'env', 'env-1'))!.status).to.equal('kept');
    expect((await real.getDoc(run, 'scenario', 'scn-1'))!.status).to.equal('ready');
    // In the words a job of the run that ends as cancelled uses (workers/item-endings.ts).
    const failure = { stage: 'run', code: 'RUN_CANCELLED', message: 'run cancel-race was cancelled: annulé — 取消 🛑' };
    expect((await real.getDoc(run, 'env', 'env-2'))!.failure).to.deep.equal(failure);
    // (the round's report, written between, was lost under the copy the cancel read before it)
    expect(await real.getDoc(run, 'env', 'env-3')).to.deep.include({ status: 'failed', failure, quality: report });
    expect(await real.statusCounts(run, 'env')).to.deep.equal({ kept: 1, failed: 2 });
    expect(await real.statusCounts(run, 'scenario')).to.deep.equal({ ready: 1 });
  });

  it('marks an item made after the cancel marked the others, when its next job ends as cancelled: an environment failed, a scenario dropped, each counted once where the job stopped; an item that ended meanwhile stays as it is', async () => {
    const store = fixture.store;
    const run = 'cancel-late-item';
    // Made after the cancel's marks by jobs that ran on (mine.dedup's environment, scenario.state's scenario).
    await store.putDoc(run, 'env', 'env-late', env(run, 'env-late', 'building'));
    await store.putDoc(run, 'scenario', 'scn-late', scenario(run, 'scn-late', 'building'));
    await store.putDoc(run, 'env', 'env-kept', env(run, 'env-kept', 'kept'));
    await store.putDoc(run, 'scenario', 'scn-ready', scenario(run, 'scn-ready', 'ready'));
    const end = endEnvfleetItem({ store, stream: createRedisTrajectoryStream(fixture.redis, prefix) });
    const message = `run ${run} was cancelled: assez — 够了`;
    const failure = { status: 'failed' as const, code: 'RUN_CANCELLED' as const, message };
    await end('skeleton.state', { runId: run, envId: 'env-late' }, failure);
    await end('scenario.task', { runId: run, scenarioId: 'scn-late' }, failure);
    // Ended meanwhile (a duplicate of the job, taken over past its lock, did its work): they stay as they are.
    await end('check.verdict', { runId: run, envId: 'env-kept', round: 1 }, failure);
    await end('scenario.check', { runId: run, scenarioId: 'scn-ready' }, failure);
    // (they stayed building for ever: the run finished with them being built)
    expect((await store.getDoc(run, 'env', 'env-late'))!.failure).to.deep.equal({ stage: 'run', code: 'RUN_CANCELLED', message });
    expect((await store.getDoc(run, 'scenario', 'scn-late'))!.dropReason).to.deep.equal({ stage: 'run', code: 'RUN_CANCELLED', message });
    expect((await store.getDoc(run, 'env', 'env-kept'))!.status).to.equal('kept');
    expect((await store.getDoc(run, 'scenario', 'scn-ready'))!.status).to.equal('ready');
    expect(await store.statusCounts(run, 'env')).to.deep.equal({ failed: 1, kept: 1 });
    expect(await store.statusCounts(run, 'scenario')).to.deep.equal({ dropped: 1, ready: 1 });
    const counters = await store.counters(run);
    expect([counters['skeleton.state'], counters['scenario.task'], counters['check.verdict'], counters['scenario.check']]).to.deep.equal(Array(4).fill({ 'failed:RUN_CANCELLED': 1 }));
  });

  it("writes a job's environment only while it is being built as the job read it: a copy of the job taken over past its lock that wrote the same status first lets the job go on; one read failed, after the cancel, is written over by none", async () => {
    const store = fixture.store;
    const run = 'guarded-jobs';
    let cancelled = false;
    const deps = {
      store,
      sandbox: null as never,
      gateway: {
        checkRun: (id: string) => (cancelled ? Promise.reject(new RunCancelledError(id, 'fini — 完')) : Promise.resolve()),
      } as never as ModelGateway,
    };
    const read = env(run, 'env-1', 'building');
    await store.putDoc(run, 'env', 'env-1', read);
    // The other copy's test state is written first (with the cache off, the two copies' answers differ).
    await store.putDoc(run, 'env', 'env-1', { ...read, status: 'probing', testState: { copie: 'autre — 其他' } }, [{ stage: 'check.config', outcome: 'done', n: 1 }]);
    expect(await writeEnv(deps, run, read, { ...read, status: 'probing', testState: { copie: 'celle-ci' } }, [{ stage: 'check.config', outcome: 'done', n: 1 }])).to.equal(null);
    expect((await store.getDoc(run, 'env', 'env-1'))!.testState).to.deep.equal({ copie: 'autre — 其他' });
    expect((await store.counters(run))['check.config']).to.deep.equal({ done: 1 });
    // Read failed (the cancel marked it before the job loaded it; its model answer came from the cache): not written.
    const failed = { ...read, id: 'env-2', status: 'failed' as const, failure: { stage: 'run', code: 'RUN_CANCELLED' as const, message: 'fini — 完' } };
    await store.putDoc(run, 'env', 'env-2', failed);
    expect(await writeEnv(deps, run, failed, { ...failed, state: { note: 'état' } as never })).to.deep.include({ ok: false });
    cancelled = true;
    expect(await rejection(writeEnv(deps, run, failed, { ...failed, status: 'probing', testState: {} }))).to.have.property('code', 'RUN_CANCELLED');
    // Its run cancelled, a copy whose twin wrote the same status first still goes on (its next job ends as cancelled,
    // counted once; ended here as cancelled, the stage's row counted the item twice: done and cancelled).
    const twin = { ...read, id: 'env-3' };
    await store.putDoc(run, 'env', 'env-3', twin);
    await store.putDoc(run, 'env', 'env-3', { ...twin, status: 'probing', testState: { copie: 'jumelle — 孪生' } });
    expect(await writeEnv(deps, run, twin, { ...twin, status: 'probing', testState: { copie: 'celle-ci' } })).to.equal(null);
    expect(await store.getDoc(run, 'env', 'env-2')).to.deep.equal(failed);
  });
});
