import { InvalidArgumentError } from 'commander';
import { MODEL_STAGE_NAMES, isModelStage } from '../config/index.js';
import { deleteRun, runsFinishedBefore, unsunkTrajectories } from '../queues/run-delete.js';
import { cancelRun, clearQueueRateLimits, pausedOfQueues, pausedQueuesOfRun, pausedQueuesText, resumeRun, workersOfQueues } from '../queues/run-jobs.js';
import { listRuns, runStatus, timeLeftText, type FunnelRow, type RunStatus } from '../queues/run-status.js';
import { clearCoolDowns } from '../src/llm/redis-limiter.js';
import { OUTCOME_COUNTERS } from '../src/rollouts/stages.js';
import { RequestError, castToError } from '../src/errors.js';
import { oneLineText } from '../src/util/text.js';
import { checkRunName } from '../src/runs/ids.js';
import { budgetAdvice, reachedBudgets, type Budget, type RunBudgets } from '../src/runs/control.js';
import { requireRun, withRuns, type CommandContext } from './context.js';

/** `envfleet runs`. */
export async function runsCommand(opts: { json?: boolean }): Promise<void> {
  await withRuns(async ({ store, control }) => {
    const runs = await listRuns(store, control);
    if (opts.json) process.stdout.write(`${JSON.stringify(runs)}\n`);
    else if (!runs.length) process.stdout.write('no runs yet (start one with envfleet synth)\n');
    else {
      process.stdout.write(`${'run'.padEnd(40)} ${'state'.padEnd(10)} ${'outstanding jobs'.padStart(16)}   ${'created'.padEnd(24)}   input\n`);
      for (const r of runs) process.stdout.write(`${r.id.padEnd(40)} ${r.state.padEnd(10)} ${String(r.outstanding).padStart(16)}   ${r.createdAt.padEnd(24)}   ${r.input}\n`);
    }
  });
}

/** `envfleet status`. */
export async function statusCommand(opts: { run: string; json?: boolean }): Promise<void> {
  await withRuns(async ({ at, store, control, ledger }) => {
    const status = await runStatus({ store, ledger, control, workersOf: workersOfQueues(at), pausedOf: pausedOfQueues(at) }, opts.run);
    if (!status) await requireRun(store, opts.run);
    process.stdout.write(opts.json ? `${JSON.stringify(status)}\n` : `${formatStatus(status!)}\n\n${formatFunnel(status!.funnel)}\n`);
  });
}

export interface ControlOptions {
  readonly run: string;
  readonly reason: string;
  readonly budgetUsd?: number;
  readonly budgetTokens?: number;
}

/** The run's budgets, or the configured defaults when it has none. */
/** The budget limits a command was given, and only those. */
const limitsGiven = (usd: number | undefined, tokens: number | undefined): Partial<Budget> => ({ ...(usd !== undefined ? { usd } : {}), ...(tokens !== undefined ? { tokens } : {}) });

const budgetsOf = async ({ config, control }: CommandContext, runId: string): Promise<RunBudgets> => (await control.budgets(runId)) ?? { ...config.budgets, byStage: {} };

