import { MAX_JSON_DEPTH } from './python/python-harness.mjs';

/**
 * Guest-side code, evaluated in every fresh QuickJS context before the environment's source.
 * It captures the built-ins it needs before untrusted code can replace them, removes the
 * few globals that have no business in an environment, and returns the functions the host calls.
 * Only strings cross the boundary: the host passes JSON text and reads JSON text back.
 *
 * Every reply is a JSON string whose first key tells the host what happened:
 *   {"ok": <result>}                  the method's result (JSON)
 *   {"err": CODE, "message": TEXT}    a sandbox error code (see errors.ts)
 * except the replies of `call`, the one on every tool call, and `snapshot`, which are not wrapped:
 * the method's result (the state) as JSON text itself, or "!" followed by an error reply
 * ({"err": ...}). JSON text never starts with "!". (QuickJS spends about as long on a concatenation
 * as on a small JSON value, and a state's is a copy of all of it.)
 */
/**
 * What the error for a JavaScript result or state nested past MAX_JSON_DEPTH adds to what nests too deeply: why, and
 * what to do (the Python runtime's DEPTH_ADVICE, in JavaScript's words).
 */
export const JS_DEPTH_ADVICE = `: the JavaScript runtime passes on JSON values up to ${MAX_JSON_DEPTH} levels of containers inside containers, as the Python runtime does (deeper ones break the host's own JSON.stringify where the value is written again: a rollout's transcript, a served reply); keep it flatter, e.g. a linked list as an array, a tree as an object of nodes by id that name their children's ids`;

