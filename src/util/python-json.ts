// What Python's json module writes: the text of a JSON value as Python reads and writes it again.

import { jsonMemberHolding } from './json-member.js';

/**
 * Python's `repr` of a float, which `json.dumps` writes: the shortest digits that read back as the same double (as
 * JavaScript finds them), in exponent form when the decimal exponent is below -4 or 16 and above (`1e-05`, `1e+16`,
 * `1.5e+300`: a sign and at least two digits), else positional with `.0` when integral (`2.0`, `1000000000000000.0`).
 */
export function pythonFloat(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, exp] = Math.abs(x).toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '');
  const e = Number(exp);
  const sign = x < 0 ? '-' : '';
  if (e < -4 || e >= 16) {
    const power = String(Math.abs(e)).padStart(2, '0');
    return `${sign}${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${e < 0 ? '-' : '+'}${power}`;
  }
  const point = e + 1;
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}.0`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/**
 * Python's reading of `text` (compact, as pythonDumpsText writes it) where it differs from `value`, JavaScript's
 * reading of the same text (`5.0`, `1e16`, an integer past 2^53, integer-like keys); undefined where they agree or
 * Python would not read the text. What a document keeps beside the parsed value so Python gets the text's values.
 */
export function pythonTextWhereLost(text: string, value: unknown): string | undefined {
  const exact = pythonDumpsText(text, true);
  return exact !== undefined && exact !== JSON.stringify(value) ? exact : undefined;
}

/**
 * pythonTextWhereLost for member `name` of a JSON object's text (a model's answer), whose value JavaScript read as
 * `value`: Python's reading of the member's text where it differs. Undefined where they agree, where the member is
 * absent, or where its text does not hold `value` (a schema changed the value after it was read).
 */
export function pythonMemberWhereLost(objectText: string, name: string, value: unknown): string | undefined {
  const text = jsonMemberHolding(objectText, name, value);
  return text === undefined ? undefined : pythonTextWhereLost(text, value);
}

/** Python 3.11+ refuses to read an integer of more digits than this (`sys.get_int_max_str_digits()`). */
export const PYTHON_INT_MAX_DIGITS = 4300;

const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

type Frame = { readonly kind: 'array'; readonly items: string[] } | { readonly kind: 'object'; readonly entries: Map<string, string>; key: string | null };

/**
 * What Python's `json.dumps(json.loads(text), ensure_ascii=False)` writes for a JSON text (with `compact`, the
 * separators `,` and `:`): the values as Python reads the text, not as JavaScript does — an integer stays exact
 * however long, a number with a fraction or an exponent is a float written as `repr` writes it (`2.0`, `1e+16`),
 * `-0` is the int 0, an object keeps its keys in the order they first came (a repeated key takes the last value, in
 * the first one's place), where JavaScript would move integer-like keys first. Strings are written as JSON.stringify
 * writes them, which is Python's form but for a lone surrogate (escaped here, `\ud800`; Python would keep it raw,
 * which UTF-8 cannot hold). One pass, no recursion. Undefined when the text is not JSON, or holds an integer Python
 * would refuse to read (more than PYTHON_INT_MAX_DIGITS digits).
 */
export function pythonDumpsText(text: string, compact = false): string | undefined {
  try {
    JSON.parse(text);
  } catch {
    return undefined;
  }
  const comma = compact ? ',' : ', ';
  const colon = compact ? ':' : ': ';
  const stack: Frame[] = [];
  let out: string | undefined;
  const emit = (v: string) => {
    const top = stack.at(-1);
    if (!top) out = v;
    else if (top.kind === 'array') top.items.push(v);
    else {
      top.entries.set(top.key!, v);
      top.key = null;
    }
  };
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === ',' || c === ':') {
      i += 1;
    } else if (c === '{') {
      stack.push({ kind: 'object', entries: new Map(), key: null });
      i += 1;
    } else if (c === '[') {
      stack.push({ kind: 'array', items: [] });
      i += 1;
    } else if (c === '}' || c === ']') {
      const f = stack.pop()!;
      emit(f.kind === 'array' ? `[${f.items.join(comma)}]` : `{${[...f.entries].map(([k, v]) => `${JSON.stringify(k)}${colon}${v}`).join(comma)}}`);
      i += 1;
    } else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const value = JSON.parse(text.slice(i, j + 1)) as string;
      i = j + 1;
      const top = stack.at(-1);
      if (top?.kind === 'object' && top.key === null) top.key = value;
      else emit(JSON.stringify(value));
    } else if (c === 't' || c === 'n') {
      emit(c === 't' ? 'true' : 'null');
      i += 4;
    } else if (c === 'f') {
      emit('false');
      i += 5;
    } else {
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text)!;
      i += m[0].length;
      if (m[1] === undefined && m[2] === undefined) {
        const digits = m[0].replace('-', '');
        if (digits.length > PYTHON_INT_MAX_DIGITS) return undefined;
        emit(/^0+$/.test(digits) ? '0' : m[0]);
      } else emit(pythonFloat(Number(m[0])));
    }
  }
  return out;
}
