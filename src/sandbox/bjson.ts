/**
 * QuickJS's binary object format (what `JS_WriteObject` writes; quickjs-emscripten's
 * `QTS_bjson_encode`, with object references) read back as the JSON text that the guest's
 * `JSON.stringify` would have written for the same value, or null where the value holds anything
 * but plain data.
 *
 * Why: stringifying an environment's state inside QuickJS is the largest part of a pool thread's
 * work per episode (a 66 KB state: ≈ 2 ms, ≈ 8× the native encoder, ≈ 6× V8's stringify; see
 * docs/benchmarks.md). The encoder writes each key once (an atom table) and each string as its
 * bytes, with no quoting and no `toJSON` lookups; this side turns that into JSON text with V8.
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
 * - strings are quoted by V8's `JSON.stringify`, which escapes as QuickJS's does (the six short
 *   escapes, other controls and lone surrogates as lower-case `\uXXXX`); numbers by `String`, the
 *   shortest round-trip form both engines write, non-finite → `null`.
 * What the reader cannot see is an object's prototype: an inherited `toJSON` (a class method, or
 * one put on a prototype) would change the guest's text. The caller uses this reader only for
 * code that cannot reach one (quickjs-host.ts, `plainSnapshots`).
 *
 * `maxUnits`: the text may not grow past this many UTF-16 units (a cap in bytes is never below the
 * units it takes); past it → null, and the caller's slower path gives the error it always gave.
 */

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

/** Thrown inside the reader when the value is not plain data, or the text would be too long. */
class NotPlain extends Error {}
const NOT_PLAIN = new NotPlain('not plain data');

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

/** Node's Buffer slices without argument checks (present since Node 0.x; typed here as they are used). */
interface SliceBuffer extends Buffer {
  latin1Slice(start: number, end: number): string;
  ucs2Slice(start: number, end: number): string;
}

class Reader {
  private pos = 0;
  private units = 0;
  private readonly bytes: SliceBuffer;
  private readonly view: DataView;
  /** Each atom's key as quoted JSON with its colon, and its array index (or −1). */
  private readonly atomKeys: string[] = [];
  private readonly atomIndices: number[] = [];
  /** The text of each object, by the encoder's reference index; undefined while it is being written. */
  private readonly objects: (string | undefined)[] = [];

