/**
 * Tool calls written in the message text. Models served without a tool-call parser (vLLM, SGLang or
 * Ollama without --tool-call-parser) put their calls in `message.content` instead of
 * `message.tool_calls`; this module turns them back into OpenAI-style calls, and recognises a reply
 * that looks like a call but cannot be used, so that the episode loop never takes it for an answer.
 *
 * Everything here runs in time linear in the text: markers are found with indexOf (each search
 * starts where the previous one ended, or is cached until passed), JSON extents are found with one
 * bracket scanner that respects strings and escapes, and no regular expression is used.
 */

import type { ToolCallFormat } from '../../config/index.js';
import { cutText } from '../util/text.js';

export { TOOL_CALL_FORMATS, type ToolCallFormat } from '../../config/index.js';

export interface TextToolCall {
  readonly name: string;
  /** JSON text of an object */
  readonly arguments: string;
}

export type TextToolCallParse =
  | { readonly kind: 'none' }
  | {
      readonly kind: 'calls';
      readonly calls: readonly TextToolCall[];
      /** the text left once the calls are removed, trimmed; null when empty */
      readonly content: string | null;
      readonly format: Exclude<ToolCallFormat, 'native' | 'auto'>;
    }
  | {
      readonly kind: 'malformed';
      /** what looked like a call and why it could not be used, one sentence for a log/termination detail */
      readonly problem: string;
    };

type TextFormat = Exclude<ToolCallFormat, 'native' | 'auto'>;

/** The order `auto` tries the formats in: the ones with unambiguous markers first. */
const AUTO_ORDER: readonly TextFormat[] = ['hermes', 'mistral', 'llama3', 'json'];

/**
 * Parses the tool calls a model wrote in its reply text, in the given format (`auto`: the first of
 * hermes, mistral, llama3, json that yields calls). `<think>…</think>` blocks are never searched for
 * calls (they stay in `content`). Names not in `toolNames` are still returned; `toolNames` only lets
 * a JSON object such as `{"name": "get_time"}` (no arguments key) count as a call to that tool, and
 * helps `native` recognise text that tries to call a tool.
 */
export function parseTextToolCalls(text: string, format: ToolCallFormat, toolNames: readonly string[], tools: readonly unknown[] = []): TextToolCallParse {
  const names = new Set(toolNames);
  if (format === 'native') {
    const attempt = describeAttempt(text, names, tools);
    return attempt === null
      ? NONE
      : { kind: 'malformed', problem: clip(`the reply writes a tool call as text (${attempt}) but this model profile expects native tool calls in message.tool_calls`) };
  }
  const visible = maskThinking(text);
  const formats = format === 'auto' ? AUTO_ORDER : [format];
  let firstMalformed: TextToolCallParse | null = null;
  for (const f of formats) {
    const result = PARSERS[f](text, visible, names, tools);
    if (result.kind === 'calls') {
      const content = removeSpans(text, result.spans);
      // What is left must hold no call of its own (a call in another format after these, one the format's reader
      // stopped before): it would be neither run nor seen as one, and the reply's text would then carry it as an answer.
      const more = content === null ? null : describeAttempt(content, names, tools, true);
      if (more !== null) {
        const n = result.calls.length;
        return { kind: 'malformed', problem: clip(`the reply writes ${n} tool call${n === 1 ? '' : 's'} in the ${f} format and, outside ${n === 1 ? 'it' : 'them'}, more that cannot be read with ${n === 1 ? 'it' : 'them'} (${more}); write every call of a reply the same way`) };
      }
      return { kind: 'calls', calls: result.calls, content, format: f };
    }
    if (result.kind === 'malformed') firstMalformed ??= { kind: 'malformed', problem: clip(result.problem) };
  }
  return firstMalformed ?? NONE;
}

/** True when text looks like an attempted tool call in any known format (used with format 'native' to refuse treating it as an answer). */
export function looksLikeToolCall(text: string, toolNames: readonly string[]): boolean {
  return describeAttempt(text, new Set(toolNames), []) !== null;
}

// ---------------------------------------------------------------------------------------------
// Shared machinery

interface Span {
  readonly start: number;
  readonly end: number;
}

type FormatResult =
  | { readonly kind: 'none' }
  | { readonly kind: 'calls'; readonly calls: TextToolCall[]; readonly spans: Span[] }
  | { readonly kind: 'malformed'; readonly problem: string };

/** `tools`: the OpenAI tool definitions, for the types of parameters a format writes as bare text (parseQwenXml, parseGlmCall). */
type Parser = (text: string, visible: string, names: ReadonlySet<string>, tools: readonly unknown[]) => FormatResult;

const NONE = { kind: 'none' } as const;

const PARSERS: Record<TextFormat, Parser> = { hermes: parseHermes, mistral: parseMistral, llama3: parseLlama3, json: parseJsonFormat };

const MAX_PROBLEM = 400;

