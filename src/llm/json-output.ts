import type { z } from 'zod';
import { deeperThan, MAX_JSON_DEPTH } from '../sandbox/python/python-harness.mjs';
import { jsonrepair } from 'jsonrepair';
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
 * why there is none. `meant`: why the reply's own JSON does not parse, and that text, when the reply was written as one
 * (it is one bracketed value from its first character to its last, or the body of a fence tagged json) — its
 * fragments that parse are not what the model meant, so their mismatch is no answer to give it.
 */
export function jsonCandidates(content: string): { whole: JsonCandidate | null; blocks: JsonCandidate[]; error: string; meant: { readonly error: string; readonly text: string } | null } {
  const text = splitThinking(content).answer;
  if (text === '') return { whole: null, blocks: [], error: 'the reply was empty; a JSON value was expected', meant: null };
  let firstError = '';
  let meant: { error: string; text: string } | null = null;
  let whole: JsonCandidate | null = null;
  try {
    whole = { value: JSON.parse(text) as unknown, text };
  } catch (err) {
    firstError = (err as Error).message;
    if (text[0] === '{' || text[0] === '[') {
      const end = balancedEnd(text, 0);
      if (end === -1 || end === text.length - 1) meant = { error: withHint(firstError), text };
    }
  }
  const fences = fencedBlocks(text);
  // (a fence tagged json, or an untagged one whose body starts as JSON does: not one of code)
  const tagged = new Set(fences.filter(f => f.json || f.body[0] === '{' || f.body[0] === '[').map(f => f.body));
  const blocks: JsonCandidate[] = [];
  const seen = new Set<string>([text]);
  for (const candidate of [...balancedBlocks(text), ...fences.map(f => f.body)]) {
    if (seen.has(candidate)) continue;
    seen.add(candidate);
    try {
      blocks.push({ value: JSON.parse(candidate) as unknown, text: candidate });
    } catch (err) {
      firstError ||= (err as Error).message;
      if (tagged.has(candidate)) meant ??= { error: withHint((err as Error).message), text: candidate };
    }
  }
  return { whole, blocks, error: `the reply is not valid JSON (${withHint(firstError)})`, meant };
}

/**
 * The JSON a reply written as one value means when it does not parse as it is but only through slips a reader can mend
 * without guessing (jsonrepair): raw line breaks or tabs in strings (code), trailing commas, comments, single quotes,
 * Python's True / False / None. Only a value whose brackets balance (a reply cut short is not completed: its end is
 * unknown) and no deeper than MAX_JSON_DEPTH (the reader recurses). Null when it cannot be read so.
 */
function mended(text: string): JsonCandidate | null {
  if ((text[0] !== '{' && text[0] !== '[') || balancedEnd(text, 0) !== text.length - 1 || deeperThan(text, MAX_JSON_DEPTH)) return null;
  try {
    const repaired = jsonrepair(text);
    const value = JSON.parse(repaired) as unknown;
    // A single-quoted string with an apostrophe in it ('the member's loan') is read by the repair as ending there, and
    // its quote turned into a `"` the model never wrote ("the member\"s loan"): a guess, which would be taken silently.
    // Each `"` inside a string of the value must be in the reply as written there (with the letters around it, as is or
    // escaped); a value with one that is not is such a guess, and is not taken (the model is asked again).
    if (!quotesWritten(value, text)) return null;
    return { value, text: repaired };
  } catch {
    return null;
  }
}

/** Whether every `"` inside the strings (keys too) of `value` stands in `text` with the characters around it. */
function quotesWritten(value: unknown, text: string): boolean {
  if (typeof value === 'string') {
    for (let i = value.indexOf('"'); i >= 0; i = value.indexOf('"', i + 1)) {
      const around = value.slice(Math.max(0, i - 3), i + 4);
      if (!text.includes(around) && !text.includes(around.replaceAll('"', '\\"'))) return false;
    }
    return true;
  }
  if (Array.isArray(value)) return value.every(v => quotesWritten(v, text));
  if (value && typeof value === 'object') return Object.entries(value).every(([k, v]) => quotesWritten(k, text) && quotesWritten(v, text));
  return true;
}

/** A JSON.parse message, with what to do where models most often go wrong (code with raw line breaks inside a string). */
function withHint(message: string): string {
  return /control character/i.test(message) ? `${message}: a line break or tab inside a JSON string is written \\n or \\t` : message;
}

