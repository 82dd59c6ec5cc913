/**
 * Model-written JSON Schemas: catastrophic patterns on the native engine and on RE2, what the
 * validation meter costs and where it stops, and the heap over many jobs' compiles.
 *
 *   node --expose-gc --import tsx bench/schemas.ts [--jobs 10000] [--distinct 300] [--every 1000] [--native-max 26]
 *                                                  [--phases before,after,twice,distinct]
 *
 * 1. Patterns: `^(a+)+$` against n a's and a "!", with the native RegExp for n = 16 … --native-max
 *    (the time doubles with every character, so keep it small), and through compileJsonSchema (RE2)
 *    for n up to 100,000 (median of 5).
 * 2. The meter: validations that a model-written schema could make explode (an exponential "$ref"
 *    chain, an anyOf fan over a big array, errors failing through a "$ref", a heavy pattern on a long
 *    string, uniqueItems on 100,000 objects), timed until they answer or the budget stops them; the
 *    cost of the meter and of RE2 on ordinary validations (the reference hotel env's tool schemas and
 *    a state schema, old vs new); and compile times.
 * 3. Jobs: --jobs jobs, each takes one of --distinct schemas (the reference env's 13 tool parameter
 *    schemas and a parking-garage state schema, with renamed properties and enums so that they are
 *    distinct), re-reads it as JSON.parse(JSON.stringify(schema)) as a worker re-reads an environment
 *    from Redis, compiles it and validates a value. Heap used after gc() every --every jobs, for:
 *    "before", the old module reproduced inline (one Ajv instance, a WeakMap keyed by the schema
 *    object); "after", compileJsonSchema; the same with twice as many distinct schemas (with the
 *    default 300, more than the validator cache holds, so evicted schemas are compiled again); and
 *    compileJsonSchema with a new schema in every job (nothing ever hits the cache). The phases run
 *    one after the other in this process, before parts 1 and 2 (on a clean heap; printed after
 *    them); each one's baseline is taken after gc() at its start. --phases runs only the phases
 *    named (before, after, twice: 2 × --distinct schemas, distinct: a new schema every job), and
 *    only part 3, e.g. `--phases twice --jobs 256000 --every 32000` for a long run.
 * 4. The validator cache at its caps: heap with 8 validators of 30 KB schemas (the character cap)
 *    and with 512 of small ones (the entry cap), in a child process (--cache-child, internal).
 *
 * Prints a markdown report on stdout (progress on stderr). Needs --expose-gc.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { SCHEMA_LIMITS, compileJsonSchema, describeAjvErrors, jsonSchemaCacheStats } from '../src/util/json-schema.js';
import { benchArgs } from './args.js';

const args = benchArgs(import.meta.url, { values: ['jobs', 'distinct', 'every', 'native-max', 'phases'], booleans: ['cache-child'] });
const JOBS = args.int('jobs', 10_000);
const DISTINCT = Math.max(1, args.int('distinct', 300));
const EVERY = Math.max(1, args.int('every', 1_000));
const NATIVE_MAX = args.int('native-max', 26);
const PHASE_NAMES = ['before', 'after', 'twice', 'distinct'] as const;
// benchArgs reads integers and flags only: the list is taken from the command line as given.
const phasesAt = args.raw.findIndex(a => a === '--phases' || a.startsWith('--phases='));
const PHASES_GIVEN = phasesAt >= 0;
const phasesText = PHASES_GIVEN ? (args.raw[phasesAt]!.startsWith('--phases=') ? args.raw[phasesAt]!.slice('--phases='.length) : (args.raw[phasesAt + 1] ?? '')) : PHASE_NAMES.join(',');
const PHASES = new Set(phasesText.split(','));
for (const phase of PHASES) {
  if (!(PHASE_NAMES as readonly string[]).includes(phase)) {
    process.stderr.write(`bench/schemas.ts: --phases takes a comma-separated list of ${PHASE_NAMES.join(', ')}\n`);
    process.exit(2);
  }
}
const progress = (line: string) => process.stderr.write(`[bench/schemas] ${line}\n`);

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  process.stderr.write('bench/schemas.ts needs --expose-gc: node --expose-gc --import tsx bench/schemas.ts\n');
  process.exit(2);
}
const heapMb = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};
const ms = (from: number): number => performance.now() - from;
const fmt = (x: number, digits = 1): string => x.toFixed(digits);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

// ---------------------------------------------------------------------------------------------
// The schemas a job sees.

interface Sample {
  readonly schema: object;
  readonly value: unknown;
}

const HOTEL_TOOLS = (JSON.parse(readFileSync(new URL('../fixtures/reference/hotel-env.bundle.json', import.meta.url), 'utf8')) as {
  tools: { function: { parameters: { properties: Record<string, Record<string, unknown>>; required?: string[] } } }[];
}).tools.map(t => t.function.parameters);

/** A value that satisfies one property's schema (the hotel schemas use strings, dates, enums, integers, numbers). */
function valueFor(prop: Record<string, unknown>): unknown {
  if (Array.isArray(prop['enum'])) return prop['enum'][0];
  if (prop['type'] === 'integer') return typeof prop['minimum'] === 'number' ? prop['minimum'] : 1;
  if (prop['type'] === 'number') return 12.5;
  if (typeof prop['pattern'] === 'string') return '2026-03-14';
  return 'G-100';
}

