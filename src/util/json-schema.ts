/**
 * Compiling and running model-written JSON Schemas (tool parameter schemas, state schemas) with ajv,
 * with a bound on everything a model controls.
 *
 * A model's schema runs in pool threads (tool-call arguments, next to 64 sessions) and on a worker's
 * event loop (stage checks, next to BullMQ lock renewals), so nothing in it may cost unbounded time
 * or memory:
 *
 * - Patterns (`pattern`, `patternProperties`) run on RE2 (re2js, ajv's `code.regExp` hook), which
 *   matches in time linear in the input, not on the backtracking native RegExp: `^(a+)+$` against 40
 *   a's and a "!" takes microseconds instead of hours. A pattern RE2 cannot express (lookaround,
 *   backreference) is a compile error that names the pattern and says what to write instead; it goes
 *   back to the model through the stages' repair loops. Patterns must still be ECMAScript (`u` flag),
 *   the dialect JSON Schema specifies and the tools' consumers use; they are translated so that `.`,
 *   `\s` and the other places where the dialects differ keep their ECMAScript meaning.
 * - A schema is bounded before ajv sees it: nesting depth and size (canonical JSON characters), then
 *   pattern length and RE2 program size. ajv's compile time grows with the schema (a few ms per KB),
 *   so the size cap also caps a compile. `inlineRefs: false` keeps the generated code linear in the
 *   schema (inlining copies a `$ref` target at every use: 36 KB of schema gave 11 MB of code and
 *   2.5 s of compile).
 * - Validation is metered. Every schema object of the compiled copy gets a step keyword (inline
 *   code) that charges a meter for applying that object to one value: its keywords, the size of its
 *   `enum`/`const`/`required`, the keys of an object it loops over, the characters `min/maxLength`
 *   count, and, at a `$ref`, the errors ajv copies when the reference fails. Patterns and
 *   `uniqueItems` charge themselves. Past the budget the validation stops and fails with an error that
 *   says so. This bounds what ajv alone cannot: `$ref` graphs that re-check the same value
 *   exponentially often (`allOf: [{$ref: a}, {$ref: a}]` chains), big `anyOf` fans over big arrays,
 *   quadratic error merging. A `$ref` cycle that never descends into the value overflows the stack
 *   (quickly); that too becomes a failed validation instead of an exception.
 * - `uniqueItems` is replaced: ajv compares every pair of items with a deep equality (quadratic), this
 *   one compares canonical JSON through a Map (linear in the items' size).
 * - `$async` schemas are refused (their validator returns a Promise, which callers would read as
 *   "valid"), and so are `$ref`s into data (`enum`, `const`, `default`, `examples`), whose targets
 *   would run without steps.
 *
 * Also checked: `format` is an annotation only (no formats are registered; with `strict: false` ajv
 * ignores unknown formats, and `logger: false` stops it warning at each compile). `multipleOf` is
 * constant time, but ajv's exact test says 19.99 is no multiple of 0.01 (binary floats), so
 * `multipleOfPrecision: 9` tolerates 1e-9 of the quotient. `strict` must stay false: strict mode
 * runs each `patternProperties` pattern through the native RegExp at compile time.
 *
 * What remains (figures in docs/benchmarks.md, "Model-written schemas"): a compile takes up to
 * ~0.15-0.2 s at the size cap (once per distinct schema, then cached). The meter's units are
 * estimates: a passing validation spends the budget in 5-25 ms, but one where nearly every keyword
 * fails costs more per unit (an error object each, and the garbage collector), and the slowest case
 * found, an anyOf of 50 branches all failing on 20,000 items, stops after 75-205 ms. Because error
 * merging at a failing `$ref` is charged, a value with more than ~4,000 failures behind a `$ref` gets
 * "validation stopped" rather than its first errors. re2js keeps a lazy DFA of up to 8 MB per
 * pattern while its validator lives.
 *
 * Memory: validators are cached by content (sha256 of the canonical JSON) in an LRU bounded by
 * entries and by schema characters, so the equal schemas every job re-reads hit. ajv keeps every
 * schema it compiled (its cache is keyed by the schema object, and each instance's code scope holds
 * every compiled function, which `removeSchema` does not clear), so the compiling Ajv instance is
 * replaced every COMPILES_PER_AJV compiles; a validator does not keep its instance alive. Each
 * generated source is made unique (see uniqueSource) so that V8's compilation cache does not keep
 * the sources of schemas compiled again after eviction. A validator keeps at most MAX_KEPT_ERRORS
 * errors of its last call. At the character cap the cache holds ~8 validators of 30 KB schemas,
 * about 3 MB each (generated code and its bytecode); per thread, as each pool thread has its own.
 */
