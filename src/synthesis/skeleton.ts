import { ModelOutputError } from '../errors.js';
import type { RunOptions } from '../runs/options.js';
import { compileJsonSchema } from '../util/json-schema.js';
import { assembleFor, checkMethodFor, codeOf, PYTHON_RESERVED, toolsOf, unfence } from './assemble.js';
import { checkStateSchema, ctx, dedupeHelpers, failEnv, loadEnv, options, orFail, writeEnv, type ItemOutcome, type SynthesisDeps } from './environments.js';
import { methodPrompt, operationsPrompt, repairMethodPrompt, statePrompt } from './prompts.js';
import { MethodOutput, OperationsOutput, StateOutput, type Operation } from './schemas.js';
import type { EnvironmentRecord, MethodDoc } from './types.js';

/** The skeleton: an environment's state (skeleton.state), its operations (skeleton.operations), one method each (skeleton.method), the class (skeleton.assemble). */

export async function buildState(deps: SynthesisDeps, runId: string, envId: string): Promise<ItemOutcome> {
  return orFail(deps, runId, envId, 'skeleton.state', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.state) return { ok: true };
    const python = env.language === 'python';
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'skeleton.state'), {
      messages: statePrompt(env.description, env.language ?? 'js'),
      schema: StateOutput,
      check: v => Promise.resolve((python ? pythonStateProblem(v) : null) ?? checkStateSchema(v.stateSchema, v.exampleState, 'exampleState')),
    });
    return (await writeEnv(deps, runId, env, { ...env, state: value, className: value.className }, [{ stage: 'skeleton.state', outcome: 'done', n: 1 }])) ?? { ok: true };
  });
}

export async function buildOperations(deps: SynthesisDeps, runId: string, envId: string): Promise<ItemOutcome & { operations?: string[] }> {
  return orFail(deps, runId, envId, 'skeleton.operations', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.operations) return { ok: true, operations: env.operations.map(o => o.name) };
    if (!env.state) return { ok: false, reason: 'no state definition' };
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'skeleton.operations'), {
      messages: operationsPrompt(env.description, env.state, env.language ?? 'js'),
      schema: OperationsOutput,
      check: v => {
        if (env.language === 'python') {
          const problem = pythonOperationsProblem(v.operations);
          if (problem) return Promise.resolve(problem);
        }
        for (const op of v.operations) {
          try {
            compileJsonSchema(op.parameters);
          } catch (err) {
            return Promise.resolve(`the parameters of ${op.name} are not a valid JSON Schema: ${(err as Error).message}`);
          }
        }
        return Promise.resolve(null);
      },
    });
    const stale = await writeEnv(deps, runId, env, { ...env, operations: value.operations, tools: toolsOf(value.operations) }, [
      { stage: 'skeleton.operations', outcome: 'done', n: 1 },
      { stage: 'skeleton.operations', outcome: 'operations', n: value.operations.length },
    ]);
    return stale ?? { ok: true, operations: value.operations.map(o => o.name) };
  });
}

/** A method to write again: the previous answer (none when missing) and what is wrong with it. */
interface MethodProblem {
  readonly previous: MethodDoc;
  readonly message: string;
}

async function generateMethod(deps: SynthesisDeps, runId: string, env: EnvironmentRecord, op: Operation, opts: RunOptions, problem?: MethodProblem) {
  const base = methodPrompt(env.description, env.state!, env.operations!, op, env.language ?? 'js');
  const messages = problem ? repairMethodPrompt(base, problem.previous, problem.message) : base;
  const { value } = await deps.gateway.structured(ctx(deps, runId, 'skeleton.method', op.name), {
    messages,
    schema: MethodOutput,
    check: v => checkMethodFor(env.language, deps.sandbox, op, v.source, opts.limits),
  });
  // A method wrapped in a Markdown fence inside the JSON string loads once the fence is off (checked so).
  return { source: unfence(value.source), helpers: value.helpers.map(unfence) };
}

