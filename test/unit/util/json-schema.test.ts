import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { expect } from 'chai';
import type { ValidateFunction } from 'ajv';
import { SCHEMA_LIMITS, compileJsonSchema, describeAjvErrors, jsonSchemaCacheStats } from '../../../src/util/json-schema.js';

/** A fresh copy, as every job gets when it re-reads an environment from Redis. */
const reread = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

function compileError(schema: object): string {
  try {
    compileJsonSchema(schema);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected the schema not to compile');
}

/**
 * The URL of tsx's ESM API, resolved from envfleet's own dependencies. Mocha loads this file as
 * CommonJS (no import.meta.resolve), and tsx's CommonJS build of the API fails to register its hooks
 * in a worker, so the file the package exports for "import" is looked up in its package.json.
 */
function tsxEsmApi(): string {
  const manifest = createRequire(import.meta.url).resolve('tsx/package.json');
  const { exports } = JSON.parse(readFileSync(manifest, 'utf8')) as { exports: Record<string, { import?: { default?: string } }> };
  return pathToFileURL(join(dirname(manifest), exports['./esm/api']?.import?.default ?? './dist/esm/api/index.mjs')).href;
}

/**
 * Compiles `schema` and validates `inputs` in a worker thread, which is terminated if it has not
 * answered after `watchdogMs`. Synchronous work cannot be interrupted from its own thread, so if
 * patterns ever ran on the backtracking native engine again (or uniqueItems compared every pair)
 * this fails after the watchdog instead of holding the whole test run for hours. The watchdog is
 * not a timing assertion: the answers take milliseconds here and hours (minutes for uniqueItems)
 * otherwise; 30 s only has to sit between the two, with room for starting a thread that loads
 * TypeScript on a busy machine.
 */
async function validateInWorker(schema: object, inputs: readonly unknown[], watchdogMs = 30_000): Promise<boolean[]> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.tsx)
      .then(({ tsImport }) => tsImport(workerData.module, workerData.module))
      .then(({ compileJsonSchema }) => {
        const validate = compileJsonSchema(workerData.schema);
        parentPort.postMessage(workerData.inputs.map(input => validate(input)));
      });`;
  const worker = new Worker(code, {
    eval: true,
    workerData: { tsx: tsxEsmApi(), module: new URL('../../../src/util/json-schema.ts', import.meta.url).href, schema, inputs },
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      new Promise<boolean[]>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer after ${watchdogMs} ms: the validation is not linear (a backtracking pattern, a pairwise uniqueItems)`)), watchdogMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await worker.terminate();
  }
}

