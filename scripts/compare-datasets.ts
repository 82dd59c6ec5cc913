/**
 * Compares two export directories (`envfleet demo`'s demo-output/<run>/, `envfleet export --out`, a
 * sink's trajectories/) as sorted lines, file by file: lines are the same records in any order once
 * what varies between two runs of the same input is set aside — timestamps and durations
 * (createdAt, startedAt, storedAt, wallMs, envUs, us, ms) and the tool-call ids the scripted model
 * server numbers in the order requests arrive (call_N_T_I). Exits 1 when a file differs, is missing
 * or is extra, and prints the first differing field of the first differing record.
 *
 *   npx tsx scripts/compare-datasets.ts DIR_A DIR_B [--ignore-key KEY]...
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { 'ignore-key': { type: 'string', multiple: true } } });
if (positionals.length !== 2) {
  console.error('usage: npx tsx scripts/compare-datasets.ts DIR_A DIR_B [--ignore-key KEY]...');
  process.exit(2);
}
const [a, b] = positionals as [string, string];
const ignored = new Set(values['ignore-key'] ?? []);
const VOLATILE = /^(createdAt|startedAt|storedAt|wallMs|envUs|us|ms)$/;
const CALL_ID = /^call_\d+_\d+_\d+$/;

function normalize(v: unknown): unknown {
  if (typeof v === 'string') return CALL_ID.test(v) ? 'call_*' : v;
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => !ignored.has(k)).map(([k, x]) => [k, VOLATILE.test(k) ? 0 : normalize(x)]));
  return v;
}

const files = (dir: string, under = ''): string[] =>
  readdirSync(join(dir, under)).flatMap(f => (statSync(join(dir, under, f)).isDirectory() ? files(dir, join(under, f)) : [join(under, f)]));
const lines = (dir: string, f: string) => readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean);

function firstDifference(x: unknown, y: unknown, path: string): string | null {
  if (JSON.stringify(x) === JSON.stringify(y)) return null;
  if (x && y && typeof x === 'object' && typeof y === 'object') {
    for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
      const d = firstDifference((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k], `${path}.${k}`);
      if (d) return d;
    }
  }
  return `${path}: ${JSON.stringify(x)?.slice(0, 160)} ≠ ${JSON.stringify(y)?.slice(0, 160)}`;
}

let bad = 0;
const inA = files(a).sort();
const inB = new Set(files(b));
for (const f of inA) {
  if (!inB.has(f)) {
    console.log(`missing in ${b}: ${f}`);
    bad += 1;
    continue;
  }
  const [la, lb] = [lines(a, f), lines(b, f)];
  const norm = (ls: string[]) => ls.map(l => JSON.stringify(normalize(JSON.parse(l)))).sort();
  const [na, nb] = [norm(la), norm(lb)];
  const bytes = JSON.stringify([...la].sort()) === JSON.stringify([...lb].sort());
  if (JSON.stringify(na) === JSON.stringify(nb)) {
    console.log(`same ${bytes ? '(byte-identical lines)' : '(after setting aside timestamps, durations and call ids)'}: ${f} (${la.length} lines)`);
    continue;
  }
  bad += 1;
  const i = na.findIndex((l, k) => l !== nb[k]);
  console.log(`DIFFERENT: ${f} (${la.length} vs ${lb.length} lines); first: ${firstDifference(JSON.parse(na[i] ?? 'null'), JSON.parse(nb[i] ?? 'null'), '$')}`);
}
for (const f of inB) {
  if (inA.includes(f)) continue;
  console.log(`extra in ${b}: ${f}`);
  bad += 1;
}
process.exit(bad ? 1 : 0);
