import { pythonFloat } from '../util/python-json.js';

/**
 * JSON as Python's `json.dumps(value, ensure_ascii=False)` writes it — what chat templates' `tojson`
 * produce, so a dataset line renders as the template would render the same turn: `", "` and `": "`
 * separators, strings escaped as JSON.stringify escapes them, an integral number as an int and any other as
 * Python's repr of the float (`1e-05`, `1.5e-07`), `undefined` members left out. For a value that came as JSON
 * text (a model's arguments), pythonDumpsText reads the text as Python would instead. Below MAX_DEPTH levels of nesting (model-written arguments
 * can nest deeper than any template would), the rest is written compactly by JSON.stringify: still
 * the same value, without recursion that could exhaust the stack.
 */
export const PYTHON_JSON_MAX_DEPTH = 256;

export function pythonJson(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number') {
    // An integral value as an int (JSON does not say whether it was one), anything else as Python's repr of the float.
    if (!Number.isFinite(value)) return 'null';
    if (Number.isInteger(value) && Math.abs(value) < 1e21) return JSON.stringify(value);
    return pythonFloat(value);
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
