/**
 * The sandbox side of one bench/rollouts.ts episode, piece by piece, in this thread (what a pool thread
 * does, without the pool): C sessions on the reference hotel env (65 KB state) created at once, four
 * get_guest calls each, the final snapshots, the sessions disposed, then the four checks of each on its
 * final state. Prints the milliseconds per episode of each piece (wall time of this thread, which does
 * all of the work) and the process's CPU per episode (all threads: V8's helpers too).
 *
 *   node --import tsx bench/sandbox-episode-parts.ts [--concurrency 250] [--waves 8] [--distinct]
 *
 * --distinct: every episode pays a different amount (pay_balance) before its snapshot, so that no two episodes end in
 * the same state and every check batch runs (without it, all end in the initial state and the thread answers all
 * but the first batch from its memo, src/sandbox/check-memo.ts).
 *
 * Three waves of warm-up first. Exits 1 if an episode does not get the hotel reward (3 of 4 checks).
 * Run it twice alternately with another checkout to compare; the machine's speed varies.
 */
import { readFileSync } from 'node:fs';
import type { CheckSpec, EnvironmentCode } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { QuickJSHost } from '../src/sandbox/quickjs-host.js';
import { benchArgs } from './args.js';

const args = benchArgs(import.meta.url, { values: ['concurrency', 'waves'], booleans: ['distinct'] });
const C = args.int('concurrency', 250);
const WAVES = args.int('waves', 8);
/** Every episode pays a different amount first, so that no two end in the same state (no check batch is answered from the thread's memo). */
const DISTINCT = args.flag('distinct');
let paid = 0;
const read = (name: string): unknown => JSON.parse(readFileSync(new URL(`../fixtures/reference/${name}`, import.meta.url), 'utf8'));
const bundle = read('hotel-env.bundle.json') as EnvironmentCode;
const checks = read('hotel-checks.json') as CheckSpec[];
const code: EnvironmentCode = { name: 'hotel', className: bundle.className, source: bundle.source, tools: bundle.tools };
const stateJson = JSON.stringify(read('hotel-state.json'));
const heapMb = Math.max(1024, 4 * C);
const limits = { ...DEFAULT_SANDBOX_LIMITS, heapMb };
const host = new QuickJSHost(heapMb);
const ms: Record<'create' | 'calls' | 'snapshot' | 'dispose' | 'checks', number> = { create: 0, calls: 0, snapshot: 0, dispose: 0, checks: 0 };
let episodes = 0;
let wrong = 0;

async function wave(timed: boolean): Promise<void> {
  const at = (piece: keyof typeof ms, since: number) => {
    const now = performance.now();
    if (timed) ms[piece] += now - since;
    return now;
  };
  let t = performance.now();
  const envs = [];
  for (let i = 0; i < C; i += 1) envs.push(await host.createEnvironmentFromText(code, stateJson, limits));
  t = at('create', t);
  for (let k = 0; k < 4; k += 1) for (const env of envs) env.callText('get_guest', { guest_id: 'G0001' });
  if (DISTINCT) {
    for (const env of envs) {
      paid += 1;
      const out = env.callText('pay_balance', { guest_id: 'G0009', amount: ((paid % 30_000) + 1) / 100 });
      if (out.runtimeError || !out.resultJson.includes('true')) throw new Error(`pay_balance failed: ${out.resultJson}`);
    }
  }
  t = at('calls', t);
  const finals = envs.map(env => env.snapshotText());
  t = at('snapshot', t);
  for (const env of envs) env.dispose();
  t = at('dispose', t);
  for (const finalJson of finals) {
    const results = await host.runChecksOnText(checks, finalJson, stateJson, limits);
    if (results.filter(r => r.passed).length !== 3) wrong += 1;
  }
  at('checks', t);
  if (timed) episodes += C;
}

for (let w = 0; w < 3; w += 1) await wave(false);
const cpu0 = process.cpuUsage();
for (let w = 0; w < WAVES; w += 1) await wave(true);
const cpu = process.cpuUsage(cpu0);
const per = (v: number) => (v / episodes).toFixed(3);
process.stdout.write(
  `C = ${C}, ${episodes} episodes in ${WAVES} waves, one thread: ${Object.entries(ms)
    .map(([k, v]) => `${k} ${per(v)}`)
    .join(', ')} ms per episode; process CPU ${per((cpu.user + cpu.system) / 1000)} ms per episode${wrong ? `; ${wrong} episodes without the hotel reward` : ''}\n`,
);
process.exit(wrong ? 1 : 0);
