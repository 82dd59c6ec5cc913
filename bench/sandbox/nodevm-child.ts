/**
 * The node:vm baseline in a process of its own, so it can run under V8 flags (bench/sandbox.ts
 * runs it with --jitless: V8's Ignition interpreter only, to compare interpreter with interpreter):
 *
 *   node --jitless --import tsx bench/sandbox/nodevm-child.ts hotel|library [CALLS]
 *
 * Prints one JSON object: medianUs, p99Us, callsPerSecond, perTool {tool: medianUs}.
 */
import { loadEnv, median, p99, type EnvKey } from './common.js';
import { nodeVmTrace } from './nodevm.js';

const env = loadEnv((process.argv[2] ?? 'hotel') as EnvKey);
const limit = Number(process.argv[3] ?? Infinity);
const calls = Number.isFinite(limit) ? env.calls.slice(0, limit) : env.calls;
const r = nodeVmTrace(env.code, env.state, calls);
process.stdout.write(
  `${JSON.stringify({
    medianUs: median(r.lat),
    p99Us: p99(r.lat),
    callsPerSecond: r.callsPerSecond,
    perTool: Object.fromEntries([...r.perTool].map(([tool, lat]) => [tool, median(lat)])),
  })}\n`,
);