/** The bodies of ``` fences (an optional json language tag; `json` when it has it), scanned with indexOf: linear in the reply. */
function fencedBlocks(text: string): { body: string; json: boolean }[] {
  const out: { body: string; json: boolean }[] = [];
  let at = 0;
  for (;;) {
    const open = text.indexOf('```', at);
    if (open < 0) break;
    const lineEnd = text.indexOf('\n', open + 3);
    if (lineEnd < 0) break;
    const tag = text.slice(open + 3, lineEnd).trim().toLowerCase();
    const close = text.indexOf('```', lineEnd + 1);
    if (close < 0) break;
    if (tag === '' || tag === 'json') out.push({ body: text.slice(lineEnd + 1, close).trim(), json: tag === 'json' });
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
 * The JSON value of the reply that matches the schema: the whole reply when it does; else the one value its blocks
 * give that matches (a format's example echoed as it is, or the answer written twice, is still one value). When its
 * blocks give several different values that match, the reply goes back for repair: a draft before the answer, an
 * example after it or a format reminder in a fence look like the answer (taking the last one silently inverted
 * verdicts; preferring a fenced one took a fenced reminder over the answer). Keys the schema does not know are dropped
 * rather than sent back for repair — a model that adds `"explanation"` to a correct answer costs no repair round —
 * unless one looks like a misspelt key of the schema (`helper` for `helpers`): that goes back to the model. A value
 * nested more than MAX_JSON_DEPTH levels is refused (the fleet passes none on). When nothing matches, the message is
 * why the reply's own JSON does not parse when it was written as one, else the schema's complaint about the whole
 * reply or, failing that, about its last block (an answer after a draft).
 */
export function parseStructured<T>(content: string, schema: z.ZodType<T>): ParseResult<T> {
  const found = jsonCandidates(content);
  // A slip that costs no repair round when the mended value is the answer (checked against the schema as any).
  const tryMended = (meant: { readonly error: string; readonly text: string }): ParseResult<T> => {
    const fixed = mended(meant.text);
    const data = fixed ? matchSchema(schema, fixed.value).data : undefined;
    return fixed && data !== undefined ? { ok: true, value: data, text: fixed.text } : { ok: false, error: `the reply is not valid JSON (${meant.error})` };
  };
  if (!found.whole && !found.blocks.length) return found.meant ? tryMended(found.meant) : { ok: false, error: found.error };
  const order: JsonCandidate[] = [...(found.whole ? [found.whole] : []), ...found.blocks];
  let wholeError: z.ZodError | null = null;
  let lastError: z.ZodError | null = null;
  let tooDeep = false;
  const matched: { value: T; text: string; key: string }[] = [];
  for (const candidate of order) {
    const { value, text } = candidate;
    if (deeperThan(text, MAX_JSON_DEPTH)) {
      tooDeep = true;
      continue;
    }
    const { data, error } = matchSchema(schema, value);
    if (error) {
      if (candidate === found.whole) wholeError = error;
      else lastError = error;
    }
    if (data !== undefined) {
      // (the whole reply, when it matches, is the answer: its blocks are its own parts)
      if (candidate === found.whole) return { ok: true, value: data, text };
      matched.push({ value: data, text, key: JSON.stringify(data) ?? '' });
    }
  }
  const distinct = [...new Map(matched.map(m => [m.key, m] as const)).values()];
  if (distinct.length === 1) return { ok: true, value: distinct[0]!.value, text: distinct[0]!.text };
  if (distinct.length > 1) {
    const heads = distinct.slice(0, 3).map(m => (m.text.length > 80 ? `${m.text.slice(0, 80)}…` : m.text));
    return { ok: false, error: `the reply holds ${distinct.length} different JSON values that each match the required format (${heads.join('; ')}); answer with exactly one` };
  }
  if (found.meant) return tryMended(found.meant);
  const schemaError = wholeError ?? lastError;
  if (!schemaError && tooDeep) return { ok: false, error: `the JSON nests containers more than ${MAX_JSON_DEPTH} levels deep; keep it flatter (a list of items rather than items inside items)` };
  return { ok: false, error: `the JSON does not match the required format:\n${describeZodError(schemaError!)}` };
}

/**
 * `value` as the schema reads it, keys it does not know dropped (unless one looks like a misspelt key of the schema):
 * `data`, or undefined with the schema's `error` (of the value as it came) when it does not match.
 */
function matchSchema<T>(schema: z.ZodType<T>, value: unknown): { data: T | undefined; error: z.ZodError | null } {
  const result = schema.safeParse(value);
  if (result.success) return { data: result.data, error: null };
  const pruned = withoutUnknownKeys(value, result.error);
  if (pruned !== null) {
    const again = schema.safeParse(pruned.value);
    if (again.success && !misspelt(again.data, pruned.dropped)) return { data: again.data, error: result.error };
  }
  return { data: undefined, error: result.error };
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
