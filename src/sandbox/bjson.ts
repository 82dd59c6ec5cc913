/**
 * QuickJS's binary object format (what `JS_WriteObject` writes; quickjs-emscripten's
 * `QTS_bjson_encode`, with object references) read back as the JSON text that the guest's
 * `JSON.stringify` would have written for the same value, or null where the value holds anything
 * but plain data.
 *
 * Why: stringifying an environment's state inside QuickJS is the largest part of a pool thread's
 * work per episode (a 66 KB state: ≈ 2 ms, ≈ 8× the native encoder, ≈ 6× V8's stringify; see
 * docs/benchmarks.md). The encoder writes each key once (an atom table) and each string as its
 * bytes, with no quoting and no `toJSON` lookups; this side writes the JSON text's UTF-8 bytes from
 * those into one buffer (a run of plain ASCII copied whole) and makes one string of them.
 *
 * Equal to the guest's `JSON.stringify` where the value is plain data, which this reader checks as
 * it goes and answers null otherwise (the caller then asks the guest for `JSON.stringify`):
 * - only null, undefined, booleans, numbers, strings, objects of the ordinary class and arrays;
 *   a Date, a boxed primitive, a typed array, an ArrayBuffer, a BigInt or bytecode → null. The
 *   encoder itself refuses functions, symbols, accessors, proxies, maps and every other class,
 *   which the caller takes as the same answer;
 * - an object met a second time is written again (as JSON does), unless it is still being written
 *   (a cycle, which JSON refuses) → null;
 * - keys: the object's own enumerable string-keyed properties, array indices first in ascending
 *   order, then the rest in insertion order (QuickJS's `JSON.stringify` order: it sorts by
 *   `JS_AtomIsArrayIndex`, a canonical decimal up to 2³² − 2, as V8 does); a property whose value
 *   is undefined is left out; in an array, undefined (and a hole) is `null`;
 * - strings are quoted as QuickJS's (and V8's) `JSON.stringify` quotes them: `\"` `\\` `\b` `\f`
 *   `\n` `\r` `\t`, other controls and lone surrogates as lower-case `\uXXXX`, the rest as it is;
 *   integers in decimal, other numbers by `String` (the shortest round-trip form both engines
 *   write); NaN and ±Infinity → null (the caller's way, the harness's, refuses them, as it refuses a
 *   Map, a Set or a typed array, naming where: harness.ts).
 * What the reader cannot see is an object's prototype: an inherited `toJSON` (a class method, or
 * one put on a prototype) would change the guest's text. The caller uses this reader only for
 * code that cannot reach one (quickjs-host.ts, `plainSnapshots`).
 *
 * `maxBytes`: the text may not take more UTF-8 bytes than this; past it → OVER_CAP, at once (the
 * text written so far is already longer than the cap, whatever the rest holds), and the caller says
 * so without writing the value again. A value nested more than MAX_JSON_DEPTH
 * levels of containers deep (a flat object is one): null, and the guest's JSON.stringify, which
 * counts the levels as it goes (harness.ts), refuses it there, saying where; the reader never
 * recurses deeper than that. Also null where putting array indices first would
 * move the text more than a few times over (objects to reorder nested deep: see indicesFirst), so
 * that the reader's work stays linear in the text, as JSON.stringify's is.
 */

import { MAX_JSON_DEPTH } from './python/python-harness.mjs';

/** The encoder's tags (quickjs.c `BCTagEnum`, format version 5). */
const TAG_NULL = 1;
const TAG_UNDEFINED = 2;
const TAG_FALSE = 3;
const TAG_TRUE = 4;
const TAG_INT32 = 5;
const TAG_FLOAT64 = 6;
const TAG_STRING = 7;
const TAG_OBJECT = 8;
const TAG_ARRAY = 9;
const TAG_OBJECT_REFERENCE = 19;
/** The format version this reader knows; another one is refused whole. */
export const BJSON_VERSION = 5;

/**
 * What indicesFirst may move in all, in bytes (and objects re-pointed, one each): this many times
 * the text written so far, and MOVE_SLACK more. An object with index keys after other keys moves
 * once; nested ones move what they hold once per level, and a state whose levels would move it
 * more than a few times over is written by the guest's JSON.stringify (bjsonToJson answers null).
 */
const MOVE_BUDGET = 4;
const MOVE_SLACK = 1 << 16;

