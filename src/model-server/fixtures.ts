/**
 * Fixture scripts for the scripted model server: the zod schema, its types,
 * and loaders for `.json` / `.yaml` / `.yml` files or whole directories.
 *
 * Every object in the schema is strict, so a typo such as `respnd:` is an
 * error instead of a silently ignored key. See docs/scripted-model.md for the
 * format with examples.
 */
import { readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { readTextFile } from '../util/bom.js';

/** Regex source compiled case-insensitively; rejected at load time if it does not compile. */
const RegexSource = z.string().min(1).superRefine((source, ctx) => {
  try {
    new RegExp(source, 'i');
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${errorMessage(error)}` });
  }
});

const TokenCount = z.number().int().nonnegative();

/** Fixed token counts reported in `usage` (total_tokens is always their sum). */
export const UsageCounts = z.strictObject({
  prompt_tokens: TokenCount,
  completion_tokens: TokenCount,
});
export type UsageCounts = z.infer<typeof UsageCounts>;

/** One scripted tool call; `arguments` objects are JSON-serialized, strings are sent verbatim. */
export const ScriptedToolCall = z.strictObject({
  /** Tool-call id; generated (`call_…`) when omitted. */
  id: z.string().min(1).optional(),
  name: z.string().min(1),
  arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
});
export type ScriptedToolCall = z.infer<typeof ScriptedToolCall>;

/** One scripted assistant message (one choice of a chat completion). */
export const ScriptedResponse = z
  .strictObject({
    content: z.string().optional(),
    json: z.unknown().optional(),
    toolCalls: z.array(ScriptedToolCall).min(1).optional(),
    reasoning: z.string().optional(),
    finishReason: z.enum(['stop', 'tool_calls', 'length', 'content_filter']).optional(),
    usage: UsageCounts.optional(),
  })
  .superRefine((response, ctx) => {
    if (response.content !== undefined && response.json !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'use either content or json, not both' });
    }
    if (response.content === undefined && response.json === undefined && response.toolCalls === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a response needs at least one of content, json or toolCalls' });
    }
  });
export type ScriptedResponse = z.infer<typeof ScriptedResponse>;

const FaultMessage = z.string().min(1).optional();

/** What a rule does instead of (or, for `delay`, before) answering. */
export const ScriptedFault = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('rate_limit'), retryAfterS: z.number().nonnegative().optional(), message: FaultMessage }),
  z.strictObject({ type: z.literal('server_error'), status: z.number().int().min(400).max(599).optional(), message: FaultMessage }),
  z.strictObject({ type: z.literal('delay'), ms: z.number().int().nonnegative() }),
  z.strictObject({ type: z.literal('malformed') }),
  z.strictObject({ type: z.literal('truncated') }),
  z.strictObject({ type: z.literal('hang') }),
]);
export type ScriptedFault = z.infer<typeof ScriptedFault>;
export type FaultType = ScriptedFault['type'];

/** One rule: the first matching rule that still has uses left answers the request. */
export const ScriptRule = z
  .strictObject({
    name: z.string().min(1).optional(),
    stage: z.string().min(1).optional(),
    endpoint: z.enum(['chat', 'embeddings']).optional(),
    match: RegexSource.optional(),
    matchAny: RegexSource.optional(),
    /** Regex tested against `ROLE: CONTENT` of the last message (e.g. `^tool: .*"success":true`). */
    matchLast: RegexSource.optional(),
    model: z.string().min(1).optional(),
    times: z.number().int().positive().optional(),
    fault: ScriptedFault.optional(),
    respond: ScriptedResponse.optional(),
    responses: z.array(ScriptedResponse).min(1).optional(),
    embedding: z.array(z.number()).min(1).optional(),
  })
  .superRefine((rule, ctx) => {
    for (const issue of ruleProblems(rule)) ctx.addIssue({ code: 'custom', ...issue });
  });
export type ScriptRule = z.infer<typeof ScriptRule>;
export type RuleEndpoint = NonNullable<ScriptRule['endpoint']>;

/** A whole fixture script. */
export const ModelScript = z.strictObject({
  /** Extra model ids listed by `GET /v1/models` (`scripted` is always listed). */
  models: z.array(z.string().min(1)).optional(),
  defaults: z
    .strictObject({
      /** `auto` (default) estimates tokens as ceil(chars / 4); an object fixes them. */
      usage: z.union([z.literal('auto'), UsageCounts]).optional(),
    })
    .optional(),
  rules: z.array(ScriptRule).optional(),
});
export type ModelScript = z.infer<typeof ModelScript>;

/**
 * Thrown for unreadable or invalid fixture scripts; the message names the file and each problem. A user's
 * mistake (INPUT_FILE_INVALID), so `envfleet model-server --script` prints the message, not a stack.
 */
export class ModelScriptError extends AppError {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super('INPUT_FILE_INVALID', `Invalid model script ${file}: ${problems.join('; ')}. The script format is in docs/scripted-model.md.`);
  }
}

/** Cross-field checks for a rule that a plain object schema cannot express. */
function ruleProblems(rule: ScriptRule): { message: string; path?: string[] }[] {
  const problems: { message: string; path?: string[] }[] = [];
  const hasResponse = rule.respond !== undefined || rule.responses !== undefined;
  if (rule.respond !== undefined && rule.responses !== undefined) {
    problems.push({ message: 'use either respond or responses, not both', path: ['responses'] });
  }
  if (rule.endpoint === 'embeddings') {
    if (hasResponse) {
      problems.push({ message: 'embeddings rules answer with `embedding` (or the hashing embedder), not respond/responses' });
    }
    return problems;
  }
  if (rule.embedding !== undefined) {
    problems.push({ message: 'embedding is only allowed on rules with endpoint: embeddings', path: ['embedding'] });
  }
  if (!hasResponse && rule.fault === undefined) {
    problems.push({ message: 'a chat rule needs respond, responses or fault' });
  } else if (!hasResponse && rule.fault?.type === 'delay') {
    problems.push({ message: 'a delay fault answers after waiting, so the rule also needs respond or responses' });
  }
  return problems;
}

/** Renders a zod issue path as `rules[2].fault.type` (or `(root)`). */
function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? '(root)' : out;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Validates an already-parsed value as a {@link ModelScript}.
 * @param source named in the error message (a file path, or e.g. `<inline>`).
 * @throws ModelScriptError listing every problem as `path: message`.
 */
export function parseModelScript(value: unknown, source = '<inline>'): ModelScript {
  const result = ModelScript.safeParse(value);
  if (result.success) return result.data;
  throw new ModelScriptError(
    source,
    result.error.issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`),
  );
}

const SCRIPT_EXTENSIONS = new Set(['.json', '.yaml', '.yml']);

function isScriptFile(name: string): boolean {
  return SCRIPT_EXTENSIONS.has(extname(name).toLowerCase());
}

/** Parses the text of one file by extension (JSON or YAML) without validating it. */
function parseScriptText(file: string, text: string): unknown {
  const isJson = extname(file).toLowerCase() === '.json';
  try {
    return isJson ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    const kind = isJson ? 'JSON' : 'YAML';
    throw new ModelScriptError(file, [`${kind} syntax error: ${errorMessage(error).trim()}`]);
  }
}

async function loadScriptFile(file: string): Promise<ModelScript> {
  let text: string;
  try {
    text = await readTextFile(file);
  } catch (error) {
    throw new ModelScriptError(file, [`cannot read file: ${errorMessage(error)}`]);
  }
  return parseModelScript(parseScriptText(file, text), file);
}

/**
 * Combines scripts in order: model lists are unioned, `defaults` are merged
 * (later files win) and rules are concatenated.
 */
export function mergeModelScripts(scripts: readonly ModelScript[]): ModelScript {
  const models: string[] = [];
  const rules: ScriptRule[] = [];
  let defaults: ModelScript['defaults'];
  for (const script of scripts) {
    for (const model of script.models ?? []) if (!models.includes(model)) models.push(model);
    if (script.defaults !== undefined) defaults = { ...defaults, ...script.defaults };
    rules.push(...(script.rules ?? []));
  }
  const merged: ModelScript = { rules };
  if (models.length > 0) merged.models = models;
  if (defaults !== undefined) merged.defaults = defaults;
  return merged;
}

/**
 * Loads a fixture script from a `.json`, `.yaml` or `.yml` file, or from a
 * directory holding such files (read in name order, rules concatenated).
 * @throws ModelScriptError naming the offending file and the exact problem.
 */
export async function loadModelScript(path: string): Promise<ModelScript> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(path)).isDirectory();
  } catch (error) {
    throw new ModelScriptError(path, [`cannot read file: ${errorMessage(error)}; pass --script a .json, .yaml or .yml script, or a folder of them`]);
  }
  if (!isDirectory) return loadScriptFile(path);
  const names = (await readdir(path)).filter(isScriptFile).sort();
  if (names.length === 0) {
    throw new ModelScriptError(path, ['directory contains no .json, .yaml or .yml files']);
  }
  const scripts: ModelScript[] = [];
  for (const name of names) scripts.push(await loadScriptFile(join(path, name)));
  return mergeModelScripts(scripts);
}
