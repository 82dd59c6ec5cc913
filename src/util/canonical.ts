import { createHash } from 'node:crypto';
import { RawJson, jsonPieces } from './raw-json.js';

/** JSON with object keys sorted at every level, so equal values always serialize the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

/** The value with object keys sorted at every level; an object in `known` stands as its remembered text (see hashOfWith). */
function sortKeys(value: unknown, known?: WeakMap<object, string>): unknown {
  if (value && typeof value === 'object') {
    const text = known?.get(value);
    if (text !== undefined) return new RawJson(text);
    if (Array.isArray(value)) return value.map(v => sortKeys(v, known));
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v, known);
    }
    return out;
  }
  return value;
}

/**
 * hashOf(value), with the canonical text of the objects in `known` (by identity) taken from there instead of
 * written again, and hashed piece by piece without joining the text: the same hash, with none of the key sorting
 * (and its allocations) for the parts that repeat across calls (the tools of every chat request of an episode).
 * The caller vouches that those objects have not changed since their text was made.
 */
export function hashOfWith(value: unknown, known: WeakMap<object, string>): string {
  const pieces = jsonPieces(sortKeys(value, known));
  if (pieces === undefined) throw new TypeError('the value has no JSON text');
  const hash = createHash('sha256');
  for (const p of pieces) hash.update(p, 'utf8');
  return hash.digest('hex');
}

/** Freezes a value and every object and array in it (in place), so that a text remembered for it stays true. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
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