/** Thrown inside the reader when the value is not plain data, or the text would be too long. */
class NotPlain extends Error {}
const NOT_PLAIN = new NotPlain('not plain data');
/** The text went past `maxBytes`: thrown by the reader, handed to the caller as OVER_CAP. */
const TOO_LONG = new NotPlain('more than the cap');
/** bjsonToJson's answer for a value whose JSON text is longer than the cap (whatever else it holds further on). */
export const OVER_CAP: unique symbol = Symbol('over the cap');

/** An array index as QuickJS and V8 order them: a canonical decimal up to 2³² − 2. */
function arrayIndexOf(key: string): number {
  const n = key.length;
  if (n === 0 || n > 10) return -1;
  const c = key.charCodeAt(0);
  if (c < 48 || c > 57 || (c === 48 && n > 1)) return -1;
  let v = 0;
  for (let i = 0; i < n; i += 1) {
    const d = key.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v <= 4_294_967_294 ? v : -1;
}

/** Node's Buffer slices without argument checks (in every Node release; typed here as they are used). */
interface SliceBuffer extends Buffer {
  latin1Slice(start: number, end: number): string;
  ucs2Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const HEX = [...'0123456789abcdef'].map(c => c.charCodeAt(0));
/** The short escape's letter of a control character, or 0 (then \u00XX). */
const SHORT_ESCAPE = new Uint8Array(32);
SHORT_ESCAPE[0x08] = 0x62; // b
SHORT_ESCAPE[0x09] = 0x74; // t
SHORT_ESCAPE[0x0a] = 0x6e; // n
SHORT_ESCAPE[0x0c] = 0x66; // f
SHORT_ESCAPE[0x0d] = 0x72; // r
const NULL_BYTES = Buffer.from('null');
const TRUE_BYTES = Buffer.from('true');
const FALSE_BYTES = Buffer.from('false');

/** The output buffer, kept for the thread (the reader is synchronous) and grown as needed. */
let out = Buffer.allocUnsafe(1 << 16) as SliceBuffer;
/** indicesFirst's copy of the members it rewrites, kept the same way. */
let moveCopy = Buffer.allocUnsafe(1 << 12);

/** The atom table's quoted keys, kept for the thread like `out`. */
let keysBuffer = Buffer.allocUnsafe(1 << 12) as SliceBuffer;
/** A float's 8 bytes, read as one. */
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);

/** One reader for the thread, reset for each buffer (a tool's result is read on every call: no allocation per read but the input's view). */
class Reader {
  private pos = 0;
  /** Write position in `out`. */
  private at = 0;
  private ascii = true;
  private bytes: SliceBuffer = out;
  private maxBytes = 0;
  /** Each atom's key as JSON bytes with its colon, at [keyStart, keyEnd) of `keysBuffer`, its array index (or −1), and whether it is ASCII. */
  private readonly keyStart: number[] = [];
  private readonly keyEnd: number[] = [];
  private readonly keyIndex: number[] = [];
  private readonly keyAscii: boolean[] = [];
  /** Each object's bytes in `out` by the encoder's reference index: start, and end (−1 while it is being written). */
  private readonly objStart: number[] = [];
  private readonly objEnd: number[] = [];
  /** The members of the objects being written, three numbers each (see object). */
  private readonly members: number[] = [];
  private top = 0;
  /** The objects and arrays being written, nested in one another: at most MAX_JSON_DEPTH. */
  private depth = 0;
  /** The levels of containers the value just written nests (0: not a container), and each object's by reference index (an object written again is as deep where it is written again). */
  private below = 0;
  private readonly objLevels: number[] = [];
  /** Bytes (and objects) indicesFirst has moved so far, and its working arrays. */
  private moved = 0;
  private readonly order: number[] = [];
  private readonly shift: number[] = [];

  reset(bytes: Uint8Array, maxBytes: number): this {
    this.bytes = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) as SliceBuffer;
    this.maxBytes = maxBytes;
    this.pos = 0;
    this.at = 0;
    this.ascii = true;
    this.top = 0;
    this.depth = 0;
    this.moved = 0;
    this.keyStart.length = 0;
    this.keyEnd.length = 0;
    this.keyIndex.length = 0;
    this.keyAscii.length = 0;
    this.objStart.length = 0;
    this.objEnd.length = 0;
    this.objLevels.length = 0;
    return this;
  }

  read(): string | null | typeof OVER_CAP {
    // The key table comes first, every key once, also those of members left out (an undefined value): past the cap
    // there, the text may still be short, and the guest's JSON.stringify decides (null), not OVER_CAP.
    let inAtoms = true;
    try {
      if (this.bytes.length === 0 || this.bytes[this.pos++] !== BJSON_VERSION) return null;
      // The atom table, written as quoted keys with their colons; kept apart from the text.
      const atoms = this.leb();
      for (let i = 0; i < atoms; i += 1) {
        this.ascii = true;
        const [name, start] = this.stringKey();
        this.keyStart.push(start);
        this.keyIndex.push(arrayIndexOf(name));
        this.keyAscii.push(this.ascii);
        this.byte(0x3a);
        this.keyEnd.push(this.at);
      }
      if (keysBuffer.length < this.at) keysBuffer = Buffer.allocUnsafe(this.at * 2) as SliceBuffer;
      out.copy(keysBuffer, 0, 0, this.at);
      this.at = 0;
      inAtoms = false;
      this.ascii = true;
      // A string: the harness's error reply ("!" and JSON), handed back as it is (see bjsonToJson).
      if (this.bytes[this.pos] === TAG_STRING) {
        this.pos += 1;
        this.stringBounds();
        if (this.pos !== this.bytes.length) return null;
        return this.wide ? this.bytes.ucs2Slice(this.from, this.to) : this.bytes.latin1Slice(this.from, this.to);
      }
      // [value]: the one-element array the harness wraps the value in (see bjsonToJson)
      if (this.bytes[this.pos++] !== TAG_ARRAY || this.leb() !== 1) return null;
      this.objStart.push(0);
      this.objEnd.push(-1); // the wrapper: never met again inside the value
      this.objLevels.push(0);
      const tag = this.bytes[this.pos++];
      if (tag === TAG_UNDEFINED) return null; // JSON.stringify(undefined) is not text
      this.value(tag);
      if (this.at > this.maxBytes) return OVER_CAP;
      if (this.pos !== this.bytes.length) return null;
      return this.ascii ? out.latin1Slice(0, this.at) : out.utf8Slice(0, this.at);
    } catch (err) {
      // A truncated or unexpected buffer reads past its end; a very deep one overflows this
      // stack (a RangeError): either way, the guest's own stringify decides.
      if (err === TOO_LONG) return inAtoms ? null : OVER_CAP;
      if (err instanceof NotPlain || err instanceof RangeError) return null;
      throw err;
    }
  }

  /** Room for `n` more bytes in `out` (grown by doubling; the cap is checked on what is written, in object and array). */
  private room(n: number): void {
    const need = this.at + n;
    if (need <= out.length) return;
    if (this.at > this.maxBytes) throw TOO_LONG;
    const bigger = Buffer.allocUnsafe(Math.max(out.length * 2, need)) as SliceBuffer;
    out.copy(bigger, 0, 0, this.at);
    out = bigger;
  }

  private byte(b: number): void {
    this.room(1);
    out[this.at++] = b;
  }

  private put(src: Buffer, start: number, end: number): void {
    const n = end - start;
    this.room(n);
    if (n < 24) {
      for (let i = start; i < end; i += 1) out[this.at++] = src[i]!;
    } else {
      src.copy(out, this.at, start, end);
      this.at += n;
    }
  }

  private leb(): number {
    const bytes = this.bytes;
    let a = bytes[this.pos++]!;
    if (a < 0x80) return a;
    let v = a & 0x7f;
    let scale = 128;
    for (let i = 1; i < 5; i += 1) {
      a = bytes[this.pos++]!;
      if (a === undefined) throw NOT_PLAIN;
      v += (a & 0x7f) * scale;
      if (a < 0x80) return v;
      scale *= 128;
    }
    throw NOT_PLAIN;
  }

  /** An atom's name: written quoted to `out` (from the returned start), and returned as text. */
  private stringKey(): [string, number] {
    const start = this.at;
    this.stringBounds();
    const { from, to, wide } = this;
    this.quoted(from, to, wide);
    return [wide ? this.bytes.ucs2Slice(from, to) : this.bytes.latin1Slice(from, to), start];
  }

  /** The next string's bytes in the input, [from, to), and whether they are UTF-16 (wide). */
  private from = 0;
  private to = 0;
  private wide = false;
  private stringBounds(): void {
    const head = this.leb();
    const start = this.pos;
    const wide = (head & 1) === 1;
    const end = start + (wide ? head - 1 : head / 2);
    if (end > this.bytes.length) throw NOT_PLAIN;
    this.pos = end;
    this.from = start;
    this.to = end;
    this.wide = wide;
  }

  /** A string as JSON: quoted and escaped as JSON.stringify does, in UTF-8. */
  private quoted(from: number, to: number, wide: boolean): void {
    const bytes = this.bytes;
    this.byte(QUOTE);
    if (!wide && to - from <= 4096) {
      // 8-bit: one code point a byte, at most 6 bytes out (\u00XX); room for all of it first.
      this.room((to - from) * 6);
      const o = out;
      let at = this.at;
      for (let i = from; i < to; i += 1) {
        const c = bytes[i]!;
        if (c >= 0x20 && c < 0x80 && c !== QUOTE && c !== BACKSLASH) {
          o[at++] = c;
        } else {
          this.at = at;
          this.unit(c);
          at = this.at;
        }
      }
      this.at = at;
    } else if (!wide) {
      for (let i = from; i < to; i += 1) this.unit(bytes[i]!);
    } else {
      for (let i = from; i < to; i += 2) {
        const c = bytes[i]! | (bytes[i + 1]! << 8);
        if (c >= 0xd800 && c < 0xdc00 && i + 3 < to) {
          const d = bytes[i + 2]! | (bytes[i + 3]! << 8);
          if (d >= 0xdc00 && d < 0xe000) {
            const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
            this.room(4);
            out[this.at++] = 0xf0 | (cp >> 18);
            out[this.at++] = 0x80 | ((cp >> 12) & 0x3f);
            out[this.at++] = 0x80 | ((cp >> 6) & 0x3f);
            out[this.at++] = 0x80 | (cp & 0x3f);
            this.ascii = false;
            i += 2;
            continue;
          }
        }
        this.unit(c);
      }
    }
    this.byte(QUOTE);
  }

  /** One UTF-16 code unit that is not half of a pair, escaped where JSON.stringify escapes it. */
  private unit(c: number): void {
    this.room(6);
    if (c < 0x80) {
      if (c >= 0x20 && c !== QUOTE && c !== BACKSLASH) {
        out[this.at++] = c;
      } else if (c === QUOTE || c === BACKSLASH) {
        out[this.at++] = BACKSLASH;
        out[this.at++] = c;
      } else if (SHORT_ESCAPE[c]) {
        out[this.at++] = BACKSLASH;
        out[this.at++] = SHORT_ESCAPE[c]!;
      } else {
        this.escape(c);
      }
    } else if (c < 0x800) {
      out[this.at++] = 0xc0 | (c >> 6);
      out[this.at++] = 0x80 | (c & 0x3f);
      this.ascii = false;
    } else if (c >= 0xd800 && c < 0xe000) {
      this.escape(c); // a lone surrogate
    } else {
      out[this.at++] = 0xe0 | (c >> 12);
      out[this.at++] = 0x80 | ((c >> 6) & 0x3f);
      out[this.at++] = 0x80 | (c & 0x3f);
      this.ascii = false;
    }
  }

  /** \uXXXX, lower-case hex (room for 6 bytes is made by the caller). */
  private escape(c: number): void {
    out[this.at++] = BACKSLASH;
    out[this.at++] = 0x75;
    out[this.at++] = HEX[(c >> 12) & 15]!;
    out[this.at++] = HEX[(c >> 8) & 15]!;
    out[this.at++] = HEX[(c >> 4) & 15]!;
    out[this.at++] = HEX[c & 15]!;
  }

  /** ASCII text (a number's). */
  private ascii7(text: string): void {
    this.room(text.length);
    for (let i = 0; i < text.length; i += 1) out[this.at++] = text.charCodeAt(i);
  }

  /** An int32 in decimal. */
  private int(v: number): void {
    this.room(11);
    if (v < 0) {
      if (v === -2147483648) {
        this.ascii7('-2147483648');
        return;
      }
      out[this.at++] = 0x2d;
      v = -v;
    }
    let digits = 1;
    for (let p = 10; p <= v; p *= 10) digits += 1;
    let at = this.at + digits;
    this.at = at;
    do {
      out[--at] = 0x30 + (v % 10);
      v = Math.floor(v / 10);
    } while (v > 0);
  }

  private value(tag: number | undefined): void {
    switch (tag) {
      case TAG_NULL:
        this.put(NULL_BYTES, 0, 4);
        return;
      case TAG_FALSE:
        this.put(FALSE_BYTES, 0, 5);
        return;
      case TAG_TRUE:
        this.put(TRUE_BYTES, 0, 4);
        return;
      case TAG_INT32: {
        const v = this.leb();
        this.int((v >>> 1) ^ -(v & 1));
        return;
      }
      case TAG_FLOAT64: {
        if (this.pos + 8 > this.bytes.length) throw NOT_PLAIN;
        const bytes = this.bytes;
        for (let i = 0; i < 8; i += 1) F64_BYTES[i] = bytes[this.pos + i]!; // little-endian, as wasm and this host are
        const d = F64[0]!;
        this.pos += 8;
        // NaN and the infinities: JSON.stringify writes null, which the harness refuses (naming where).
        if (!Number.isFinite(d)) throw NOT_PLAIN;
        this.ascii7(String(d));
        return;
      }
      case TAG_STRING:
        this.stringBounds();
        this.quoted(this.from, this.to, this.wide);
        return;
      case TAG_OBJECT:
        this.object();
        return;
      case TAG_ARRAY:
        this.array();
        return;
      case TAG_OBJECT_REFERENCE: {
        const i = this.leb();
        const end = this.objEnd[i];
        if (end === undefined || end < 0) throw NOT_PLAIN; // a cycle (or a reference to nothing)
        const levels = this.objLevels[i]!;
        if (this.depth + levels > MAX_JSON_DEPTH) throw NOT_PLAIN;
        this.below = levels;
        const start = this.objStart[i]!;
        this.room(end - start);
        out.copy(out, this.at, start, end);
        this.at += end - start;
        return;
      }
      default:
        throw NOT_PLAIN;
    }
  }

  private object(): void {
    if (++this.depth > MAX_JSON_DEPTH) throw NOT_PLAIN;
    const ref = this.objStart.length;
    this.objStart.push(this.at);
    this.objEnd.push(-1);
    this.objLevels.push(0);
    let levels = 0;
    const n = this.leb();
    this.byte(0x7b);
    // Each member's [array index or −1, start, end) on the shared stack, from `base` on.
    const base = this.top;
    let indexed = false;
    for (let i = 0; i < n; i += 1) {
      // the key: an integer atom (odd: its value), or an entry of the table (counted from 1)
      const atom = this.leb();
      const tag = this.bytes[this.pos++];
      if (tag === TAG_UNDEFINED) continue;
      if (this.top > base) this.byte(0x2c);
      const memberStart = this.at;
      let index: number;
      if ((atom & 1) === 1) {
        index = (atom - 1) / 2;
        this.byte(QUOTE);
        this.int(index);
        this.byte(QUOTE);
        this.byte(0x3a);
      } else {
        const k = atom / 2 - 1;
        const keyStart = this.keyStart[k];
        if (keyStart === undefined) throw NOT_PLAIN;
        this.put(keysBuffer, keyStart, this.keyEnd[k]!);
        if (!this.keyAscii[k]) this.ascii = false;
        index = this.keyIndex[k]!;
      }
      this.below = 0;
      this.value(tag);
      if (this.below > levels) levels = this.below;
      if (index >= 0) indexed = true;
      const m = this.members;
      m[this.top] = index;
      m[this.top + 1] = memberStart;
      m[this.top + 2] = this.at;
      this.top += 3;
    }
    if (indexed) this.indicesFirst(base, ref);
    this.top = base;
    this.byte(0x7d);
    if (this.at > this.maxBytes) throw TOO_LONG;
    this.objEnd[ref] = this.at;
    this.objLevels[ref] = this.below = levels + 1;
    this.depth -= 1;
  }

  /**
   * Rewrites the members on the stack from `base` on: those with an array-index key first,
   * ascending, then the rest in order; the objects written inside them (reference indices after
   * `ref`) move with them, so that a later reference copies them from where they are now. Members
   * already in that order (an object parsed from JSON text, or built in that order) stay where they
   * are. Each rewrite moves all the object holds, so objects to rewrite nested in one another move
   * the innermost bytes once per level: past MOVE_BUDGET times the text so far in all, the reader
   * gives up (not plain) and the caller's JSON.stringify, which is linear, writes the text.
   */
  private indicesFirst(base: number, ref: number): void {
    const m = this.members;
    let last = -1;
    let named = false;
    let sorted = true;
    for (let j = base; j < this.top; j += 3) {
      const index = m[j]!;
      if (index < 0) named = true;
      else if (named || index < last) {
        sorted = false;
        break;
      } else last = index;
    }
    if (sorted) return;
    const from = m[base + 1]!;
    this.moved += this.at - from + (this.objStart.length - ref - 1);
    if (this.moved > MOVE_BUDGET * this.at + MOVE_SLACK) throw NOT_PLAIN;
    const length = this.at - from;
    if (moveCopy.length < length) moveCopy = Buffer.allocUnsafe(Math.max(length, moveCopy.length * 2));
    const copy = moveCopy;
    out.copy(copy, 0, from, this.at);
    // The members' stack positions, indices by value first, then the rest in order (most objects
    // have a few members: an insertion sort for those).
    const order = this.order;
    order.length = 0;
    const rank = (j: number) => (m[j]! >= 0 ? m[j]! : 2 ** 32 + j);
    if (this.top - base <= 3 * 16) {
      for (let j = base; j < this.top; j += 3) {
        const r = rank(j);
        let i = order.length;
        while (i > 0 && rank(order[i - 1]!) > r) {
          order[i] = order[i - 1]!;
          i -= 1;
        }
        order[i] = j;
      }
    } else {
      for (let j = base; j < this.top; j += 3) order.push(j);
      order.sort((x, y) => rank(x) - rank(y));
    }
    const shift = this.shift; // by member (its number in the object): how far its bytes moved
    let at = from;
    for (let i = 0; i < order.length; i += 1) {
      const j = order[i]!;
      if (i > 0) out[at++] = 0x2c;
      const start = m[j + 1]!;
      const end = m[j + 2]!;
      shift[(j - base) / 3] = at - start;
      if (end - start < 64) {
        for (let b = start - from; b < end - from; b += 1) out[at++] = copy[b]!;
      } else {
        copy.copy(out, at, start - from, end - from);
        at += end - start;
      }
    }
    this.at = at;
    let j = base;
    for (let k = ref + 1; k < this.objStart.length; k += 1) {
      const start = this.objStart[k]!;
      while (m[j + 2]! <= start) j += 3; // members are in writing order, and so are the objects
      const by = shift[(j - base) / 3]!;
      this.objStart[k] = start + by;
      this.objEnd[k] = this.objEnd[k]! + by;
    }
  }

  private array(): void {
    if (++this.depth > MAX_JSON_DEPTH) throw NOT_PLAIN;
    const ref = this.objStart.length;
    this.objStart.push(this.at);
    this.objEnd.push(-1);
    this.objLevels.push(0);
    let levels = 0;
    const n = this.leb();
    this.byte(0x5b);
    for (let i = 0; i < n; i += 1) {
      if (i > 0) this.byte(0x2c);
      const tag = this.bytes[this.pos++];
      if (tag === TAG_UNDEFINED) this.put(NULL_BYTES, 0, 4);
      else {
        this.below = 0;
        this.value(tag);
        if (this.below > levels) levels = this.below;
      }
    }
    this.byte(0x5d);
    if (this.at > this.maxBytes) throw TOO_LONG;
    this.objEnd[ref] = this.at;
    this.objLevels[ref] = this.below = levels + 1;
    this.depth -= 1;
  }
}

const READER = new Reader();

/**
 * The JSON text of `value` as the guest's `JSON.stringify(value)` would write it, where `bytes` is
 * QuickJS's encoding of `[value]` (the harness hands a state or a tool's result over wrapped, so
 * that any value, undefined too, arrives as one object); or null: not plain data (see above), a
 * cycle, another format version, or more than `maxBytes` of UTF-8. Where `bytes` encode a string
 * (the harness's error reply, "!" and JSON, which JSON text never starts with), that string.
 */
export function bjsonToJson(bytes: Uint8Array, maxBytes: number): string | null | typeof OVER_CAP {
  const text = READER.reset(bytes, maxBytes).read();
  if (out.length > 1 << 22) out = Buffer.allocUnsafe(1 << 16) as SliceBuffer; // not kept large
  if (moveCopy.length > 1 << 22) moveCopy = Buffer.allocUnsafe(1 << 12);
  return text;
}