/** Tool parameter schema number i: a hotel tool with its properties and enum values renamed by i. */
function toolSample(i: number): Sample {
  const base = HOTEL_TOOLS[i % HOTEL_TOOLS.length]!;
  const rename = (name: string) => `${name}_${i}`;
  const properties: Record<string, unknown> = {};
  const value: Record<string, unknown> = {};
  for (const [name, prop] of Object.entries(base.properties)) {
    const p = Array.isArray(prop['enum']) ? { ...prop, enum: (prop['enum'] as string[]).map(e => `${e}_${i}`) } : prop;
    properties[rename(name)] = p;
    value[rename(name)] = valueFor(p);
  }
  return { schema: { type: 'object', properties, required: (base.required ?? []).map(rename), additionalProperties: false }, value };
}

/** State schema number i: the parking garage of fixtures/demo/30-parking.yaml, with renamed sizes. */
function stateSample(i: number): Sample {
  const sizes = ['compact', 'standard', 'large'].map(s => `${s}_${i}`);
  const schema = {
    type: 'object',
    required: ['spots', 'tickets', 'rate_per_hour', 'current_hour', 'next_ticket'],
    properties: {
      rate_per_hour: { type: 'number', minimum: 0 },
      current_hour: { type: 'integer', minimum: 0 },
      next_ticket: { type: 'integer', minimum: 1 },
      spots: {
        type: 'object',
        additionalProperties: {
          type: 'object',
          required: ['spot_id', 'level', 'size', 'ticket_id'],
          properties: { spot_id: { type: 'string', pattern: '^S\\d+$' }, level: { type: 'integer' }, size: { enum: sizes }, ticket_id: { type: ['string', 'null'] } },
        },
      },
      tickets: {
        type: 'object',
        additionalProperties: {
          type: 'object',
          required: ['ticket_id', 'plate', 'spot_id', 'entered_hour', 'fee'],
          properties: { ticket_id: { type: 'string' }, plate: { type: 'string', pattern: '^[A-Z]{2}-\\d{3}$' }, spot_id: { type: 'string' }, entered_hour: { type: 'integer' }, fee: { type: ['number', 'null'] } },
        },
      },
    },
  };
  const spots: Record<string, unknown> = {};
  const tickets: Record<string, unknown> = {};
  for (let s = 1; s <= 40; s++) {
    spots[`S${s}`] = { spot_id: `S${s}`, level: 1 + (s % 3), size: sizes[s % 3], ticket_id: s % 2 ? `T${s}` : null };
    if (s % 2) tickets[`T${s}`] = { ticket_id: `T${s}`, plate: `AB-${String(100 + s)}`, spot_id: `S${s}`, entered_hour: 8, fee: null };
  }
  return { schema, value: { rate_per_hour: 3, current_hour: 10, next_ticket: 41, spots, tickets } };
}

/** One in five schemas is a state schema, as a job validates tool arguments far more often. */
const sampleNo = (i: number): Sample => (i % 5 === 4 ? stateSample(i) : toolSample(i));

/** A large schema: n properties, each an object with a pattern, an integer and an enum array. */
function bigSchema(n: number, salt: string): object {
  const properties: Record<string, object> = {};
  for (let i = 0; i < n; i++) {
    properties[`field_${i}_${salt}`] = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[A-Z]{2}-[0-9]+$' }, n: { type: 'integer', minimum: 0 }, tags: { type: 'array', items: { enum: ['a', 'b'] } } } };
  }
  return { type: 'object', properties };
}