function clip(s: string): string {
  return s.length <= MAX_PROBLEM ? s : `${cutText(s, MAX_PROBLEM - 1)}…`;
}

function bad(problem: string): FormatResult {
  return { kind: 'malformed', problem };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The text with the calls' spans cut out, trimmed; null when nothing is left. */
function removeSpans(text: string, spans: readonly Span[]): string | null {
  let out = '';
  let pos = 0;
  for (const span of spans) {
    out += text.slice(pos, span.start);
    pos = span.end;
  }
  out = (out + text.slice(pos)).trim();
  return out === '' ? null : out;
}

const THINK_OPEN = '<think>';
const THINK_CLOSE = '</think>';

/**
 * The text with reasoning blanked out (same length, so offsets carry over to the original text):
 * every `<think>…</think>` block, everything before a leading `</think>` whose `<think>` was in
 * the prompt (Qwen3 thinking templates), and everything after a `<think>` that is never closed.
 */
function maskThinking(text: string): string {
  const ranges: Span[] = [];
  let pos = 0;
  const firstClose = text.indexOf(THINK_CLOSE);
  const firstOpen = text.indexOf(THINK_OPEN);
  if (firstClose !== -1 && (firstOpen === -1 || firstClose < firstOpen)) {
    pos = firstClose + THINK_CLOSE.length;
    ranges.push({ start: 0, end: pos });
  }
  for (;;) {
    const open = text.indexOf(THINK_OPEN, pos);
    if (open === -1) break;
    const close = text.indexOf(THINK_CLOSE, open + THINK_OPEN.length);
    if (close === -1) {
      ranges.push({ start: open, end: text.length });
      break;
    }
    pos = close + THINK_CLOSE.length;
    ranges.push({ start: open, end: pos });
  }
  if (ranges.length === 0) return text;
  let out = '';
  let at = 0;
  for (const r of ranges) {
    out += text.slice(at, r.start) + ' '.repeat(r.end - r.start);
    at = r.end;
  }
  return out + text.slice(at);
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d || code === 0x0b || code === 0x0c || code === 0xa0 || code === 0xfeff;
}

function skipSpace(s: string, i: number, limit = s.length): number {
  while (i < limit && isSpace(s.charCodeAt(i))) i += 1;
  return i;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const BACKTICK = 0x60;

function opensJson(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  return c === OPEN_BRACE || c === OPEN_BRACKET;
}

type Scan = { readonly ok: true; readonly end: number } | { readonly ok: false; readonly problem: string };

/**
 * Finds where the JSON object or array that opens at `start` ends (exclusive), looking no further
 * than `limit`. Brackets inside strings are skipped, escapes respected, mismatched brackets
 * reported. One pass, so linear however hostile the text.
 */
function scanJson(s: string, start: number, limit: number): Scan {
  const expected: number[] = [];
  let inString = false;
  for (let i = start; i < limit; i += 1) {
    const c = s.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i += 1;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACE) expected.push(CLOSE_BRACE);
    else if (c === OPEN_BRACKET) expected.push(CLOSE_BRACKET);
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      const want = expected.pop();
      if (want !== c) {
        return { ok: false, problem: `has a '${String.fromCharCode(c)}' where '${want === undefined ? 'nothing' : String.fromCharCode(want)}' was expected (character ${i - start + 1})` };
      }
      if (expected.length === 0) return { ok: true, end: i + 1 };
    }
  }
  return { ok: false, problem: inString ? 'ends inside a string (the JSON is cut off)' : `is never closed (${expected.length} bracket${expected.length === 1 ? '' : 's'} left open)` };
}

type Parsed = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly problem: string };

