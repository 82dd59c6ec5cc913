import { expect } from 'chai';
import { pino } from 'pino';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { stringifyJson } from '../../src/util/raw-json.js';
import { createSandboxPool, SANDBOX_THREAD_FILE } from '../../workers/sandbox-pool.js';
import { playCalls } from '../helpers/episodes.js';

/**
 * Careless code, not hostile, in a rollout (the fleet's path: the episode in the worker's main thread, the environment
 * in a pool thread): a tool that returns a category tree thousands of levels deep, and one that keeps a linked list in
 * its state. The sandbox wrote them, and the episode's own JSON.stringify of the result (its transcript) overflowed the
 * main thread's stack from about 4,100 levels on: "Maximum call stack size exceeded at JSON.stringify … runEpisode",
 * five attempts, then a model-error trajectory with no steps. A JavaScript state 5,000 levels deep scored reward 1 in a
 * rollout where `envfleet serve` gave none. Both are now refused past 1,000 levels, as the Python runtime refuses them.
 */
const SOURCE = `class Shop {
  constructor(s) { this.state = s; }
  category_tree({ depth }) { const root = {}; let o = root; for (let i = 0; i < depth; i++) { o.child = { level: i }; o = o.child; } return { success: true, data: root }; }
  keep_history({ n }) { let h = null; for (let i = 0; i < n; i++) h = { v: i, next: h }; this.state.history = h; return { success: true, data: 'kept ' + n }; }
  order({ sku }) { this.state.orders.push(sku); return { success: true, data: 'ordered ' + sku }; }
}`;
const tool = (name: string, properties: Record<string, unknown>) => ({ type: 'function' as const, function: { name, description: name, parameters: { type: 'object', properties } } });
const TOOLS = [tool('category_tree', { depth: { type: 'integer' } }), tool('keep_history', { n: { type: 'integer' } }), tool('order', { sku: { type: 'string' } })];
const ENV = { id: 'env-shop', description: { summary: 'Boutique 商店', introduction: 'A shop 🛒.' }, className: 'Shop', source: SOURCE, tools: TOOLS } as unknown as EnvironmentRecord;
const SCENARIO = {
  id: 'sc-shop', runId: 'r-deep', environmentId: ENV.id, index: 0, status: 'ready', initialState: { orders: [] }, task: 'Commande le SKU-1 — 订购',
  checklist: [{ item: 'SKU-1 was ordered', check: 'function check(f) { return f.orders.includes("SKU-1"); }' }],
} as unknown as ScenarioRecord;

describe('careless environments in a rollout: results and states nested thousands of levels deep (real sandbox pool)', function () {
  this.timeout(120_000);
  const pool = createSandboxPool({ pool: { threads: 1, tasksPerThread: 8 }, sandbox: DEFAULT_SANDBOX_LIMITS }, pino({ level: 'silent' }), SANDBOX_THREAD_FILE);
  before(() => pool.started());
  after(() => pool.close());

  it('a tool result past 1,000 levels is the call\'s NON_JSON_RESULT, and the episode goes on to its reward', async () => {
    const calls = [4_200, 20_000, 998].map(depth => ({ name: 'category_tree', arguments: { depth } }));
    const t = await playCalls(pool, SCENARIO, ENV, [...calls, { name: 'order', arguments: { sku: 'SKU-1' } }]);
    expect(t.termination.reason, t.termination.detail ?? '').to.equal('agent-finished');
    expect(t.steps.map(s => s.runtimeError)).to.deep.equal(['NON_JSON_RESULT', 'NON_JSON_RESULT', null, null]);
    const tool = t.messages.filter(m => m.role === 'tool').map(m => m.content as string);
    for (const content of tool.slice(0, 2)) {
      expect((JSON.parse(content) as { error: string }).error).to.match(/^the result nests containers more than 1000 levels deep \(1001 containers down to \/data\/child\/child\/child\/child\/…\/child\/child\): the JavaScript runtime passes on JSON values up to 1000 levels/);
    }
    // 998 levels under {success, data}: 1,000, passed on whole.
    expect((tool[2]!.match(/\{/g) ?? []).length).to.equal(1000);
    expect(tool[3]).to.equal('{"success":true,"data":"ordered SKU-1"}');
    expect(t.reward).to.equal(1);
    // The trajectory as it is stored can be written.
    expect(stringifyJson(t)).to.include('ordered SKU-1');
  });

  it('a final state past 1,000 levels is not read, and the episode gets no reward, as envfleet serve gives none', async () => {
    const t = await playCalls(pool, SCENARIO, ENV, [{ name: 'order', arguments: { sku: 'SKU-1' } }, { name: 'keep_history', arguments: { n: 5_000 } }]);
    expect(t.termination.reason).to.equal('agent-finished');
    expect(t.steps.map(s => s.runtimeError)).to.deep.equal([null, null]);
    expect(t.reward).to.equal(null);
    expect(t.finalState).to.equal(null);
    expect(t.checksError).to.match(/^the final state could not be read: this\.state nests containers more than 1000 levels deep \(1001 containers down to \/history\/next\/next\/next\/next\/…\/next\/next\): the JavaScript runtime passes on JSON values up to 1000 levels/);
    // 999 entries: the state nests 1,000 levels, and is scored.
    const flat = await playCalls(pool, SCENARIO, ENV, [{ name: 'order', arguments: { sku: 'SKU-1' } }, { name: 'keep_history', arguments: { n: 999 } }]);
    expect(flat.reward).to.equal(1);
  });
});