// ---------------------------------------------------------------------------------------------
// The old module, as it was: one Ajv instance, compiled validators in a WeakMap keyed by the object.

function oldCompiler(): (schema: object) => ValidateFunction {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const compiled = new WeakMap<object, ValidateFunction>();
  return schema => {
    let validate = compiled.get(schema);
    if (!validate) {
      validate = ajv.compile(schema);
      compiled.set(schema, validate);
    }
    return validate;
  };
}

// ---------------------------------------------------------------------------------------------

const out: string[] = [];
const print = (line = '') => out.push(line);

function patterns(): void {
  progress('patterns');
  print('### 1. `^(a+)+$` against n a\'s and a "!"');
  print();
  print('| n | native RegExp | compileJsonSchema (RE2) |');
  print('|---|---|---|');
  const re2 = compileJsonSchema({ type: 'string', pattern: '^(a+)+$' });
  const re2Time = (n: number): number => {
    const s = `${'a'.repeat(n)}!`;
    const times: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      if (re2(s)) throw new Error('RE2 matched');
      times.push(ms(t));
    }
    return median(times);
  };
  const native = new RegExp('^(a+)+$', 'u');
  const ns = new Set<number>();
  for (let n = 16; n <= NATIVE_MAX; n += 1) ns.add(n);
  for (const n of [...ns, 32, 40, 1_000, 100_000].sort((a, b) => a - b)) {
    let nativeText = '(not run: hours)';
    if (ns.has(n)) {
      const t = performance.now();
      native.test(`${'a'.repeat(n)}!`);
      nativeText = `${fmt(ms(t))} ms`;
    } else if (n >= 1_000) nativeText = '(not run)';
    print(`| ${n.toLocaleString('en-US')} | ${nativeText} | ${fmt(re2Time(n), 3)} ms |`);
  }
  print();
}

function meter(): void {
  progress('meter');
  print('### 2. The validation meter');
  print();
  print('Pathological validations, each run once after one warm-up (ajv alone, "before", for comparison where it finishes):');
  print();
  print('| case | after: answer | after: time | before (ajv alone) |');
  print('|---|---|---|---|');
  const old = oldCompiler();
  const chain = (k: number): object => {
    const definitions: Record<string, object> = { [`d${k}`]: { type: 'string' } };
    for (let i = 0; i < k; i++) definitions[`d${i}`] = { allOf: [{ $ref: `#/definitions/d${i + 1}` }, { $ref: `#/definitions/d${i + 1}` }] };
    return { definitions, $ref: '#/definitions/d0' };
  };
  const fan = { type: 'array', items: { anyOf: Array.from({ length: 50 }, (_, b) => ({ type: 'object', required: [`k${b}`] })) } };
  const bigArray = Array.from({ length: 20_000 }, (_, i) => ({ id: i }));
  const cases: { name: string; schema: object; value: unknown; before: boolean }[] = [
    { name: '`$ref` chain, each level checks the next twice: 2^20 checks', schema: chain(20), value: 'x', before: true },
    { name: 'the same chain, 2^40 checks', schema: chain(40), value: 'x', before: false },
    { name: '`items: {anyOf: [50 failing branches]}` on 20,000 objects', schema: fan, value: bigArray, before: true },
    { name: '`items: {$ref: <a string schema>}` on 20,000 numbers (each failure copies all errors so far)', schema: { type: 'array', items: { $ref: '#/definitions/s' }, definitions: { s: { type: 'string' } } }, value: Array.from({ length: 20_000 }, (_, i) => i), before: true },
    { name: '`pattern: "(?:.{999}x)?y"` (~1,000 RE2 instructions, unanchored) on 999 a\'s and a "y"', schema: { type: 'string', pattern: '(?:.{999}x)?y' }, value: `${'a'.repeat(999)}y`, before: true },
    { name: 'the same pattern on 9,999 a\'s and a "y"', schema: { type: 'string', pattern: '(?:.{999}x)?y' }, value: `${'a'.repeat(9_999)}y`, before: true },
    { name: '`uniqueItems` on 20,000 distinct objects', schema: { type: 'array', uniqueItems: true }, value: bigArray, before: true },
    { name: '`uniqueItems` on 100,000 distinct objects', schema: { type: 'array', uniqueItems: true }, value: Array.from({ length: 100_000 }, (_, i) => ({ id: i })), before: false },
  ];
  for (const c of cases) {
    const validate = compileJsonSchema(c.schema);
    validate(c.value);
    const t = performance.now();
    const valid = validate(c.value);
    const took = ms(t);
    const answer = valid ? 'valid' : describeAjvErrors(validate.errors).includes('validation stopped') ? 'stopped by the budget' : 'invalid';
    let before = '(not run)';
    if (c.before) {
      const v = old(c.schema);
      const t0 = performance.now();
      const r = v(c.value);
      before = `${r ? 'valid' : 'invalid'}, ${fmt(ms(t0))} ms`;
    }
    print(`| ${c.name} | ${answer} | ${fmt(took)} ms | ${before} |`);
  }
  print();
}