export async function buildMethod(deps: SynthesisDeps, runId: string, envId: string, opName: string): Promise<ItemOutcome> {
  const docId = `${envId}.${opName}`;
  if (await deps.store.getDoc(runId, 'method', docId)) return { ok: true };
  const env = await loadEnv(deps, runId, envId);
  const op = env.operations?.find(o => o.name === opName);
  if (!op || !env.state) return { ok: false, reason: `operation ${opName} not found` };
  try {
    const value = await generateMethod(deps, runId, env, op, await options(deps, runId));
    // (only where none is: a twin of the job, one taken over past its lock, counted it again, and wrote over the first)
    await deps.store.addDocText(runId, 'method', docId, JSON.stringify({ source: value.source, helpers: value.helpers } satisfies MethodDoc), [{ stage: 'skeleton.method', outcome: 'done', n: 1 }]);
    return { ok: true };
  } catch (err) {
    // A method that stays invalid is regenerated by skeleton.assemble (with its own bound).
    if (!(err instanceof ModelOutputError)) throw err;
    // Counted on its own: no document goes with it, since a method document means a method that loads
    // (skeleton.assemble regenerates only the missing ones). A crash before the job ends can count it
    // twice; it is a measure of the stage, not an item's outcome.
    await deps.store.count(runId, 'skeleton.method', 'invalid');
    return { ok: false, reason: err.message };
  }
}

/**
 * Fan-in: every operation must have a method that loads; the class must load in the sandbox and
 * instantiate on the example state. A missing or broken method goes back to the model with the
 * error, for a bounded number of rounds.
 */
export async function assembleEnvironment(deps: SynthesisDeps, runId: string, envId: string): Promise<ItemOutcome> {
  return orFail(deps, runId, envId, 'skeleton.assemble', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.source) return { ok: true };
    if (env.status === 'failed') return { ok: false, reason: env.failure?.message ?? 'failed' };
    const opts = await options(deps, runId);
    const operations = env.operations ?? [];
    const methods: Record<string, MethodDoc | null> = {};
    for (const op of operations) methods[op.name] = await deps.store.getDoc(runId, 'method', `${envId}.${op.name}`);
    // (the rounds already made: a job retried after its worker died mid-round goes on from them, not from round 0,
    // which lost their record from the environment and counted rounds again: the chaos run's datasets differed)
    const assembleRepairs: NonNullable<EnvironmentRecord['assembleRepairs']>[number][] = [...(env.assembleRepairs ?? [])];
    /** Makes the methods of a repair round again, each from what it was and why; one the model fails stays as it was. */
    const repair = async (problems: Readonly<Record<string, MethodProblem>>) => {
      for (const [name, problem] of Object.entries(problems)) {
        const op = operations.find(o => o.name === name);
        if (!op) continue;
        try {
          const value = await generateMethod(deps, runId, env, op, opts, problem);
          methods[name] = { source: value.source, helpers: value.helpers };
          await deps.store.putDoc(runId, 'method', `${envId}.${name}`, methods[name]);
        } catch (err) {
          if (!(err instanceof ModelOutputError)) throw err;
        }
      }
    };
    // A round cut short: its methods not made again yet (each still as it was when the round began).
    if (env.assemblePending) {
      // (its source and its helpers: a class that did not load is often mended by new helpers of the same method)
      const asBefore = (name: string, previous: MethodDoc) => (methods[name]?.source ?? '') === previous.source && JSON.stringify(methods[name]?.helpers ?? []) === JSON.stringify(previous.helpers);
      await repair(Object.fromEntries(Object.entries(env.assemblePending).filter(([name, p]) => asBefore(name, p.previous))));
    }
    for (let round = assembleRepairs.length; ; round += 1) {
      const problems: Record<string, MethodProblem> = {};
      for (const op of operations) {
        const m = methods[op.name];
        if (!m) problems[op.name] = { previous: { source: '', helpers: [] }, message: 'the method is missing' };
        else {
          const issue = await checkMethodFor(env.language, deps.sandbox, op, m.source, opts.limits);
          if (issue) problems[op.name] = { previous: m, message: issue };
        }
      }
      let classProblem: string | null = null;
      if (Object.keys(problems).length === 0) {
        const { helpers, source, tools, createError } = await loadClass(deps, env, operations, methods, opts);
        if (!createError) {
          const methodSources = Object.fromEntries(operations.map(op => [op.name, methods[op.name]!.source]));
          const { assemblePending: _done, ...built } = env;
          const stale = await writeEnv(deps, runId, env, { ...built, assembleRepairs, methods: methodSources, helpers, source, tools }, [
            { stage: 'skeleton.assemble', outcome: round === 0 ? 'assembled' : 'assembled-after-repair', n: 1 },
          ]);
          return stale ?? { ok: true };
        }
        classProblem = `${createError.code}: ${createError.message}`;
      }
      if (round >= opts.assembleRounds) {
        const message = classProblem ?? Object.entries(problems).map(([n, p]) => `${n}: ${p.message}`).join('; ');
        await failEnv(deps, runId, envId, 'skeleton.assemble', classProblem ? 'CLASS_DOES_NOT_LOAD' : 'METHODS_INVALID', `after ${round} repair round(s): ${message}`);
        return { ok: false, reason: message };
      }
      if (classProblem) {
        // The whole class fails while each method loads alone: the methods whose class of their own (the method and
        // its helpers) fails go back with their own error; when none does (methods that clash together), every one
        // goes back with the class's. (Every method went back: 12 requests for one helper's duplicate constructor.)
        const own = await classProblemsAlone(deps, env, operations, methods, opts);
        const culprits = Object.keys(own).length ? own : Object.fromEntries(operations.map(op => [op.name, `the assembled class does not load or instantiate: ${classProblem}`]));
        for (const [name, message] of Object.entries(culprits)) problems[name] = { previous: methods[name]!, message };
      }
      assembleRepairs.push({ round: round + 1, methods: Object.keys(problems), problems: Object.entries(problems).map(([n, p]) => `${n}: ${p.message}`) });
      // (written over the environment as it is now, not as the job found it: a run cancelled meanwhile has marked it)
      const now = await loadEnv(deps, runId, envId);
      if (now.source) return { ok: true };
      const stale = await writeEnv(deps, runId, now, { ...now, assembleRepairs, assemblePending: problems });
      if (stale) return stale;
      await repair(problems);
    }
  });
}