import { createHash } from 'node:crypto';
import { Ajv, Name, _, str, type CodeKeywordDefinition, type ErrorObject, type KeywordCxt, type Options, type ValidateFunction } from 'ajv';
import { RE2JS } from 're2js';
import { canonicalJson } from './canonical.js';
import { cutText } from './text.js';

export const SCHEMA_LIMITS = {
  /** Nesting of JSON objects and arrays in a schema (a schema level is usually two: `properties`, then the name). */
  maxDepth: 64,
  /** Characters of a schema's canonical JSON; the largest state schemas the stages produce are a few KB. */
  maxChars: 32_768,
  /** Characters of one `pattern` or `patternProperties` key. */
  maxPatternChars: 1_000,
  /** Instructions of a pattern's RE2 program; matching costs up to this many steps per character. */
  maxPatternProgram: 2_000,
  /** Metered units one validation may spend: 5-25 ms of passing validation, more if nearly every keyword fails (header). */
  validationBudget: 10_000_000,
  /** Compiled validators kept, and the schema characters they may add up to. */
  cacheEntries: 512,
  cacheChars: 1 << 18,
} as const;

/** Compiles after which the compiling Ajv instance is replaced, so that ajv's own retention is bounded. */
const COMPILES_PER_AJV = 64;
const STEP_KEYWORD = 'x-envfleet-step';

/** Compiles a JSON Schema (cached by content), or throws a message naming the problem. */
export function compileJsonSchema(schema: object): ValidateFunction {
  const { chars, protoKey } = measure(schema);
  // canonicalJson rebuilds objects by assignment, which turns an own "__proto__" key into a prototype
  // and drops it: such a schema is keyed by its exact JSON instead, so it cannot share another's key.
  const text = protoKey ? `raw:${JSON.stringify(schema)}` : canonicalJson(schema);
  if (text.length > SCHEMA_LIMITS.maxChars || chars > SCHEMA_LIMITS.maxChars) throw tooLarge(Math.max(text.length, chars));
  const key = createHash('sha256').update(text).digest('hex');
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key);
    cache.set(key, hit);
    return hit.validate;
  }
  const prepared = copySchema(schema) as object;
  // Throws ajv's usual "schema is invalid: ..." message; false cannot happen with `true`, but is not ignored.
  if (metaAjv.validateSchema(schema, true) !== true) throw new Error(`schema is invalid: ${metaAjv.errorsText()}`);
  const ajv = compilingAjv();
  let inner: ValidateFunction;
  try {
    inner = ajv.compile(prepared);
  } catch (err) {
    // A failed compile can leave the schema half-registered in the instance: start a new one.
    retireCompilingAjv();
    if (err instanceof RangeError && /call stack/i.test(err.message)) {
      throw new Error('the schema nests or refers to itself too deeply to compile: make every "$ref" cycle pass through "properties", "items" or the like', { cause: err });
    }
    throw err;
  }
  // Unregisters the schema's "$id" (a later schema with the same "$id" would not compile) and drops
  // ajv's cache entry; the instance's code scope still holds the function until it is replaced.
  ajv.removeSchema(prepared);
  const validate = metered(inner);
  remember(key, { validate, chars: text.length });
  return validate;
}

export function describeAjvErrors(errors: readonly ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .slice(0, 20)
    .map(e => `- at ${e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : '(top level)'}: ${e.message ?? 'invalid'}${e.params && 'additionalProperty' in e.params ? ` ("${String(e.params['additionalProperty'])}")` : ''}`)
    .join('\n');
}

/** What the validator cache holds now (for tests and benchmarks). */
export function jsonSchemaCacheStats(): { entries: number; chars: number } {
  return { entries: cache.size, chars: cachedChars };
}

