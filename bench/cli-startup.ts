/**
 * How long the `envfleet` command takes to start, as a ratio to `node -e 0` measured in the same run:
 * `envfleet --help` from the build (what users run), a command that loads its modules
 * (`envfleet worker --help`, which loads the pipeline declaration), and the same `--help` from the
 * TypeScript sources through tsx (`npm run dev`, what every command paid before the build). Runs are
 * interleaved, so a machine that slows down mid-run slows every variant alike. Peak memory comes from
 * GNU time when /usr/bin/time exists.
 *
 *   npm run build && node --import tsx bench/cli-startup.ts [--runs 15]
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const args = benchArgs(import.meta.url, { values: ['runs'] });
const RUNS = Math.max(1, args.int('runs', 15));
if (!existsSync(`${ROOT}dist/cli/main.js`)) {
  console.error('bench/cli-startup: the build is missing; run `npm run build` first');
  process.exit(1);
}

const VARIANTS: { readonly name: string; readonly argv: readonly string[] }[] = [
  { name: 'node -e 0', argv: ['-e', '0'] },
  { name: 'envfleet --help (dist)', argv: ['bin/envfleet.js', '--help'] },
  { name: 'envfleet worker --help (dist; loads the pipeline)', argv: ['bin/envfleet.js', 'worker', '--help'] },
  { name: 'envfleet --help from the TypeScript sources through tsx (npm run dev)', argv: ['--import', 'tsx', 'cli/main.ts', '--help'] },
];
const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

function once(argv: readonly string[]): { ms: number; maxRssKb: number | null } {
  const started = process.hrtime.bigint();
  const r = GNU_TIME
    ? spawnSync(GNU_TIME, ['-f', '%M', process.execPath, ...argv], { cwd: ROOT, encoding: 'utf8' })
    : spawnSync(process.execPath, argv, { cwd: ROOT, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  const rss = GNU_TIME ? Number(r.stderr.trim().split('\n').at(-1)) : null;
  return { ms, maxRssKb: Number.isFinite(rss) ? rss : null };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

// One warm-up of each (file cache), then RUNS interleaved rounds.
for (const v of VARIANTS) once(v.argv);
const samples = VARIANTS.map(() => ({ ms: [] as number[], rss: [] as number[] }));
for (let i = 0; i < RUNS; i += 1) {
  VARIANTS.forEach((v, k) => {
    const r = once(v.argv);
    samples[k]!.ms.push(r.ms);
    if (r.maxRssKb !== null) samples[k]!.rss.push(r.maxRssKb);
  });
}

const base = median(samples[0]!.ms);
console.log(`${RUNS} interleaved runs each, wall time of the whole process (spawn to exit), Node ${process.version}`);
console.log('| command | median | vs `node -e 0` | peak RSS (median) |');
console.log('|---|---|---|---|');
VARIANTS.forEach((v, k) => {
  const s = samples[k]!;
  const rss = s.rss.length ? `${(median(s.rss) / 1024).toFixed(0)} MB` : 'not measured (no /usr/bin/time)';
  console.log(`| ${v.name} | ${median(s.ms).toFixed(0)} ms | ${(median(s.ms) / base).toFixed(2)}× | ${rss} |`);
});
