/**
 * Differences between two JSON snapshots, by JSON Pointer (RFC 6901) path: what appeared, what
 * disappeared, and what changed (a leaf value, or a value whose type changed). Objects are
 * compared key by key, arrays index by index.
 */
export interface StateDiff {
  readonly added: readonly { readonly path: string; readonly value: unknown }[];
  readonly removed: readonly { readonly path: string; readonly value: unknown }[];
  readonly changed: readonly { readonly path: string; readonly before: unknown; readonly after: unknown }[];
}

const escape = (key: string) => key.replaceAll('~', '~0').replaceAll('/', '~1');

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function kind(v: unknown): 'array' | 'object' | 'leaf' {
  if (Array.isArray(v)) return 'array';
  return v !== null && typeof v === 'object' ? 'object' : 'leaf';
}

export function diffStates(before: unknown, after: unknown): StateDiff {
  const added: { path: string; value: unknown }[] = [];
  const removed: { path: string; value: unknown }[] = [];
  const changed: { path: string; before: unknown; after: unknown }[] = [];
  const walk = (a: Json, b: Json, path: string) => {
    const ka = kind(a);
    if (ka !== kind(b) || ka === 'leaf') {
      if (a !== b) changed.push({ path, before: a, after: b });
      return;
    }
    if (ka === 'array') {
      const xa = a as Json[];
      const xb = b as Json[];
      const common = Math.min(xa.length, xb.length);
      for (let i = 0; i < common; i += 1) walk(xa[i]!, xb[i]!, `${path}/${i}`);
      for (let i = common; i < xa.length; i += 1) removed.push({ path: `${path}/${i}`, value: xa[i] });
      for (let i = common; i < xb.length; i += 1) added.push({ path: `${path}/${i}`, value: xb[i] });
      return;
    }
    const oa = a as Record<string, Json>;
    const ob = b as Record<string, Json>;
    for (const key of Object.keys(oa)) {
      const p = `${path}/${escape(key)}`;
      if (Object.hasOwn(ob, key)) walk(oa[key]!, ob[key]!, p);
      else removed.push({ path: p, value: oa[key] });
    }
    for (const key of Object.keys(ob)) if (!Object.hasOwn(oa, key)) added.push({ path: `${path}/${escape(key)}`, value: ob[key] });
  };
  walk(before as Json, after as Json, '');
  return { added, removed, changed };
}

export function isEmptyDiff(diff: StateDiff): boolean {
  return diff.added.length === 0 && diff.removed.length === 0 && diff.changed.length === 0;
}