// ---------------------------------------------------------------------------------------------
// The content-keyed LRU (a Map iterates in insertion order; a hit is re-inserted at the end).

interface Cached {
  readonly validate: ValidateFunction;
  readonly chars: number;
}
const cache = new Map<string, Cached>();
let cachedChars = 0;

function remember(key: string, entry: Cached): void {
  cache.set(key, entry);
  cachedChars += entry.chars;
  for (const [oldest, old] of cache) {
    if (cache.size <= SCHEMA_LIMITS.cacheEntries && cachedChars <= SCHEMA_LIMITS.cacheChars) break;
    cache.delete(oldest);
    cachedChars -= old.chars;
  }
}

// ---------------------------------------------------------------------------------------------
// Bounds checked before anything recursive (canonicalJson, ajv) touches the schema.

function tooLarge(chars: number): Error {
  return new Error(`the schema is too large (about ${chars} characters of JSON; the cap is ${SCHEMA_LIMITS.maxChars}): describe the data more compactly, e.g. share repeated parts through "definitions" and "$ref"`);
}

/** Depth and approximate JSON size, iteratively and stopping at the caps (a cyclic object stops too). */
function measure(schema: object): { chars: number; protoKey: boolean } {
  const stack: [unknown, number][] = [[schema, 1]];
  let chars = 0;
  let protoKey = false;
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    chars += 2;
    if (typeof value === 'string') chars += value.length;
    if (value === null || typeof value !== 'object') continue;
    if (depth > SCHEMA_LIMITS.maxDepth) {
      throw new Error(`the schema nests deeper than ${SCHEMA_LIMITS.maxDepth} levels of JSON objects and arrays: flatten it, or share recursive parts through "definitions" and "$ref"`);
    }
    for (const [key, child] of Object.entries(value)) {
      chars += key.length + 3;
      if (key === '__proto__') protoKey = true;
      stack.push([child, depth + 1]);
    }
    if (chars > SCHEMA_LIMITS.maxChars) throw tooLarge(chars);
  }
  return { chars, protoKey };
}

// ---------------------------------------------------------------------------------------------
// Instrumenting a copy of the schema: a step keyword in every schema object, and checks on `$ref`
// and `$async`. Which values are schemas follows the keywords: the values of these hold data, never
// schemas; the values of MAP_KEYWORDS are objects whose values are schemas; every other value is
// treated as a schema (or array of schemas), which is harmless for unknown keywords (ajv ignores
// them, and a step keyword in an object that is never validated never runs).

const DATA_KEYWORDS = new Set(['enum', 'const', 'default', 'examples']);
const MAP_KEYWORDS = new Set(['properties', 'patternProperties', 'definitions', '$defs', 'dependencies', 'dependentSchemas']);

function copySchema(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(copySchema);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    if (key === '$async' && child === true) throw new Error('"$async" schemas are not supported: remove "$async"');
    if (key === '$ref' && typeof child === 'string') checkRef(child);
    let copy: unknown;
    if (DATA_KEYWORDS.has(key)) copy = child;
    else if (MAP_KEYWORDS.has(key) && child !== null && typeof child === 'object' && !Array.isArray(child)) {
      const map: Record<string, unknown> = {};
      for (const [name, sub] of Object.entries(child as Record<string, unknown>)) setOwn(map, name, copySchema(sub));
      copy = map;
    } else copy = copySchema(child);
    setOwn(out, key, copy);
  }
  // An empty object is always valid and ajv skips it; a step there would only add work.
  if (Object.keys(out).length > 0) out[STEP_KEYWORD] = true;
  return out;
}

/** Assignment would turn a "__proto__" key into the object's prototype. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

/** A `$ref` whose JSON pointer goes through a data keyword would reach objects without step keywords. */
function checkRef(ref: string): void {
  const hash = ref.indexOf('#');
  const fragment = hash < 0 ? '' : ref.slice(hash + 1);
  if (!fragment.startsWith('/')) return;
  let inMap = false;
  for (const raw of fragment.slice(1).split('/')) {
    let segment = raw;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      // ajv will report the malformed reference.
    }
    segment = segment.replaceAll('~1', '/').replaceAll('~0', '~');
    if (inMap) {
      inMap = false;
      continue;
    }
    if (DATA_KEYWORDS.has(segment)) {
      throw new Error(`"$ref": "${ref}" points into "${segment}", which holds data, not a schema: put the schema under "definitions" and point there`);
    }
    inMap = MAP_KEYWORDS.has(segment);
  }
}

