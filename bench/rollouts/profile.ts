/**
 * Summary of a V8 CPU profile (`node --cpu-prof`) of the fleet process's main thread: self time
 * per category (GC, V8 builtins and native code such as JSON and structured clone, Node's
 * internals, each npm package, envfleet's own sources) and the functions with the most self time,
 * restricted to the timed run when the profile's clock matches process.hrtime (it does on Linux).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileSummary {
  /** Milliseconds of samples inside the timed run (or the whole profile, see `restricted`). */
  readonly totalMs: number;
  readonly idleMs: number;
  readonly restricted: boolean;
  readonly categories: readonly (readonly [string, number])[];
  readonly top: readonly (readonly [string, string, number])[];
}

function category(fn: string, url: string): string {
  if (!url) {
    if (fn === '(garbage collector)') return 'GC';
    if (fn === '(idle)') return 'idle';
    if (fn === '(program)') return '(program): V8 and native code not attributed to a function';
    return 'V8 builtins and native functions (JSON.parse/stringify, RegExp, structured clone, …)';
  }
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return `npm: ${pkg[1]}`;
  if (url.startsWith('node:internal/deps/undici')) return 'Node.js: undici (fetch, the openai client\'s HTTP)';
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/');
    const area = parts[0] === 'internal' ? (parts[1] ?? 'internal') : (parts[0] ?? url);
    return `Node.js: ${area.replace(/\.js$/, '')}`;
  }
  const own = /\/(src|workers|queues|config|bench)\/(.*)$/.exec(url);
  if (own) return `envfleet: ${own[1]}/${own[1] === 'src' ? (own[2] ?? '').split('/')[0] : ''}`.replace(/\/$/, '');
  return url;
}

/** Reads and summarises a .cpuprofile; `fromUs`/`toUs` (process.hrtime µs) bound the samples counted. */
export function summarizeProfile(path: string, fromUs: number, toUs: number, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map(n => [n.id, n]));
  const inRange: { node: ProfileNode; us: number }[] = [];
  const all: { node: ProfileNode; us: number }[] = [];
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i += 1) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    const node = byId.get(profile.samples[i]!);
    if (!node) continue;
    // A sample stands for the interval until the next one.
    const us = profile.timeDeltas[i + 1] ?? delta;
    all.push({ node, us });
    if (t >= fromUs && t <= toUs) inRange.push({ node, us });
  }
  const restricted = inRange.length > 0;
  const used = restricted ? inRange : all;
  const cats = new Map<string, number>();
  const fns = new Map<string, { where: string; us: number }>();
  let totalUs = 0;
  let idleUs = 0;
  for (const { node, us } of used) {
    const { functionName, url, lineNumber } = node.callFrame;
    const cat = category(functionName, url);
    if (cat === 'idle') {
      idleUs += us;
      continue;
    }
    totalUs += us;
    cats.set(cat, (cats.get(cat) ?? 0) + us);
    const name = functionName || '(anonymous)';
    const where = url ? `${basename(url)}:${lineNumber + 1}` : '(native)';
    const key = `${name} ${where}`;
    const f = fns.get(key) ?? { where, us: 0 };
    f.us += us;
    fns.set(key, f);
  }
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    restricted,
    categories: [...cats.entries()].sort((a, b) => b[1] - a[1]).map(([k, us]) => [k, us / 1000] as const),
    top: [...fns.entries()].sort((a, b) => b[1].us - a[1].us).slice(0, top).map(([k, f]) => [k.slice(0, k.length - f.where.length - 1), f.where, f.us / 1000] as const),
  };
}
