import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { deleteRun } from '../../../queues/run-delete.js';
import type { RunControl, RunControlState } from '../../../src/runs/control.js';
import type { RunStore } from '../../../src/runs/store.js';
import { rejection } from '../../helpers/assert.js';

/** deleteRun's refusal of a run with outstanding jobs, by its state (the store and control as the command reads them; Redis is not reached). */
describe('deleteRun: a run with outstanding jobs', () => {
  const refusal = async (state: RunControlState) => {
    const store = { getRun: () => Promise.resolve({ id: 'r18' }), pendingCount: () => Promise.resolve(11) } as unknown as RunStore;
    const control = { get: () => Promise.resolve(state) } as unknown as RunControl;
    return String(await rejection(deleteRun(null as unknown as Redis, 'envfleet', store, control, 'r18')));
  };

  it('tells a running or paused run to be cancelled first', async () => {
    expect(await refusal({ state: 'running', reason: null, since: null, budget: null })).to.include('run "r18" is running with 11 outstanding jobs; cancel it first (envfleet cancel --run r18), then delete it');
    expect(await refusal({ state: 'paused', reason: 'hold', since: '2026-12-06T10:00:00.000Z', budget: null })).to.include('cancel it first');
  });

  it('tells a cancelled run whose running jobs are still ending to wait, not to cancel it again (a stranger\'s probe)', async () => {
    const said = await refusal({ state: 'cancelled', reason: 'not needed', since: '2026-12-06T10:00:00.000Z', budget: null });
    expect(said).to.include('run "r18" is cancelled, and 11 of its jobs are still ending');
    expect(said).to.include('wait until envfleet status --run r18 shows none outstanding');
    expect(said).not.to.include('cancel it first');
  });
});
