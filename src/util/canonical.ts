import { createHash } from 'node:crypto';
import { RawJson, jsonPieces, stringifyJson } from './raw-json.js';

/** JSON with object keys sorted at every level, so equal values always serialize the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/**
 * canonicalJson, with the canonical text of the objects in `known` (by identity) taken from there instead of
 * written again: the same text, with none of the key sorting (and its allocations) for the parts that repeat
 * across calls (the tools of every chat request of an episode). The caller vouches that those objects have
 * not changed since their text was made.
 */
export function canonicalJsonWith(value: unknown, known: WeakMap<object, string>): string | undefined {
  return stringifyJson(sortKeysWith(value, known));
}

/** sha256(canonicalJsonWith(value, known)), hashed piece by piece without joining the text. */
export function hashOfWith(value: unknown, known: WeakMap<object, string>): string {
  const pieces = jsonPieces(sortKeysWith(value, known));
  if (pieces === undefined) throw new TypeError('the value has no JSON text');
  const hash = createHash('sha256');
  for (const p of pieces) hash.update(p, 'utf8');
  return hash.digest('hex');
}

function sortKeysWith(value: unknown, known: WeakMap<object, string>): unknown {
  if (value && typeof value === 'object') {
    const text = known.get(value);
    if (text !== undefined) return new RawJson(text);
    if (Array.isArray(value)) return value.map(v => sortKeysWith(v, known));
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeysWith(v, known);
    }
    return out;
  }
  return value;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Hash of a value's canonical JSON. */
export function hashOf(value: unknown, length = 64): string {
  return sha256(canonicalJson(value)).slice(0, length);
}
