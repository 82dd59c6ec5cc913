import type { ChatMessage } from '../llm/gateway.js';
import type { CodeLanguage } from '../sandbox/bundle.js';
import type { EnvDescription, EnvironmentRecord, ProbeStepRecord, ToolQuality } from './types.js';
import type { Operation, StateOutput } from './schemas.js';
import { cutText } from '../util/text.js';

/**
 * Prompts of the synthesis stages, written for envfleet with the intent of EnvScaler's synthesis
 * pipeline (RUC-NLPIR/EnvScaler): instructions plus a worked example, and a
 * JSON answer validated by the stage's schema (src/synthesis/schemas.ts). A version is recorded
 * in every environment's lineage; change the version when a prompt changes meaning.
 */
export const PROMPT_VERSIONS = {
  'mine.judge': 'judge-v1',
  'mine.topic': 'topic-v1',
  'skeleton.state': 'state-v1',
  'skeleton.operations': 'operations-v1',
  'skeleton.method': 'method-v1',
  'check.config': 'config-v1',
  'check.probe.tester': 'tester-v1',
  'check.probe.checker': 'checker-v1',
  'check.repair': 'repair-v2',
} as const;

/**
 * The versions of a Python run's prompts (`envfleet synth --language python`): the stages whose prompt
 * asks for Python, or describes the state as a Python instance's attributes, have versions of their own.
 */
export const PYTHON_PROMPT_VERSIONS = {
  ...PROMPT_VERSIONS,
  'mine.topic': 'topic-py-v1',
  'skeleton.state': 'state-py-v1',
  'skeleton.operations': 'operations-py-v1',
  'skeleton.method': 'method-py-v1',
  'check.config': 'config-py-v1',
  'check.repair': 'repair-py-v1',
} as const satisfies Record<keyof typeof PROMPT_VERSIONS, string>;

/** The prompt versions of a run that synthesizes in `language`. */
export const promptVersionsFor = (language: CodeLanguage): Readonly<Record<keyof typeof PROMPT_VERSIONS, string>> => (language === 'python' ? PYTHON_PROMPT_VERSIONS : PROMPT_VERSIONS);

/**
 * The last line of the user message of every synthesis prompt that differs in a Python run (a marker:
 * a scripted model routes on it). JavaScript prompts have no such line.
 */
export const PYTHON_LANGUAGE_LINE = 'Language: Python (an EnvScaler-style class: the state is the instance attributes)';
const pythonLine = (language: CodeLanguage) => (language === 'python' ? `\n${PYTHON_LANGUAGE_LINE}` : '');

const json = (value: unknown) => JSON.stringify(value, null, 1);

/** Shortens a JSON rendering so that prompts stay bounded whatever the state size. */
export function clip(text: string, max = 12_000): string {
  if (text.length <= max) return text;
  const shown = cutText(text, max);
  return `${shown}\n… (${text.length - shown.length} more characters not shown)`;
}

export function judgePrompt(task: string): ChatMessage[] {
  return [
    {
      role: 'system',
      content:
        'You are a strict filter for tasks that need a stateful, domain-specific tool environment. Answer true only if ALL hold: ' +
        '(1) the task lives in a persistent environment whose state can be both read and changed (create, update, delete, move, cancel); ' +
        '(2) it cannot be done without inspecting or changing that state; (3) the environment is domain-specific (a file system, orders, ' +
        'calendar, CRM, inventory, ticketing, bookings…); (4) it is an actionable operation or status check, not a hypothetical. ' +
        'Open-domain questions, chit-chat, content creation, pure calculation and translation are false. When a criterion is missing, answer false.\n' +
        'Answer with one JSON object: {"needsEnvironment": boolean, "reason": string}.\n' +
        'Example: "Cancel my most recent order if it has not shipped" → {"needsEnvironment": true, "reason": "Needs the order records and changes an order\'s status."}\n' +
        'Example: "Write a haiku about the sea" → {"needsEnvironment": false, "reason": "Content creation; no state is read or changed."}',
    },
    { role: 'user', content: `Task: ${task}` },
  ];
}

