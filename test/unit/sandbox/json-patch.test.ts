import { expect } from 'chai';
import { finalStatePatch, InitialIndex } from '../../../src/sandbox/json-patch.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import { createLocalSandboxRunner } from '../../../src/sandbox/runner.js';

/** What the harness's prepareFinalPatch does, in V8: the patch applied to a parse of the initial text. */
function applied(initialText: string, patch: string): unknown {
  let root = JSON.parse(initialText) as unknown;
  for (const [path, value] of JSON.parse(patch) as [(string | number)[], unknown][]) {
    if (path.length === 0) {
      root = value;
      continue;
    }
    let o = root as Record<string | number, unknown>;
    for (const key of path.slice(0, -1)) o = o[key] as Record<string | number, unknown>;
    Object.defineProperty(o, path[path.length - 1]!, { value, writable: true, enumerable: true, configurable: true });
  }
  return root;
}

/**
 * Key order matters: two values are the same when their JSON texts are. The patch must also be the one a scan of
 * every container whole gives (`scanShared`), with and without a template's index of the initial text (kept
 * across the finals of one initial state, as a template keeps it across its batches).
 */
function expectPatched(initialText: string, finalText: string, index?: InitialIndex): string | null {
  const patch = finalStatePatch(initialText, finalText);
  expect(patch, 'scanning only what differs').to.equal(finalStatePatch(initialText, finalText, undefined, true));
  if (index) expect(finalStatePatch(initialText, finalText, index), 'with the index').to.equal(patch);
  if (patch !== null) expect(JSON.stringify(applied(initialText, patch))).to.equal(JSON.stringify(JSON.parse(finalText)));
  return patch;
}

/** A small deterministic generator (mulberry32), so a failure names its seed. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['room', 'Zoë', '客房', '🏨 suite', 'a"b', 'back\\slash', '{brace}', '[bracket]', 'new\nline', '__proto__', 'constructor', '\u0000nul', '😀😀', 'ümlaut', ''];

function value(rnd: () => number, depth: number): unknown {
  const pick = rnd();
  if (depth <= 0 || pick < 0.35) {
    const kind = Math.floor(rnd() * 6);
    if (kind === 0) return WORDS[Math.floor(rnd() * WORDS.length)]!;
    if (kind === 1) return Math.floor(rnd() * 1000) - 500;
    if (kind === 2) return rnd() * 1e6;
    if (kind === 3) return rnd() < 0.5;
    if (kind === 4) return null;
    return `${WORDS[Math.floor(rnd() * WORDS.length)]}-${Math.floor(rnd() * 100)}`;
  }
  if (pick < 0.6) return Array.from({ length: Math.floor(rnd() * 5) }, () => value(rnd, depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(rnd() * 6); i > 0; i -= 1) Object.defineProperty(o, rnd() < 0.5 ? WORDS[Math.floor(rnd() * WORDS.length)]! : `k${Math.floor(rnd() * 20)}`, { value: value(rnd, depth - 1), enumerable: true, writable: true, configurable: true });
  return o;
}

/** One random change somewhere in the value: a new value, a key added, removed or moved to the end, an element added. */
function mutate(root: unknown, rnd: () => number): unknown {
  const containers: (Record<string, unknown> | unknown[])[] = [];
  const visit = (v: unknown) => {
    if (v !== null && typeof v === 'object') {
      containers.push(v as Record<string, unknown>);
      for (const child of Object.values(v)) visit(child);
    }
  };
  visit(root);
  if (!containers.length) return value(rnd, 2);
  const c = containers[Math.floor(rnd() * containers.length)]!;
  const kind = Math.floor(rnd() * 4);
  if (Array.isArray(c)) {
    if (kind === 0 || c.length === 0) c.push(value(rnd, 1));
    else c[Math.floor(rnd() * c.length)] = value(rnd, 1);
    return root;
  }
  const keys = Object.keys(c);
  const key = keys[Math.floor(rnd() * keys.length)];
  const set = (k: string, v: unknown) => Object.defineProperty(c, k, { value: v, enumerable: true, writable: true, configurable: true });
  if (kind === 0 || key === undefined) set(`new-${Math.floor(rnd() * 5)}`, value(rnd, 1));
  else if (kind === 1) delete c[key];
  else if (kind === 2) {
    const v = c[key];
    delete c[key];
    set(key, v);
  } else set(key, value(rnd, 1));
  return root;
}