/**
 * For each operation, whether a class holding only its method and that method's helpers loads and instantiates on the
 * example state: the error of each that does not (one probe per operation, no model request).
 */
async function classProblemsAlone(deps: SynthesisDeps, env: EnvironmentRecord, operations: readonly Operation[], methods: Record<string, MethodDoc | null>, opts: RunOptions): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const op of operations) {
    const { createError } = await loadClass(deps, env, [op], methods, opts);
    if (createError) {
      out[op.name] = `the class with this method and its helpers${methods[op.name]!.helpers.length ? '' : ' (it has none)'} does not load or instantiate: ${createError.code}: ${createError.message}`;
    }
  }
  return out;
}

/** The class of `operations`' methods and their helpers, as assembled, and whether it loads and instantiates on the example state. */
async function loadClass(deps: SynthesisDeps, env: EnvironmentRecord, operations: readonly Operation[], methods: Record<string, MethodDoc | null>, opts: RunOptions) {
  const helpers = dedupeHelpers(operations.flatMap(op => methods[op.name]!.helpers));
  const source = assembleFor(env, operations.map(op => methods[op.name]!.source), helpers);
  const tools = toolsOf(operations);
  const probe = await deps.sandbox.probe({ code: codeOf({ ...env, tools }, source), initialState: env.state!.exampleState, calls: [], limits: opts.limits });
  return { helpers, source, tools, createError: probe.createError };
}

/** A Python run's state: its top-level keys become instance attributes, so each must be a Python identifier and no keyword. */
function pythonStateProblem(v: StateOutput): string | null {
  const props = Object.keys(((v.stateSchema as { properties?: Record<string, unknown> }).properties ?? {}));
  const bad = [...new Set([...props, ...Object.keys(v.exampleState)])].filter(k => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || PYTHON_RESERVED.has(k) || k.startsWith('__'));
  return bad.length
    ? `the top-level keys of the state become attributes of the Python instance (self.<key>), so each must be a Python identifier that is no keyword and does not start with __: ${bad.map(k => JSON.stringify(k)).join(', ')}`
    : null;
}

/** A Python run's operations: method names and parameter names (passed as keywords) must be usable in Python. */
function pythonOperationsProblem(operations: readonly Operation[]): string | null {
  const problems: string[] = [];
  for (const op of operations) {
    if (PYTHON_RESERVED.has(op.name)) problems.push(`${op.name} is a Python keyword, not a method name`);
    const props = Object.keys(((op.parameters as { properties?: Record<string, unknown> }).properties ?? {}));
    const bad = props.filter(p => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(p) || PYTHON_RESERVED.has(p));
    if (bad.length) problems.push(`the parameters of ${op.name} are passed as Python keyword arguments, so ${bad.map(p => JSON.stringify(p)).join(', ')} cannot be parameter names (use snake_case identifiers that are no keyword)`);
  }
  return problems.length ? problems.join('; ') : null;
}