export function topicPrompt(task: string, language: CodeLanguage = 'js'): ChatMessage[] {
  return [
    {
      role: 'system',
      content:
        'You are a task analyst. Infer the single most plausible stateful, domain-specific environment in which the task is carried out. ' +
        'Its scope must fit this task and related ones: neither the whole domain nor only this task. ' +
        'Answer with one JSON object: {"summary": short label, "introduction": about three sentences on the environment itself ' +
        '(the state it holds, typical operations, scope; do not mention the task), "usefulness": 1-10 (breadth of real-world use), ' +
        `"modelability": 1-10 (how well it fits one ${language === 'python' ? 'Python class whose instance attributes (JSON values) its methods read and change' : 'JavaScript class whose JSON state its methods read and change'})}.\n` +
        'Example: "Delete every file in my home directory whose name contains draft" → {"summary": "Linux file system", "introduction": ' +
        '"A hierarchical file system of directories and files with owners, sizes and permissions. Users list, create, move, rename and delete ' +
        'files and directories. It tracks each file\'s parent directory and metadata.", "usefulness": 9, "modelability": 8}\n' +
        'Example: "Which antifungals is isolate 42 susceptible to?" → {"summary": "Microbiology lab information system", "introduction": ' +
        '"A laboratory system tracking specimens, isolates and susceptibility panels… ", "usefulness": 4, "modelability": 3}',
    },
    { role: 'user', content: `Task: ${task}${pythonLine(language)}` },
  ];
}

function describe(desc: EnvDescription): string {
  return `Environment: ${desc.summary}\nIntroduction: ${desc.introduction}${desc.task ? `\nExample task: ${desc.task}` : ''}`;
}

export function statePrompt(desc: EnvDescription, language: CodeLanguage = 'js'): ChatMessage[] {
  const python = language === 'python';
  return [
    {
      role: 'system',
      content:
        (python
          ? 'You design the state of a simulated tool environment that will be implemented as one Python class (EnvScaler style) whose ' +
            'instance attributes are its state: each top-level key of the state is an attribute (self.products, self.orders), holding JSON ' +
            'values (dicts keyed by id, lists, strings, numbers, booleans, None). The state schema describes that dict of attributes. Define'
          : 'You design the state of a simulated tool environment that will be implemented as one JavaScript class keeping all its state in ' +
            'this.state (JSON). Define') +
        ' the entities and their attributes (enough to support the example task and similar ones, not the whole ' +
        `domain), the rules every operation must respect, a JSON Schema of ${python ? 'the attributes' : 'this.state'} (type object; collections are objects keyed by id), ` +
        `and a small example state valid against that schema (2-3 records per collection, cross references resolving)${python ? '; top-level keys are snake_case Python identifiers' : ''}.\n` +
        'Answer with one JSON object: {"className": PascalCase, "entities": [{"name", "description", "attributes": [{"name", "type", ' +
        '"description"}]}], "rules": [string], "stateSchema": JSON Schema, "exampleState": object}.\n' +
        'Example for an e-commerce order system: entities Product (product_id, name, price, stock), Order (order_id, customer_id, items, ' +
        'status), Customer (customer_id, name); rules "stock never goes below 0", "only pending orders can be fulfilled", "order items must ' +
        'reference existing products"; stateSchema {"type": "object", "properties": {"products": {"type": "object", "additionalProperties": ' +
        '{"type": "object", "properties": {"product_id": {"type": "string"}, "stock": {"type": "integer", "minimum": 0}}, "required": ' +
        '["product_id", "stock"]}}, …}, "required": ["products", "orders", "customers"]}.',
    },
    { role: 'user', content: `${describe(desc)}${pythonLine(language)}` },
  ];
}