describe('finalStatePatch: the final state as a patch on the initial one', () => {
  it('gives the parse of the final text, key order included, for random states and changes (multi-byte text, quotes, braces in strings, __proto__ keys, pretty-printed initial text)', () => {
    let patched = 0;
    for (let seed = 1; seed <= 2_000; seed += 1) {
      const rnd = random(seed);
      const initial = { records: value(rnd, 4), list: value(rnd, 3), other: value(rnd, 3) };
      const initialText = seed % 3 === 0 ? JSON.stringify(initial, null, seed % 2 ? 2 : '\t') : JSON.stringify(initial);
      // Three finals on one initial text, one index for them all (a template's batches).
      const index = new InitialIndex(initialText);
      for (let round = 0; round < 3; round += 1) {
        let final = JSON.parse(JSON.stringify(initial)) as unknown;
        for (let n = 1 + Math.floor(rnd() * 3); n > 0; n -= 1) final = mutate(final, rnd);
        try {
          if (expectPatched(initialText, JSON.stringify(final), index) !== null && round === 0) patched += 1;
        } catch (err) {
          throw new Error(`seed ${seed}, final ${round}: ${(err as Error).message}`, { cause: err });
        }
      }
    }
    // Most changes are small against the whole state: the patch is the usual case, not the fallback.
    expect(patched).to.be.greaterThan(1_000);
  });

  it('reads the final text only where it differs, and still gives the parse where the shared ends mislead (a value split in two, a member added before equal ones, escapes)', () => {
    const cases: Array<[string, string]> = [
      ['{"a":[1,2]}', '{"a":[1],"b":[2]}'],
      ['{"a":[1],"b":[2]}', '{"a":[1,2]}'],
      ['{"x":{"k":[1]},"y":1,"pad":"' + 'p'.repeat(40) + '"}', '{"x":{"k":[1]},"z":{"k":[1]},"y":1,"pad":"' + 'p'.repeat(40) + '"}'],
      ['{"x":{"k":[1]},"z":{"k":[1]},"y":1,"pad":"' + 'p'.repeat(40) + '"}', '{"x":{"k":[1]},"y":1,"pad":"' + 'p'.repeat(40) + '"}'],
      ['{"s":"a\\"b","t":{"u":"}{"},"pad":"' + 'q'.repeat(40) + '"}', '{"s":"a\\"c","t":{"u":"}{"},"pad":"' + 'q'.repeat(40) + '"}'],
      ['{"s":"a\\"b","t":{"u":"}{"},"pad":"' + 'q'.repeat(40) + '"}', '{"s":"a\\"b","t":{"u":"]["},"pad":"' + 'q'.repeat(40) + '"}'],
      ['{"g":{"G1":{"n":"Zoë 😀","b":1},"G2":{"n":"山田","b":2}},"r":[{"id":1},{"id":2}]}', '{"g":{"G1":{"n":"Zoë 😀","b":1},"G2":{"n":"山田","b":3}},"r":[{"id":1},{"id":2}]}'],
      ['{"g":{"G1":{"n":"Zoë 😀","b":1},"G2":{"n":"山田","b":2}},"r":[{"id":1},{"id":2}]}', '{"g":{"G1":{"n":"Zoë 😁","b":1},"G2":{"n":"山田","b":2}},"r":[{"id":1},{"id":2},{"id":3}]}'],
      ['[[[[1]]],[[[2]]]]', '[[[[1]]],[[[3]]]]'],
      ['[[[[1]]],[[[2]]]]', '[[[[1],[2]]]]'],
      ['{"a":{"a":{"a":{"a":1}}},"b":2}', '{"a":{"a":{"a":{"a":1},"b":2}}}'],
    ];
    for (const [initialText, finalText] of cases) {
      const index = new InitialIndex(initialText);
      const patch = expectPatched(initialText, finalText, index);
      expect(expectPatched(initialText, finalText, index), `${initialText} → ${finalText}, again`).to.equal(patch);
    }
    // An index of another text is not used.
    const other = new InitialIndex('{"a":[9,9]}');
    expect(finalStatePatch('{"a":[1,2],"b":0}', '{"a":[1,3],"b":0}', other)).to.equal(finalStatePatch('{"a":[1,2],"b":0}', '{"a":[1,3],"b":0}', undefined, true));
  });

  it('patches only what changed', () => {
    const initial = { guests: { G1: { name: 'Zoë', balance: 10 }, G2: { name: '客房', balance: 0 } }, rooms: [1, 2, 3], log: 'x'.repeat(500) };
    const final = { guests: { G1: { name: 'Zoë', balance: 0 }, G2: { name: '客房', balance: 0 } }, rooms: [1, 2, 3], log: 'x'.repeat(500) };
    expect(expectPatched(JSON.stringify(initial), JSON.stringify(final))).to.equal('[[["guests","G1","balance"],0]]');
    expect(finalStatePatch(JSON.stringify(initial), JSON.stringify(initial))).to.equal('[]');
    // A key added: the object is replaced whole (a parse puts a new key last; so does this).
    const added = { ...initial, guests: { ...initial.guests, G3: { name: '🏨', balance: 1 } } };
    expect(expectPatched(JSON.stringify(initial), JSON.stringify(added))).to.equal(`[[["guests"],${JSON.stringify(added.guests)}]]`);
  });

  it('replaces an object whole when a key is written twice or escaped differently', () => {
    // The parse keeps the last of two equal keys, so a patch of the first would not be the parse.
    expectPatched('{"a":{"x":1,"x":2},"pad":"' + 'p'.repeat(100) + '"}', '{"a":{"x":5,"x":2},"pad":"' + 'p'.repeat(100) + '"}');
    expect(finalStatePatch('{"a":{"x":1,"x":2},"pad":"' + 'p'.repeat(100) + '"}', '{"a":{"x":5,"x":2},"pad":"' + 'p'.repeat(100) + '"}')).to.equal('[[["a"],{"x":5,"x":2}]]');
    expectPatched('{"a":{"\\u0078":1,"y":2},"pad":"' + 'p'.repeat(100) + '"}', '{"a":{"x":1,"y":3},"pad":"' + 'p'.repeat(100) + '"}');
    // The same key twice, written two ways in both texts: a parse keeps the last, so the object is replaced whole.
    const twice = (first: number) => `{"a":{"a":${first},"\\u0061":2},"pad":"${'p'.repeat(100)}"}`;
    expect(finalStatePatch(twice(1), twice(3))).to.equal(`[[["a"],{"a":3,"\\u0061":2}]]`);
    expectPatched(twice(1), twice(3));
  });

  it('keeps what it sends under half the final text, paths included, and parses whole what is too deep to scan', () => {
    // Long keys on the path of many small changes: the paths alone would be many times the text.
    const zeros = Array.from({ length: 1_000 }, () => 0);
    const initial = Object.fromEntries(Array.from({ length: 3 }, (_, i) => [`${'k'.repeat(200)}${i}`, { ['q'.repeat(200)]: zeros }]));
    const final = JSON.parse(JSON.stringify(initial)) as Record<string, Record<string, number[]>>;
    for (const inner of Object.values(final)) for (const list of Object.values(inner)) for (let i = 0; i < list.length; i += 2) list[i] = 1;
    const finalText = JSON.stringify(final);
    const patch = expectPatched(JSON.stringify(initial), finalText);
    expect(patch === null || patch.length <= finalText.length / 2, `patch of ${patch?.length} characters for a final text of ${finalText.length}`).to.equal(true);
    // 5,000 levels deep (a state an environment may build): no stack overflow, no quadratic scan; the whole parse instead.
    const deep = (leaf: number) => `${'{"a":'.repeat(5_000)}${leaf}${'}'.repeat(5_000)}`;
    expect(finalStatePatch(deep(1), deep(2))).to.equal(null);
    const shallow = (leaf: number) => `{"pad":"${'p'.repeat(200)}",${'"a":{'.repeat(10)}"v":${leaf}${'}'.repeat(10)}}`;
    expect(expectPatched(shallow(1), shallow(2))).to.not.equal(null);
  });

  it('declines when a patch would not save a parse, or a text is not JSON it can read', () => {
    expect(finalStatePatch('{"a":1}', '[1]')).to.equal(null);
    expect(finalStatePatch(`{"a":"${'x'.repeat(40)}","b":1}`, `{"a":"${'y'.repeat(40)}","b":1}`)).to.equal(null); // more than half the text
    expect(finalStatePatch('{"a":1', '{"a":2}')).to.equal(null);
    expect(finalStatePatch('{"a":"unterminated}', '{"a":2}')).to.equal(null);
    expect(finalStatePatch('{"a":1} trailing', '{"a":2}')).to.equal(null);
    expect(finalStatePatch('', '{"a":2}')).to.equal(null);
  });
});