// ---------------------------------------------------------------------------------------------
// The validation meter. It is armed only while a validator from this module runs (single-threaded:
// every pool thread has its own copy of this module); unarmed, charges never throw, so the
// meta-schema validation, which uses the same `uniqueItems`, is unaffected.

class ValidationStopped extends Error {}

const meter = {
  left: Number.POSITIVE_INFINITY,
  charge(units: number): void {
    if ((meter.left -= units) < 0) throw new ValidationStopped('budget');
  },
};

/**
 * Keywords whose own work (not counted by the steps of the subschemas they apply) grows with the
 * value: `additionalProperties: false` and `min/maxProperties` go over every key of an object,
 * `min/maxLength` over every character of a string. Arrays need no charge of their own: `items` and
 * `contains` charge through their subschemas' steps, `uniqueItems` and patterns charge themselves.
 */
const KEY_KEYWORDS = ['additionalProperties', 'minProperties', 'maxProperties'];
/** ajv's name for the error count of the validate function being generated (`names.errors` in ajv/dist/compile/names.js). */
const ERRORS_SO_FAR = new Name('errors');
const LENGTH_KEYWORDS = ['minLength', 'maxLength'];

/**
 * Units of a keyword that can fail. With allErrors, a failing keyword allocates an error object
 * (about 0.3 µs with its message), which is what makes an error-heavy validation (every branch of a
 * big anyOf failing on every item) slow; a passing keyword costs a few ns. Charging every keyword as
 * if it failed keeps the meter an upper bound.
 */
const KEYWORD_UNITS = 32;
/** Keys that are not checked against the value. */
const ANNOTATIONS = new Set(['title', 'description', '$comment', 'examples', 'default', '$id', '$schema', 'definitions', '$defs', 'readOnly', 'writeOnly', 'deprecated', STEP_KEYWORD]);

/** Units of a schema object applied to one value, apart from what grows with the value. */
function staticWeight(schema: Record<string, unknown>): number {
  let weight = 1;
  for (const keyword of Object.keys(schema)) if (!ANNOTATIONS.has(keyword)) weight += KEYWORD_UNITS;
  // One error per missing property; enum and const compare against all of their content.
  if (Array.isArray(schema['required'])) weight += KEYWORD_UNITS * schema['required'].length;
  for (const keyword of ['enum', 'const']) {
    if (schema[keyword] !== undefined) weight += JSON.stringify(schema[keyword]).length;
  }
  for (const keyword of ['properties', 'patternProperties', 'dependencies']) {
    const value = schema[keyword];
    if (value && typeof value === 'object') weight += Object.keys(value).length;
  }
  return weight;
}

/**
 * The step keyword: inline code (a decrement and a compare for most schema objects), because it
 * runs for every schema object applied to every value; a function call there cost 4-6 times the
 * validation itself.
 */
const stepKeyword: CodeKeywordDefinition = {
  keyword: STEP_KEYWORD,
  schemaType: 'boolean',
  code(cxt: KeywordCxt): void {
    const { gen, data, parentSchema } = cxt;
    const m = gen.scopeValue('obj', { ref: meter });
    gen.code(_`${m}.left -= ${staticWeight(parentSchema)};`);
    if (KEY_KEYWORDS.some(k => parentSchema[k] !== undefined)) {
      gen.code(_`if (${data} && typeof ${data} == "object" && !Array.isArray(${data})) for (const k in ${data}) ${m}.left -= ${KEYWORD_UNITS};`);
    }
    if (LENGTH_KEYWORDS.some(k => parentSchema[k] !== undefined)) {
      gen.code(_`if (typeof ${data} == "string") ${m}.left -= ${data}.length;`);
    }
    if (typeof parentSchema['$ref'] === 'string') {
      // When a referenced schema fails, ajv merges its errors with `vErrors.concat(...)`, copying
      // every error the calling function holds so far (its local `errors` counts them): without this
      // charge, 40,000 array items failing through a "$ref" took 5 s (quadratic) within the budget.
      gen.code(_`${m}.left -= ${ERRORS_SO_FAR};`);
    }
    gen.code(_`if (${m}.left < 0) ${m}.charge(0);`);
  },
};

