import { createHash } from 'node:crypto';

/** JSON with object keys sorted at every level, so equal values always serialize the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

/** The value with object keys sorted at every level. */
function sortKeys(value: unknown): unknown {
  if (value && typeof value === 'object') {
    if (Array.isArray(value)) return value.map(v => sortKeys(v));
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
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
