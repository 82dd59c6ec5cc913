import { join } from 'node:path';
import { agentSystemPrompt } from '../rollouts/prompts.js';
import type { RunDocuments, RunStore } from '../runs/store.js';
import type { FunctionTool } from '../sandbox/bundle.js';
import type { ScenarioRecord } from '../scenarios/types.js';
import type { EnvironmentRecord } from '../synthesis/types.js';
import { withTypedParameters } from '../synthesis/tool-schemas.js';
import { JsonlWriter, type ExportStage } from './jsonl-writer.js';
import { pythonJson } from './python-json.js';

export { pythonJson } from './python-json.js';

/**
 * The RL datasets a trainer loads unchanged (docs/formats.md has each with an example line and the
 * loader settings): one row per ready scenario, the task given up front as in envfleet's
 * non-conversational rollouts.
 *
 * - `rl-verl.json`: verl's RLHFDataset (`data.train_files`): `data_source`, `prompt` (the system prompt
 *   with the tools in the Hermes/Qwen `# Tools` block, then the task), `ability`, `reward_model`
 *   (`style: "rule"`, `ground_truth`: the scenario id) and `extra_info` (`index`, `split`, the ids that
 *   reach envfleet's environment server, the tools, `tools_kwargs`, `interaction_kwargs`). JSON Lines in
 *   a file named `.json`: verl picks its reader by the extension (`.parquet` or `.json`, the latter
 *   through HF `datasets`' json loader, which reads JSON Lines), so no Parquet writer is needed.
 * - `rl-prompts.jsonl`: TRL's GRPOTrainer and verifiers: `prompt` (chat messages), the columns a reward
 *   function receives (`run_id`, `scenario_id`, `environment_id`, `mode`, `tools`), and verifiers'
 *   `example_id`, `answer` and `info` (with `tool_defs`).
 *
 * Shapes chosen for Arrow, which HF `datasets` loads every JSON line into: a column or key has one JSON
 * type in every row, no object is empty, and what differs from row to row in shape (tool schemas) is
 * a JSON string (`tools`, `info`), as TRL and verifiers advise; `tools_kwargs` is keyed by tool name
 * because verl's ToolAgentLoop looks tools up that way. Tool schemas get a type on every property
 * (typedParameters), also for runs synthesized before it was done at synthesis time.
 */

export const VERL_FILE = 'rl-verl.json';
export const PROMPTS_FILE = 'rl-prompts.jsonl';
/** verl's `data_source` (its `data.reward_fn_key`): what a custom reward function dispatches on. */
export const DATA_SOURCE = 'envfleet';
/** The name verl's ToolAgentLoop looks up in its interaction config (`interaction_kwargs.name`). */
export const INTERACTION_NAME = 'envfleet';
const MODE = 'non-conversational';

type ChatMessage = { role: 'system' | 'user'; content: string };

/** Where a row comes from: the run, and its position among the file's rows. */
export interface RowContext {
  readonly runId: string;
  /** 0-based row number in the file (verl's `extra_info.index`, verifiers' `example_id`). */
  readonly index: number;
  readonly split: string;
}

/** What every row needs of a scenario and its environment; null when the scenario cannot be a row. */
function parts(s: ScenarioRecord, env: EnvironmentRecord) {
  // A scenario without checks (EnvScaler's SFT scenarios, imported unscored) gives a trainer no reward: not an RL row.
  if (s.status !== 'ready' || !s.task || !env.tools?.length || !s.checklist?.length) return null;
  // A row is one prompt scored through the environment server on its final state: a scripted multi-turn
  // scenario (BFCL: later turns, tools per turn) or one judged on the transcript (episode checks, which a
  // served session cannot run) would be scored wrongly, so neither is an RL row.
  if (s.script || s.checklist.some(c => c.episode)) return null;
  const tools = trainerTools(env.tools);
  return {
    tools,
    system: agentSystemPrompt(MODE, env.description.introduction),
    checklist: (s.checklist ?? []).map(c => c.item),
  };
}

/**
 * An environment's tools as trainers read them: a type on every property (typedParameters), and the
 * `description`, `properties` and `required` that verl's OpenAIFunctionToolSchema requires (empty when absent).
 */
export function trainerTools(tools: readonly FunctionTool[]): FunctionTool[] {
  return withTypedParameters(tools).map(t => ({
    type: 'function' as const,
    function: { ...t.function, description: t.function.description ?? '', parameters: { type: 'object', properties: {}, required: [], ...t.function.parameters } },
  }));
}

/** The ids a trainer's tool, interaction and reward hooks send to envfleet's environment server. */
const locator = (s: ScenarioRecord, runId: string) => ({ run_id: runId, scenario_id: s.id, environment_id: s.environmentId });

