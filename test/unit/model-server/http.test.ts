import { expect } from 'chai';
import { sleep, waitForAbort } from '../../../src/model-server/http.js';

/** Number of live timers in this process. */
const timers = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;

describe('model-server: abortable waits', () => {
  it('sleep resolves true after the delay', async () => {
    const started = Date.now();
    expect(await sleep(30, new AbortController().signal)).to.equal(true);
    expect(Date.now() - started).to.be.at.least(25);
  });

  it('sleep resolves false on abort and clears its timer', async () => {
    // Mocha arms its own timeout timer once the test function first yields; count after that.
    await new Promise((resolve) => setImmediate(resolve));
    const baseline = timers();
    const controller = new AbortController();
    const waiting = sleep(60_000, controller.signal);
    expect(timers()).to.equal(baseline + 1);
    controller.abort();
    expect(await waiting).to.equal(false);
    expect(timers()).to.equal(baseline);
  });

  it('sleep on an aborted signal returns immediately without a timer', async () => {
    const controller = new AbortController();
    controller.abort();
    await new Promise((resolve) => setImmediate(resolve));
    const baseline = timers();
    const waiting = sleep(60_000, controller.signal);
    expect(timers()).to.equal(baseline);
    expect(await waiting).to.equal(false);
  });

  it('waitForAbort resolves on abort', async () => {
    const controller = new AbortController();
    let done = false;
    const waiting = waitForAbort(controller.signal).then(() => (done = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(done).to.equal(false);
    controller.abort();
    await waiting;
    expect(done).to.equal(true);
  });
});