export function operationsPrompt(desc: EnvDescription, state: StateOutput, language: CodeLanguage = 'js'): ChatMessage[] {
  return [
    {
      role: 'system',
      content:
        'You list the operations (tools) of a simulated environment: information queries and state changes. Cover the example task and ' +
        'the environment in general, so that an agent has a rich tool set (about 6-12 queries and 5-10 state changes for a real domain): ' +
        'listings, lookups by id, filters, creation, updates, cancellations, deletions. Each operation has a snake_case name (it becomes a ' +
        `${language === 'python' ? 'Python method name, and its parameters become keyword arguments: snake_case, no Python keyword' : 'JavaScript method name'}), a kind` +
        ' ("query" or "state_change"), a description that states its errors and the rules it enforces, and ' +
        'a JSON Schema of its named arguments (type object, properties with types and descriptions, required, additionalProperties false).\n' +
        'Answer with one JSON object: {"operations": [{"name", "kind", "description", "parameters"}]}.\n' +
        'Example: {"name": "cancel_order", "kind": "state_change", "description": "Cancel an order that has not shipped; fails if it is ' +
        'unknown, shipped or already cancelled; restocks its items.", "parameters": {"type": "object", "properties": {"order_id": {"type": ' +
        '"string", "description": "the order"}}, "required": ["order_id"], "additionalProperties": false}}',
    },
    {
      role: 'user',
      content: `${describe(desc)}\nEntities: ${json(state.entities)}\nRules: ${json(state.rules)}\nState schema: ${clip(json(state.stateSchema), 8000)}${pythonLine(language)}`,
    },
  ];
}

const METHOD_CONTRACT =
  'Write one method of the class, in plain JavaScript (ES2023), as it appears in a class body: name({ arg1, arg2 = default }) { ... }. ' +
  'It takes one object of named arguments, reads and changes only this.state, and never throws: it returns ' +
  '{ success: true, data } for queries, { success: true, message } for state changes, or { success: false, error } when an id is ' +
  'unknown, an argument is invalid or a rule would be broken. this.state and what it returns hold JSON values only (objects, arrays, ' +
  'strings, finite numbers, booleans, null): no Set, Map, typed array, NaN or Infinity, which JSON writes as {} or null, losing them. ' +
  'No import, require, console, timers or host APIs; no Intl, ' +
  'structuredClone or crypto (the engine has none): toLocaleString ignores locales and localeCompare compares code units, so sort ' +
  'and format with plain comparisons and string templates. Validate arguments ' +
  'the schema cannot (existence of ids, ranges, states). Private helpers, if you need any, go in "helpers" as _name(...) { ... } methods.';

/** The seed's method contract (S2.4), in Python: a method of the class, never raising, returning the success envelope. */
const PYTHON_METHOD_CONTRACT =
  'Write one method of the class, in Python 3, as it appears in a class body: def name(self, arg1: str, arg2: int = 0) -> dict: ' +
  'with type hints and a docstring (what it does, its arguments, what it returns, the rules it enforces). Its keyword parameters are ' +
  'exactly the operation\'s parameters (the tool call\'s arguments are passed by name; optional ones have defaults). It reads and ' +
  'changes only the instance attributes (self.<name>, the state) and never raises: it returns {"success": True, "data": ...} for ' +
  'queries, {"success": True, "message": ...} for state changes, or {"success": False, "error": ...} when an id is unknown, an ' +
  'argument is invalid or a rule would be broken. Values stay JSON (dict, list, str, int, float, bool, None). typing (Any, Dict, List, ' +
  'Optional, Union) is imported for you; other modules (re, datetime, uuid, math, copy, json …) are imported inside the method, ' +
  'or on lines before the def; no file, network, process or host access. Validate arguments the schema cannot (existence of ids, ' +
  'ranges, states). Private helpers, if you need any, go in "helpers" as def _name(self, ...): methods.';

const PYTHON_METHOD_EXAMPLE =
  'Example for list_files_in_directory: {"source": "def list_files_in_directory(self, directory_path: str) -> dict:\\n    \\"\\"\\"List the files ' +
  'directly inside a directory.\\n\\n    Args:\\n        directory_path (str): the directory.\\n\\n    Returns:\\n        dict: {\\"success\\": True, ' +
  '\\"data\\": [file records]} or {\\"success\\": False, \\"error\\": str} when the directory is unknown.\\n    \\"\\"\\"\\n    if directory_path ' +
  'not in self.directories:\\n        return {\\"success\\": False, \\"error\\": f\\"Directory {directory_path} not found\\"}\\n    files = [f for f in ' +
  'self.files.values() if f[\\"parent\\"] == directory_path]\\n    return {\\"success\\": True, \\"data\\": files}\\n", "helpers": []}';