  constructor(
    bytes: Uint8Array,
    private readonly maxUnits: number,
  ) {
    this.bytes = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) as SliceBuffer;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  read(): string | null {
    try {
      if (this.bytes.length === 0 || this.bytes[this.pos++] !== BJSON_VERSION) return null;
      const atoms = this.leb();
      for (let i = 0; i < atoms; i += 1) {
        const name = this.string();
        this.atomKeys.push(`${JSON.stringify(name)}:`);
        this.atomIndices.push(arrayIndexOf(name));
      }
      // [value]: the one-element array the harness wraps the value in (see bjsonToJson)
      if (this.bytes[this.pos++] !== TAG_ARRAY || this.leb() !== 1) return null;
      this.objects.push(undefined); // the wrapper: never met again inside the value
      const tag = this.bytes[this.pos++];
      if (tag === TAG_UNDEFINED) return null; // JSON.stringify(undefined) is not text
      const text = this.value(tag);
      if (this.pos !== this.bytes.length) return null;
      return text;
    } catch (err) {
      // A truncated or unexpected buffer reads past its end; a very deep one overflows this
      // stack (a RangeError): either way, the guest's own stringify decides.
      if (err instanceof NotPlain || err instanceof RangeError) return null;
      throw err;
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

  private string(): string {
    const head = this.leb();
    const start = this.pos;
    if ((head & 1) === 0) {
      const end = start + head / 2;
      if (end > this.bytes.length) throw NOT_PLAIN;
      this.pos = end;
      return this.bytes.latin1Slice(start, end); // 8-bit: every byte its own code point
    }
    const end = start + (head - 1);
    if (end > this.bytes.length) throw NOT_PLAIN;
    this.pos = end;
    return this.bytes.ucs2Slice(start, end); // UTF-16LE code units, lone surrogates kept
  }

  private value(tag: number | undefined): string {
    let text: string;
    switch (tag) {
      case TAG_NULL:
        text = 'null';
        break;
      case TAG_FALSE:
        text = 'false';
        break;
      case TAG_TRUE:
        text = 'true';
        break;
      case TAG_INT32: {
        const v = this.leb();
        text = String((v >>> 1) ^ -(v & 1));
        break;
      }
      case TAG_FLOAT64: {
        if (this.pos + 8 > this.bytes.length) throw NOT_PLAIN;
        const d = this.view.getFloat64(this.pos, true);
        this.pos += 8;
        text = Number.isFinite(d) ? String(d) : 'null';
        break;
      }
      case TAG_STRING:
        text = JSON.stringify(this.string());
        break;
      case TAG_OBJECT:
        return this.object();
      case TAG_ARRAY:
        return this.array();
      case TAG_OBJECT_REFERENCE: {
        const found = this.objects[this.leb()];
        if (found === undefined) throw NOT_PLAIN; // a cycle (or a reference to nothing)
        text = found;
        break;
      }
      default:
        throw NOT_PLAIN;
    }
    this.units += text.length;
    if (this.units > this.maxUnits) throw NOT_PLAIN;
    return text;
  }

  private object(): string {
    const ref = this.objects.length;
    this.objects.push(undefined);
    const n = this.leb();
    let text = '';
    let indexed: { index: number; text: string }[] | null = null;
    for (let i = 0; i < n; i += 1) {
      // the key: an integer atom (odd: its value), or an entry of the table (counted from 1)
      const atom = this.leb();
      const tag = this.bytes[this.pos++];
      if (tag === TAG_UNDEFINED) continue;
      let key: string;
      let index: number;
      if ((atom & 1) === 1) {
        index = (atom - 1) / 2;
        key = `"${index}":`;
      } else {
        const at = atom / 2 - 1;
        key = this.atomKeys[at]!;
        if (key === undefined) throw NOT_PLAIN;
        index = this.atomIndices[at]!;
      }
      this.units += key.length + 1;
      const member = key + this.value(tag);
      if (index >= 0) (indexed ??= []).push({ index, text: member });
      else text = text === '' ? member : `${text},${member}`;
    }
    if (indexed) {
      indexed.sort((a, b) => a.index - b.index);
      let head = '';
      for (const entry of indexed) head = head === '' ? entry.text : `${head},${entry.text}`;
      text = text === '' ? head : `${head},${text}`;
    }
    text = `{${text}}`;
    this.units += 2;
    if (this.units > this.maxUnits) throw NOT_PLAIN;
    this.objects[ref] = text;
    return text;
  }

  private array(): string {
    const ref = this.objects.length;
    this.objects.push(undefined);
    const n = this.leb();
    let text = '';
    for (let i = 0; i < n; i += 1) {
      const tag = this.bytes[this.pos++];
      let item: string;
      if (tag === TAG_UNDEFINED) {
        item = 'null';
        this.units += 4;
      } else {
        item = this.value(tag);
      }
      text = i === 0 ? item : `${text},${item}`;
    }
    text = `[${text}]`;
    this.units += n + 1; // the brackets and the commas
    if (this.units > this.maxUnits) throw NOT_PLAIN;
    this.objects[ref] = text;
    return text;
  }
}

/**
 * The JSON text of `value` as the guest's `JSON.stringify(value)` would write it, where `bytes` is
 * QuickJS's encoding of `[value]` (the harness hands the state over wrapped, so that any value,
 * undefined too, arrives as one object); or null: not plain data (see above), a cycle, another
 * format version, or longer than `maxUnits`.
 */
export function bjsonToJson(bytes: Uint8Array, maxUnits: number): string | null {
  return new Reader(bytes, maxUnits).read();
}
