import { expect } from 'chai';
import { createStartPacer } from '../../../src/rollouts/start-pacer.js';

/** A clock the test moves: sleep(ms) records the wait and moves the clock by it only when asked. */
function fakeClock() {
  let t = 1_000;
  const waits: number[] = [];
  return {
    now: () => t,
    advance: (ms: number) => (t += ms),
    waits,
    sleep: (ms: number) => {
      waits.push(ms);
      return Promise.resolve();
    },
  };
}

describe('start pacer (episode starts spread over half a model latency)', () => {
  it('lets every start through at once until a model call has been timed', async () => {
    const c = fakeClock();
    const pacer = createStartPacer({ concurrency: 1_000, now: c.now, sleep: c.sleep });
    for (let i = 0; i < 1_000; i++) await pacer.take();
    expect(c.waits).to.deep.equal([]);
    expect(pacer.latencyMs()).to.equal(0);
  });

  it('spreads a burst of `concurrency` starts over half a latency: the k-th waits k × latency ÷ 2 ÷ concurrency', async () => {
    const c = fakeClock();
    const pacer = createStartPacer({ concurrency: 1_000, now: c.now, sleep: c.sleep });
    pacer.observe(2_000);
    for (let i = 0; i < 1_000; i++) await pacer.take();
    expect(c.waits).to.have.length(999); // the first goes at once
    expect(c.waits[0]).to.equal(1);
    expect(c.waits.at(-1)).to.be.closeTo(999, 1e-6);
  });

  it('never holds up starts that come no faster than concurrency per half latency (a steady run)', async () => {
    const c = fakeClock();
    const pacer = createStartPacer({ concurrency: 100, now: c.now, sleep: c.sleep });
    pacer.observe(1_000); // 5 ms per start at most
    for (let i = 0; i < 200; i++) {
      await pacer.take();
      c.advance(5);
    }
    expect(c.waits).to.deep.equal([]);
  });

  it('follows the latency as a moving mean of the calls, ignoring readings that are not durations', () => {
    const pacer = createStartPacer({ concurrency: 10 });
    pacer.observe(1_000);
    pacer.observe(Number.NaN);
    pacer.observe(-5);
    expect(pacer.latencyMs()).to.equal(1_000);
    for (let i = 0; i < 200; i++) pacer.observe(100);
    expect(pacer.latencyMs()).to.be.within(100, 110);
  });

  it('never becomes a cap on a run whose episodes are shorter than a model call (replayed from the cache, ended early): it spreads over a quarter of an episode then', async () => {
    const c = fakeClock();
    const pacer = createStartPacer({ concurrency: 64, now: c.now, sleep: c.sleep });
    pacer.observe(2_000);
    for (let i = 0; i < 100; i++) pacer.observeEpisode(40); // cached episodes: 40 ms each
    expect(pacer.spreadMs()).to.be.closeTo(10, 0.5);
    // A steady run of such episodes: 64 in flight, so 64 ÷ 40 ms = 1.6 starts per ms; none waits.
    for (let i = 0; i < 1_000; i++) {
      await pacer.take();
      c.advance(40 / 64);
    }
    expect(c.waits).to.deep.equal([]);
    // With a spread of half a latency (1 s for 64 starts: 16 ms each) the same run would have been held to a 25th of its rate.
    const capped = createStartPacer({ concurrency: 64, now: c.now, sleep: c.sleep });
    capped.observe(2_000);
    expect(capped.spreadMs()).to.equal(1_000);
  });

  it('spreads over half a latency when episodes take longer than two (the benchmark: 5 calls of 2 s)', () => {
    const pacer = createStartPacer({ concurrency: 1_000 });
    pacer.observe(2_000);
    pacer.observeEpisode(10_500);
    expect(pacer.spreadMs()).to.equal(1_000);
  });

  it('lets a start whose job is aborted (a pause, a cancel, the worker\'s shutdown) go at once, while waiting or before', async () => {
    const pacer = createStartPacer({ concurrency: 2 });
    pacer.observe(60_000); // a slow endpoint: 30 s between starts
    await pacer.take(); // the first goes at once
    const job = new AbortController();
    let woke = false;
    const waiting = pacer.take(job.signal).then(() => (woke = true));
    await new Promise(resolve => setImmediate(resolve));
    expect(woke).to.equal(false);
    job.abort();
    await waiting;
    expect(woke).to.equal(true);
    const aborted = new AbortController();
    aborted.abort();
    await pacer.take(aborted.signal); // would wait a minute otherwise
  });

  it('does not pace a process whose concurrency is not positive', async () => {
    const c = fakeClock();
    const pacer = createStartPacer({ concurrency: 0, now: c.now, sleep: c.sleep });
    pacer.observe(2_000);
    for (let i = 0; i < 10; i++) await pacer.take();
    expect(c.waits).to.deep.equal([]);
  });
});