/** Errors a validator keeps from a call (describeAjvErrors shows 20). */
const MAX_KEPT_ERRORS = 100;

/** Runs a compiled validator under the budget; what stops it becomes a failed validation. */
function metered(inner: ValidateFunction): ValidateFunction {
  const validate = function (this: unknown, data: unknown): boolean {
    const armed = meter.left;
    meter.left = SCHEMA_LIMITS.validationBudget;
    try {
      const valid = inner.call(this, data);
      // A validator keeps its last errors until its next call, and cached validators live long: a
      // failing value can leave hundreds of thousands of error objects. Callers show the first 20.
      validate.errors = inner.errors && inner.errors.length > MAX_KEPT_ERRORS ? inner.errors.slice(0, MAX_KEPT_ERRORS) : (inner.errors ?? null);
      return valid;
    } catch (err) {
      const message = stoppedBecause(err);
      if (message === null) throw err;
      validate.errors = [{ instancePath: '', schemaPath: '#', keyword: 'budget', params: {}, message }];
      return false;
    } finally {
      meter.left = armed;
      inner.errors = null;
    }
  } as ValidateFunction;
  validate.errors = null;
  validate.schema = inner.schema;
  validate.schemaEnv = inner.schemaEnv;
  return validate;
}

function stoppedBecause(err: unknown): string | null {
  if (err instanceof ValidationStopped) {
    return `validation stopped: checking this value against the schema takes more work than allowed (${SCHEMA_LIMITS.validationBudget} units): the value is very large, or the schema checks the same value many times over (e.g. chains of "$ref" in "allOf"/"anyOf"), or a pattern is heavy for long strings`;
  }
  if (err instanceof RangeError && /call stack/i.test(err.message)) {
    return 'validation stopped: the schema recursed too deeply (a "$ref" cycle that does not descend into the value, or a value nested very deeply)';
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// `uniqueItems` in linear time: canonical JSON of each item into a Map. Canonical JSON equality is
// JSON Schema's equality for JSON values (key order ignored, 1 and 1.0 equal, -0 and 0 equal).

function findDuplicate(items: unknown[]): [number, number] | null {
  const seen = new Map<string, number>();
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    const key = item !== null && typeof item === 'object' ? canonicalJson(item) : `${typeof item}:${String(item)}`;
    // Charged item by item, so that a huge array stops part way.
    meter.charge(key.length + KEYWORD_UNITS);
    const j = seen.get(key);
    if (j !== undefined) return [j, i];
    seen.set(key, i);
  }
  return null;
}

const uniqueItemsKeyword: CodeKeywordDefinition = {
  keyword: 'uniqueItems',
  type: 'array',
  schemaType: 'boolean',
  // ajv's own wording and params, so errors read the same as before.
  error: {
    message: ({ params }) => str`must NOT have duplicate items (items ## ${params['j']} and ${params['i']} are identical)`,
    params: ({ params }) => _`{i: ${params['i']}, j: ${params['j']}}`,
  },
  code(cxt: KeywordCxt): void {
    const { gen, data } = cxt;
    if (cxt.schema !== true) return;
    const fn = gen.scopeValue('func', { ref: findDuplicate });
    const dup = gen.const('dup', _`${fn}(${data})`);
    cxt.setParams({ i: _`${dup}[1]`, j: _`${dup}[0]` });
    cxt.fail(_`${dup} !== null`);
  },
};

// ---------------------------------------------------------------------------------------------
// Patterns on RE2.

/** What ajv calls for `pattern` and `patternProperties` (`code.regExp`); `code` names it in generated standalone code. */
const re2Engine = Object.assign((pattern: string, flags: string) => new SchemaPattern(pattern, flags), { code: 'envfleetRe2' });

class SchemaPattern {
  private readonly re: RE2JS;
  /**
   * Units per character. RE2's DFA takes ~20 ns a character, but when its state cache overflows it
   * falls back to the NFA, which steps through up to the whole program for every character (~20 ns
   * per instruction); the charge assumes the worst. A call costs ~0.6 µs before the first character.
   */
  private readonly perChar: number;

  constructor(readonly source: string, readonly flags: string) {
    this.re = compilePattern(source, flags);
    this.perChar = 4 * this.re.programSize();
  }

  test(s: string): boolean {
    meter.charge(128 + s.length * this.perChar);
    return this.re.test(s);
  }

  /** ajv keys its table of an instance's patterns by this string: it must tell patterns apart. */
  toString(): string {
    return `/${this.source}/${this.flags}`;
  }
}

function compilePattern(pattern: string, flags: string): RE2JS {
  const named = `pattern "${pattern.length > 120 ? `${cutText(pattern, 120)}…` : pattern}"`;
  if (pattern.length > SCHEMA_LIMITS.maxPatternChars) {
    throw new Error(`${named} is ${pattern.length} characters long; the cap is ${SCHEMA_LIMITS.maxPatternChars}: use a shorter pattern, or "enum", "minLength" and "maxLength"`);
  }
  try {
    // Only parsed, never run: the native engine checks the ECMAScript syntax.
    new RegExp(pattern, flags);
  } catch (err) {
    throw new Error(`${named} is not a valid ECMAScript regular expression: ${(err as Error).message}`, { cause: err });
  }
  const translated = toRe2Syntax(pattern, named);
  let re: RE2JS;
  try {
    re = RE2JS.compile(translated);
  } catch (err) {
    const reason = (err as Error).message.replace(/^error parsing regexp: /, '');
    const hint = /repeat count/.test(reason)
      ? 'repetition counts above 1000 are not supported: bound lengths with "minLength"/"maxLength" instead'
      : /character class range|escape/.test(reason)
        ? 'use a general category (\\p{L}, \\p{Lu}, \\p{N}...) or a script name (\\p{Greek}), or list the characters'
        : 'simplify the pattern';
    throw new Error(`${named} is not supported by the linear-time regular expression engine (RE2): ${reason}; ${hint}`, { cause: err });
  }
  if (re.programSize() > SCHEMA_LIMITS.maxPatternProgram) {
    throw new Error(`${named} is too complex (${re.programSize()} RE2 instructions; the cap is ${SCHEMA_LIMITS.maxPatternProgram}): bound lengths with "minLength"/"maxLength" rather than counted repetition, and simplify`);
  }
  return re;
}

/** ECMAScript's \s: WhiteSpace and LineTerminator. RE2's \s is ASCII only. */
const JS_SPACE_RANGES: readonly (readonly [number, number])[] = [
  [0x09, 0x0d], [0x20, 0x20], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a], [0x2028, 0x2029],
  [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000], [0xfeff, 0xfeff],
];
const hex = (cp: number): string => `\\x{${cp.toString(16).toUpperCase()}}`;
const rangeText = ([lo, hi]: readonly [number, number]): string => (lo === hi ? hex(lo) : `${hex(lo)}-${hex(hi)}`);
function complement(ranges: readonly (readonly [number, number])[]): [number, number][] {
  const out: [number, number][] = [];
  let next = 0;
  for (const [lo, hi] of ranges) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= 0x10ffff) out.push([next, 0x10ffff]);
  return out;
}
const SPACE = JS_SPACE_RANGES.map(rangeText).join('');
const NOT_SPACE = complement(JS_SPACE_RANGES).map(rangeText).join('');
/** ECMAScript's `.` without the `s` flag: anything but a line terminator (RE2's excludes only \n). */
const DOT = '[^\\n\\r\\x{2028}\\x{2029}]';
const ASCII = '\\x{0}-\\x{7F}';
const NOT_ASCII = '\\x{80}-\\x{10FFFF}';