describe('checks on a patched final state (QuickJS)', function () {
  this.timeout(20_000);
  const runner = createLocalSandboxRunner();
  const limits = { ...DEFAULT_SANDBOX_LIMITS, checkDeadlineMs: 500 };

  it('passes a check on a state whose changes are many and whose keys are long, as the whole parse did (no patch larger than the state)', async () => {
    const numbers = Array.from({ length: 20_000 }, () => 0);
    const initialState = { ['k'.repeat(100)]: { ['q'.repeat(100)]: numbers } };
    const finalState = JSON.parse(JSON.stringify(initialState)) as Record<string, Record<string, number[]>>;
    const list = Object.values(Object.values(finalState)[0]!)[0]!;
    for (let i = 0; i < list.length; i += 2) list[i] = 1;
    const check = { item: 'half are ones', check: 'function check(f) { const l = Object.values(Object.values(f)[0])[0]; return l.length === 20000 && l.filter(x => x === 1).length === 10000; }' };
    for (let batch = 0; batch < 2; batch += 1) {
      const result = await runner.checks({ checks: [check, check], finalState, initialState, limits });
      expect(result.results.map(r => [r.passed, r.errorCode ?? null]), `batch ${batch}`).to.deep.equal([
        [true, null],
        [true, null],
      ]);
    }
  });

  it('hands each check exactly the parse of the final state, batch after batch, whatever a check did to it before', async () => {
    const initialState = {
      guests: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`G${i}`, { name: i % 2 ? 'Zoë 客房' : '🏨 suite', balance: i, tags: ['a', 'b'] }])),
      ['__proto__']: { kept: true },
      rooms: [3, 1, 2],
    };
    const initial = JSON.parse(JSON.stringify(initialState)) as Record<string, unknown>;
    for (let n = 0; n < 4; n += 1) {
      const final = JSON.parse(JSON.stringify(initial)) as { guests: Record<string, { balance: number; tags: string[] }>; rooms: number[] };
      final.guests[`G${n}`]!.balance = 1000 + n;
      final.guests[`G${n + 1}`]!.tags.push(`t${n} 😀`);
      if (n === 2) delete final.guests['G7'];
      // A member named __proto__ replaced whole: it stays a key, not the prototype.
      if (n === 1) (final as unknown as Record<string, Record<string, unknown>>)['__proto__']!['added'] = 'Zoë';
      const expected = JSON.stringify(final);
      const sees = { item: 'sees the final state', check: `function check(f, i) { return JSON.stringify(f) === ${JSON.stringify(expected)} && Object.getPrototypeOf(f) === Object.prototype && Object.keys(f).includes('__proto__') && f.rooms.length === 3; }` };
      const spoils = { item: 'spoils both states', check: 'function check(f, i) { f.rooms.sort(); f.guests.G0.balance = -1; delete f.guests.G3; i.rooms.length = 0; return true; }' };
      const result = await runner.checks({ checks: [sees, spoils, sees], finalState: final, initialState: initial, limits });
      expect(result.results.map(r => [r.passed, r.error ?? null]), `batch ${n}`).to.deep.equal([
        [true, null],
        [true, null],
        [true, null],
      ]);
    }
  });
});
