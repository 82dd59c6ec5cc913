import { expect } from 'chai';
import type { EnvironmentCode } from '../../../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../../src/sandbox/limits.js';
import { QuickJSHost, type SandboxEnvironment } from '../../../src/sandbox/quickjs-host.js';

const MiB = 1 << 20;
const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } });
const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, envMemoryMb: 32 };

/**
 * Generated code as it comes: module-level caches and counters, a constructor that draws random
 * numbers and reads the clock, and methods that change whatever they can reach.
 */
const CARELESS: EnvironmentCode = {
  name: 'careless',
  className: 'Careless',
  source: `let constructed = 0;
  const cache = [];
  class Careless {
    constructor(s) {
      constructed += 1;
      this.state = s;
      this.state.ticket = Math.floor(Math.random() * 1e9);
      this.state.constructed = constructed;
    }
    look() {
      return {
        success: true,
        data: {
          rooms: this.state.rooms.join(','),
          guest: this.state.guest,
          constructed,
          cached: cache.length,
          leaked: typeof leaked,
          polluted: ({}).polluted === undefined ? 'no' : 'yes',
          sortWorks: typeof [].sort === 'function',
          stringify: JSON.stringify({ a: 1 }),
          look: Careless.prototype.look === this.look,
          draws: [Math.random(), Math.random()],
          ticket: this.state.ticket,
        },
      };
    }
    wreck() {
      this.state.rooms.sort();
      this.state.rooms.push('999');
      this.state.guest = 'someone else';
      for (let i = 0; i < 8; i++) cache.push('c'.repeat(1 << 18) + i);
      globalThis.leaked = true;
      Object.prototype.polluted = 1;
      Array.prototype.sort = null;
      JSON.stringify = () => 'hijacked';
      Careless.prototype.look = () => ({ success: true, data: 'replaced' });
      return { success: true, data: 'wrecked' };
    }
    spin() { for (;;) {} }
    grow({ mb }) { for (let i = 0; i < mb; i++) cache.push('g'.repeat(1 << 20) + i); return { success: true, data: cache.length }; }
  }`,
  tools: ['look', 'wreck', 'spin', 'grow'].map(tool),
};

const STATE = { rooms: ['301', '101', '201'], guest: 'Zoë 李 🌸' };

async function session<T>(host: QuickJSHost, state: unknown, body: (env: SandboxEnvironment) => T, limits: SandboxLimits = LIMITS): Promise<T> {
  const env = await host.createEnvironment(CARELESS, state, limits);
  try {
    return body(env);
  } finally {
    env.dispose();
  }
}

const look = (env: SandboxEnvironment) => env.call('look', {}).result;

