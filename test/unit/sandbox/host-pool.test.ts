import { expect } from 'chai';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import { HostPool } from '../../../src/sandbox/tasks.js';

const CODE = {
  name: 'deep',
  className: 'D',
  source: 'class D { constructor(s) { this.state = s; } ok() { return { success: true }; } }',
  tools: [{ type: 'function' as const, function: { name: 'ok' } }],
};

describe('HostPool (recycling the WebAssembly heap inside a thread)', function () {
  this.timeout(20_000);

  it('keeps one host while it is healthy', async () => {
    const pool = new HostPool();
    const a = pool.host(DEFAULT_SANDBOX_LIMITS);
    await a.createEnvironment(CODE, {}, DEFAULT_SANDBOX_LIMITS);
    expect(pool.host(DEFAULT_SANDBOX_LIMITS)).to.equal(a);
  });

  it('moves new environments to a fresh module after the module failed, and old environments keep working', async () => {
    const pool = new HostPool();
    const first = pool.host(DEFAULT_SANDBOX_LIMITS);
    const survivor = await first.createEnvironment(CODE, {}, DEFAULT_SANDBOX_LIMITS);
    first.broken = true;
    const second = pool.host(DEFAULT_SANDBOX_LIMITS);
    expect(second).not.to.equal(first);
    const fresh = await second.createEnvironment(CODE, {}, DEFAULT_SANDBOX_LIMITS);
    expect(fresh.call('ok', {}).result).to.deep.equal({ success: true });
    expect(survivor.call('ok', {}).result).to.deep.equal({ success: true });
  });

  it('moves new environments to a fresh module once the heap passes the recycle mark', async () => {
    const pool = new HostPool(() => 1); // any heap at all is past this mark
    const first = pool.host(DEFAULT_SANDBOX_LIMITS);
    await first.warm();
    expect(first.heapBytes()).to.be.greaterThan(1);
    expect(pool.host(DEFAULT_SANDBOX_LIMITS)).not.to.equal(first);
  });

  it('counts live environments', async () => {
    const host = new HostPool().host(DEFAULT_SANDBOX_LIMITS);
    const env = await host.createEnvironment(CODE, {}, DEFAULT_SANDBOX_LIMITS);
    expect(host.liveEnvironments).to.equal(1);
    env.dispose();
    expect(host.liveEnvironments).to.equal(0);
  });
});
