/**
 * A Python environment with a large state of plain JSON (a τ-bench-sized shop database, ~1.2 MB, generated
 * here: users, orders and products with accented and CJK names), through the whole runtime (a runner, its child
 * process, one interpreter): the time to open a session (the database parsed in the constructor, the initial
 * state counted, encoded and copied) and to finish it with its checks (the final state counted, encoded and
 * copied; each check run on its own copies of the states). The checks are τ-bench's gold-hash check as the
 * importer writes it (src/importers/tau-bench-python.ts: goldHashCheck), alone, and followed by two small
 * checks. The working tree's runtime against BEFORE's (its src/ and config/ from git archive, in a temporary
 * folder), alternately; medians. A session's end drops it without waiting (as in a rollout), so an open's time
 * includes the previous session's drop when the interpreter had not finished it yet.
 *
 *   node --import tsx bench/python-large-state.ts [--before 43c5766] [--rounds 7]
 *
 * --before: the commit whose runtime is "before" (default 43c5766: every copy of a state through copy.deepcopy).
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { goldHashCheck } from '../src/importers/tau-bench-python.js';
import { EnvironmentCode, type CheckSpec } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { benchArgs } from './args.js';
import { median } from './sandbox/common.js';
import { pythonRunnersBeforeAndAfter } from './sandbox/python-before-after.js';

const args = benchArgs(import.meta.url, { values: ['before', 'rounds'] });
const BEFORE = args.str('before') ?? '43c5766';
const ROUNDS = args.int('rounds', 7);

/** A deterministic shop database of τ-bench retail's size and shape (not its data). */
function shopDatabase(): unknown {
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  const pick = <T>(xs: readonly T[]) => xs[next() % xs.length]!;
  const first = ['Zoë', 'José', 'Łucja', 'Aiko', '王芳', 'Omar', 'Chloé', 'Søren', 'Mia', 'Yusuf'];
  const cities = ['São Paulo', 'Zürich', '東京', 'Kraków', 'Austin', 'Montréal'];
  const products: Record<string, unknown> = {};
  for (let p = 0; p < 50; p++) {
    const variants: Record<string, unknown> = {};
    for (let v = 0; v < 24; v++) {
      const id = String(1_000_000_000 + p * 100 + v);
      variants[id] = { item_id: id, options: { color: pick(['red', 'blue', 'black', 'white']), size: pick(['S', 'M', 'L', 'XL']), material: pick(['cotton', 'wool', 'polyester']) }, available: next() % 5 !== 0, price: (next() % 50_000) / 100 };
    }
    products[String(p)] = { name: `Product ${p} ${pick(['Deluxe', 'Basic', 'Pro'])}`, product_id: String(p), variants };
  }
  const users: Record<string, unknown> = {};
  const orders: Record<string, unknown> = {};
  let order = 0;
  for (let u = 0; u < 700; u++) {
    const id = `user_${u}`;
    const mine: string[] = [];
    for (let k = 0; k < 2; k++) {
      const oid = `#W${1_000_000 + order++}`;
      mine.push(oid);
      const items = Array.from({ length: 1 + (next() % 4) }, () => ({ name: `Product ${next() % 50}`, product_id: String(next() % 50), item_id: String(1_000_000_000 + (next() % 5000)), price: (next() % 50_000) / 100, options: { color: 'red', size: 'M' } }));
      orders[oid] = { order_id: oid, user_id: id, address: { address1: `${next() % 999} Main St`, address2: `Suite ${next() % 99}`, city: pick(cities), country: 'USA', state: 'TX', zip: String(10_000 + (next() % 89_999)) }, items, fulfillments: [], status: pick(['pending', 'delivered', 'processed']), payment_history: [{ transaction_type: 'payment', amount: (next() % 100_000) / 100, payment_method_id: `credit_card_${u}` }] };
    }
    users[id] = { name: { first_name: pick(first), last_name: 'Müller' }, address: { address1: `${next() % 999} Oak Ave`, address2: '', city: pick(cities), country: 'USA', state: 'CA', zip: '90210' }, email: `${id}@example.com`, payment_methods: { [`credit_card_${u}`]: { source: 'credit_card', brand: 'visa', last_four: String(1000 + (next() % 8999)), id: `credit_card_${u}` }, [`gift_card_${u}`]: { source: 'gift_card', balance: next() % 200, id: `gift_card_${u}` } }, orders: mine };
  }
  return { orders, products, users };
}