describe('compileJsonSchema: patterns run on a linear-time engine (RE2)', () => {
  it('answers a catastrophic-backtracking pattern at all', async function () {
    // With the backtracking native engine, ^(a+)+$ against n a's and a "!" tries every way to split
    // the a's: on this machine 24 characters took 0.19 s and each further character doubled it
    // (26: 0.74 s), so 40 would take 0.74 s * 2^14, over three hours. RE2 walks the string once;
    // the 100,000-character input shows that length costs only linearly.
    this.timeout(60_000);
    const answers = await validateInWorker({ type: 'string', pattern: '^(a+)+$' }, [`${'a'.repeat(40)}!`, 'a'.repeat(40), `${'a'.repeat(100_000)}!`]);
    expect(answers).to.deep.equal([false, true, false]);
    const keys = await validateInWorker(
      { type: 'object', patternProperties: { '^(a|aa)+$': { type: 'integer' } }, additionalProperties: false },
      [{ [`${'a'.repeat(40)}!`]: 1 }, { aaaa: 1 }],
    );
    expect(keys).to.deep.equal([false, true]);
    // In this thread too, with the error callers show.
    const validate = compileJsonSchema({ type: 'string', pattern: '^(a+)+$' });
    expect(validate(`${'a'.repeat(40)}!`)).to.equal(false);
    expect(describeAjvErrors(validate.errors)).to.equal('- at (top level): must match pattern "^(a+)+$"');
  });

  it('matches what ECMAScript (u flag) matches: anchors, classes, escapes, Unicode', () => {
    // A differential check against the native engine on patterns that do not backtrack badly. The
    // translation to RE2 matters where the dialects differ: "." and \s (RE2's exclude \r, \u2028 and
    // NBSP differently), [] and [^], \u escapes and surrogate pairs, \p long names, [\b].
    const patterns = [
      '^abc$', 'abc', '^a.c$', '^.$', '^.+$', '^\\d{3}-\\d{4}$', '^\\w+$', '^\\s*$', '^\\S+$', '^[\\s\\S]*$', '^[^\\s]+$', '^[\\S]+$',
      '^[a-z\\s]+$', '^[\\u4e00-\\u9fff]+$', '^\\p{Script=Han}+$', '^\\p{L}+$', '^\\p{Letter}+$', '^\\P{L}+$', '^\\p{Lu}',
      '^\\p{Script=Greek}+$', '^\\P{ASCII}+$', '^[\\p{ASCII}]+$', '^\\p{Emoji_Presentation}+$', '^\\uD83D\\uDE00$', '^\\u{1F600}$',
      '^[\\uD83D\\uDE00-\\uD83D\\uDE4F]+$', '^[😀-🙏]+$', '😀', '^(?<word>\\w+)$', '^(?:a|b)+?$', '^$', '^a{2,3}$', '\\bword\\b',
      '\\Bor\\B', '[]', '[^]', '^[^]*$', '^\\cJ$', '^\\0$', '^[\\b]$', '^\\/$', '^[\\-a]+$', '^\\x41$', '^[\\x41-\\x43]+$',
      '^\\t\\n\\v\\f\\r$', '^[.]$', '^[\\[\\]]+$', '^[[]$', '^\\$\\^\\(\\)\\*\\+\\?\\{\\}\\|\\\\$', '^(a|ab)(c|bcd)(d*)$', '^[^a-z]$',
      '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$', '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$',
      '^\\+?[1-9]\\d{1,14}$', '^\\d{4}-\\d{2}-\\d{2}$', '^([01]\\d|2[0-3]):[0-5]\\d$', '^[\\p{L}\\p{N}_-]+$', '^\\p{Sc}$',
      '^\\p{General_Category=Letter}+$',
    ];
    const strings = [
      '', 'a', 'abc', 'ABC', 'aXc', 'a\nc', 'a\rc', 'a\u2028c', '\n', '\r', '\u2029', ' ', ' \t', '\u00a0', '\ufeff', '\u3000', '\v',
      '\u200b', '中文字', '中', '日本語', '😀', '😀👍', '🙏', '\uD83D', 'αβγ', 'Ωmega', '123-4567', '١٢٣', 'word', 'a word here',
      'sword', 'x/y', '/', '\0', '\b', 'A', '-a-', '.', '[', '[]', '$^()*+?{}|\\', 'ab', 'abcd', 'abbcd', 'aa', 'aaaa', '!',
      '12345678-1234-1234-1234-123456789abc', 'me@x.io', 'a b@x.io', '+14155550123', '2024-02-29', '23:59', '24:00', '€', 'é',
      'e\u0301', '\t\n\v\f\r', 'ab_c-1',
    ];
    const mismatches: string[] = [];
    for (const pattern of patterns) {
      const validate = compileJsonSchema({ type: 'string', pattern });
      const native = new RegExp(pattern, 'u');
      for (const s of strings) {
        if (validate(s) !== native.test(s)) mismatches.push(`${JSON.stringify(pattern)} on ${JSON.stringify(s)}: native ${native.test(s)}`);
      }
    }
    expect(mismatches).to.deep.equal([]);
  });

  it('reads patterns with the u flag, as ajv does: one emoji is one character, and \\u{...} works', () => {
    expect(compileJsonSchema({ type: 'string', pattern: '^.{2}$' })('😀👍')).to.equal(true);
    expect(compileJsonSchema({ type: 'string', pattern: '^.{2}$' })('😀')).to.equal(false);
    expect(compileJsonSchema({ type: 'string', pattern: '^[\\u{4E00}-\\u{9FFF}]{3}$' })('中文字')).to.equal(true);
    expect(compileJsonSchema({ type: 'string', pattern: '^\\p{Lu}\\p{Ll}+$' })('Émile')).to.equal(true);
  });

  it('keeps the ECMAScript dialect: RE2-only syntax such as (?i) or \\pL is refused', () => {
    expect(compileError({ type: 'string', pattern: '(?i)abc' })).to.match(/^pattern "\(\?i\)abc" is not a valid ECMAScript regular expression/);
    expect(compileError({ type: 'string', pattern: '\\pL' })).to.match(/^pattern "\\pL" is not a valid ECMAScript regular expression/);
  });
});