/** ECMAScript long names of general categories (RE2 knows the short ones). */
const GENERAL_CATEGORIES: Record<string, string> = {
  Cased_Letter: 'LC', Close_Punctuation: 'Pe', Connector_Punctuation: 'Pc', Control: 'Cc', cntrl: 'Cc',
  Currency_Symbol: 'Sc', Dash_Punctuation: 'Pd', Decimal_Number: 'Nd', digit: 'Nd', Enclosing_Mark: 'Me',
  Final_Punctuation: 'Pf', Format: 'Cf', Initial_Punctuation: 'Pi', Letter: 'L', Letter_Number: 'Nl',
  Line_Separator: 'Zl', Lowercase_Letter: 'Ll', Mark: 'M', Combining_Mark: 'M', Math_Symbol: 'Sm',
  Modifier_Letter: 'Lm', Modifier_Symbol: 'Sk', Nonspacing_Mark: 'Mn', Number: 'N', Open_Punctuation: 'Ps',
  Other: 'C', Other_Letter: 'Lo', Other_Number: 'No', Other_Punctuation: 'Po', Other_Symbol: 'So',
  Paragraph_Separator: 'Zp', Private_Use: 'Co', Punctuation: 'P', punct: 'P', Separator: 'Z',
  Space_Separator: 'Zs', Spacing_Mark: 'Mc', Surrogate: 'Cs', Symbol: 'S', Titlecase_Letter: 'Lt',
  Unassigned: 'Cn', Uppercase_Letter: 'Lu',
};