const methodContract = (language: CodeLanguage | undefined) => (language === 'python' ? PYTHON_METHOD_CONTRACT : METHOD_CONTRACT);

export function methodPrompt(desc: EnvDescription, state: StateOutput, operations: readonly Operation[], op: Operation, language: CodeLanguage = 'js'): ChatMessage[] {
  if (language === 'python') {
    return [
      {
        role: 'system',
        content: `${PYTHON_METHOD_CONTRACT}\nAnswer with one JSON object: {"source": the method, "helpers": [helper methods, often empty]}.\n${PYTHON_METHOD_EXAMPLE}`,
      },
      {
        role: 'user',
        content:
          `${describe(desc)}\nClass: ${state.className}\nRules: ${json(state.rules)}\nState schema: ${clip(json(state.stateSchema), 8000)}\n` +
          `All operations: ${operations.map(o => o.name).join(', ')}\nWrite the method for operation ${op.name}: ${json(op)}${pythonLine(language)}`,
      },
    ];
  }
  return [
    {
      role: 'system',
      content:
        `${METHOD_CONTRACT}\nAnswer with one JSON object: {"source": the method, "helpers": [helper methods, often empty]}.\n` +
        'Example for list_files_in_directory: {"source": "list_files_in_directory({ directory_path }) {\\n  const dir = this.state.directories[directory_path];\\n' +
        '  if (!dir) return { success: false, error: `Directory ${directory_path} not found` };\\n  const files = Object.values(this.state.files).filter(f => ' +
        'f.parent === directory_path);\\n  return { success: true, data: files };\\n}", "helpers": []}',
    },
    {
      role: 'user',
      content:
        `${describe(desc)}\nClass: ${state.className}\nRules: ${json(state.rules)}\nState schema: ${clip(json(state.stateSchema), 8000)}\n` +
        `All operations: ${operations.map(o => o.name).join(', ')}\nWrite the method for operation ${op.name}: ${json(op)}`,
    },
  ];
}

/** The method prompt, the previous answer (its helpers too: one of them may be what broke the class) and what is wrong. */
export function repairMethodPrompt(base: ChatMessage[], previous: { readonly source: string; readonly helpers: readonly string[] }, problem: string): ChatMessage[] {
  return [
    ...base,
    { role: 'assistant', content: JSON.stringify({ source: previous.source, helpers: previous.helpers }) },
    { role: 'user', content: `That method does not work: ${problem}\nWrite it again, fixing this, in the same JSON format.` },
  ];
}

export function configPrompt(env: EnvironmentRecord): ChatMessage[] {
  const python = env.language === 'python';
  return [
    {
      role: 'user',
      content:
        (python
          ? 'The state of this Python environment is its instance attributes: an initial state (the init config) is a JSON object whose ' +
            'keys are those attributes, each set on the instance as it is. '
          : '') +
        'Generate an initial state for testing this environment. It must match the state schema exactly, respect the rules, and every ' +
        'cross reference (ids) must resolve. Make it rich and realistic: 4-8 records per collection, varied statuses, dates and amounts, ' +
        'fictional names, some records that make operations fail (e.g. a cancelled order, zero stock). ' +
        'Answer with one JSON object: {"state": the initial state}.\n' +
        `Environment: ${env.description.summary}\nIntroduction: ${env.description.introduction}\nRules: ${json(env.state?.rules ?? [])}\n` +
        `State schema: ${clip(json(env.state?.stateSchema ?? {}), 8000)}\nClass source (for the shape the methods expect):\n${clip(env.source ?? '', 12000)}${pythonLine(python ? 'python' : 'js')}`,
    },
  ];
}

export type ToolStats = ToolQuality;