describe('compileJsonSchema: what RE2 cannot run is a compile error that names the pattern', () => {
  it('refuses lookarounds and says what to write instead', () => {
    for (const pattern of ['^(?!admin).*$', '^(?=.*\\d).+$', '(?<=\\$)\\d+', '(?<!-)\\d+']) {
      const message = compileError({ type: 'object', properties: { name: { type: 'string', pattern } } });
      expect(message).to.include(`pattern "${pattern}"`);
      expect(message).to.include('lookaround');
      expect(message).to.include('"not": {"pattern": ...}');
    }
  });

  it('refuses backreferences', () => {
    for (const pattern of ['^(a)\\1$', '^(?<x>a)\\k<x>$']) {
      const message = compileError({ type: 'string', pattern });
      expect(message).to.include(`pattern "${pattern}"`);
      expect(message).to.include('backreference');
    }
  });

  it('refuses patterns in patternProperties the same way', () => {
    expect(compileError({ type: 'object', patternProperties: { '^(?!x-)': { type: 'string' } } })).to.include('pattern "^(?!x-)" uses a lookaround');
  });

  it('refuses counted repetition beyond RE2\'s limits, pointing at minLength/maxLength', () => {
    expect(compileError({ type: 'string', pattern: '^.{0,5000}$' })).to.match(/pattern "\^\.\{0,5000\}\$" is not supported .*repeat count.*"maxLength"/);
    expect(compileError({ type: 'string', pattern: '^(.{999}){2}$' })).to.include('"maxLength"');
  });

  it('refuses patterns that are not ECMAScript regular expressions at all', () => {
    expect(compileError({ type: 'string', pattern: '(' })).to.match(/^pattern "\(" is not a valid ECMAScript regular expression/);
  });
});