function parseJson(source: string): Parsed {
  try {
    return { ok: true, value: JSON.parse(source) as unknown };
  } catch (err) {
    return { ok: false, problem: errorMessage(err) };
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

/**
 * Whether `"key"` (or `'key'`, as in a Python dict) followed by optional spaces and a colon occurs
 * in s[from, to): a raw hint that JSON which does not parse was meant as a call.
 */
function hasJsonKey(s: string, key: string, from: number, to: number): boolean {
  for (const needle of [`"${key}"`, `'${key}'`]) {
    let at = s.indexOf(needle, from);
    while (at !== -1 && at + needle.length <= to) {
      const after = skipSpace(s, at + needle.length, to);
      if (after < to && s[after] === ':') return true;
      at = s.indexOf(needle, at + needle.length);
    }
  }
  return false;
}

/** Raw (unparsed) text that has a "name" key and an "arguments"/"parameters" key. */
function rawLooksLikeCall(s: string, from: number, to: number): boolean {
  return hasJsonKey(s, 'name', from, to) && (hasJsonKey(s, 'arguments', from, to) || hasJsonKey(s, 'parameters', from, to));
}

/**
 * Whether a parsed object is shaped like a call when nothing but its shape says so (bare or fenced
 * JSON): a "name" plus an "arguments"/"parameters" key, or a "name" that is one of the tools.
 */
function isCallShaped(o: Record<string, unknown>, names: ReadonlySet<string>): boolean {
  if (!Object.hasOwn(o, 'name')) return false;
  if (Object.hasOwn(o, 'arguments') || Object.hasOwn(o, 'parameters')) return true;
  const name = o['name'];
  return typeof name === 'string' && names.has(name);
}

/** A call from an object, or why it cannot be one (a clause to follow "whose"/"that"). */
function toCall(o: Record<string, unknown>): TextToolCall | string {
  const name = o['name'];
  if (typeof name !== 'string' || name.trim() === '') {
    return name === undefined ? 'has no "name"' : `has a "name" that is not a non-empty string (${describeType(name)})`;
  }
  const key = Object.hasOwn(o, 'arguments') ? 'arguments' : Object.hasOwn(o, 'parameters') ? 'parameters' : null;
  let args: unknown = key === null ? {} : o[key];
  // null and "" are how some models write "no arguments".
  if (args === null || (typeof args === 'string' && args.trim() === '')) args = {};
  if (typeof args === 'string') {
    const parsed = parseJson(args);
    if (!parsed.ok) return `has "${key}" as a string that is not JSON (${parsed.problem})`;
    args = parsed.value;
    if (!isObject(args)) return `has "${key}" as a string holding ${describeType(args)}, not a JSON object`;
  } else if (!isObject(args)) {
    return `has "${key}" that is ${describeType(args)}, not a JSON object`;
  }
  try {
    return { name, arguments: JSON.stringify(args) };
  } catch (err) {
    return `has "${key}" that cannot be re-encoded (${errorMessage(err)})`;
  }
}

type Interpreted = { readonly kind: 'calls'; readonly calls: TextToolCall[] } | { readonly kind: 'notCall' } | { readonly kind: 'bad'; readonly why: string };

/**
 * Reads calls out of a parsed JSON value: an object or an array of objects. With `strict` (no
 * marker says this is a call) a value not shaped like a call is `notCall`; without it (inside
 * `<tool_call>`, after `[TOOL_CALLS]`…) every value must be a valid call.
 */
function interpret(value: unknown, strict: boolean, names: ReadonlySet<string>): Interpreted {
  if (isObject(value)) {
    if (strict && !isCallShaped(value, names)) return { kind: 'notCall' };
    const call = toCall(value);
    return typeof call === 'string' ? { kind: 'bad', why: `whose call ${call}` } : { kind: 'calls', calls: [call] };
  }
  if (Array.isArray(value)) {
    const items: readonly unknown[] = value;
    if (items.length === 0) return strict ? { kind: 'notCall' } : { kind: 'bad', why: 'that holds an empty list instead of a call' };
    if (strict) {
      const shaped = items.filter(item => isObject(item) && isCallShaped(item, names)).length;
      if (shaped === 0) return { kind: 'notCall' };
      if (shaped < items.length) return { kind: 'bad', why: `whose list mixes ${shaped} tool call${shaped === 1 ? '' : 's'} with ${items.length - shaped} other value${items.length - shaped === 1 ? '' : 's'}` };
    }
    const calls: TextToolCall[] = [];
    for (let i = 0; i < items.length; i += 1) {
      const item = items[i];
      if (!isObject(item)) return { kind: 'bad', why: `whose list item ${i + 1} is ${describeType(item)}, not a call object` };
      const call = toCall(item);
      if (typeof call === 'string') return { kind: 'bad', why: `whose list item ${i + 1} ${call}` };
      calls.push(call);
    }
    return { kind: 'calls', calls };
  }
  return strict ? { kind: 'notCall' } : { kind: 'bad', why: `that holds ${describeType(value)} instead of a call object` };
}

/** "a X" when it is the only one, "X #n" otherwise. */
function nth(label: string, n: number, several: boolean): string {
  return several ? `${label} #${n}` : `a ${label}`;
}

// ---------------------------------------------------------------------------------------------
// hermes: <tool_call>{"name": ..., "arguments": ...}</tool_call> (Hermes, Qwen2.5, Qwen3)

const HERMES_OPEN = '<tool_call>';
const HERMES_CLOSE = '</tool_call>';

function parseHermes(text: string, visible: string, names: ReadonlySet<string>, tools: readonly unknown[]): FormatResult {
  let open = visible.indexOf(HERMES_OPEN);
  if (open === -1) return NONE;
  let close = visible.indexOf(HERMES_CLOSE, open);
  const calls: TextToolCall[] = [];
  const spans: Span[] = [];
  let n = 0;
  while (open !== -1) {
    n += 1;
    const bodyStart = open + HERMES_OPEN.length;
    const nextOpen = visible.indexOf(HERMES_OPEN, bodyStart);
    // The next close is cached and only searched again once passed: many openers before one distant
    // close must not rescan the text once per opener.
    if (close !== -1 && close < bodyStart) close = visible.indexOf(HERMES_CLOSE, bodyStart);
    const closed = close !== -1 && (nextOpen === -1 || close < nextOpen);
    const several = n > 1 || nextOpen !== -1;
    const where = nth('<tool_call> block', n, several);
    let value: unknown;
    let spanEnd: number;
    if (closed) {
      const body = unfence(text.slice(bodyStart, close).trim());
      if (body === '') return bad(`${where} that is empty`);
      // Qwen3-Coder's XML (<function=name><parameter=p>value</parameter>…</function>), or GLM-4.5's
      // (name<arg_key>k</arg_key><arg_value>v</arg_value>…); null: neither, the JSON of the other models
      const xml = body.startsWith(QWEN_FUNCTION) ? parseQwenXml(body, tools) : parseGlmCall(body, names, tools);
      if (xml !== null) {
        if (typeof xml === 'string') return bad(`${where} ${xml}`);
        calls.push(xml);
        spans.push({ start: open, end: close + HERMES_CLOSE.length });
        open = nextOpen;
        continue;
      }
      const parsed = parseJson(body);
      if (!parsed.ok) return bad(`${where} whose JSON does not parse: ${parsed.problem}`);
      value = parsed.value;
      spanEnd = close + HERMES_CLOSE.length;
    } else {
      // Never closed (generation stopped at the stop token, or a new block began): the JSON that
      // starts the block is the call, and anything after it is prose.
      const limit = nextOpen === -1 ? visible.length : nextOpen;
      const start = skipSpace(visible, bodyStart, limit);
      if (start >= limit) return bad(`${where} that is empty and never closed`);
      if (!opensJson(visible, start)) return bad(`${where} that is never closed and does not start with a JSON object`);
      const scan = scanJson(text, start, limit);
      if (!scan.ok) return bad(`${where} that is never closed and whose JSON ${scan.problem}`);
      const parsed = parseJson(text.slice(start, scan.end));
      if (!parsed.ok) return bad(`${where} whose JSON does not parse: ${parsed.problem}`);
      value = parsed.value;
      spanEnd = scan.end;
    }
    const got = interpret(value, false, names);
    if (got.kind !== 'calls') return bad(`${where} ${got.kind === 'bad' ? got.why : 'that holds no call'}`);
    calls.push(...got.calls);
    spans.push({ start: open, end: spanEnd });
    open = nextOpen;
  }
  return { kind: 'calls', calls, spans };
}

const QWEN_FUNCTION = '<function=';
const QWEN_FUNCTION_CLOSE = '</function>';
const QWEN_PARAMETER = '<parameter=';
const QWEN_PARAMETER_CLOSE = '</parameter>';

/**
 * One call in Qwen3-Coder's XML (the body of its <tool_call> block), or what is wrong with it:
 * `<function=NAME>\n<parameter=P>\nVALUE\n</parameter>…\n</function>`. A value is bare text (one newline after its
 * tag and one before its close are the format's, not the value's); it is read by the type the tool's schema gives
 * the parameter, as vLLM's qwen3_coder parser reads it: a string as it is, an integer, number, boolean or null from
 * its text, an object or array as JSON, and text that is not what the type says (or a parameter the schema does not
 * name) as a string, which the schema's check then refuses or takes.
 */
function parseQwenXml(body: string, tools: readonly unknown[]): TextToolCall | string {
  const nameEnd = body.indexOf('>', QWEN_FUNCTION.length);
  if (nameEnd === -1) return 'whose <function=…> tag is never closed';
  const name = body.slice(QWEN_FUNCTION.length, nameEnd).trim();
  if (name === '') return 'whose <function=…> tag names no function';
  const close = body.lastIndexOf(QWEN_FUNCTION_CLOSE);
  const end = close > nameEnd ? close : body.length;
  // (no prototype: a parameter named __proto__ is a key like any other)
  const args = Object.create(null) as Record<string, unknown>;
  // Each search starts where the last one ended, and a close found ahead is kept until passed: linear in the body.
  let at = body.indexOf(QWEN_PARAMETER, nameEnd + 1);
  let closeAt = -2;
  while (at !== -1 && at < end) {
    const paramEnd = body.indexOf('>', at + QWEN_PARAMETER.length);
    if (paramEnd === -1 || paramEnd >= end) return `whose <parameter=…> tag is never closed`;
    const param = body.slice(at + QWEN_PARAMETER.length, paramEnd).trim();
    if (param === '') return 'whose <parameter=…> tag names no parameter';
    if (closeAt !== -1 && closeAt <= paramEnd) closeAt = body.indexOf(QWEN_PARAMETER_CLOSE, paramEnd + 1);
    const nextAt = body.indexOf(QWEN_PARAMETER, paramEnd + 1);
    // (a value whose close is missing runs to the next parameter or the function's end)
    const closed = closeAt !== -1 && closeAt < end && (nextAt === -1 || closeAt < nextAt);
    const valueEnd = closed ? closeAt : nextAt !== -1 && nextAt < end ? nextAt : end;
    let value = body.slice(paramEnd + 1, valueEnd);
    if (value.startsWith('\n')) value = value.slice(1);
    if (value.endsWith('\n')) value = value.slice(0, -1);
    args[param] = typedValue(value, paramType(tools, name, param));
    at = nextAt;
  }
  return { name, arguments: JSON.stringify(args) };
}

const GLM_KEY = '<arg_key>';
const GLM_KEY_CLOSE = '</arg_key>';
const GLM_VALUE = '<arg_value>';
const GLM_VALUE_CLOSE = '</arg_value>';

/**
 * One call in GLM-4.5's format (the body of its <tool_call> block), what is wrong with it, or null when the body is
 * not in that format: `name` then `<arg_key>k</arg_key><arg_value>v</arg_value>` pairs; a name alone (a call without
 * arguments) only when it names one of the tools. A value is read as vLLM's glm45 parser reads it: as text where the
 * tool's schema says string, else by its type (typedValue), and where the schema says nothing, as JSON when it parses.
 */
function parseGlmCall(body: string, names: ReadonlySet<string>, tools: readonly unknown[]): TextToolCall | string | null {
  const nameEnd = readName(body, 0);
  if (nameEnd === 0) return null;
  const name = body.slice(0, nameEnd);
  let pos = skipSpace(body, nameEnd);
  if (pos >= body.length) return names.has(name) ? { name, arguments: '{}' } : null;
  if (!body.startsWith(GLM_KEY, pos)) return null;
  const args = Object.create(null) as Record<string, unknown>;
  while (pos < body.length) {
    if (!body.startsWith(GLM_KEY, pos)) return `whose text after its arguments is not an <arg_key> (at character ${pos})`;
    const keyEnd = body.indexOf(GLM_KEY_CLOSE, pos + GLM_KEY.length);
    if (keyEnd === -1) return 'whose <arg_key> is never closed';
    const key = body.slice(pos + GLM_KEY.length, keyEnd).trim();
    if (key === '') return 'whose <arg_key> names no argument';
    const valueAt = skipSpace(body, keyEnd + GLM_KEY_CLOSE.length);
    if (!body.startsWith(GLM_VALUE, valueAt)) return `whose argument ${JSON.stringify(cutText(key, 40))} has no <arg_value>`;
    const valueEnd = body.indexOf(GLM_VALUE_CLOSE, valueAt + GLM_VALUE.length);
    if (valueEnd === -1) return `whose <arg_value> of ${JSON.stringify(cutText(key, 40))} is never closed`;
    const text = body.slice(valueAt + GLM_VALUE.length, valueEnd);
    const type = paramType(tools, name, key);
    const parsed = type === undefined ? parseJson(text.trim()) : null;
    args[key] = parsed?.ok ? parsed.value : typedValue(text, type);
    pos = skipSpace(body, valueEnd + GLM_VALUE_CLOSE.length);
  }
  return { name, arguments: JSON.stringify(args) };
}

/** The JSON Schema type `tools` give a parameter (the first of a list that is not "null"), or undefined. */
function paramType(tools: readonly unknown[], tool: string, param: string): string | undefined {
  for (const t of tools) {
    const fn = (t as { function?: { name?: unknown; parameters?: { properties?: Record<string, { type?: unknown }> } } } | null)?.function;
    if (fn?.name !== tool) continue;
    const props = fn.parameters?.properties;
    const type = props && Object.hasOwn(props, param) ? props[param]?.type : undefined;
    if (typeof type === 'string') return type;
    if (Array.isArray(type)) return type.find((x): x is string => typeof x === 'string' && x !== 'null');
    return undefined;
  }
  return undefined;
}

/** A Qwen3-Coder parameter's text as the value its type says, or the text itself where it is not one (see parseQwenXml). */
function typedValue(text: string, type: string | undefined): unknown {
  const t = text.trim();
  switch (type) {
    case undefined:
    case 'string':
      return text;
    case 'integer':
      return /^-?\d{1,15}$/.test(t) ? Number(t) : text;
    case 'number': {
      const n = t === '' ? NaN : Number(t);
      return Number.isFinite(n) ? n : text;
    }
    case 'boolean':
      return t.toLowerCase() === 'true' ? true : t.toLowerCase() === 'false' ? false : text;
    case 'null':
      return t === 'null' ? null : text;
    default: {
      const parsed = parseJson(t);
      return parsed.ok ? parsed.value : text;
    }
  }
}

/** A ```json fence some models put inside a <tool_call> block, removed. */
function unfence(body: string): string {
  if (!body.startsWith('```') || !body.endsWith('```') || body.length < 6) return body;
  let i = 3;
  while (i < body.length && isLangChar(body.charCodeAt(i))) i += 1;
  return body.slice(i, body.length - 3).trim();
}

// ---------------------------------------------------------------------------------------------
// mistral: [TOOL_CALLS][{"name": ..., "arguments": ...}] (older) and [TOOL_CALLS]name[ARGS]{...} (v11+)

const MISTRAL_MARK = '[TOOL_CALLS]';
const MISTRAL_ARGS = '[ARGS]';
const MISTRAL_CALL_ID = '[CALL_ID]';

function isNameChar(code: number): boolean {
  return (
    (code >= 0x30 && code <= 0x39) || // 0-9
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    code === 0x5f || // _
    code === 0x2d || // -
    code === 0x2e || // .
    code === 0x3a // :
  );
}

function readName(s: string, i: number): number {
  while (i < s.length && isNameChar(s.charCodeAt(i))) i += 1;
  return i;
}

function parseMistral(text: string, visible: string, names: ReadonlySet<string>): FormatResult {
  let mark = visible.indexOf(MISTRAL_MARK);
  if (mark === -1) return NONE;
  const calls: TextToolCall[] = [];
  const spans: Span[] = [];
  let n = 0;
  while (mark !== -1) {
    n += 1;
    const where = n === 1 ? 'a [TOOL_CALLS] section' : `[TOOL_CALLS] section #${n}`;
    const i = skipSpace(visible, mark + MISTRAL_MARK.length);
    if (i >= visible.length) return bad(`${where} with nothing after it`);
    let end: number;
    if (opensJson(visible, i) && !visible.startsWith(MISTRAL_ARGS, i) && !visible.startsWith(MISTRAL_CALL_ID, i)) {
      // Older shape: a JSON list (or a single object) of {"name", "arguments", "id"?}.
      const scan = scanJson(text, i, text.length);
      if (!scan.ok) return bad(`${where} whose JSON ${scan.problem}`);
      const parsed = parseJson(text.slice(i, scan.end));
      if (!parsed.ok) return bad(`${where} whose JSON does not parse: ${parsed.problem}`);
      const got = interpret(parsed.value, false, names);
      if (got.kind !== 'calls') return bad(`${where} ${got.kind === 'bad' ? got.why : 'that holds no call'}`);
      calls.push(...got.calls);
      end = scan.end;
    } else {
      const named = parseMistralNamed(text, visible, i, where, calls);
      if (typeof named === 'string') return bad(named);
      end = named;
    }
    spans.push({ start: mark, end });
    mark = visible.indexOf(MISTRAL_MARK, end);
  }
  return { kind: 'calls', calls, spans };
}

/**
 * The newer shape after a [TOOL_CALLS] marker: name[ARGS]{...}, optionally name[CALL_ID]id[ARGS]{...};
 * [ARGS] may be missing when special tokens were skipped in decoding (name{...}), and several
 * name[ARGS]{...} may follow one marker. Appends the calls; returns where they end, or the problem.
 */
function parseMistralNamed(text: string, visible: string, from: number, where: string, calls: TextToolCall[]): number | string {
  let i = from;
  for (;;) {
    const nameEnd = readName(visible, i);
    const name = visible.slice(i, nameEnd);
    let k = nameEnd;
    if (visible.startsWith(MISTRAL_CALL_ID, k)) k = readName(visible, k + MISTRAL_CALL_ID.length);
    const hasArgsToken = visible.startsWith(MISTRAL_ARGS, k);
    if (name === '') return `${where} that is not followed by a tool name or a JSON list of calls`;
    if (hasArgsToken) k += MISTRAL_ARGS.length;
    k = skipSpace(visible, k);
    if (visible.charCodeAt(k) !== OPEN_BRACE) return `${where} whose call to "${name}" is not followed by a JSON object of arguments`;
    const scan = scanJson(text, k, text.length);
    if (!scan.ok) return `${where} whose arguments for "${name}" ${scan.problem}`;
    const parsed = parseJson(text.slice(k, scan.end));
    if (!parsed.ok) return `${where} whose arguments for "${name}" do not parse: ${parsed.problem}`;
    const call = toCall({ name, arguments: parsed.value });
    if (typeof call === 'string') return `${where} whose call to "${name}" ${call}`;
    calls.push(call);
    i = skipSpace(visible, scan.end);
    while (i < visible.length && visible[i] === ',') i = skipSpace(visible, i + 1);
    if (i >= visible.length) return scan.end;
    // The span ends with this call unless another name[ARGS] follows (a new [TOOL_CALLS] marker
    // is found by the caller; anything else is prose).
    let next = readName(visible, i);
    if (next === i) return scan.end;
    if (visible.startsWith(MISTRAL_CALL_ID, next)) next = readName(visible, next + MISTRAL_CALL_ID.length);
    if (!visible.startsWith(MISTRAL_ARGS, next)) return scan.end;
  }
}

// ---------------------------------------------------------------------------------------------
// llama3: {"name": ..., "parameters": ...} as the reply, optionally after <|python_tag|>, several
// separated by ';' or newlines.

const PYTHON_TAG = '<|python_tag|>';
const LLAMA_END_TOKENS = ['<|eom_id|>', '<|eot_id|>'];

function parseLlama3(text: string, visible: string, names: ReadonlySet<string>): FormatResult {
  const tag = visible.indexOf(PYTHON_TAG);
  if (tag !== -1) {
    const start = skipSpace(visible, tag + PYTHON_TAG.length);
    if (!opensJson(visible, start)) return bad('a <|python_tag|> that is not followed by a JSON tool call (built-in code, brave_search or wolfram_alpha calls are not supported)');
    return parseJsonSequence(text, visible, tag, start, false, names, '<|python_tag|> tool call');
  }
  const start = skipSpace(visible, 0);
  if (!opensJson(visible, start)) return NONE;
  return parseJsonSequence(text, visible, start, start, true, names, 'Llama 3 JSON tool call');
}

/**
 * One or more JSON calls from `start`, separated by spaces, ';' or ','; prose after the last one
 * is content. With `strict`, a first value that is not shaped like a call (or broken JSON that
 * does not look like one) means the reply is not a call at all; every later value must be a call.
 */
function parseJsonSequence(text: string, visible: string, spanStart: number, start: number, strict: boolean, names: ReadonlySet<string>, label: string): FormatResult {
  const calls: TextToolCall[] = [];
  let i = start;
  for (let n = 1; ; n += 1) {
    const where = n === 1 ? `a ${label}` : `${label} #${n}`;
    const firstAndStrict = n === 1 && strict;
    const scan = scanJson(text, i, text.length);
    if (!scan.ok) return firstAndStrict && !rawLooksLikeCall(text, i, text.length) ? NONE : bad(`${where} whose JSON ${scan.problem}`);
    const parsed = parseJson(text.slice(i, scan.end));
    if (!parsed.ok) return firstAndStrict && !rawLooksLikeCall(text, i, scan.end) ? NONE : bad(`${where} whose JSON does not parse: ${parsed.problem}`);
    const got = interpret(parsed.value, firstAndStrict, names);
    if (got.kind === 'notCall') return NONE;
    if (got.kind === 'bad') return bad(`${where} ${got.why}`);
    calls.push(...got.calls);
    let j = skipSpace(visible, scan.end);
    // (Llama 3.1 writes a <|python_tag|> before each of several calls: `<|python_tag|>{…}; <|python_tag|>{…}`.)
    while (j < visible.length && (visible[j] === ';' || visible[j] === ',' || visible.startsWith(PYTHON_TAG, j))) j = skipSpace(visible, j + (visible[j] === '<' ? PYTHON_TAG.length : 1));
    // Only '{' continues the sequence: prose after the calls may well start with '[' (a link).
    if (visible.charCodeAt(j) !== OPEN_BRACE) {
      let end = scan.end;
      for (const token of LLAMA_END_TOKENS) if (visible.startsWith(token, j)) end = j + token.length;
      return { kind: 'calls', calls, spans: [{ start: spanStart, end }] };
    }
    i = j;
  }
}

// ---------------------------------------------------------------------------------------------
// json: ```json fences (or bare ``` fences) holding a call or a list of calls, or the whole reply
// being one.

const FENCE = '```';

function isLangChar(code: number): boolean {
  return isNameChar(code) || code === 0x2b; // +
}

/** The first ``` at or after `from` that is not inside a JSON string, or -1. */
function fenceOutsideStrings(s: string, from: number): number {
  let inString = false;
  for (let i = from; i < s.length; i += 1) {
    const c = s.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i += 1;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === BACKTICK && s.startsWith(FENCE, i)) return i;
  }
  return -1;
}

function parseJsonFormat(text: string, visible: string, names: ReadonlySet<string>): FormatResult {
  const calls: TextToolCall[] = [];
  const spans: Span[] = [];
  let pos = 0;
  // Set once a string-aware search for a closing fence has run to the end of the text without
  // finding one: later fences then use the plain search, so hostile text stays linear.
  let stringAwareExhausted = false;
  for (;;) {
    const open = visible.indexOf(FENCE, pos);
    if (open === -1) break;
    let bodyStart = open + FENCE.length;
    while (bodyStart < visible.length && isLangChar(visible.charCodeAt(bodyStart))) bodyStart += 1;
    const lang = visible.slice(open + FENCE.length, bodyStart).toLowerCase();
    const bodyFrom = skipSpace(visible, bodyStart);
    const jsonBody = (lang === '' || lang === 'json') && opensJson(visible, bodyFrom);
    // A JSON body may hold ``` inside its strings (markdown arguments): its fence closes at the
    // first ``` outside a string.
    let close = -1;
    if (jsonBody && !stringAwareExhausted) {
      close = fenceOutsideStrings(visible, bodyFrom);
      if (close === -1) stringAwareExhausted = true;
    }
    if (close === -1) close = visible.indexOf(FENCE, bodyStart);
    const fenceEnd = close === -1 ? visible.length : close + FENCE.length;
    pos = fenceEnd;
    if (!jsonBody) continue;
    const where = lang === '' ? 'a ``` block' : 'a ```json block';
    const body = text.slice(bodyFrom, close === -1 ? text.length : close).trim();
    const parsed = parseJson(body);
    if (!parsed.ok) {
      if (rawLooksLikeCall(body, 0, body.length)) return bad(`${where} that looks like a tool call but whose JSON does not parse: ${parsed.problem}`);
      continue;
    }
    const got = interpret(parsed.value, true, names);
    if (got.kind === 'bad') return bad(`${where} ${got.why}`);
    if (got.kind === 'calls') {
      calls.push(...got.calls);
      spans.push({ start: open, end: fenceEnd });
    }
  }
  if (calls.length > 0) return { kind: 'calls', calls, spans };
  const start = skipSpace(visible, 0);
  if (!opensJson(visible, start)) return NONE;
  return parseJsonSequence(text, visible, start, start, true, names, 'JSON tool call');
}

// ---------------------------------------------------------------------------------------------
// Detection of attempted calls, for models expected to call tools natively.

const MARKERS: readonly (readonly [string, string])[] = [
  [HERMES_OPEN, 'a <tool_call> tag'],
  [HERMES_CLOSE, 'a </tool_call> tag'],
  [MISTRAL_MARK, 'a [TOOL_CALLS] marker'],
  [PYTHON_TAG, 'a <|python_tag|> marker'],
  ['<function=', 'a <function=…> tag'],
  ['<｜tool▁call▁begin｜>', 'a DeepSeek tool-call marker'],
  ['<|tool_call_begin|>', 'a <|tool_call_begin|> marker'],
  // gpt-oss's harmony format, leaked into the text by a server without its parser: <|channel|>commentary to=functions.name …<|call|>
  [' to=functions.', 'a harmony tool call (to=functions.…)'],
  ['<|call|>', 'a harmony <|call|> marker'],
];

/** JSON keys under which a tool's name marks an object as a call attempt ({"tool": "search", ...}). */
const NAME_KEYS = ['name', 'tool', 'tool_name', 'function', 'function_name', 'action'];
/** Of those, the keys a call itself writes its name under (beside calls already read, a result's {"action": …} is no call). */
const CALL_NAME_KEYS = ['name'];

/**
 * What in the text looks like an attempted tool call, or null when nothing does. `marked`: only what opens a call
 * (a marker), what a format reads as a call or a broken one, and a JSON object naming a tool under "name", not the
 * looser signs (a tool named under "action", "tool" and the like, a Python-style call, a stray closing tag): for the
 * text left beside calls already read, where prose quoting a tool's result ({"action": "update"}) or a closing tag
 * too many must not end the episode.
 */
function describeAttempt(text: string, names: ReadonlySet<string>, tools: readonly unknown[], marked = false): string | null {
  const visible = maskThinking(text);
  for (const [marker, label] of MARKERS) if (visible.includes(marker) && !(marked && marker === HERMES_CLOSE)) return label;
  for (const f of AUTO_ORDER) {
    const result = PARSERS[f](text, visible, names, tools);
    if (result.kind === 'calls') return `${result.calls.length} call${result.calls.length === 1 ? '' : 's'} in the ${f} format`;
    if (result.kind === 'malformed') return result.problem;
  }
  for (const name of names) {
    if (name === '') continue;
    if (hasNameValue(visible, JSON.stringify(name), marked ? CALL_NAME_KEYS : NAME_KEYS)) return `a JSON object naming the tool "${name}"`;
  }
  if (marked) return null;
  const trimmed = visible.trim();
  if (trimmed.endsWith(')') || trimmed.endsWith(')]')) {
    for (const name of names) {
      if (name !== '' && (trimmed.startsWith(`${name}(`) || trimmed.startsWith(`[${name}(`))) return `a Python-style call to "${name}"`;
    }
  }
  return null;
}

/** Whether `"key": <quotedName>` occurs for one of NAME_KEYS. */
function hasNameValue(s: string, quotedName: string, keys: readonly string[]): boolean {
  let at = s.indexOf(quotedName);
  while (at !== -1) {
    let j = at - 1;
    while (j >= 0 && isSpace(s.charCodeAt(j))) j -= 1;
    if (j >= 0 && s[j] === ':') {
      j -= 1;
      while (j >= 0 && isSpace(s.charCodeAt(j))) j -= 1;
      if (j >= 0 && s[j] === '"') {
        for (const key of keys) {
          if (s.startsWith(`"${key}`, j - key.length - 1)) return true;
        }
      }
    }
    at = s.indexOf(quotedName, at + quotedName.length);
  }
  return false;
}
