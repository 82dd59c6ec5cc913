/**
 * Compares two export directories (`envfleet demo`'s demo-output/<run>/, `envfleet export --out`, a
 * sink's trajectories/) as sorted lines, file by file: lines are the same records in any order once
 * what varies between two runs of the same input is set aside — timestamps and durations
 * (createdAt, startedAt, storedAt, wallMs, envUs, us, ms) and the tool-call ids the scripted model
 * server numbers in the order requests arrive (call_N_T_I). Exits 1 when a file differs, is missing
 * or is extra, and prints the first differing field of the first differing record. A file that is one JSON
 * document over several lines (dataset_info.json) is compared as one record. `--merge-shards`
 * compares the sink's shard files (trajectories/part-NNNNN.jsonl) as one file: which shard a line
 * went to depends on the order trajectories finished in.
 *
 *   npx tsx scripts/compare-datasets.ts DIR_A DIR_B [--ignore-key KEY]... [--merge-shards]
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const VOLATILE = /^(createdAt|startedAt|storedAt|wallMs|envUs|us|ms)$/;
const CALL_ID = /^call_\d+_\d+_\d+$/;
const SHARD = /^trajectories\/part-\d{5}\.jsonl$/;
const SHARDS = 'trajectories/part-*.jsonl';

export interface CompareOptions {
  /** Keys left out of every record. */
  readonly ignoredKeys?: readonly string[];
  /** Compare the sink's shard files as one. */
  readonly mergeShards?: boolean;
  /** Where the findings go, one line each. */
  readonly log?: (line: string) => void;
}

/** A record with what varies between two runs of the same input set aside. */
export function normalizeRecord(v: unknown, ignored: ReadonlySet<string> = new Set()): unknown {
  if (typeof v === 'string') return CALL_ID.test(v) ? 'call_*' : v;
  if (Array.isArray(v)) return v.map(x => normalizeRecord(x, ignored));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => !ignored.has(k)).map(([k, x]) => [k, VOLATILE.test(k) ? 0 : normalizeRecord(x, ignored)]));
  return v;
}

const listFiles = (dir: string, under = ''): string[] =>
  readdirSync(join(dir, under)).flatMap(f => (statSync(join(dir, under, f)).isDirectory() ? listFiles(dir, join(under, f)) : [join(under, f)]));

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

function parsesAsJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Compares the datasets of two directories; returns how many files differ, are missing or are extra. */
export function compareDatasets(a: string, b: string, options: CompareOptions = {}): number {
  const log = options.log ?? ((line: string) => console.log(line));
  const ignored = new Set(options.ignoredKeys ?? []);
  // File name (or the merged shards' name) → the files it stands for.
  const groups = (dir: string) => {
    const out = new Map<string, string[]>();
    for (const f of listFiles(dir).sort()) {
      const name = options.mergeShards && SHARD.test(f) ? SHARDS : f;
      out.set(name, [...(out.get(name) ?? []), f]);
    }
    return out;
  };
  // JSON Lines, or one JSON document over several lines (dataset_info.json), compared as one record.
  const recordsOf = (text: string): string[] => {
    const ls = text.split('\n').filter(Boolean);
    if (ls.every(l => parsesAsJson(l))) return ls;
    return [JSON.stringify(JSON.parse(text))];
  };
  const lines = (dir: string, fs: readonly string[]) => fs.flatMap(f => recordsOf(readFileSync(join(dir, f), 'utf8')));
  let bad = 0;
  const inA = groups(a);
  const inB = groups(b);
  for (const [f, filesA] of inA) {
    const filesB = inB.get(f);
    if (!filesB) {
      log(`missing in ${b}: ${f}`);
      bad += 1;
      continue;
    }
    const [la, lb] = [lines(a, filesA), lines(b, filesB)];
    const norm = (ls: string[]) => ls.map(l => JSON.stringify(normalizeRecord(JSON.parse(l), ignored))).sort();
    const [na, nb] = [norm(la), norm(lb)];
    const bytes = JSON.stringify([...la].sort()) === JSON.stringify([...lb].sort());
    if (JSON.stringify(na) === JSON.stringify(nb)) {
      log(`same ${bytes ? '(byte-identical lines)' : '(after setting aside timestamps, durations and call ids)'}: ${f} (${la.length} lines)`);
      continue;
    }
    bad += 1;
    const i = na.findIndex((l, k) => l !== nb[k]);
    log(`DIFFERENT: ${f} (${la.length} vs ${lb.length} lines); first: ${firstDifference(JSON.parse(na[i] ?? 'null'), JSON.parse(nb[i] ?? 'null'), '$')}`);
  }
  for (const f of inB.keys()) {
    if (inA.has(f)) continue;
    log(`extra in ${b}: ${f}`);
    bad += 1;
  }
  return bad;
}

if (process.argv[1] && existsSync(process.argv[1]) && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { 'ignore-key': { type: 'string', multiple: true }, 'merge-shards': { type: 'boolean' } } });
  if (positionals.length !== 2) {
    console.error('usage: npx tsx scripts/compare-datasets.ts DIR_A DIR_B [--ignore-key KEY]... [--merge-shards]');
    process.exit(2);
  }
  const [a, b] = positionals as [string, string];
  process.exit(compareDatasets(a, b, { ignoredKeys: values['ignore-key'] ?? [], mergeShards: values['merge-shards'] ?? false }) ? 1 : 0);
}