export function testerPrompt(env: EnvironmentRecord, stats: Record<string, ToolStats>, state: unknown, mustTest?: string): ChatMessage[] {
  const tools = (env.tools ?? []).map(t => ({ name: t.function.name, description: t.function.description, parameters: t.function.parameters }));
  const table = Object.entries(stats)
    .map(([tool, s]) => `| ${tool} | ${s.total} | ${s.positive} | ${s.negative} | ${s.pass} | ${s.warning} | ${s.fail} |`)
    .join('\n');
  return [
    {
      role: 'system',
      content:
        'You are an experienced test engineer exploring every tool of a simulated environment, one call per round. Positive cases use ' +
        'valid arguments; negative cases use wrong types, unknown ids, out-of-range, empty or extreme values. Keep coverage balanced: prefer ' +
        'untested or least-tested tools, and for the chosen tool the case type it has had least. Use only the listed tools, and only their ' +
        'parameter names as keys (values may be invalid in negative cases).\n' +
        'Answer with one JSON object: {"thought": string, "tool": tool name, "arguments": object, "caseType": "positive" | "negative"}.\n' +
        `Environment: ${env.description.summary}: ${env.description.introduction}\nTools: ${clip(json(tools), 12000)}`,
    },
    {
      role: 'user',
      content:
        `Tests so far:\n| Tool | Total | Positive | Negative | Pass | Warning | Fail |\n|---|---|---|---|---|---|---|\n${table}\n` +
        `Current state:\n${clip(JSON.stringify(state), 10000)}\n` +
        (mustTest === undefined ? 'Choose the next call.' : `This round must call ${mustTest}: its method has not run yet, and every tool's method runs at least once. Choose arguments its schema accepts (a positive case is best).`),
    },
  ];
}

export function checkerPrompt(env: EnvironmentRecord, step: Omit<ProbeStepRecord, 'verdict' | 'judgedBy' | 'checker'>, stateBefore: unknown): ChatMessage[] {
  const op = env.operations?.find(o => o.name === step.tool);
  return [
    {
      role: 'user',
      content:
        'You check one tool call of a simulated environment. Judge whether the method behaved correctly: the state change (see the ' +
        'diff), the conditions it checked, the rules, and the result must all be consistent with the tool description and the test case.\n' +
        '"pass": fully correct. "warning": functionally correct but with a robustness or style issue (a missing validation, a vague ' +
        'message). "fail": wrong state change, wrong result, a broken rule, an exception, or accepting invalid input that corrupts the state.\n' +
        'Answer with one JSON object: {"analysis": string, "verdict": "pass" | "warning" | "fail", "reason": string ("no error" when it passed)}.\n' +
        `Environment: ${env.description.summary}\nRules: ${json(env.state?.rules ?? [])}\nTool: ${json(op ?? { name: step.tool })}\n` +
        `Method source:\n${env.methods?.[step.tool] ?? '(missing)'}\nCase type: ${step.caseType}\nArguments: ${json(step.arguments)}\n` +
        `Result: ${clip(json(step.result), 4000)}${step.runtimeError ? `\nRuntime error: ${step.runtimeError}` : ''}\n` +
        `State before: ${clip(JSON.stringify(stateBefore), 6000)}\nDiff: ${clip(json(step.diff), 4000)}`,
    },
  ];
}

export function repairPrompt(env: EnvironmentRecord, tool: string, reasons: readonly string[]): ChatMessage[] {
  const op = env.operations?.find(o => o.name === tool);
  return [
    { role: 'system', content: `${methodContract(env.language)}\nAnswer with one JSON object: {"source": the method, "helpers": [helper methods, often empty]}.` },
    {
      role: 'user',
      content:
        `A tester found faults in this method.\nEnvironment: ${env.description.summary}\nClass: ${env.className ?? ''}\nRules: ${json(env.state?.rules ?? [])}\n` +
        `State schema: ${clip(json(env.state?.stateSchema ?? {}), 6000)}\nOperation: ${json(op ?? { name: tool })}\nCurrent method:\n${env.methods?.[tool] ?? ''}\n` +
        `What the checker reported:\n${reasons.map(r => `- ${r}`).join('\n')}\nRewrite the method so that it is correct.${pythonLine(env.language ?? 'js')}`,
    },
  ];
}
