import type { z } from 'zod';

export type ExtractResult = { ok: true; value: unknown } | { ok: false; error: string };

/**
 * Finds the JSON value in a model's reply. Models wrap JSON in prose, in ```json fences, or put
 * reasoning in <think> blocks first; all of these are accepted. Nothing is stripped from inside
 * the JSON itself (the seed's prefix-stripping corrupted code that began with the stripped word).
 */
export function extractJson(content: string): ExtractResult {
  const found = jsonCandidates(content);
  if (found.values.length) return { ok: true, value: found.values[0] };
  return { ok: false, error: found.error };
}

/** At most this many bracketed blocks are tried per reply (each scan is linear in the reply). */
const MAX_BLOCKS = 16;

/**
 * Every JSON value a reply may hold, in the order they are tried: the whole reply, each ```json
 * fence, each top-level {...} or [...] block. `error` explains why there is none.
 */
export function jsonCandidates(content: string): { values: unknown[]; error: string } {
  const text = stripThink(content).trim();
  if (text === '') return { values: [], error: 'the reply was empty; a JSON value was expected' };
  const texts: string[] = [text, ...fencedBlocks(text), ...balancedBlocks(text)];
  const values: unknown[] = [];
  const seen = new Set<string>();
  let firstError = '';
  for (const candidate of texts) {
    if (seen.has(candidate)) continue;
    seen.add(candidate);
    try {
      values.push(JSON.parse(candidate) as unknown);
    } catch (err) {
      firstError ||= (err as Error).message;
    }
  }
  return { values, error: `the reply is not valid JSON (${firstError})` };
}

/** The reply without <think>…</think> blocks (an unclosed one hides the rest), scanned with indexOf: linear in the reply. */
function stripThink(text: string): string {
  const lower = text.toLowerCase();
  let out = '';
  let at = 0;
  for (;;) {
    const open = lower.indexOf('<think>', at);
    if (open < 0) return out + text.slice(at);
    const close = lower.indexOf('</think>', open + 7);
    if (close < 0) return out + text.slice(at);
    out += text.slice(at, open);
    at = close + 8;
  }
}

/** The bodies of ``` fences (an optional json language tag), scanned with indexOf. */
function fencedBlocks(text: string): string[] {
  const out: string[] = [];
  let at = 0;
  while (out.length < MAX_BLOCKS) {
    const open = text.indexOf('```', at);
    if (open < 0) break;
    const lineEnd = text.indexOf('\n', open + 3);
    if (lineEnd < 0) break;
    const tag = text.slice(open + 3, lineEnd).trim().toLowerCase();
    const close = text.indexOf('```', lineEnd + 1);
    if (close < 0) break;
    if (tag === '' || tag === 'json') out.push(text.slice(lineEnd + 1, close).trim());
    at = close + 3;
  }
  return out;
}

/** Top-level balanced {...} or [...] blocks, respecting strings and escapes. */
function balancedBlocks(text: string): string[] {
  const out: string[] = [];
  let from = 0;
  let tries = 0;
  while (out.length < MAX_BLOCKS && tries < MAX_BLOCKS * 2) {
    const start = nextBracket(text, from);
    if (start < 0) break;
    tries += 1;
    const end = balancedEnd(text, start);
    if (end < 0) {
      from = start + 1;
      continue;
    }
    out.push(text.slice(start, end + 1));
    from = end + 1;
  }
  return out;
}

function nextBracket(text: string, from: number): number {
  for (let i = from; i < text.length; i += 1) if (text[i] === '{' || text[i] === '[') return i;
  return -1;
}

/** Index of the bracket closing the one at `start`, or -1. */
function balancedEnd(text: string, start: number): number {
  const stack: string[] = [];
  let inString = false;
  for (let i = start; i < text.length; i += 1) {
    const ch = text[i];
    if (inString) {
      if (ch === '\\') i += 1;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    else if (ch === '{' || ch === '[') stack.push(ch === '{' ? '}' : ']');
    else if (ch === '}' || ch === ']') {
      if (stack.pop() !== ch) return -1;
      if (stack.length === 0) return i;
    }
  }
  return -1;
}

/** A readable list of what is wrong, for the repair message and the recorded reason. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 20)
    .map(issue => `- at ${issue.path.length ? issue.path.join('.') : '(top level)'}: ${issue.message}`)
    .join('\n');
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * The first JSON value in the reply that matches the schema (every candidate block is tried, not
 * only the first). Keys the schema does not know are dropped rather than sent back for repair: a
 * model that adds `"explanation"` to a correct answer costs no repair round.
 */
export function parseStructured<T>(content: string, schema: z.ZodType<T>): ParseResult<T> {
  const found = jsonCandidates(content);
  if (!found.values.length) return { ok: false, error: found.error };
  let firstError: z.ZodError | null = null;
  for (const value of found.values) {
    const result = schema.safeParse(value);
    if (result.success) return { ok: true, value: result.data };
    const pruned = withoutUnknownKeys(value, result.error);
    if (pruned !== null) {
      const again = schema.safeParse(pruned);
      if (again.success) return { ok: true, value: again.data };
    }
    firstError ??= result.error;
  }
  return { ok: false, error: `the JSON does not match the required format:\n${describeZodError(firstError!)}` };
}

/** A copy of `value` without the keys the error reports as unrecognized, or null when other problems remain. */
function withoutUnknownKeys(value: unknown, error: z.ZodError): unknown {
  if (!error.issues.every(issue => issue.code === 'unrecognized_keys')) return null;
  const copy = structuredClone(value) as Record<string, unknown>;
  for (const issue of error.issues) {
    if (issue.code !== 'unrecognized_keys') continue;
    let target: unknown = copy;
    for (const step of issue.path) target = (target as Record<PropertyKey, unknown> | undefined)?.[step];
    if (target && typeof target === 'object') for (const key of issue.keys) delete (target as Record<string, unknown>)[key];
  }
  return copy;
}