describe('compileJsonSchema: the validator cache', () => {
  it('returns the same validator for equal schemas from different objects (each job re-reads them)', () => {
    const schema = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^T-\\d+$' }, n: { type: 'integer' } } };
    const first = compileJsonSchema(reread(schema));
    expect(compileJsonSchema(reread(schema))).to.equal(first);
    // Key order does not matter: the key is the canonical JSON.
    expect(compileJsonSchema({ properties: { n: { type: 'integer' }, id: { pattern: '^T-\\d+$', type: 'string' } }, required: ['id'], type: 'object' })).to.equal(first);
    expect(compileJsonSchema({ ...reread(schema), required: ['n'] })).not.to.equal(first);
  });

  it('holds at most SCHEMA_LIMITS.cacheEntries validators, dropping the least recently used', () => {
    const schemaNo = (i: number) => ({ type: 'object', properties: { [`field_${i}`]: { type: 'integer', minimum: i } } });
    const kept = compileJsonSchema(schemaNo(0));
    const evicted = compileJsonSchema(schemaNo(1));
    for (let i = 2; i < SCHEMA_LIMITS.cacheEntries + 50; i++) {
      compileJsonSchema(schemaNo(i));
      // Using schema 0 keeps it recent; schema 1 is never used again.
      expect(compileJsonSchema(schemaNo(0))).to.equal(kept);
    }
    const stats = jsonSchemaCacheStats();
    expect(stats.entries).to.be.at.most(SCHEMA_LIMITS.cacheEntries);
    expect(stats.chars).to.be.at.most(SCHEMA_LIMITS.cacheChars);
    expect(compileJsonSchema(schemaNo(0))).to.equal(kept);
    const recompiled = compileJsonSchema(schemaNo(1));
    expect(recompiled).not.to.equal(evicted);
    // An evicted validator keeps working for whoever still holds it.
    expect(evicted({ field_1: 0 })).to.equal(false);
    expect(recompiled({ field_1: 1 })).to.equal(true);
  });

  it('compiles different schemas that share an "$id"', () => {
    const a = compileJsonSchema({ $id: 'https://example.com/state.json', type: 'string' });
    const b = compileJsonSchema({ $id: 'https://example.com/state.json', type: 'number' });
    expect([a('x'), b('x'), b(1)]).to.deep.equal([true, false, true]);
  });

  it('keeps recursive schemas working ("$ref": "#")', () => {
    const tree = compileJsonSchema({ type: 'object', required: ['v'], properties: { v: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#' } } } });
    expect(tree({ v: 1, kids: [{ v: 2, kids: [{ v: 3 }] }] })).to.equal(true);
    expect(tree({ v: 1, kids: [{ v: 2, kids: [{}] }] })).to.equal(false);
    expect(describeAjvErrors(tree.errors)).to.equal("- at kids.0.kids.0: must have required property 'v'");
  });
});

describe('compileJsonSchema: other bounds on model-written schemas', () => {
  it('refuses schemas nested too deeply or too large, saying what to change', () => {
    let deep: object = { type: 'string' };
    for (let i = 0; i < SCHEMA_LIMITS.maxDepth; i++) deep = { type: 'object', properties: { a: deep } };
    expect(compileError(deep)).to.match(/nests deeper than 64 levels.*"\$ref"/);
    const properties: Record<string, object> = {};
    for (let i = 0; i < 2_000; i++) properties[`field_number_${i}`] = { type: 'string' };
    expect(compileError({ type: 'object', properties })).to.match(/too large \(about \d+ characters of JSON; the cap is 32768\)/);
  });

  it('stops a validation that would re-check the same value exponentially often, without throwing', () => {
    // d0 checks d1 twice, d1 checks d2 twice, ...: 2^22 (4 million) checks of the one value, over
    // ten times the budget. ajv alone runs them all and says "valid" (each level more doubles the
    // time: at 40 it would take days); the meter stops at the budget.
    const definitions: Record<string, object> = { d22: { type: 'string' } };
    for (let i = 0; i < 22; i++) definitions[`d${i}`] = { allOf: [{ $ref: `#/definitions/d${i + 1}` }, { $ref: `#/definitions/d${i + 1}` }] };
    const validate = compileJsonSchema({ definitions, $ref: '#/definitions/d0' });
    expect(validate('x')).to.equal(false);
    expect(describeAjvErrors(validate.errors)).to.match(/^- at \(top level\): validation stopped: .*more work than allowed/);
    // The budget is per validation: a cheap schema still validates after that.
    expect(compileJsonSchema({ type: 'string' })('x')).to.equal(true);
  });

  it('stops a failing validation whose errors ajv would copy quadratically, and reports ordinary failures in full', () => {
    // Each failing "$ref" makes ajv copy all errors so far (vErrors.concat): 20,000 failing items
    // are 2 * 10^8 copies, which the meter charges.
    const validate = compileJsonSchema({ type: 'array', items: { $ref: '#/definitions/name' }, definitions: { name: { type: 'string' } } });
    expect(validate(Array.from({ length: 20_000 }, (_, i) => i))).to.equal(false);
    expect(describeAjvErrors(validate.errors)).to.include('validation stopped');
    expect(validate([1, 'a', 2])).to.equal(false);
    expect(describeAjvErrors(validate.errors)).to.equal('- at 0: must be string\n- at 2: must be string');
  });

  it('keeps at most 100 errors of a failing validation (a cached validator holds them until its next call)', () => {
    const validate = compileJsonSchema({ type: 'array', items: { type: 'string' } });
    expect(validate(Array.from({ length: 5_000 }, (_, i) => i))).to.equal(false);
    expect(validate.errors).to.have.length(100);
    expect(validate.errors![0]).to.include({ instancePath: '/0', message: 'must be string' });
  });

  it('turns a $ref cycle that never descends into the data into a failed validation', () => {
    const validate = compileJsonSchema({ $ref: '#' });
    expect(validate(1)).to.equal(false);
    expect(describeAjvErrors(validate.errors)).to.include('recursed too deeply');
  });

  it('lets ordinary large values through the budget', () => {
    const validate: ValidateFunction = compileJsonSchema({
      type: 'object',
      additionalProperties: { type: 'object', required: ['id', 'name'], properties: { id: { type: 'string', pattern: '^R\\d+$' }, name: { type: 'string' }, tags: { type: 'array', items: { type: 'string' } } } },
    });
    const rooms: Record<string, object> = {};
    for (let i = 0; i < 2_000; i++) rooms[`R${i}`] = { id: `R${i}`, name: `Room ${i} with a view of the sea`, tags: ['a', 'b', 'c'] };
    expect(validate(rooms), describeAjvErrors(validate.errors)).to.equal(true);
  });

  it('checks uniqueItems by JSON equality in one pass, with ajv\'s error', async function () {
    const validate = compileJsonSchema({ type: 'array', uniqueItems: true });
    expect(validate([1, '1', true, 'true', null, [1], { a: [1] }, { a: [1, 2] }])).to.equal(true);
    expect(validate([{ a: 1, b: [2] }, 3, { b: [2], a: 1 }])).to.equal(false);
    expect(validate.errors).to.have.length(1);
    expect(validate.errors![0]).to.include({ keyword: 'uniqueItems', instancePath: '', message: 'must NOT have duplicate items (items ## 0 and 2 are identical)' });
    expect(validate.errors![0]!.params).to.deep.equal({ i: 2, j: 0 });
    // 100,000 distinct objects. ajv compares every pair (5 * 10^9 deep comparisons; 20,000 items
    // took 8.5 s here, growing with the square), which the watchdog of validateInWorker would stop.
    this.timeout(60_000);
    const many = Array.from({ length: 100_000 }, (_, i) => ({ id: i }));
    expect(await validateInWorker({ type: 'array', uniqueItems: true }, [many, [...many, { id: 7 }]])).to.deep.equal([true, false]);
    expect(compileJsonSchema({ type: 'array', uniqueItems: false })([1, 1])).to.equal(true);
  });

  it('refuses $async schemas (their validators return a Promise) and $refs into data', () => {
    expect(compileError({ $async: true, type: 'object' })).to.include('"$async" schemas are not supported');
    expect(compileError({ $ref: '#/default/x', default: { x: { type: 'string' } } })).to.include('points into "default"');
    // A property may be called "default".
    expect(compileJsonSchema({ properties: { default: { type: 'string' } }, $ref: '#/properties/default' })('x')).to.equal(true);
  });

  it('treats multipleOf with decimal steps as people mean it', () => {
    const cents = compileJsonSchema({ type: 'number', multipleOf: 0.01 });
    expect([cents(19.99), cents(0.07), cents(19.995)]).to.deep.equal([true, true, false]);
  });

  it('treats format as an annotation and still rejects invalid schemas with ajv\'s message', () => {
    expect(compileJsonSchema({ type: 'string', format: 'email' })('not an email')).to.equal(true);
    expect(compileError({ type: 'object', properties: { a: { type: 'strnig' } } })).to.match(/^schema is invalid: data\/properties\/a\/type must be equal to one of the allowed values/);
  });
});
