/**
 * A state's snapshot the two ways, in one process and interleaved: QuickJS's binary encoder read
 * back as JSON on the host (bjson.ts, what a plain environment gets) against the guest's
 * JSON.stringify (what an environment whose source names a toJSON gets, and what every snapshot
 * was before). The reference hotel state (66 KB), one resident environment each, blocks of
 * `--block` snapshots alternately for `--rounds` rounds; prints the median per-block µs per
 * snapshot of each way, their ratio, and this thread's CPU per snapshot (process.threadCpuUsage is
 * not in Node 20: process.cpuUsage, all threads, GC helpers included). Exits 1 if the two texts
 * differ.
 *
 *   node --import tsx bench/snapshot-ways.ts [--rounds 20] [--block 100]
 */
import { readFileSync } from 'node:fs';
import type { EnvironmentCode } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { plainSnapshots, QuickJSHost, type SandboxEnvironment } from '../src/sandbox/quickjs-host.js';
import { benchArgs } from './args.js';

const args = benchArgs(import.meta.url, { values: ['rounds', 'block'] });
const ROUNDS = args.int('rounds', 20);
const BLOCK = args.int('block', 100);
const read = (name: string): unknown => JSON.parse(readFileSync(new URL(`../fixtures/reference/${name}`, import.meta.url), 'utf8'));
const bundle = read('hotel-env.bundle.json') as EnvironmentCode;
const stateJson = JSON.stringify(read('hotel-state.json'));
const native: EnvironmentCode = { name: 'hotel', className: bundle.className, source: bundle.source, tools: bundle.tools };
const stringify: EnvironmentCode = { ...native, source: `${bundle.source}\n// toJSON: snapshotted by JSON.stringify` };
if (!plainSnapshots(native.source) || plainSnapshots(stringify.source)) throw new Error('the two sources do not take the two ways');

const limits = { ...DEFAULT_SANDBOX_LIMITS, sessionCpuMs: 1e9 };
const host = new QuickJSHost(1024);
const envs = { native: await host.createEnvironmentFromText(native, stateJson, limits), stringify: await host.createEnvironmentFromText(stringify, stateJson, limits) };
for (const env of Object.values(envs)) env.callText('get_guest', { guest_id: 'G0001' });
if (envs.native.snapshotText() !== envs.stringify.snapshotText()) {
  console.error('the two ways wrote different texts');
  process.exit(1);
}

const perBlock: Record<keyof typeof envs, number[]> = { native: [], stringify: [] };
const cpu: Record<keyof typeof envs, number> = { native: 0, stringify: 0 };
const block = (env: SandboxEnvironment): [number, number] => {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < BLOCK; i += 1) env.snapshotText();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return [(wall * 1000) / BLOCK, (c.user + c.system) / BLOCK];
};
for (let r = 0; r < 3; r += 1) for (const env of Object.values(envs)) block(env); // warm-up
for (let r = 0; r < ROUNDS; r += 1) {
  const order = r % 2 === 0 ? (['native', 'stringify'] as const) : (['stringify', 'native'] as const);
  for (const way of order) {
    const [us, cpuUs] = block(envs[way]);
    perBlock[way].push(us);
    cpu[way] += cpuUs / ROUNDS;
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const n = median(perBlock.native);
const s = median(perBlock.stringify);
console.log(`${new Date().toISOString()}; ${ROUNDS} rounds of ${BLOCK} snapshots each way, the hotel state (${stateJson.length} chars)`);
console.log(`| way | median µs per snapshot | process CPU µs per snapshot |`);
console.log(`| --- | --- | --- |`);
console.log(`| native encoder + bjson.ts | ${n.toFixed(0)} | ${cpu.native.toFixed(0)} |`);
console.log(`| guest JSON.stringify | ${s.toFixed(0)} | ${cpu.stringify.toFixed(0)} |`);
console.log(`native ÷ stringify: ${(n / s).toFixed(2)} (wall), ${(cpu.native / cpu.stringify).toFixed(2)} (CPU)`);
for (const env of Object.values(envs)) env.dispose();