const database = JSON.stringify(shopDatabase());
const SOURCE = `import json

DB_TEXT = ${JSON.stringify(database)}


class Shop:
    def __init__(self, config=None):
        self.data = json.loads(DB_TEXT)

    def cancel_order(self, order_id=''):
        order = self.data['orders'][order_id]
        order['status'] = 'cancelled'
        return order
`;
const code = EnvironmentCode.parse({ name: 'Shop', language: 'python', className: 'Shop', source: SOURCE, tools: [{ type: 'function', function: { name: 'cancel_order', parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] } } }] });
// The hash the gold check compares with: any 64 hex digits do (the check's work is the same whether it passes).
const gold: CheckSpec = { item: 'gold hash', check: goldHashCheck(createHash('sha256').update('not the hash').digest('hex')), language: 'python' };
const small = (n: number): CheckSpec => ({ item: `small ${n}`, check: `def check_func(final_state):\n    return final_state["data"]["orders"]["#W1000000"]["status"] == "cancelled" and len(initial_state["data"]["users"]) == 700`, language: 'python' });
const cases: { label: string; checks: CheckSpec[] }[] = [
  { label: 'finish with the gold-hash check', checks: [gold] },
  { label: 'finish with the gold-hash check and two small checks after it', checks: [gold, small(1), small(2)] },
];

const { runners, close } = await pythonRunnersBeforeAndAfter(BEFORE, { snapshotDir: join(os.tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 1024, logger: pino({ level: 'silent' }) });
try {
  const limits = { ...DEFAULT_SANDBOX_LIMITS, createDeadlineMs: 60_000, callDeadlineMs: 10_000, checkDeadlineMs: 30_000 }; // measured, not stopped
  console.log(`Shop database: ${Buffer.byteLength(database)} bytes of JSON; environment source ${Buffer.byteLength(SOURCE)} bytes. Node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}).`);
  console.log(`Medians of ${ROUNDS} rounds, before and after alternately (ms):`);
  for (const c of cases) {
    const t = { before: { open: [] as number[], fin: [] as number[] }, after: { open: [] as number[], fin: [] as number[] } };
    // One round unmeasured first: each runner compiles the source once (kept by its interpreter thread).
    for (let r = -1; r < ROUNDS; r++) {
      for (const name of r % 2 ? (['after', 'before'] as const) : (['before', 'after'] as const)) {
        let t0 = performance.now();
        const s = await runners[name].openSession(code, {}, limits);
        const open = performance.now() - t0;
        const call = await s.call('cancel_order', { order_id: '#W1000000' });
        if (call.runtimeError) throw new Error(`${name}: ${call.runtimeError}`);
        t0 = performance.now();
        const end = await s.finish(c.checks);
        const fin = performance.now() - t0;
        if (end.stateError) throw new Error(`${name}: ${end.stateError.code}`);
        const passed = end.checks!.results.map(x => x.passed);
        if (passed[0] !== false || passed.slice(1).some(p => !p)) throw new Error(`${name}: unexpected check results ${JSON.stringify(end.checks!.results)}`);
        if (r >= 0) {
          t[name].open.push(open);
          t[name].fin.push(fin);
        }
      }
    }
    console.log(`  ${c.label}`);
    for (const name of ['before', 'after'] as const) {
      console.log(`    ${name === 'before' ? `before (${BEFORE})` : 'after (working tree)'}: open ${median(t[name].open).toFixed(0)} (${t[name].open.map(x => x.toFixed(0)).join(', ')}), finish ${median(t[name].fin).toFixed(0)} (${t[name].fin.map(x => x.toFixed(0)).join(', ')})`);
    }
  }
} finally {
  await close();
}
console.log(`\nload average at the end ${os.loadavg().map(l => l.toFixed(2)).join(' ')}`);