/** `envfleet pause | resume | cancel`. */
export async function controlCommand(action: 'pause' | 'resume' | 'cancel', opts: ControlOptions): Promise<void> {
  await withRuns(async c => {
    await requireRun(c.store, opts.run);
    if (action === 'pause') {
      const before = await c.control.get(opts.run);
      if (before.state === 'paused') {
        // Paused already (by a user, a budget or the endpoint): its reason and time stay as they are.
        process.stdout.write(`run ${opts.run} is already paused since ${before.since ?? '?'}${before.reason ? ` (${before.reason})` : ''}: nothing changed (envfleet resume --run ${opts.run} goes on)\n`);
        return;
      }
      await c.control.pause(opts.run, opts.reason);
      // A finished run holds nothing to pause: said so, with what the pause still does (work added later waits).
      const finished = before.state === 'running' && (await c.store.pendingCount(opts.run)) === 0;
      process.stdout.write(
        finished
          ? `run ${opts.run} paused; it had finished (no outstanding job), so nothing is held now: work added to it later (envfleet rollouts --run ${opts.run}, …) waits until envfleet resume --run ${opts.run}\n`
          : `run ${opts.run} paused; its jobs are parked until resume (a running one at its next model call: it goes on from there)\n`,
      );
    } else if (action === 'resume') {
      const { state, budget } = await c.control.get(opts.run);
      if (state === 'cancelled') {
        const input = (await c.store.getRun(opts.run))?.input;
        const goOn =
          input === 'envscaler' || input === 'bfcl' || input === 'tau-bench'
            ? `Import the same files into another run to go on (envfleet import ${input} --from PATH --run NEW), then roll it out; the trajectories of this one stay for envfleet export`
            : 'Start another run from its export to go on (envfleet export, then envfleet scenarios --run NEW --environments DIR/environments.jsonl)';
        throw new RequestError(`run "${opts.run}" was cancelled, and a cancelled run takes no new work: nothing was resumed and no budget was set. ${goOn}.`);
      }
      const raised = opts.budgetUsd !== undefined || opts.budgetTokens !== undefined;
      const current = await budgetsOf(c, opts.run);
      const next = { ...current, ...limitsGiven(opts.budgetUsd, opts.budgetTokens) };
      // A run still at a budget would pause again at its next model call: nothing is resumed, and the message says what to raise.
      // The whole run's budget decides: a stage at its own budget pauses the run again only if that stage has calls left.
      const totals = await c.ledger.totals(opts.run);
      const reached = reachedBudgets({ ...next, byStage: {} }, totals);
      // A run paused at a stage's budget pauses again at that stage's next call while the stage is still at it (the
      // advice used to be --budget-tokens, which raises the whole run's budget: resumed, paused again at once).
      const stage = budget?.stage ?? null;
      const stageLimit = stage ? next.byStage[stage] : undefined;
      const stageReached = stage && stageLimit ? reachedBudgets({ usd: 0, tokens: 0, byStage: { [stage]: stageLimit } }, totals) : [];
      if (stageReached.length) {
        throw new RequestError(
          `run "${opts.run}" paused at the budget of stage ${stage} and is still at it (${stageReached.join('; ')}), so it would pause again at that stage's next model call; nothing was resumed${raised ? ' and the budget is unchanged' : ''}. ` +
            `Raise that stage's budget, then resume: ${budgetAdvice(opts.run, { stage })} (--budget-tokens and --budget-usd raise the whole run's budget, not a stage's); or cancel the run.`,
        );
      }
      if (reached.length) {
        throw new RequestError(
          `run "${opts.run}" is at its budget${raised ? ' even with the new one' : ''} (${reached.join('; ')}), so it would pause again at its next model call; nothing was resumed${raised ? ' and the budget is unchanged' : ''}. ` +
            `Raise the budget as you resume: envfleet resume --run ${opts.run} --budget-tokens N --budget-usd X (above what is used; envfleet budget --run ${opts.run} --stage STAGE … for a stage's budget), or cancel the run.`,
        );
      }
      // (only the limits given: a stage's budget set meanwhile by another command stays)
      const written = raised ? await c.control.patchBudgets(opts.run, limitsGiven(opts.budgetUsd, opts.budgetTokens), current) : next;
      const budgetSaid = raised ? `; budget now ${[written.usd ? `$${written.usd}` : '', written.tokens ? `${written.tokens} tokens` : ''].filter(Boolean).join(' and ') || 'none'}` : '';
      // The endpoints' fleet-wide cool-downs end first: a resume says the endpoint answers again (a long Retry-After would
      // otherwise hold the jobs brought back at once, until it ran out). So do the queues' own waits that the cool-downs
      // set (BullMQ's rate limit of a queue: every job of the queue, of every run, held): ended after the jobs were brought
      // back, a job taken meanwhile saw the cool-down still there and held the queue for another hour (a stranger's probe).
      // Said and gone past when they fail (Redis refusing a write): the resume itself matters more.
      const ended = async <T>(what: string, clear: () => Promise<T[]>): Promise<T[]> =>
        clear().catch((err: unknown) => {
          process.stderr.write(`could not end ${what} (${castToError(err).message}); the run is resumed anyway, and its jobs may wait for them to run out\n`);
          return [];
        });
      const cooled = await ended("the model endpoints' cool-downs", () => clearCoolDowns(c.redis, c.config.redis.prefix, Object.values(c.config.endpoints)));
      const held = await ended("the queues' rate limits", () => clearQueueRateLimits(c.at));
      if (cooled.length) process.stdout.write(`${cooled.map(e => `endpoint "${e.name}" was cooling down for ${Math.ceil(e.leftMs / 1000)} s more (a 429's Retry-After, or an outage): ended`).join('\n')}\n`);
      // (A wait of seconds, a 429's usual, is ended without a word.)
      const long = held.filter(q => q.leftMs >= 5_000);
      if (long.length) process.stdout.write(`${long.map(q => `queue ${q.stage} was held for ${Math.ceil(q.leftMs / 1000)} s more while the endpoint cooled down (every run's jobs there): ended`).join('\n')}\n`);
      // Brings the parked jobs back here too, so resuming works while no worker is listening; also on a run marked running
      // already, whose parked jobs an earlier resume could not all bring back (it says to resume again).
      const r = await resumeRun(c.at, c.control, opts.run);
      const left = r.failed ? `; ${r.failed} could not be brought back now (${castToError(r.firstError).message}): resume again, or the workers' recheck brings them back (ENVFLEET_PAUSED_RECHECK_MS)` : '';
      if (state !== 'paused' && r.released === 0 && !r.failed) {
        // What holds a running run that looks stuck may be a queue paused in BullMQ, which resume does not touch.
        const held = pausedQueuesText(opts.run, await pausedQueuesOfRun(c.at, c.store, opts.run));
        process.stdout.write(`run ${opts.run} is ${state}, not paused, and has no parked job: nothing to resume${budgetSaid}\n${held ? `${held}\n` : ''}`);
      }
      else process.stdout.write(`run ${opts.run} resumed; ${r.released} parked job${r.released === 1 ? '' : 's'} brought back${budgetSaid}${left}\n`);
    } else {
      const before = await c.control.get(opts.run);
      const finished = before.state === 'running' && (await c.store.pendingCount(opts.run)) === 0;
      const r = await cancelRun(c.at, c.store, c.control, opts.run, opts.reason);
      const was =
        before.state === 'cancelled'
          ? ` (already since ${before.since ?? '?'}${before.reason ? `: ${before.reason}` : ''}; its reason stays)`
          : finished
            ? ' (it had finished: its results stay as they are, and it takes no new work)'
            : '';
      process.stdout.write(`run ${opts.run} cancelled${was}: ${r.removed} waiting jobs removed, ${r.running} running jobs end at their next model call\n`);
    }
  });
}

export interface BudgetOptions {
  readonly run: string;
  readonly usd?: number;
  readonly tokens?: number;
  readonly stage?: string;
  readonly json?: boolean;
}

/** `envfleet budget`. */
export async function budgetCommand(opts: BudgetOptions): Promise<void> {
  if (opts.stage && !isModelStage(opts.stage)) throw new InvalidArgumentError(`unknown stage "${opts.stage}"; stages: ${MODEL_STAGE_NAMES.join(', ')}`);
  await withRuns(async c => {
    await requireRun(c.store, opts.run);
    const current = await budgetsOf(c, opts.run);
    if (opts.usd === undefined && opts.tokens === undefined) {
      // Only looking: nothing is written (writing what was shown replaced a budget a worker applied with this
      // process's configured defaults, often none: the limit was gone).
      if (opts.stage) {
        const stage = current.byStage[opts.stage] ?? { usd: 0, tokens: 0 };
        process.stdout.write(opts.json ? `${JSON.stringify(stage)}\n` : `run ${opts.run} budget of stage ${opts.stage}: ${JSON.stringify(stage)} (0 = no limit; set one with --usd X or --tokens N)\n`);
      } else process.stdout.write(opts.json ? `${JSON.stringify(current)}\n` : `run ${opts.run} budgets: ${JSON.stringify(current)} (0 = no limit; set one with --usd X or --tokens N)\n`);
      return;
    }
    const patch = limitsGiven(opts.usd, opts.tokens);
    // Only the limits given, in one step: what another command or a worker wrote meanwhile stays (read and written whole
    // apart, a stage's limit set by another envfleet budget in between was gone).
    const next = await c.control.patchBudgets(opts.run, patch, current, opts.stage);
    process.stdout.write(opts.json ? `${JSON.stringify(next)}\n` : `run ${opts.run} budgets: ${JSON.stringify(next)}\n`);
    // Allowed (a way to stop a run's spending), but said: the run pauses at its next model call.
    const reached = reachedBudgets(next, await c.ledger.totals(opts.run));
    if (reached.length) process.stderr.write(`note: run ${opts.run} is already at this budget (${reached.join('; ')}): it pauses at its next model call${opts.stage ? ` of stage ${opts.stage}` : ''}, until the budget is raised (envfleet resume --run ${opts.run} --budget-tokens N --budget-usd X${opts.stage ? `, or envfleet budget --run ${opts.run} --stage ${opts.stage}` : ''})\n`);
  });
}

export function formatFunnel(rows: readonly FunnelRow[]): string {
  // A run whose first jobs have not reached a stage yet (just submitted, or its workers not started) has no rows.
  if (rows.length === 0) return 'stages: nothing has entered a stage yet';
  const lines = ['stage                  entered  passed  left (why)'];
  for (const r of rows) {
    const why = Object.entries(r.left).map(([k, n]) => `${n} ${k}`).join(', ');
    const measures = Object.entries(r.measures).map(([k, n]) => `${k} ${n}`).join(', ');
    const undeclared = Object.entries(r.undeclared).map(([k, n]) => `${k} ${n}`).join(', ');
    lines.push(`${r.stage.padEnd(22)} ${String(r.entered).padStart(7)} ${String(r.passed).padStart(7)}  ${why || '-'}${measures ? `   [${measures}]` : ''}${undeclared ? `   (undeclared: ${undeclared})` : ''}`);
  }
  return lines.join('\n');
}

/** "input tasks 7; environments created 3": the run counters that are not stages (reward sums are shown as the mean reward instead). */
export const formatEvents = (events: RunStatus['events']) =>
  Object.entries(events)
    .filter(([group]) => group !== OUTCOME_COUNTERS)
    .map(([group, outcomes]) => `${group} ${Object.entries(outcomes).map(([k, n]) => `${k} ${n}`).join(', ')}`)
    .join('; ');

/** When the run came to its state: a pause or cancel at its time (and when it had finished, if it had), else when it finished. */
function stateTimeText(s: RunStatus): string {
  if ((s.state === 'cancelled' || s.state === 'paused') && s.control.since) return ` at ${s.control.since}${s.finishedAt ? ` (finished at ${s.finishedAt})` : ''}`;
  return s.finishedAt ? ` at ${s.finishedAt}` : '';
}

export function formatStatus(s: RunStatus): string {
  const lines = [
    `run ${s.id} — ${s.state}${stateTimeText(s)}${s.control.reason ? ` (${s.control.reason})` : ''}; created ${s.createdAt}; input: ${s.input}`,
    `outstanding jobs: ${s.outstanding}; rate ${s.ratePerMinute.toFixed(1)} jobs/min; ${timeLeftText(s)}`,
    // Jobs the store counts active in such a stage were taken by a worker that stopped: nothing runs them now.
    ...(s.unconsumed.length ? [heldText(s)].filter(t => t) : []),
    `environments ${JSON.stringify(s.environments)}; scenarios ${JSON.stringify(s.scenarios)}; trajectories ${s.trajectories.count}` +
      (s.trajectories.count === 0
        ? ''
        : ` (${s.trajectories.meanReward === null ? 'no reward' : `mean reward ${s.trajectories.meanReward.toFixed(3)}${s.trajectories.unscored ? ` over the ${s.trajectories.count - s.trajectories.unscored} scored` : ''}`}, solved ${((s.trajectories.solvedRate ?? 0) * 100).toFixed(1)}%${s.trajectories.unscored ? ` of all ${s.trajectories.count}` : ''}` +
          (s.trajectories.unscored
            ? `; ${s.trajectories.unscored} unscored: no reward, from a model or environment error, checks that could not run on the final state, or a scenario with no checks by design (an imported SFT scenario) — see each trajectory's termination and checksError (envfleet export)`
            : '') +
          ')'),
    // How the episodes ended, most first: "unparsed-tool-call 16" is what tells a user the endpoint writes its calls as text.
    ...(s.trajectories.count
      ? [`episodes ended: ${Object.entries(s.trajectories.byTermination).filter(([, n]) => n > 0).sort(([a, x], [b, y]) => y - x || a.localeCompare(b)).map(([reason, n]) => `${reason} ${n}`).join(', ')}${(s.trajectories.byTermination['unparsed-tool-call'] ?? 0) > 0 ? ' (unparsed-tool-call: the model wrote its tool calls as text its profile does not read; set toolCallFormat in the rollout.policy profile of ENVFLEET_MODELS_FILE, e.g. hermes or auto: docs/configuration.md)' : ''}`]
      : []),
    ...(Object.keys(s.events).length ? [`counters: ${formatEvents(s.events)}`] : []),
    ...(s.events['waits']
      ? [
          `waits for sandbox room: ${Object.entries(s.events['waits']).map(([code, n]) => `${code} ${n}`).join(', ')} (jobs that came back later without using an attempt${s.events['waits']['SANDBOX_MEMORY_FULL'] ? ': SANDBOX_MEMORY_FULL, their sandbox full of other environments' : ''}${s.events['waits']['ENV_DISPOSED'] ? `${s.events['waits']['SANDBOX_MEMORY_FULL'] ? ';' : ':'} ENV_DISPOSED, their Python interpreter taken down by another environment` : ''}; each comes back with its episode from the start, its model calls from the response cache, and an episode's Python environment that did not fit had waited in its interpreter first, up to 5 min. To wait less, run fewer at once per worker process, ENVFLEET_ROLLOUT_CONCURRENCY, or give the sandbox more room: a JavaScript environment's ENVFLEET_SANDBOX_HEAP_MB, a Python one's ENVFLEET_PYTHON_HEAP_MB and ENVFLEET_PYTHON_INTERPRETERS)`,
        ]
      : []),
    ...(s.events['checks']
      ? [`checks that ended in an error: ${Object.entries(s.events['checks']).map(([code, n]) => `${code} ${n}`).join(', ')} (each counted as false: a check that loops, or grows, on a changed final state, or one that raises to say why it failed, as BFCL's imported checks do with CheckFailed; see each trajectory's checks in envfleet export)`]
      : []),
    `redis: ${formatBytes(s.redis.bytes)} kept by the run` +
      Object.entries(s.redis.perItem)
        .filter(([, n]) => n !== null)
        .map(([item, n]) => `; ${formatBytes(n!)} per ${item}`)
        .join(''),
    // (`requests` counts the requests sent; the cached ones were not: "N requests (M cached)" read as M of N to a stranger)
    `model: ${s.ledger.requests} requests sent, ${s.ledger.promptTokens + s.ledger.completionTokens} tokens, $${s.ledger.costUsd.toFixed(4)}` +
      (s.ledger.cachedRequests ? `; ${s.ledger.cachedRequests} more answered from the response cache (saving $${s.ledger.savedCostUsd.toFixed(4)})` : '') +
      (s.ledger.unmeteredRequests ? `; ${s.ledger.unmeteredRequests} requests without token usage (answered without it, unreadable, or not answered in time; their tokens are in no count, cost or token budget: turn usage reporting on in the endpoint or proxy if it answers without it)` : '') +
      (s.budgets ? `; budget ${s.budgets.tokens ? `${s.budgets.tokens} tokens` : ''}${s.budgets.usd ? ` $${s.budgets.usd}` : ''}${Object.keys(s.budgets.byStage).length ? ` per stage ${JSON.stringify(s.budgets.byStage)}` : ''}` : ''),
    '',
    'stage                  waiting  active  done   left (why)                         tokens      cost',
  ];
  for (const st of s.stages) {
    const why = Object.entries(st.left).map(([k, n]) => `${n} ${k}`).join(', ') || '-';
    lines.push(`${st.stage.padEnd(22)} ${String(st.waiting).padStart(7)} ${String(st.running).padStart(7)} ${String(st.done).padStart(5)}   ${why.padEnd(34)} ${String(st.tokens).padStart(8)}  $${st.costUsd.toFixed(4)}`);
  }
  // What a code means for this run: the first item's reason of each failure or drop still counted (a mining task's is in
  // no export, so status was the only place, and said only the code).
  const examples = s.stages.flatMap(st => Object.entries(st.left).filter(([outcome, n]) => n > 0 && s.reasons[`${st.stage}|${outcome}`]).map(([outcome]) => `  ${st.stage} ${outcome}: ${oneLineText(s.reasons[`${st.stage}|${outcome}`]!)}`));
  if (examples.length) lines.push('', 'why, one example of each (every item\'s reason: envfleet export, or the workers\' log for mining tasks):', ...examples);
  return lines.join('\n');
}

export interface DeleteRunsOptions {
  readonly run?: string;
  readonly finishedBefore?: string;
  readonly dryRun?: boolean;
  readonly force?: boolean;
}

/** For stages no worker consumes: the jobs shown active there, which a worker that stopped had taken. */
function heldText(s: RunStatus): string {
  const stages = s.stages.filter(st => s.unconsumed.includes(st.stage) && st.running > 0);
  const held = stages.reduce((a, st) => a + st.running, 0);
  return held ? `the ${held} job${held === 1 ? '' : 's'} shown active in ${stages.map(st => st.stage).join(', ')} ${held === 1 ? 'was' : 'were'} taken by a worker that has stopped: nothing runs ${held === 1 ? 'it' : 'them'} now, and a worker that starts takes ${held === 1 ? 'it' : 'them'} up again once ${held === 1 ? 'its lock expires' : 'their locks expire'} (ENVFLEET_LOCK_DURATION_MS)` : '';
}

/** `envfleet runs delete`. */
export async function deleteRunsCommand(opts: DeleteRunsOptions): Promise<void> {
  if (!!opts.run === !!opts.finishedBefore) throw new InvalidArgumentError('give exactly one of --run NAME or --finished-before DATE');
  const before = opts.finishedBefore === undefined ? null : new Date(opts.finishedBefore);
  if (before && Number.isNaN(before.getTime())) throw new InvalidArgumentError(`--finished-before takes a date (ISO 8601, e.g. 2026-11-01), not "${opts.finishedBefore}"`);
  await withRuns(async ({ config, redis, store, control }) => {
    // A name no run has, and no run can have (`d*`), is said so, --dry-run too; a run of the store goes by its name.
    if (opts.run && !(await store.getRun(opts.run))) checkRunName(opts.run);
    const runs = before ? await runsFinishedBefore(store, before) : [opts.run!];
    if (opts.dryRun) {
      const named: string[] = [];
      for (const runId of runs) {
        const unsunk = opts.force ? 0 : await unsunkTrajectories(redis, config.redis.prefix, runId);
        named.push(unsunk ? `${runId} (refused without --force: ${unsunk} trajectories no envfleet sink has written)` : runId);
      }
      process.stdout.write(runs.length ? `would delete: ${named.join(', ')}\n` : 'nothing to delete\n');
      return;
    }
    if (!before) {
      const deleted = await deleteRun(redis, config.redis.prefix, store, control, runs[0]!, { force: opts.force === true });
      process.stdout.write(`deleted run ${runs[0]}: ${deleted.keys} Redis keys, ${deleted.jobs} finished jobs\n`);
      return;
    }
    // Every run finished before the date: one that is refused (trajectories no sink wrote) is kept and said, the others go.
    let kept = 0;
    for (const runId of runs) {
      try {
        const deleted = await deleteRun(redis, config.redis.prefix, store, control, runId, { force: opts.force === true });
        process.stdout.write(`deleted run ${runId}: ${deleted.keys} Redis keys, ${deleted.jobs} finished jobs\n`);
      } catch (err) {
        if (!(err instanceof RequestError)) throw err;
        kept += 1;
        process.stderr.write(`kept run ${runId}: ${err.message}\n`);
      }
    }
    if (!runs.length) process.stdout.write(`no run finished before ${before.toISOString()}\n`);
    if (kept) throw new RequestError(`${kept} of the ${runs.length} runs finished before ${before.toISOString()} were kept (said above); the others were deleted`);
  });
}

/** 1234567 → "1.2 MB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let x = n;
  while (Math.abs(x) >= 1000 && i < units.length - 1) {
    x /= 1000;
    i += 1;
  }
  return `${i === 0 ? x : x.toFixed(1)} ${units[i]}`;
}