/** One row of `rl-verl.json`, or null when the scenario is not ready (or has no task or tools). */
export function toVerlRow(s: ScenarioRecord, env: EnvironmentRecord, ctx: RowContext) {
  const p = parts(s, env);
  if (!p) return null;
  const where = locator(s, ctx.runId);
  const prompt: ChatMessage[] = [
    { role: 'system', content: `${p.system}${hermesToolsBlock(p.tools)}` },
    { role: 'user', content: s.task! },
  ];
  return {
    data_source: DATA_SOURCE,
    prompt,
    ability: 'tool-use',
    reward_model: { style: 'rule', ground_truth: s.id, kind: 'checklist-fraction', checklist: p.checklist },
    extra_info: {
      split: ctx.split,
      index: ctx.index,
      ...where,
      environment_name: env.description.summary,
      mode: MODE,
      system_prompt: p.system,
      tools: JSON.stringify(p.tools),
      need_tools_kwargs: true,
      tools_kwargs: Object.fromEntries(p.tools.map(t => [t.function.name, { create_kwargs: { ...where } }])),
      interaction_kwargs: { name: INTERACTION_NAME, ...where, mode: MODE },
    },
  };
}

/** One row of `rl-prompts.jsonl`, or null when the scenario is not ready (or has no task or tools). */
export function toPromptRow(s: ScenarioRecord, env: EnvironmentRecord, ctx: RowContext) {
  const p = parts(s, env);
  if (!p) return null;
  const where = locator(s, ctx.runId);
  const prompt: ChatMessage[] = [
    { role: 'system', content: p.system },
    { role: 'user', content: s.task! },
  ];
  const toolDefs = p.tools.map(t => ({ name: t.function.name, description: t.function.description ?? '', parameters: t.function.parameters ?? {} }));
  return {
    prompt,
    ...where,
    mode: MODE,
    tools: JSON.stringify(p.tools),
    example_id: ctx.index,
    answer: s.id,
    info: JSON.stringify({ ...where, mode: MODE, split: ctx.split, tool_defs: toolDefs, checklist: p.checklist }),
  };
}

/**
 * The `# Tools` block that the Qwen2.5 and Qwen3 chat templates append to the system message when given
 * `tools` (the Hermes tool-call format verl parses with `multi_turn.format: hermes`), each tool as the
 * templates' `tojson` writes it (Python's `json.dumps`: `", "` and `": "` separators, non-ASCII kept).
 * In the system message, it makes a template rendered without `tools` give the same text as one given them.
 */
export function hermesToolsBlock(tools: readonly unknown[]): string {
  return (
    '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>' +
    tools.map(t => `\n${pythonJson(t)}`).join('') +
    '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
  );
}

/**
 * Writes `rl-verl.json` and/or `rl-prompts.jsonl` into `dir` from the run's ready scenarios, in id order
 * (rows numbered in that order); returns the rows per file written. Written whenever the run has ready
 * scenarios: RL needs no trajectories.
 */
export async function writeRLTrainerFiles(
  store: RunStore,
  runId: string,
  dir: string,
  which: { readonly verl: boolean; readonly prompts: boolean },
  split = 'train',
  stage?: ExportStage,
): Promise<Record<string, number>> {
  const files = [
    ...(which.verl ? [{ file: VERL_FILE, row: toVerlRow }] : []),
    ...(which.prompts ? [{ file: PROMPTS_FILE, row: toPromptRow }] : []),
  ];
  if (!files.length) return {};
  const writers = files.map(f => ({ ...f, writer: new JsonlWriter(join(dir, f.file), stage) }));
  const envs = new Map<string, RunDocuments['env'] | null>();
  const out: Record<string, number> = {};
  try {
    let index = 0;
    for (const id of (await store.listDocIds(runId, 'scenario')).sort()) {
      const s = await store.getDoc(runId, 'scenario', id);
      if (!s || s.status !== 'ready') continue;
      if (!envs.has(s.environmentId)) envs.set(s.environmentId, await store.getDoc(runId, 'env', s.environmentId));
      const env = envs.get(s.environmentId);
      if (!env) continue;
      const ctx = { runId, index, split };
      const rows = writers.map(w => w.row(s, env, ctx));
      if (rows.some(r => r === null)) continue;
      for (let i = 0; i < writers.length; i += 1) await writers[i]!.writer.write(rows[i]);
      index += 1;
    }
    for (const w of writers) out[w.file] = await w.writer.close();
  } catch (err) {
    await Promise.all(writers.map(w => w.writer.abort()));
    throw err;
  }
  return out;
}
