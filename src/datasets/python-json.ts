/**
 * JSON as Python's `json.dumps(value, ensure_ascii=False)` writes it — what chat templates' `tojson`
 * produce, so a dataset line renders as the template would render the same turn: `", "` and `": "`
 * separators, strings escaped as JSON.stringify escapes them, floats with a two-digit exponent
 * (`1e-07`), `undefined` members left out. Below MAX_DEPTH levels of nesting (model-written arguments
 * can nest deeper than any template would), the rest is written compactly by JSON.stringify: still
 * the same value, without recursion that could exhaust the stack.
 */
export const PYTHON_JSON_MAX_DEPTH = 256;

export function pythonJson(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number') {
    const s = JSON.stringify(value);
    const e = s.indexOf('e');
    if (e < 0) return s;
    const signed = s[e + 1] === '-' || s[e + 1] === '+';
    const digits = s.slice(e + (signed ? 2 : 1));
    return `${s.slice(0, e)}e${signed ? s[e + 1]! : '+'}${digits.length < 2 ? `0${digits}` : digits}`;
  }
  if (typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (depth >= PYTHON_JSON_MAX_DEPTH) return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(v => pythonJson(v, depth + 1)).join(', ')}]`;
  const entries = Object.keys(value).flatMap(k => {
    const v = (value as Record<string, unknown>)[k];
    return v === undefined ? [] : [`${JSON.stringify(k)}: ${pythonJson(v, depth + 1)}`];
  });
  return `{${entries.join(', ')}}`;
}