/**
 * Rewrites an ECMAScript pattern (already parsed by the native engine with the `u` flag, so well
 * formed) into RE2 syntax with the same meaning for `test`: escapes RE2 spells differently, `.` and
 * `\s`/`\S` with ECMAScript's sets, `[]` and `[^]`, named groups as plain groups (a test needs no
 * captures). Lookarounds and backreferences have no linear-time equivalent and are refused.
 */
function toRe2Syntax(pattern: string, named: string): string {
  let out = '';
  let inClass = false;
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '\\') {
      const [text, next] = translateEscape(pattern, i, inClass, named);
      out += text;
      i = next;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      // RE2 reads "[:" inside a class as the start of a POSIX class; ECMAScript has none.
      if (c === '[') {
        out += '\\[';
        i += 1;
        continue;
      }
    } else if (c === '[') {
      if (pattern.startsWith('[]', i)) {
        out += `[^${ASCII}${NOT_ASCII}]`;
        i += 2;
        continue;
      }
      if (pattern.startsWith('[^]', i)) {
        out += `[${ASCII}${NOT_ASCII}]`;
        i += 3;
        continue;
      }
      inClass = true;
      out += pattern[i + 1] === '^' ? '[^' : '[';
      i += pattern[i + 1] === '^' ? 2 : 1;
      continue;
    } else if (c === '.') {
      out += DOT;
      i += 1;
      continue;
    } else if (c === '(' && pattern[i + 1] === '?') {
      const kind = pattern.slice(i + 2, i + 4);
      if (kind.startsWith('=') || kind.startsWith('!') || kind === '<=' || kind === '<!') {
        throw new Error(`${named} uses a lookaround ("(?=", "(?!", "(?<=" or "(?<!"), which the linear-time regular expression engine (RE2) does not support: rewrite it without, e.g. state a forbidden form as "not": {"pattern": ...} next to the pattern, or list the allowed alternatives`);
      }
      if (kind.startsWith('<')) {
        out += '(?:';
        i = pattern.indexOf('>', i) + 1;
        continue;
      }
    }
    const cp = pattern.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    out += ch;
    i += ch.length;
  }
  return out;
}