describe('sessions started from memory copies (one thread)', function () {
  this.timeout(60_000);

  it('starts every session of a scenario as created, whatever the sessions before it changed', async () => {
    const host = new QuickJSHost(256);
    await host.warm();
    const first = await session(host, STATE, env => {
      const seen = look(env);
      expect(env.call('wreck', {}).result).to.deep.equal({ success: true, data: 'wrecked' });
      expect(look(env)).to.deep.equal({ success: true, data: 'replaced' });
      return seen;
    });
    expect(first).to.deep.include({ success: true });
    expect((first as { data: Record<string, unknown> }).data).to.deep.include({
      rooms: '301,101,201',
      guest: 'Zoë 李 🌸',
      constructed: 1,
      cached: 0,
      leaked: 'undefined',
      polluted: 'no',
      sortWorks: true,
      stringify: '{"a":1}',
      look: true,
    });
    // The second creation is copied; the third and later start from the copy.
    for (let i = 0; i < 4; i++) {
      const seen = await session(host, STATE, env => {
        const s = look(env);
        env.call('wreck', {});
        return s;
      });
      expect(seen).to.deep.equal(first);
    }
    expect(host.sessionTemplateCount).to.equal(1);
  });

  it('starts clean after a session stopped at its deadline or for its budget', async () => {
    const host = new QuickJSHost(256);
    await host.warm();
    const limits = { ...LIMITS, callDeadlineMs: 50, sessionCpuMs: 400 };
    const fresh = await session(host, STATE, look, limits);
    await session(host, STATE, look, limits);
    await session(host, STATE, env => {
      env.call('wreck', {});
      expect(env.call('spin', {}).runtimeError).to.equal('DEADLINE_EXCEEDED');
    }, limits);
    expect(await session(host, STATE, look, limits)).to.deep.equal(fresh);
    await session(host, STATE, env => {
      env.call('wreck', {});
      expect(env.call('spin', {}).runtimeError).to.equal('CPU_BUDGET_EXCEEDED');
    }, { ...limits, callDeadlineMs: 5_000, sessionCpuMs: 100 });
    expect(await session(host, STATE, look, limits)).to.deep.equal(fresh);
    expect(host.sessionTemplateCount).to.equal(1);
  });

  it('seeds Math.random by the environment and its initial state: the same draws on every session and thread, other draws for another state', async () => {
    const a = new QuickJSHost(256);
    const b = new QuickJSHost(256);
    await a.warm();
    const draws = async (host: QuickJSHost, state: unknown) => session(host, state, env => (look(env) as { data: { draws: number[]; ticket: number } }).data);
    const seen = [await draws(a, STATE), await draws(a, STATE), await draws(a, STATE), await draws(b, STATE)];
    for (const d of seen) expect(d).to.deep.equal(seen[0]);
    expect(seen[0]!.draws[0]).to.not.equal(seen[0]!.draws[1]);
    for (const x of seen[0]!.draws) expect(x).to.be.within(0, 1);
    const other = await draws(a, { ...STATE, guest: 'Zoe' });
    expect(other.draws).to.not.deep.equal(seen[0]!.draws);
  });

  it('copies only environments created twice: a one-off state makes no copy', async () => {
    const host = new QuickJSHost(256);
    await host.warm();
    for (let i = 0; i < 5; i++) await session(host, { ...STATE, guest: `guest ${i}` }, look);
    expect(host.sessionTemplateCount).to.equal(0);
    await session(host, { ...STATE, guest: 'guest 1' }, look);
    expect(host.sessionTemplateCount).to.equal(1);
  });

  it('gives back the module of a session that grew past the reuse bound, and the next session starts clean', async () => {
    const host = new QuickJSHost(256);
    await host.warm();
    const fresh = await session(host, STATE, look);
    await session(host, STATE, look);
    const held = host.heapBytes();
    await session(host, STATE, env => expect(env.call('grow', { mb: 12 }).runtimeError).to.equal(undefined));
    expect(host.heapBytes()).to.be.at.most(held);
    expect(await session(host, STATE, look)).to.deep.equal(fresh);
  });

  it('keeps the modules of ended sessions only while the thread has room: a session that needs the room gets it', async () => {
    const host = new QuickJSHost(64);
    await host.warm();
    const open: SandboxEnvironment[] = [];
    for (let i = 0; i < 200; i++) {
      try {
        open.push(await host.createEnvironment(CARELESS, STATE, LIMITS));
      } catch (err) {
        expect(err).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        break;
      }
    }
    expect(open.length).to.be.within(3, 199);
    for (const env of open.splice(0)) env.dispose();
    const held = host.heapBytes();
    expect(held).to.be.above(32 * MiB); // the spare modules
    // 40 MiB in one session: the spare modules make way.
    const hog = await host.createEnvironment(CARELESS, { ...STATE, guest: 'hog' }, { ...LIMITS, envMemoryMb: 48 });
    try {
      expect(hog.call('grow', { mb: 40 }).result).to.deep.equal({ success: true, data: 40 });
      expect(host.heapBytes()).to.be.at.most(64 * MiB);
    } finally {
      hog.dispose();
    }
  });

  it('keeps as many spare modules as it had sessions at once lately, so the next wave opens none, and gives the extra back after a quiet while', async () => {
    let now = 0;
    const host = new QuickJSHost(4096, { now: () => now });
    await host.warm();
    const wave = async () => {
      const open: SandboxEnvironment[] = [];
      for (let i = 0; i < 300; i++) open.push(await host.createEnvironment(CARELESS, STATE, LIMITS));
      expect(open.map(look).every(r => (r as { data: { guest: string } }).data.guest === STATE.guest)).to.equal(true);
      for (const env of open) env.dispose();
    };
    await wave();
    // 300 sessions were live at once: all 300 modules are kept, not 128.
    expect(host.spareModuleCount).to.equal(300);
    const modules = host.moduleCount;
    await wave();
    expect(host.moduleCount).to.equal(modules); // the second wave instantiated no module
    now += 30_000;
    host.trimSpares();
    expect(host.spareModuleCount).to.equal(300); // the previous window still saw 300 at once
    now += 30_000;
    host.trimSpares();
    expect(host.spareModuleCount).to.equal(128); // two quiet windows: back to the floor
    expect(host.moduleCount).to.equal(modules - 172);
    await session(host, STATE, env => expect((look(env) as { data: { guest: string } }).data.guest).to.equal(STATE.guest));
  });

  it('adopts a copy larger than a fresh module within the allowance, and refuses a session when the thread has no room for it', async () => {
    // A large state: the copy is a few MiB more than a fresh module (and within the 4 MiB a reused module may grow).
    const big = { ...STATE, pad: 'p'.repeat(0.4 * MiB) };
    const limits = { ...LIMITS, maxStateBytes: 8 * MiB };
    const host = new QuickJSHost(96);
    await host.warm();
    const open: SandboxEnvironment[] = [];
    let refused: unknown;
    try {
      for (let i = 0; i < 60; i++) {
        try {
          const env = await host.createEnvironment(CARELESS, big, limits);
          open.push(env);
          expect((look(env) as { data: { rooms: string } }).data.rooms).to.equal('301,101,201');
        } catch (err) {
          refused = err;
          break;
        }
      }
      expect(open.length, String(refused)).to.be.within(3, 59);
      expect(host.sessionTemplateCount, `${open.length} open, ${host.heapBytes()} bytes`).to.equal(1);
      expect(refused).to.have.property('code', 'SANDBOX_MEMORY_FULL');
      expect(host.heapBytes()).to.be.at.most(96 * MiB);
      open.pop()!.dispose();
      const again = await host.createEnvironment(CARELESS, big, limits);
      open.push(again);
      expect((look(again) as { data: { constructed: number } }).data.constructed).to.equal(1);
    } finally {
      for (const env of open) env.dispose();
    }
  });
});