function ordinary(): void {
  const old = oldCompiler();
  print('Ordinary validations (µs per validation: median of 50 batches of 200, after 2,000 warm-up):');
  print();
  print('| schema and value | before | after |');
  print('|---|---|---|');
  const perCall = (validate: ValidateFunction, value: unknown): number => {
    for (let i = 0; i < 2_000; i++) validate(value);
    const times: number[] = [];
    for (let r = 0; r < 50; r++) {
      const t = performance.now();
      for (let i = 0; i < 200; i++) validate(value);
      times.push((ms(t) * 1000) / 200);
    }
    return median(times);
  };
  const withoutPatterns = (sample: Sample): Sample => ({ schema: JSON.parse(JSON.stringify(sample.schema).replace(/,"pattern":"[^"]*"/g, '')) as object, value: sample.value });
  for (const [name, sample] of [
    ['hotel `create_reservation` arguments', toolSample(6)],
    ['the same without its two patterns (the meter alone)', withoutPatterns(toolSample(6))],
    ['hotel `search_available_rooms` arguments', toolSample(3)],
    ['parking state, 40 spots and 20 tickets', stateSample(4)],
  ] as const) {
    const before = perCall(old(reread(sample.schema)), sample.value);
    const after = perCall(compileJsonSchema(reread(sample.schema)), sample.value);
    print(`| ${name} | ${fmt(before, 2)} µs | ${fmt(after, 2)} µs |`);
  }
  print();
  print('Compile time of a schema not seen before (median of 40 distinct schemas):');
  print();
  print('| schema | before | after |');
  print('|---|---|---|');
  for (const [name, make] of [
    ['hotel tool parameters', (i: number) => toolSample(1_000_000 + i * HOTEL_TOOLS.length + 6).schema],
    ['parking state schema', (i: number) => stateSample(2_000_000 + i).schema],
    ['a 30 KB schema (150 object properties, near the 32 KB cap)', (i: number) => bigSchema(150, `v${i}`)],
  ] as const) {
    const oldC = oldCompiler();
    const time = (compile: (s: object) => unknown, offset: number): number => {
      const times: number[] = [];
      for (let i = 0; i < 40; i++) {
        const s = make(offset + i);
        const t = performance.now();
        compile(s);
        times.push(ms(t));
      }
      return median(times);
    };
    oldC(make(999));
    compileJsonSchema(make(998));
    print(`| ${name} | ${fmt(time(oldC, 0), 2)} ms | ${fmt(time(compileJsonSchema, 100), 2)} ms |`);
  }
  print();
}

/**
 * What the validator cache holds at its two caps, measured in a child process (this script with
 * --cache-child) started with --no-compilation-cache: V8 keeps recently compiled `new Function`
 * sources in its compilation cache (bounded, ~17-20 MB after a few thousand compiles, in the old
 * module as much as in the new one), which would otherwise hide the cache's own size.
 */
function cacheAtCap(): void {
  progress('cache at its caps (child process)');
  const child = execFileSync(process.execPath, ['--expose-gc', '--no-compilation-cache', '--import', 'tsx', fileURLToPath(import.meta.url), '--cache-child'], { encoding: 'utf8' });
  const r = JSON.parse(child) as { empty: number; big: number; bigEntries: number; bigChars: number; small: number; smallEntries: number; smallChars: number };
  print('### 4. The validator cache at its caps');
  print();
  print(`Heap used after gc(), in a child process with --no-compilation-cache: empty ${fmt(r.empty)} MB; ${r.bigEntries} validators of 30 KB schemas (${r.bigChars.toLocaleString('en-US')} characters, cap ${SCHEMA_LIMITS.cacheChars.toLocaleString('en-US')}) ${fmt(r.big)} MB; ${r.smallEntries} validators of hotel tool schemas (${r.smallChars.toLocaleString('en-US')} characters) ${fmt(r.small)} MB.`);
  print();
}

function cacheChild(): void {
  const empty = heapMb();
  for (let i = 0; i < 40; i++) compileJsonSchema(bigSchema(150, `cap${i}`));
  const big = jsonSchemaCacheStats();
  const bigHeap = heapMb();
  for (let i = 0; i < 2 * SCHEMA_LIMITS.cacheEntries; i++) compileJsonSchema(toolSample(40_000_000 + i).schema);
  const small = jsonSchemaCacheStats();
  process.stdout.write(JSON.stringify({ empty, big: bigHeap, bigEntries: big.entries, bigChars: big.chars, small: heapMb(), smallEntries: small.entries, smallChars: small.chars }));
}

const reread = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

function jobs(label: string, compile: (schema: object) => ValidateFunction, distinct: number, offset: number): string[] {
  progress(`jobs: ${label}`);
  const column: string[] = [];
  // The samples a phase reuses exist before its baseline, so that they are not counted as growth.
  const samples = distinct < JOBS ? Array.from({ length: distinct }, (_, k) => sampleNo(offset + k)) : [];
  const sampleOf = (n: number): Sample => samples[n - offset] ?? sampleNo(n);
  column.push(fmt(heapMb()));
  // A fixed pseudo-random order (mulberry32), so both phases see the same sequence of schemas.
  let seed = 12345;
  const next = (): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return (x ^ (x >>> 14)) >>> 0;
  };
  const t = performance.now();
  for (let job = 1; job <= JOBS; job++) {
    const n = distinct >= JOBS ? offset + job : offset + (next() % distinct);
    const sample = sampleOf(n);
    const validate = compile(reread(sample.schema));
    if (!validate(sample.value)) throw new Error(`job ${job}: ${describeAjvErrors(validate.errors)}`);
    if (job % EVERY === 0) column.push(fmt(heapMb()));
  }
  column.push(fmt(ms(t) / 1000, 1));
  return column;
}

if (args.flag('cache-child')) {
  cacheChild();
  process.exit(0);
}

// The heap phases run first, on a clean heap; their section is printed last.
print(`### 3. Heap over ${JOBS.toLocaleString('en-US')} jobs (MB used after gc())`);
print();
const columns: { label: string; values: string[] }[] = [];
if (PHASES.has('before')) columns.push({ label: `before (old module), ${DISTINCT} distinct schemas`, values: jobs('before', oldCompiler(), DISTINCT, 0) });
if (PHASES.has('after')) columns.push({ label: `after, ${DISTINCT} distinct schemas`, values: jobs('after', compileJsonSchema, DISTINCT, 10_000_000) });
const cacheAfter = jsonSchemaCacheStats();
if (PHASES.has('twice')) columns.push({ label: `after, ${2 * DISTINCT} distinct schemas`, values: jobs('after, twice as many', compileJsonSchema, 2 * DISTINCT, 30_000_000) });
if (PHASES.has('distinct')) columns.push({ label: 'after, every schema distinct', values: jobs('after, all distinct', compileJsonSchema, JOBS, 20_000_000) });
const cacheAllDistinct = jsonSchemaCacheStats();
print(`| jobs | ${columns.map(c => c.label).join(' | ')} |`);
print(`|---|${columns.map(() => '---|').join('')}`);
const rows = columns[0]!.values.length;
for (let r = 0; r < rows; r++) {
  const name = r === 0 ? 'start' : r === rows - 1 ? 'wall time (s)' : (r * EVERY).toLocaleString('en-US');
  print(`| ${name} | ${columns.map(c => c.values[r]).join(' | ')} |`);
}
print();
print(`Validator cache after the "after" phase: ${cacheAfter.entries} entries, ${cacheAfter.chars.toLocaleString('en-US')} schema characters; at the end: ${cacheAllDistinct.entries} entries, ${cacheAllDistinct.chars.toLocaleString('en-US')} characters.`);
print();
const heapSection = out.splice(0);
if (!PHASES_GIVEN) {
  patterns();
  meter();
  ordinary();
}
out.push(...heapSection);
if (!PHASES_GIVEN) cacheAtCap();
print(`${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, load average ${os.loadavg().map(l => l.toFixed(2)).join(' ')} at the end; \`node --expose-gc --import tsx bench/schemas.ts ${args.raw.join(' ')}\`.`);
process.stdout.write(`${out.join('\n')}\n`);