export const HARNESS_SOURCE = String.raw`(() => {
  'use strict';
  const G = globalThis;
  const parse = JSON.parse, stringify = JSON.stringify, apply = Reflect.apply;
  const ObjectProto = Object.prototype, getProto = Object.getPrototypeOf, hasOwnProperty = ObjectProto.hasOwnProperty;
  const hasOwn = Object.hasOwn || ((o, key) => apply(hasOwnProperty, o, [key]));
  const PromiseCtor = G.Promise, InternalErr = G.InternalError, TypeErr = G.TypeError, StringFn = String;
  const imul = Math.imul, defineProp = Object.defineProperty, MathObj = G.Math;
  for (const name of ['SharedArrayBuffer', 'Atomics', 'WebAssembly', 'FinalizationRegistry', 'WeakRef']) {
    try { delete G[name]; } catch (e) {}
  }
  // A console whose methods do nothing: model-written code logs all the time, and a call that did failed ('console' is
  // not defined) where Python's print is dropped. Guest functions, frozen in a frozen object: nothing reaches the host.
  const freeze = Object.freeze, quiet = {}, nothing = freeze(() => undefined);
  for (const name of ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir', 'dirxml', 'table', 'group', 'groupCollapsed', 'groupEnd', 'time', 'timeEnd', 'timeLog', 'timeStamp', 'count', 'countReset', 'assert', 'clear', 'profile', 'profileEnd']) quiet[name] = nothing;
  defineProp(G, 'console', { value: freeze(quiet), writable: true, enumerable: false, configurable: true });
  let Cls, inst, finalState, initialState, finalBase;
  const fail = (code, message) => stringify({ err: code, message: StringFn(message) });
  // At most 2,000 characters, cut between whole characters: a thrown object's JSON, a message naming a place (a JSON
  // pointer can be as long as the state's keys).
  const capped = (text) => {
    if (text.length <= 2000) return text;
    const cut = text.charCodeAt(1999) >= 0xD800 && text.charCodeAt(1999) <= 0xDBFF ? 1999 : 2000;
    return text.slice(0, cut) + '…';
  };
  // JSON.stringify writes a Map, a Set, their weak kinds and an ArrayBuffer as {}, a typed array as an object of
  // indices, NaN and the infinities as null, without a word: a state or a result holding one is refused instead,
  // naming where (a JSON pointer), as the Python runtime refuses what JSON cannot hold.
  const MapC = G.Map, SetC = G.Set, setHas = G.Set.prototype.has, setAdd = G.Set.prototype.add, setDel = G.Set.prototype.delete, WeakMapC = G.WeakMap, WeakSetC = G.WeakSet, BufferC = G.ArrayBuffer, isView = BufferC.isView, keysOf = Object.keys, isArray = Array.isArray, objIs = Object.is, RegExpC = G.RegExp, ErrorC = G.Error, NumberC = G.Number, numberValueOf = G.Number.prototype.valueOf;
  const REFUSED = {};
  let refusal = null;
  // Past MAX_DEPTH levels of containers (a flat object is one): refused, as the Python runtime refuses it (the host's
  // V8 could not write it again). Counted as stringify walks, by plainOnly: no walk of its own, and stringify stops
  // at the first container too deep (QuickJS's own looks for a cycle among the containers it is inside, at every one:
  // 20,000 levels took it past the call's deadline).
  const MAX_DEPTH = ${MAX_JSON_DEPTH}, DEPTH_ADVICE = ${JSON.stringify(JS_DEPTH_ADVICE)}, TOO_DEEP = {};
  // The containers stringify is inside, from the wrapper it made for the value (0) down, each with its key in the one
  // above, by level (objects without a prototype: no setter the code put on Array.prototype sees them; kept from one
  // stringify to the next, so that nothing is allocated before one: a long text then grows where it is); levels: how
  // many of them are current, deepest: how many were used. tooDeep: where the container past MAX_DEPTH is, once met.
  const inside = { __proto__: null }, keyIn = { __proto__: null };
  let levels = 0, deepest = 0, tooDeep = '';
  // The caps on a tool's result and on the state as JSON (UTF-8 bytes; the host sets them for each session: caps), and
  // what stringify has surely written so far (a floor: counted by plainOnly, a string's characters and quotes, a key's,
  // one byte for any other value). Past the cap it stops (TOO_LONG), instead of writing all of a state of 50 MB first.
  let resultCap = Infinity, stateCap = Infinity, capOf = Infinity, written = 0;
  const TOO_LONG = {};
  // What JSON.stringify wrote without a word in v, or undefined.
  const lossOf = (v) => {
    if (typeof v === 'bigint') return 'a BigInt (JSON cannot write it; keep it as a number, or as a string of digits past 2^53)';
    if (typeof v === 'number') return v - v === 0 ? undefined : v !== v ? 'NaN (JSON writes null)' : (v > 0 ? 'Infinity' : '-Infinity') + ' (JSON writes null)';
    if (v === null || typeof v !== 'object') return undefined;
    if (v instanceof MapC) return 'a Map (JSON writes {}, its entries lost; use an object)';
    if (v instanceof SetC) return 'a Set (JSON writes {}, its items lost; use an array)';
    if (v instanceof WeakMapC || v instanceof WeakSetC) return 'a WeakMap or WeakSet (JSON writes {})';
    if (v instanceof BufferC || isView(v)) return 'a typed array or buffer (JSON writes it as an object of indices or {}; use an array)';
    if (v instanceof RegExpC) return 'a RegExp (JSON writes {}; keep its source as a string)';
    if (v instanceof ErrorC) return 'an Error (JSON writes {}, its message lost; keep the message as a string)';
    if (v instanceof NumberC) {
      const n = apply(numberValueOf, v, []);
      if (n - n !== 0) return 'a Number object holding ' + (n !== n ? 'NaN' : n > 0 ? 'Infinity' : '-Infinity') + ' (JSON writes null)';
    }
    return undefined;
  };
  // JSON.stringify's replacer: each value as stringify is about to write it (after its toJSON), refused where it
  // would be written without a word, or where it is a container past MAX_DEPTH levels. One pass, nothing kept but the
  // containers it is inside.
  const plainOnly = function (key, v) {
    if (v !== undefined && typeof v !== 'function' && typeof v !== 'symbol') {
      written += typeof v === 'string' ? v.length + 2 : 1;
      if (key !== '' && !isArray(this)) written += key.length + 3;
      if (written > capOf) throw TOO_LONG;
    }
    const what = lossOf(v);
    if (what !== undefined) {
      refusal = [this, key, what];
      throw REFUSED;
    }
    if (v !== null && typeof v === 'object') {
      // Stringify walks depth first, and this is the container v is in: the levels above it are those down to this.
      let n = levels;
      if (n === 0) {
        inside[0] = this;
        n = 1;
      } else while (n > 1 && inside[n - 1] !== this) n--;
      keyIn[n] = key;
      if (n > MAX_DEPTH) {
        tooDeep = deepAt(n);
        throw TOO_DEEP;
      }
      inside[n] = v;
      levels = n + 1;
      if (levels > deepest) deepest = levels;
    }
    return v;
  };
  // A key as a JSON pointer writes it.
  const esc = (k) => k.replace(/~/g, '~0').replace(/\//g, '~1');
  // The first non-null f(pointer, value) over o's members as JSON.stringify walks them (an array by index, an object by
  // its own enumerable keys), or null. For an object that is walked: not one with a toJSON (stringify writes what that gives).
  const firstMember = (o, at, f) => {
    const ks = isArray(o) ? null : keysOf(o), n = ks === null ? o.length : ks.length;
    for (let i = 0; i < n; i++) {
      const k = ks === null ? StringFn(i) : ks[i];
      const found = f(at + '/' + esc(k), o[k]);
      if (found !== null) return found;
    }
    return null;
  };
  const walked = (o) => o !== null && typeof o === 'object' && typeof o.toJSON !== 'function';
  // Where the refused value is: the JSON pointer of its holder, found from the root (each object once), and its key.
  const pointerOf = (root, holder, key) => {
    try {
      if (key === '' && holder !== null && typeof holder === 'object' && objIs(holder[''], root)) return 'its top';
      const seen = new SetC();
      const walk = (at, o) => {
        if (o === holder) return at;
        if (!walked(o) || apply(setHas, seen, [o])) return null;
        apply(setAdd, seen, [o]);
        return firstMember(o, at, walk);
      };
      const at = walk('', root);
      return at === null ? 'key ' + stringify(key) : at + '/' + esc(key);
    } catch (e) {
      return 'key ' + stringify(key);
    }
  };
  // The containers down to the one past MAX_DEPTH (at level n), as the Python runtime says it: a JSON pointer, its
  // first five and last two keys when there are more than eight, each cut at 40 characters (code points, as Python
  // counts them: a cut never splits a surrogate pair).
  const deepAt = (n) => {
    const seg = (i) => {
      const k = StringFn(keyIn[i]);
      let end = 0;
      for (let chars = 0; end < k.length && chars < 40; chars++) end += (k.charCodeAt(end) & 0xfc00) === 0xd800 && (k.charCodeAt(end + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
      return '/' + esc(end >= k.length ? k : k.slice(0, end) + '…');
    };
    let at = '';
    if (n - 1 <= 8) for (let i = 2; i <= n; i++) at += seg(i);
    else at = seg(2) + seg(3) + seg(4) + seg(5) + seg(6) + '/…' + seg(n - 1) + seg(n);
    return n + ' containers down to ' + (at === '' ? '/' : at);
  };
  // value's JSON text (JSON.stringify's), or throws: what stringify throws, REFUSED with refusal set, or TOO_DEEP with
  // tooDeep set. The containers it was inside are let go.
  const plainText = (value, cap) => {
    levels = 0;
    written = 0;
    capOf = cap;
    try {
      return stringify(value, plainOnly);
    } finally {
      for (let i = 0; i < deepest; i++) inside[i] = undefined;
      deepest = 0;
    }
  };
  const refused = (code, subject, root, e) => {
    if (e === TOO_DEEP) return fail(code, capped(subject + ' nests containers more than ' + MAX_DEPTH + ' levels deep (' + tooDeep + ')' + DEPTH_ADVICE));
    const r = refusal;
    refusal = null;
    return fail(code, capped(subject + ' holds ' + r[2] + ' at ' + pointerOf(root, r[0], r[1]) + '; keep it to objects, arrays, strings, finite numbers, booleans and null'));
  };
  // Where JSON.stringify met a value holding itself: the JSON pointer of the member that leads back to an object it is
  // inside, found as stringify walks (own enumerable keys, arrays by index), or null.
  const cycleIn = (root) => {
    try {
      const inside = new SetC();
      const walk = (at, o) => {
        if (!walked(o)) return null;
        if (apply(setHas, inside, [o])) return at;
        apply(setAdd, inside, [o]);
        const found = firstMember(o, at, walk);
        apply(setDel, inside, [o]);
        return found;
      };
      return walk('', root);
    } catch (e) {
      return null;
    }
  };
  // A value JSON.stringify refused: a cycle is said with where it closes.
  const unwritable = (code, subject, root, e) => {
    const reply = thrown(code, e);
    try {
      if (!(e instanceof TypeErr) || StringFn(e.message).indexOf('circular') < 0) return reply;
      const at = cycleIn(root);
      return at === null ? reply : fail(code, capped(said(e) + ': ' + subject + ' holds itself at ' + (at === '' ? 'its top' : at) + ' (a member that leads back to an object it is inside); JSON has no cycles'));
    } catch (x) {
      return reply;
    }
  };
  // What a throw says: its message; an Error's name when the message is empty; a thrown object as its JSON (at most
  // 2,000 characters, cut between whole characters), not "[object Object]".
  const said = (e) => {
    if (e === null || typeof e !== 'object') return StringFn(e);
    if ('message' in e) {
      const m = StringFn(e.message);
      return m !== '' ? m : typeof e.name === 'string' && e.name !== '' ? e.name : 'Error';
    }
    let text;
    try { text = stringify(e); } catch (x) { text = undefined; }
    if (typeof text !== 'string' || text === '{}') return StringFn(e);
    return capped(text);
  };
  const thrown = (code, e) => {
    let msg;
    try { msg = said(e); } catch (x) { msg = 'unprintable exception'; }
    if (e instanceof InternalErr && msg.indexOf('out of memory') >= 0) return fail('MEMORY_EXCEEDED', msg);
    // The engine's InternalError only: a RangeError the code threw itself is its own error, whatever its message.
    if (e instanceof InternalErr && msg.indexOf('stack overflow') >= 0) {
      return fail('STACK_OVERFLOW', msg);
    }
    return fail(code, msg);
  };
  // A method's result as call's reply: its JSON text, or "!" and an error reply.
  const encode = (value) => {
    if (value === undefined) return '!' + fail('NON_JSON_RESULT', 'the method returned undefined');
    if (value instanceof PromiseCtor) return '!' + fail('NON_JSON_RESULT', 'the method returned a promise; environment methods must be synchronous');
    let text;
    try { text = plainText(value, resultCap); } catch (e) { return '!' + (e === TOO_LONG ? fail('RESULT_TOO_LARGE', '') : e === REFUSED || e === TOO_DEEP ? refused('NON_JSON_RESULT', 'the result', value, e) : unwritable('NON_JSON_RESULT', 'the result', value, e)); }
    if (text === undefined) return '!' + fail('NON_JSON_RESULT', 'the method returned a value JSON cannot represent');
    return text;
  };
  // A tool's method called on the arguments: its result, or FAILED with the error reply in failure.
  const FAILED = {};
  let failure = '';
  const invoke = (name, argsJson) => {
    if (name === 'constructor' || (name !== '' && name[0] === '_')) {
      failure = '!' + fail('UNKNOWN_TOOL', name + ' is not a tool');
      return FAILED;
    }
    // A method of the class or a class it extends: an own property of a prototype on the instance's
    // chain before Object.prototype (the one the harness captured: guest code may replace globals).
    let method;
    try {
      let p = getProto(inst);
      while (p && p !== ObjectProto && !hasOwn(p, name)) p = getProto(p);
      method = p && p !== ObjectProto ? p[name] : undefined;
    } catch (e) { failure = '!' + thrown('TOOL_THREW', e); return FAILED; }
    if (typeof method !== 'function') {
      failure = '!' + fail('UNKNOWN_TOOL', 'the class has no method ' + name);
      return FAILED;
    }
    try { return apply(method, inst, [parse(argsJson)]); } catch (e) { failure = '!' + thrown('TOOL_THREW', e); return FAILED; }
  };
  return {
    // Math.random from a seed the host derives from the environment and its initial state
    // (mulberry32, two draws per number): the sessions of one scenario draw the same numbers.
    seed(n) {
      let s = StringFn(n) >>> 0;
      const next = () => {
        s = (s + 0x6D2B79F5) | 0;
        let t = imul(s ^ (s >>> 15), 1 | s);
        t = (t + imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return (t ^ (t >>> 14)) >>> 0;
      };
      const random = function random() { return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992; };
      defineProp(MathObj, 'random', { value: random, writable: true, enumerable: false, configurable: true });
      return '{"ok":true}';
    },
    // The session's caps (decimal strings): a result's JSON text past the first, or the state's past the second, is not
    // written to its end (see plainOnly); the reply has no message: the host words it, with the cap's setting.
    caps(result, state) {
      resultCap = NumberC(result);
      stateCap = NumberC(state);
      return '{"ok":true}';
    },
    bind(cls) {
      if (typeof cls !== 'function') return fail('CLASS_MISSING', 'not a class');
      Cls = cls;
      return '{"ok":true}';
    },
    create(stateJson) {
      // Equal string values share one string: states repeat ids, statuses and dates many times.
      const interned = new G.Map();
      const intern = (k, v) => {
        if (typeof v !== 'string') return v;
        const seen = interned.get(v);
        if (seen !== undefined) return seen;
        interned.set(v, v);
        return v;
      };
      let initial;
      try { initial = parse(stateJson, intern); } catch (e) { return thrown('STATE_INVALID', e); }
      try { inst = new Cls(initial); } catch (e) { return thrown('CONSTRUCTOR_FAILED', e); }
      if (!inst || typeof inst !== 'object' || inst.state === null || typeof inst.state !== 'object') {
        return fail('STATE_INVALID', 'the constructor must keep the state in this.state (an object)');
      }
      return '{"ok":true}';
    },
    call(name, argsJson) {
      const result = invoke(name, argsJson);
      return result === FAILED ? failure : encode(result);
    },
    // call, with the result handed over in a one-element array for the host's native encoder
    // (GuestVm.callTool, bjson.ts), or "!" and an error reply; encodeOf gives call's reply for what
    // callValue handed over, where the encoder cannot write it or there is no room to try.
    callValue(name, argsJson) {
      const result = invoke(name, argsJson);
      if (result === FAILED) return failure;
      if (result === undefined || result instanceof PromiseCtor) return encode(result);
      return [result];
    },
    encodeOf(wrapped) {
      return typeof wrapped === 'string' ? wrapped : encode(wrapped[0]);
    },
    // Not wrapped either (a 65 KB state would be copied once more): the state's JSON text, or "!" and an error reply.
    snapshot() {
      let text;
      let state;
      try { state = inst.state; text = plainText(state, stateCap); } catch (e) { return '!' + (e === TOO_LONG ? fail('STATE_TOO_LARGE', '') : e === REFUSED || e === TOO_DEEP ? refused('STATE_INVALID', 'this.state', state, e) : unwritable('STATE_INVALID', 'this.state', state, e)); }
      if (typeof text !== 'string') return '!' + fail('STATE_INVALID', 'this.state is not JSON');
      return text;
    },
    // The state read once, in a one-element array for the host's native encoder (bjson.ts), or "!"
    // and an error reply; snapshotOf then gives snapshot's reply for the same value where the
    // encoder cannot write it, without reading this.state (a getter) again.
    state() {
      try { return [inst.state]; } catch (e) { return '!' + thrown('STATE_INVALID', e); }
    },
    snapshotOf(wrapped) {
      if (typeof wrapped === 'string') return wrapped; // state()'s error reply
      let text;
      try { text = plainText(wrapped[0], stateCap); } catch (e) { return '!' + (e === TOO_LONG ? fail('STATE_TOO_LARGE', '') : e === REFUSED || e === TOO_DEEP ? refused('STATE_INVALID', 'this.state', wrapped[0], e) : unwritable('STATE_INVALID', 'this.state', wrapped[0], e)); }
      if (typeof text !== 'string') return '!' + fail('STATE_INVALID', 'this.state is not JSON');
      return text;
    },
    // The states the checks of a batch get, each parsed once (the host restores the module's memory
    // to the point after the parse before each check, so every check sees them as just parsed).
    prepareInitial(initialJson) {
      try { initialState = parse(initialJson); } catch (e) { return thrown('CHECK_THREW', e); }
      return '{"ok":true}';
    },
    prepareFinal(finalJson) {
      try { finalState = parse(finalJson); } catch (e) { return thrown('CHECK_THREW', e); }
      return '{"ok":true}';
    },
    // A check template's second parse of the initial state: the base the final state is patched on
    // (json-patch.ts), so a batch parses only the values the episode changed.
    prepareBase(initialJson) {
      try { finalBase = parse(initialJson); } catch (e) { return thrown('CHECK_THREW', e); }
      return '{"ok":true}';
    },
    // [[path, value], ...]: each value put at its path on the base, as an own data property (a key
    // such as "__proto__" stays a key, as in a parse). A path only crosses objects and arrays the
    // host found alike in both texts, so every step exists.
    prepareFinalPatch(patchJson) {
      try {
        const patches = parse(patchJson);
        let root = finalBase;
        for (let p = 0; p < patches.length; p++) {
          const path = patches[p][0], value = patches[p][1];
          let o = root;
          for (let i = 0; i < path.length - 1; i++) o = o[path[i]];
          defineProp(o, path[path.length - 1], { value, writable: true, enumerable: true, configurable: true });
        }
        finalState = root;
      } catch (e) { return thrown('CHECK_THREW', e); }
      return '{"ok":true}';
    },
    check(fn) {
      if (typeof fn !== 'function') return fail('CHECK_INVALID', 'the source does not define a function check(finalState, initialState)');
      let result;
      try { result = fn(finalState, initialState); } catch (e) { return thrown('CHECK_THREW', e); }
      if (result !== true && result !== false) {
        let shown;
        try { shown = stringify(result); } catch (e) { shown = typeof result; }
        shown = shown === undefined ? 'undefined' : shown;
        // Cut at 200 code units, never between the halves of a surrogate pair (an emoji).
        const cut = shown.length > 200 && (shown.charCodeAt(199) & 0xfc00) === 0xd800 ? 199 : 200;
        return fail('CHECK_NOT_BOOLEAN', 'check returned ' + shown.slice(0, cut));
      }
      return result ? '{"ok":true}' : '{"ok":false}';
    },
  };
})()`;
