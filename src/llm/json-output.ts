import type { z } from 'zod';
import { splitThinking } from './thinking.js';

export type ExtractResult = { ok: true; value: unknown } | { ok: false; error: string };

/**
 * Finds the JSON value in a model's reply. Models wrap JSON in prose, in ```json fences, or put
 * reasoning in <think> blocks first; all of these are accepted. Nothing is stripped from inside
 * the JSON itself (the seed's prefix-stripping corrupted code that began with the stripped word).
 */
export function extractJson(content: string): ExtractResult {
  const found = jsonCandidates(content);
  if (found.whole) return { ok: true, value: found.whole.value };
  if (found.blocks.length) return { ok: true, value: found.blocks[0]!.value };
  return { ok: false, error: found.error };
}

/** A JSON value of a reply, and its text as the model wrote it (its numbers as spelt: `5.0`, an integer past 2^53). */
export interface JsonCandidate {
  readonly value: unknown;
  readonly text: string;
}

/**
 * Every JSON value a reply may hold: the whole reply (`whole`, when it parses), then each top-level
 * {...} or [...] block and each ```json fence, in the order they appear (`blocks`). `error` explains
 * why there is none.
 */
export function jsonCandidates(content: string): { whole: JsonCandidate | null; blocks: JsonCandidate[]; error: string } {
  const text = splitThinking(content).answer;
  if (text === '') return { whole: null, blocks: [], error: 'the reply was empty; a JSON value was expected' };
  let firstError = '';
  let whole: JsonCandidate | null = null;
  try {
    whole = { value: JSON.parse(text) as unknown, text };
  } catch (err) {
    firstError = (err as Error).message;
  }
  const blocks: JsonCandidate[] = [];
  const seen = new Set<string>([text]);
  for (const candidate of [...balancedBlocks(text), ...fencedBlocks(text)]) {
    if (seen.has(candidate)) continue;
    seen.add(candidate);
    try {
      blocks.push({ value: JSON.parse(candidate) as unknown, text: candidate });
    } catch (err) {
      firstError ||= (err as Error).message;
    }
  }
  return { whole, blocks, error: `the reply is not valid JSON (${firstError})` };
}

/** The bodies of ``` fences (an optional json language tag), scanned with indexOf: linear in the reply. */
function fencedBlocks(text: string): string[] {
  const out: string[] = [];
  let at = 0;
  for (;;) {
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

/**
 * Top-level balanced {...} or [...] blocks that parse as JSON, respecting strings and escapes. A
 * bracket that opens nothing parseable (a link "[text](url)", an unclosed brace) is skipped; the scans
 * together read at most eight times the reply, so hostile text stays linear.
 */
function balancedBlocks(text: string): string[] {
  const out: string[] = [];
  let from = 0;
  let budget = 8 * text.length + 10_000;
  while (budget > 0) {
    const start = nextBracket(text, from);
    if (start < 0) break;
    const end = balancedEnd(text, start);
    budget -= (end < 0 ? text.length : end + 1) - start;
    const block = end < 0 ? null : text.slice(start, end + 1);
    if (block !== null && parses(block)) {
      out.push(block);
      from = end + 1;
    } else from = start + 1;
  }
  return out;
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
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

/** `text`: the JSON text the value was read from (before keys the schema does not know were dropped). */
export type ParseResult<T> = { ok: true; value: T; text: string } | { ok: false; error: string };

/**
 * The JSON value of the reply that matches the schema: the whole reply when it does, else the last
 * block that does (a model that echoes the format's example or writes a draft first ends with its
 * answer). Keys the schema does not know are dropped rather than sent back for repair — a model that
 * adds `"explanation"` to a correct answer costs no repair round — unless one looks like a misspelt
 * key of the schema (`helper` for `helpers`): that goes back to the model.
 */
export function parseStructured<T>(content: string, schema: z.ZodType<T>): ParseResult<T> {
  const found = jsonCandidates(content);
  if (!found.whole && !found.blocks.length) return { ok: false, error: found.error };
  const order = [...(found.whole ? [found.whole] : []), ...[...found.blocks].reverse()];
  let firstError: z.ZodError | null = null;
  for (const { value, text } of order) {
    const result = schema.safeParse(value);
    if (result.success) return { ok: true, value: result.data, text };
    const pruned = withoutUnknownKeys(value, result.error);
    if (pruned !== null) {
      const again = schema.safeParse(pruned.value);
      if (again.success && !misspelt(again.data, pruned.dropped)) return { ok: true, value: again.data, text };
    }
    firstError ??= result.error;
  }
  return { ok: false, error: `the JSON does not match the required format:\n${describeZodError(firstError!)}` };
}

interface Dropped {
  readonly path: readonly PropertyKey[];
  readonly key: string;
}

/** A copy of `value` without the keys the error reports as unrecognized (and what was dropped), or null when other problems remain. */
function withoutUnknownKeys(value: unknown, error: z.ZodError): { value: unknown; dropped: Dropped[] } | null {
  if (!error.issues.every(issue => issue.code === 'unrecognized_keys')) return null;
  const copy = structuredClone(value) as Record<string, unknown>;
  const dropped: Dropped[] = [];
  for (const issue of error.issues) {
    if (issue.code !== 'unrecognized_keys') continue;
    let target: unknown = copy;
    for (const step of issue.path) target = (target as Record<PropertyKey, unknown> | undefined)?.[step];
    if (!target || typeof target !== 'object') continue;
    for (const key of issue.keys) {
      delete (target as Record<string, unknown>)[key];
      dropped.push({ path: issue.path, key });
    }
  }
  return { value: copy, dropped };
}

/** Lower case, without _ - and spaces, and without a final s: the form two spellings of one key share. */
const keyForm = (key: string) => key.toLowerCase().replace(/[_\- ]/g, '').replace(/s$/, '');

/** Whether a dropped key is another spelling of a key the parsed value has at the same place (filled by a default, say). */
function misspelt(parsed: unknown, dropped: readonly Dropped[]): boolean {
  return dropped.some(({ path, key }) => {
    let target: unknown = parsed;
    for (const step of path) target = (target as Record<PropertyKey, unknown> | undefined)?.[step];
    if (!target || typeof target !== 'object') return false;
    const form = keyForm(key);
    return Object.keys(target).some(known => keyForm(known) === form);
  });
}