function translateEscape(pattern: string, i: number, inClass: boolean, named: string): [string, number] {
  const c = pattern[i + 1] ?? '';
  switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 'B': case 'f': case 'n': case 'r': case 't': case 'v':
      return [`\\${c}`, i + 2];
    case 'b':
      return [inClass ? hex(8) : '\\b', i + 2];
    case 's':
      return [inClass ? SPACE : `[${SPACE}]`, i + 2];
    case 'S':
      return [inClass ? NOT_SPACE : `[^${SPACE}]`, i + 2];
    case 'c':
      return [hex(pattern.charCodeAt(i + 2) % 32), i + 3];
    case '0':
      return [hex(0), i + 2];
    case 'x':
      return [hex(parseInt(pattern.slice(i + 2, i + 4), 16)), i + 4];
    case 'u': {
      const [cp, next] = readUnicodeEscape(pattern, i);
      // A surrogate pair written as two escapes is one code point under the `u` flag.
      if (cp >= 0xd800 && cp <= 0xdbff && pattern.startsWith('\\u', next) && pattern[next + 2] !== '{') {
        const [low, after] = readUnicodeEscape(pattern, next);
        if (low >= 0xdc00 && low <= 0xdfff) return [hex((cp - 0xd800) * 0x400 + (low - 0xdc00) + 0x10000), after];
      }
      return [hex(cp), next];
    }
    case 'p': case 'P': {
      const end = pattern.indexOf('}', i);
      return [translateProperty(pattern.slice(i + 3, end), c === 'P', inClass, named), end + 1];
    }
    case 'k':
    case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
      throw new Error(`${named} uses a backreference ("\\1" or "\\k<name>"), which the linear-time regular expression engine (RE2) does not support: rewrite it without (e.g. spell out the alternatives)`);
    default:
      // An escaped syntax character, "/" or "-": RE2 accepts a backslash before any punctuation.
      return [`\\${c}`, i + 2];
  }
}

function readUnicodeEscape(pattern: string, i: number): [number, number] {
  if (pattern[i + 2] === '{') {
    const end = pattern.indexOf('}', i);
    return [parseInt(pattern.slice(i + 3, end), 16), end + 1];
  }
  return [parseInt(pattern.slice(i + 2, i + 6), 16), i + 6];
}

function translateProperty(body: string, negated: boolean, inClass: boolean, named: string): string {
  const eq = body.indexOf('=');
  const [name, value] = eq < 0 ? [null, body] : [body.slice(0, eq), body.slice(eq + 1)];
  if (name === 'Script_Extensions' || name === 'scx') {
    throw new Error(`${named} uses \\p{${body}}, which RE2 does not support: use \\p{Script=...} or the script name, e.g. \\p{Greek}`);
  }
  if (name === null && value === 'ASCII') {
    const set = negated ? NOT_ASCII : ASCII;
    return inClass ? set : `[${set}]`;
  }
  const re2Name = name === 'Script' || name === 'sc' ? value : (Object.hasOwn(GENERAL_CATEGORIES, value) ? GENERAL_CATEGORIES[value]! : value);
  return `\\${negated ? 'P' : 'p'}{${re2Name}}`;
}

// ---------------------------------------------------------------------------------------------
// The Ajv instances.

let sources = 0;
/**
 * Makes the source of every compiled function unique. ajv compiles with `new Function`, and V8 keeps
 * the sources it has seen more than once in its compilation cache: a schema evicted from the LRU and
 * compiled again in a fresh Ajv instance gives the same source again, and those entries kept growing
 * (4 MB per 16,000 jobs cycling through 600 schemas, without end; flat with `--no-compilation-cache`,
 * and flat with this). A source never seen before is dropped with its function.
 */
function uniqueSource(source: string): string {
  sources += 1;
  return `${source}\n// ${sources}`;
}

const AJV_OPTIONS: Options = {
  allErrors: true,
  // Must stay false: see the header (strict mode runs patterns natively at compile time).
  strict: false,
  logger: false,
  inlineRefs: false,
  multipleOfPrecision: 9,
  code: { regExp: re2Engine, process: uniqueSource },
};

function newAjv(options: Options): Ajv {
  const ajv = new Ajv({ ...AJV_OPTIONS, ...options });
  ajv.removeKeyword('uniqueItems');
  ajv.addKeyword(uniqueItemsKeyword);
  return ajv;
}

/**
 * Checks schemas against the draft-07 meta-schema. It compiles only meta-schemas (once), never a
 * model's schema, so it does not grow.
 */
const metaAjv = newAjv({});

/** Compiles; the meta-schema check is done by metaAjv, so this instance never compiles one. */
function compilingAjv(): Ajv {
  if (compilesLeft <= 0) {
    compiler = newAjv({ validateSchema: false }).addKeyword(stepKeyword);
    compilesLeft = COMPILES_PER_AJV;
  }
  compilesLeft -= 1;
  return compiler;
}
function retireCompilingAjv(): void {
  compilesLeft = 0;
}
let compiler = newAjv({ validateSchema: false }).addKeyword(stepKeyword);
let compilesLeft = COMPILES_PER_AJV;
