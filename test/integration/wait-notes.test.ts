import { join } from 'node:path';
import { expect } from 'chai';
import { waitNotes } from '../../cli/progress.js';
import { queueAt, waitForRun, type RunProgress } from '../../queues/run-jobs.js';
import { submitSynthesis } from '../../queues/submit.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { DEMO, useFleet } from '../helpers/integration.js';

/** Waits for `runId` until a report satisfies `enough`, then stops waiting; resolves with that report. */
async function firstReport(wait: (report: (p: RunProgress) => void, signal: AbortSignal) => Promise<unknown>, enough: (p: RunProgress) => boolean): Promise<RunProgress> {
  const stop = new AbortController();
  let found: RunProgress | undefined;
  await wait(p => {
    if (!found && enough(p)) {
      found = p;
      stop.abort();
    }
  }, stop.signal).catch(() => undefined);
  return found!;
}

describe('a command that waits for a run says why it does not move', function () {
  const fleet = useFleet();

  it('names the queues no worker consumes, and, once the run is paused, the pause, its reason and the command that resumes it', async () => {
    const f = await fleet({ workers: false });
    await submitSynthesis(f.config, f.redis, { runId: 'idle', tasks: join(DEMO, 'source-tasks.jsonl') });
    const at = { connection: f.redis, prefix: f.config.redis.prefix };
    const control = createRedisRunControl(f.redis, f.config.redis.prefix);

    const idle = await firstReport((report, signal) => waitForRun(f.store, 'idle', report, { queues: at, control, idleWorkerMs: 0, signal }), p => !!p.unconsumed);
    expect(idle.unconsumed).to.deep.equal(['mine.judge']);
    expect(idle.paused).to.equal(undefined);
    expect(waitNotes('idle', idle).join('\n')).to.include('no worker is consuming mine.judge').and.to.include('start `envfleet worker`').and.to.include('--workers');

    // A user's pause whose reason speaks of a budget is a user's pause: resumed as it is (it was told to raise a budget).
    await control.pause('idle', 'budget review with finance on Monday');
    const held = await firstReport((report, signal) => waitForRun(f.store, 'idle', report, { queues: at, control, idleWorkerMs: 0, signal }), p => !!p.paused);
    expect(held.paused).to.deep.equal({ reason: 'budget review with finance on Monday', budget: null });
    expect(waitNotes('idle', held).join('\n')).to.include('resume it with envfleet resume --run idle').and.not.to.include('raise its budget');

    await control.pause('idle', 'budget reached: run idle used 4854 tokens, its budget is 3000', { stage: null });
    const paused = await firstReport((report, signal) => waitForRun(f.store, 'idle', report, { queues: at, control, idleWorkerMs: 0, signal }), p => !!p.paused);
    expect(paused.paused?.reason).to.include('its budget is 3000');
    expect(paused.unconsumed).to.equal(undefined);
    const note = waitNotes('idle', paused).join('\n');
    expect(note).to.include('run idle is paused (budget reached: run idle used 4854 tokens, its budget is 3000)');
    expect(note).to.include('envfleet resume --run idle --budget-tokens N');
  });

  it('says that jobs wait for a model endpoint that cannot be reached (a wrong port), and where to look', async () => {
    const f = await fleet();
    // Nothing listens where the workers send their model calls: connection refused, waited for as a 429.
    await f.server.close();
    await submitSynthesis(f.config, f.redis, { runId: 'no-endpoint', tasks: join(DEMO, 'source-tasks.jsonl') });
    const control = createRedisRunControl(f.redis, f.config.redis.prefix);
    const waiting = await firstReport(
      (report, signal) => waitForRun(f.store, 'no-endpoint', report, { queues: { connection: f.redis, prefix: f.config.redis.prefix }, control, endpointWaitNoteMs: 0, signal }),
      p => !!p.endpointWait,
    );
    expect(waiting.endpointWait!.jobs).to.be.greaterThan(0);
    const note = waitNotes('no-endpoint', waiting).join('\n');
    expect(note).to.match(/run no-endpoint: \d+ jobs? (has|have) been waiting for the model endpoint/).and.to.include('envfleet doctor').and.to.include('ENVFLEET_RATE_LIMIT_PAUSE_MS');
    // With this command's value of the setting, the note says how long.
    expect(waitNotes('no-endpoint', waiting, 600_000).join('\n')).to.include('ENVFLEET_RATE_LIMIT_PAUSE_MS (600000 ms here, 10 min;');
    expect(waitNotes('no-endpoint', waiting, 0).join('\n')).to.include('never pauses for it');
    expect(waiting.paused).to.equal(undefined);
  });

  it('names a queue paused in BullMQ where jobs of the run wait (a queue paused in the dashboard held submit --wait with no word of why)', async () => {
    const f = await fleet();
    const at = { connection: f.redis, prefix: f.config.redis.prefix };
    const queue = queueAt(at, 'mine.judge');
    try {
      await queue.pause();
      await submitSynthesis(f.config, f.redis, { runId: 'tenu', tasks: join(DEMO, 'source-tasks.jsonl') });
      const held = await firstReport((report, signal) => waitForRun(f.store, 'tenu', report, { queues: at, control: createRedisRunControl(f.redis, f.config.redis.prefix), signal }), p => !!p.pausedQueues);
      expect(held.pausedQueues).to.deep.equal(['mine.judge']);
      // Workers are there: the queue is paused, not unconsumed.
      expect(held.unconsumed).to.equal(undefined);
      expect(waitNotes('tenu', held).join('\n')).to.include('run tenu: the queue mine.judge, where jobs of the run wait, is paused in BullMQ').and.include('/queues').and.include('envfleet resume resumes runs, not queues');
      await queue.resume();
      const reports: RunProgress[] = [];
      const done = await waitForRun(f.store, 'tenu', p => reports.push(p), { queues: at });
      expect(done.outstanding).to.equal(0);
      expect(reports.at(-1)?.pausedQueues).to.equal(undefined);
    } finally {
      await queue.close();
    }
  });

  it('says nothing of workers while they consume the queues', async () => {
    const f = await fleet();
    await submitSynthesis(f.config, f.redis, { runId: 'busy', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    const reports: RunProgress[] = [];
    await waitForRun(f.store, 'busy', p => reports.push(p), { queues: { connection: f.redis, prefix: f.config.redis.prefix }, control: createRedisRunControl(f.redis, f.config.redis.prefix), idleWorkerMs: 0 });
    expect(reports.filter(p => p.unconsumed || p.paused || p.endpointWait || p.pausedQueues)).to.deep.equal([]);
  });
});
