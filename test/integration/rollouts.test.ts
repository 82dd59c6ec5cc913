import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { rejection } from '../helpers/assert.js';
import type { z } from 'zod';
import { funnelReport, runStatus } from '../../queues/run-status.js';
import { formatStatus } from '../../cli/runs.js';
import { submitRollouts, submitScenarios, submitSynthesis, type RolloutRequest } from '../../queues/submit.js';
import { exportRun } from '../../src/datasets/export.js';
import { runSink } from '../../src/datasets/sink.js';
import { loadModelScript, mergeModelScripts, parseModelScript, type ModelScript } from '../../src/model-server/index.js';
import { computeGroup, runRollout, type RolloutDeps } from '../../src/rollouts/stages.js';
import { createRedisTrajectoryStream, trajectoryStreamKey } from '../../src/rollouts/stream.js';
import { isArchived, type RolloutMode, type Trajectory } from '../../src/rollouts/types.js';
import type { RunStore } from '../../src/runs/store.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { createRedisLedger } from '../../src/llm/redis-ledger.js';
import { cancelRun } from '../../queues/run-jobs.js';
import { AlpacaLine, arrowProblems, functionCallsOf, HFPromptCompletionLine, LlamaFactoryDatasetInfo, OpenAIFineTuneLine, PromptLine, RLGroupLine, RLScenarioLine, ShareGPTLine, untypedProperties, VerlLine } from '../helpers/formats.js';
import { DEMO, ENVFLEET_BIN, childEnv, exited, testConfig, until, useFleet, type Fleet, type Overrides } from '../helpers/integration.js';

const run = promisify(execFile);

/** The text of a chat message (content is a string in every message we record). */
const text = (m: { content?: unknown } | undefined): string => (typeof m?.content === 'string' ? m.content : '');

async function trajectories(store: RunStore, runId: string): Promise<Trajectory[]> {
  const out: Trajectory[] = [];
  for (const id of await store.listDocIds(runId, 'trajectory')) {
    const t = (await store.getDoc(runId, 'trajectory', id))!;
    if (isArchived(t)) throw new Error(`trajectory ${id} was archived by a sink; read it from its shard`);
    out.push(t);
  }
  return out;
}

async function jsonl(path: string): Promise<unknown[]> {
  const text = await readFile(path, 'utf8');
  return text.trim() ? text.trim().split('\n').map(l => JSON.parse(l) as unknown) : [];
}

function validateAll(schema: z.ZodType, lines: unknown[], what: string) {
  expect(lines.length, what).to.be.greaterThan(0);
  lines.forEach((line, i) => {
    const r = schema.safeParse(line);
    expect(r.success, `${what} line ${i + 1}: ${r.success ? '' : JSON.stringify(r.error.issues).slice(0, 400)}`).to.equal(true);
  });
}

describe('rollouts, sink and datasets (real Redis, real workers, scripted server)', function () {
  const fleet = useFleet();
  let f: Fleet;

  async function start(extra?: ModelScript, overrides: Overrides = {}) {
    f = await fleet({ ...(extra ? { extra } : {}), overrides });
  }

  /** Environments and scenarios from the demo fixtures. */
  async function prepare(runId: string) {
    await submitSynthesis(f.config, f.redis, { runId, tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun(runId);
    await submitScenarios(f.config, f.redis, { runId, perEnv: 3 });
    await f.waitForRun(runId);
  }

  async function rollouts(request: RolloutRequest) {
    await submitRollouts(f.config, f.redis, request);
    await f.waitForRun(request.runId);
    return trajectories(f.store, request.runId);
  }

  it('runs both modes with parallel calls and recovered bad arguments; rewards match `envfleet sandbox check`; groups are right; every export validates', async () => {
    await start();
    await prepare('r1');
    // The RL trainers' files need ready scenarios only; every tool stored at synthesis has typed parameters (the parking tools' `size` had only an enum).
    const early = await exportRun(f.store, 'r1', await mkdtemp(join(tmpdir(), 'envfleet-rl-')), { formats: ['verl', 'prompts'] });
    expect(early.scenarios.ready).to.be.greaterThan(0);
    expect(early.datasets).to.deep.equal({ 'rl-verl.json': early.scenarios.ready, 'rl-prompts.jsonl': early.scenarios.ready });
    for (const id of await f.store.listDocIds('r1', 'env')) for (const t of (await f.store.getDoc('r1', 'env', id))?.tools ?? []) expect(untypedProperties(t.function.parameters), `${id} ${t.function.name}`).to.deep.equal([]);
    const all = await rollouts({ runId: 'r1', samples: 2, modes: ['non-conversational', 'conversational'] });
    expect(all).to.have.length(16);
    const byTask = (needle: string, mode: string) => all.filter(t => t.mode === mode && text(t.messages[1]).includes(needle));

    // Non-conversational Iris: two tool calls in one message, both run in order; reasoning kept.
    const iris = all.find(t => t.mode === 'non-conversational' && text(t.messages[1]).includes('Iris Vance'))!;
    const first = iris.messages[2] as { tool_calls?: unknown[]; reasoning_content?: string };
    expect(first.tool_calls).to.have.length(2);
    expect(first.reasoning_content).to.match(/Check the member/);
    expect(iris.steps.slice(0, 2).map(s => s.tool)).to.deep.equal(['get_member', 'return_book']);
    expect(iris.messages.slice(3, 5).map(m => m.role)).to.deep.equal(['tool', 'tool']);
    expect(iris).to.deep.include({ reward: 1, solved: true, termination: { reason: 'agent-finished', detail: null } });

    // Oskar: broken JSON and a wrong type come back as errors; the agent recovers and solves it.
    const oskar = all.find(t => t.mode === 'non-conversational' && text(t.messages[1]).includes('Oskar Lind'))!;
    expect(oskar.steps.filter(s => s.runtimeError === 'INVALID_ARGUMENTS')).to.have.length(2);
    expect(oskar.steps[0]!.rawArguments).to.equal('{"member_id": "M3"');
    expect(oskar.solved).to.equal(true);

    // Conversational: opened by the user simulator, ended by its stop token.
    const conv = all.filter(t => t.mode === 'conversational');
    expect(conv).to.have.length(8);
    for (const t of conv) {
      expect(t.termination.reason).to.equal('user-stopped');
      expect(t.messages[1]!.role).to.equal('user');
      expect(text(t.messages.at(-1))).to.include('###STOP###');
      expect(t.userMessages!.length).to.be.greaterThan(2);
    }
    expect(byTask('PL-900', 'conversational').concat(byTask('Release PL-900', 'non-conversational')).every(t => t.reward === 0.5 && !t.solved)).to.equal(true);

    // Rewards equal what the check functions give through the command line.
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-rollouts-'));
    const store = f.store;
    for (const t of [iris, oskar, all.find(t => t.reward === 0.5)!]) {
      const scenario = (await store.getDoc('r1', 'scenario', t.scenarioId))!;
      await writeFile(join(dir, 'c.json'), JSON.stringify(scenario.checklist));
      await writeFile(join(dir, 'i.json'), JSON.stringify(scenario.initialState));
      await writeFile(join(dir, 'f.json'), JSON.stringify(t.finalState));
      const { stdout } = await run(process.execPath, [ENVFLEET_BIN, 'sandbox', 'check', join(dir, 'c.json'), '--initial', join(dir, 'i.json'), '--final', join(dir, 'f.json')]);
      const cli = JSON.parse(stdout) as { reward: number; solved: boolean; results: { passed: boolean }[] };
      expect(cli.reward).to.equal(t.reward);
      expect(cli.solved).to.equal(t.solved);
      expect(cli.results.map(r => r.passed)).to.deep.equal(t.checks.map(c => c.passed));
    }

    // Group statistics.
    for (const id of await store.listDocIds('r1', 'group')) {
      const g = (await store.getDoc('r1', 'group', id))!;
      const rewards = all.filter(t => t.scenarioId === g.scenarioId && t.mode === g.mode).sort((a, b) => a.sample - b.sample).map(t => t.reward ?? 0);
      const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
      expect(g.rewards).to.deep.equal(rewards);
      expect(g.mean).to.be.closeTo(mean, 1e-6);
      expect(g.std).to.be.closeTo(Math.sqrt(rewards.reduce((a, r) => a + (r - mean) ** 2, 0) / rewards.length), 1e-6);
      expect(g.passAtK).to.equal(rewards.some(r => r === 1));
    }

    // Every export line validates against the published format.
    const exported = await exportRun(store, 'r1', dir);
    expect(exported.datasets['sft-openai.jsonl']).to.equal(16);
    validateAll(OpenAIFineTuneLine, await jsonl(join(dir, 'sft-openai.jsonl')), 'sft-openai');
    validateAll(ShareGPTLine, await jsonl(join(dir, 'sft-sharegpt.jsonl')), 'sft-sharegpt');
    validateAll(AlpacaLine, await jsonl(join(dir, 'sft-llamafactory.jsonl')), 'sft-llamafactory');
    validateAll(HFPromptCompletionLine, await jsonl(join(dir, 'sft-hf.jsonl')), 'sft-hf');
    const info = LlamaFactoryDatasetInfo.parse(JSON.parse(await readFile(join(dir, 'dataset_info.json'), 'utf8')));
    expect(Object.values(info).map(d => d.file_name).sort()).to.deep.equal(['sft-llamafactory.jsonl', 'sft-sharegpt.jsonl']);
    // Oskar's broken calls stay as context and are never a target: weight 0 in the OpenAI file, never the
    // last (trained) turn of a ShareGPT line, an alpaca output or an HF completion; the recovery after them is.
    const brokenArgs = '{"member_id": "M3"';
    const openai = (await jsonl(join(dir, 'sft-openai.jsonl'))) as { messages: { role: string; weight?: number; tool_calls?: { function: { arguments: string } }[] }[] }[];
    const withBroken = openai.filter(l => l.messages.some(m => m.tool_calls?.some(c => c.function.arguments === brokenArgs)));
    expect(withBroken).to.have.length(all.filter(t => t.steps.some(st => st.rawArguments === brokenArgs)).length).and.to.have.length.greaterThan(0);
    for (const l of withBroken) {
      expect(l.messages.filter(m => m.weight === 0)).to.have.length(1);
      expect(l.messages.find(m => m.tool_calls?.some(c => c.function.arguments === brokenArgs))!.weight).to.equal(0);
    }
    const sharegpt = (await jsonl(join(dir, 'sft-sharegpt.jsonl'))) as { conversations: { from: string; value: string }[] }[];
    const contextOnly = sharegpt.filter(l => l.conversations.some(c => c.from === 'function_call' && functionCallsOf(c.value)!.some(x => x.arguments === brokenArgs)));
    expect(contextOnly.length).to.be.greaterThan(0);
    for (const l of contextOnly) expect(functionCallsOf(l.conversations.at(-1)!.value) ?? []).to.satisfy((calls: { arguments: unknown }[]) => calls.every(x => typeof x.arguments === 'object'));
    for (const l of (await jsonl(join(dir, 'sft-llamafactory.jsonl'))) as { output: string }[]) expect(l.output).not.to.include('"amount": "6"');
    for (const l of (await jsonl(join(dir, 'sft-hf.jsonl'))) as { completion: unknown[] }[]) expect(JSON.stringify(l.completion)).not.to.include('"amount":"6"');
    validateAll(RLScenarioLine, await jsonl(join(dir, 'rl-scenarios.jsonl')), 'rl-scenarios');
    validateAll(RLGroupLine, await jsonl(join(dir, 'rl-groups.jsonl')), 'rl-groups');
    const verlRows = await jsonl(join(dir, 'rl-verl.json'));
    const promptRows = await jsonl(join(dir, 'rl-prompts.jsonl'));
    validateAll(VerlLine, verlRows, 'rl-verl');
    validateAll(PromptLine, promptRows, 'rl-prompts');
    expect(verlRows).to.have.length(exported.scenarios.ready);
    expect(arrowProblems(verlRows, ['extra_info.tools_kwargs'])).to.deep.equal([]);
    expect(arrowProblems(promptRows)).to.deep.equal([]);
    const solvedOnly = await exportRun(store, 'r1', await mkdtemp(join(tmpdir(), 'envfleet-solved-')), { formats: ['openai'], filter: { solvedOnly: true, minReward: null } });
    expect(solvedOnly.datasets['sft-openai.jsonl']).to.equal(all.filter(t => t.solved).length);

    // `run status` (also behind the dashboard and /metrics) gives the trajectories' statistics from counters.
    const prefix = f.config.redis.prefix;
    const statusDeps = { store, ledger: f.workers.ctx.ledger, control: f.workers.ctx.runControl };
    const terminations: Record<string, number> = {};
    for (const t of all) terminations[t.termination.reason] = (terminations[t.termination.reason] ?? 0) + 1;
    const expectStatus = async () => {
      const { trajectories: stats } = (await runStatus(statusDeps, 'r1'))!;
      expect(stats.count).to.equal(all.length);
      expect(stats.byTermination).to.deep.equal(terminations);
      // The mean is over the trajectories with a reward; those without one are counted apart (a stranger's probe saw
      // a third of a run without a reward averaged in as zeros, and nothing in status saying so).
      const scored = all.filter(t => t.reward !== null);
      expect(stats.unscored).to.equal(all.length - scored.length);
      expect(stats.meanReward).to.be.closeTo(scored.reduce((a, t) => a + t.reward!, 0) / scored.length, 1e-6);
      expect(stats.solvedRate).to.be.closeTo(all.filter(t => t.solved).length / all.length, 1e-9);
    };
    await expectStatus();

    // The sink writes every trajectory, then Redis keeps only summaries and the stream lets go of its entries.
    const sinkDir = await mkdtemp(join(tmpdir(), 'envfleet-archive-'));
    const sunk = await runSink({ redis: f.redis, prefix, store, runId: 'r1', dir: sinkDir });
    expect(sunk.written).to.equal(all.length);
    for (const t of all) {
      const doc = (await store.getDoc('r1', 'trajectory', t.id))! as unknown as Record<string, unknown>;
      expect(doc).to.not.have.any.keys('messages', 'steps', 'finalState', 'tools', 'userMessages');
      expect(doc['archived']).to.deep.equal({ path: join(sinkDir, 'trajectories', 'part-00000.jsonl') });
      expect({ reward: doc['reward'], solved: doc['solved'], termination: doc['termination'] }).to.deep.equal({ reward: t.reward, solved: t.solved, termination: t.termination });
    }
    expect(await f.redis.xlen(trajectoryStreamKey(prefix, 'r1'))).to.equal(0);
    await expectStatus();
    // The shard holds the full trajectories, and the datasets made from it are the ones made from Redis before.
    const shardLines = (await jsonl(join(sinkDir, 'trajectories', 'part-00000.jsonl'))) as Trajectory[];
    expect(new Map(shardLines.map(t => [t.id, t]))).to.deep.equal(new Map(all.map(t => [t.id, t])));
    const againDir = await mkdtemp(join(tmpdir(), 'envfleet-again-'));
    const again = await exportRun(store, 'r1', againDir);
    expect(again.datasets).to.deep.equal(exported.datasets);
    // The same lines; from the shards they come in the sink's order, from Redis in id order.
    const sortedLines = async (path: string) => (await readFile(path, 'utf8')).split('\n').sort();
    for (const file of ['sft-openai.jsonl', 'sft-sharegpt.jsonl', 'sft-llamafactory.jsonl', 'sft-hf.jsonl', 'rl-groups.jsonl', 'rl-scenarios.jsonl']) {
      expect(await sortedLines(join(againDir, file)), file).to.deep.equal(await sortedLines(join(dir, file)));
    }
    expect((await readdir(againDir)).filter(f => f.endsWith('.partial'))).to.deep.equal([]);
    // Another export into the same folder replaces the earlier one whole: no file of other settings stays beside it.
    const narrower = await exportRun(store, 'r1', againDir, { formats: ['openai'], filter: { solvedOnly: true, minReward: null } });
    expect(narrower.removed).to.have.members(['sft-sharegpt.jsonl', 'sft-llamafactory.jsonl', 'sft-hf.jsonl', 'dataset_info.json', 'rl-scenarios.jsonl', 'rl-groups.jsonl', 'rl-verl.json', 'rl-prompts.jsonl']);
    expect((await readdir(againDir)).sort()).to.deep.equal(['.envfleet-export.json', 'environments.jsonl', 'scenarios-dropped.jsonl', 'scenarios.jsonl', 'sft-openai.jsonl']);
    expect(await jsonl(join(againDir, 'sft-openai.jsonl'))).to.have.length(all.filter(t => t.solved).length);
    // A file no export's manifest lists (LLaMA-Factory's own data/dataset_info.json) is kept, and named.
    const lfData = await mkdtemp(join(tmpdir(), 'envfleet-lf-data-'));
    await writeFile(join(lfData, 'dataset_info.json'), '{"alpaca_zh_demo": {"file_name": "alpaca_zh_demo.json"}}');
    const beside = await exportRun(store, 'r1', lfData, { formats: ['openai'] });
    expect(beside.removed).to.deep.equal([]);
    expect(beside.foreign).to.deep.equal(['dataset_info.json']);
    expect(await readFile(join(lfData, 'dataset_info.json'), 'utf8')).to.include('alpaca_zh_demo');
    // Each group job let go of the outcomes kept beside its trajectories once it stored the group's statistics
    // (test/integration/group-outcomes.test.ts shows it reads those instead of the trajectories), so a retried group
    // job computes the same statistics from the trajectories (by now the sink's summaries).
    expect(await f.redis.keys(`${f.config.redis.prefix}:run:r1:outcomes:*`)).to.deep.equal([]);
    expect((await store.bytes('r1'))['outcomes'] ?? 0).to.equal(0);
    for (const id of await store.listDocIds('r1', 'group')) {
      const g = (await store.getDoc('r1', 'group', id))!;
      expect(await computeGroup(store, 'r1', g.scenarioId, g.mode, g.samples)).to.deep.equal(g);
    }
    // A retried rollout job finds the summary: no model call, no sandbox, republished for the sink.
    const refuse = () => {
      throw new Error('a finished episode must not run again');
    };
    const done = all[0]!;
    const retried = await runRollout(
      { gateway: { chat: refuse, embed: refuse } as unknown as RolloutDeps['gateway'], sandbox: { run: refuse } as unknown as RolloutDeps['sandbox'], store, stream: createRedisTrajectoryStream(f.redis, prefix) },
      'r1',
      done.scenarioId,
      done.mode,
      done.sample,
    );
    expect(retried).to.include({ id: done.id, reward: done.reward });
    const resunk = await runSink({ redis: f.redis, prefix, store, runId: 'r1', dir: sinkDir });
    expect(resunk).to.deep.include({ written: 0, skippedDuplicates: 1 });
    // Without the shard, an export says where the lines should be instead of writing empty datasets.
    await rename(join(sinkDir, 'trajectories'), join(sinkDir, 'moved'));
    const goneDir = await mkdtemp(join(tmpdir(), 'envfleet-gone-'));
    const err = await exportRun(store, 'r1', goneDir).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.have.property('code', 'TRAJECTORY_ARCHIVE_MISSING');
    expect(String(err)).to.include(join(sinkDir, 'trajectories', 'part-00000.jsonl'));
    // A failed export leaves no half-written dataset under a real name.
    expect((await readdir(goneDir)).filter(f => f.startsWith('sft-'))).to.deep.equal([]);
    expect(String(err)).to.include('export --skip-missing writes the others');
    // The files made from scenarios and groups need no transcript: they are written without the sink's files.
    const noSft = await exportRun(store, 'r1', goneDir, { formats: ['verl', 'prompts', 'rl'] });
    expect(Object.keys(noSft.datasets).sort()).to.deep.equal(['rl-groups.jsonl', 'rl-prompts.jsonl', 'rl-scenarios.jsonl', 'rl-verl.json']);
    // With the shard lost for good, --skip-missing writes what is left (here nothing of the SFT files) and counts the rest.
    const skipped = await exportRun(store, 'r1', goneDir, { skipMissingTrajectories: true });
    expect(skipped.missingTrajectories.count).to.equal(all.length);
    expect(skipped.missingTrajectories.shards).to.have.length(1);
    expect(skipped.missingTrajectories.shards[0]).to.equal(`${all.length} in ${join(sinkDir, 'trajectories', 'part-00000.jsonl')}, which cannot be read (ENOENT: no such file or directory, open '${join(sinkDir, 'trajectories', 'part-00000.jsonl')}')`);
    expect(skipped.datasets['sft-openai.jsonl']).to.equal(0);
    expect(skipped.datasets['rl-verl.json']).to.be.greaterThan(0);
    // Told where the shards are now, it exports the same lines.
    const movedDir = await mkdtemp(join(tmpdir(), 'envfleet-moved-'));
    await exportRun(store, 'r1', movedDir, { trajectoriesDir: join(sinkDir, 'moved') });
    for (const file of ['sft-openai.jsonl', 'sft-sharegpt.jsonl', 'sft-llamafactory.jsonl', 'sft-hf.jsonl']) {
      expect(await sortedLines(join(movedDir, file)), file).to.deep.equal(await sortedLines(join(dir, file)));
    }
    await rename(join(sinkDir, 'moved'), join(sinkDir, 'trajectories'));
  });

  it('ends episodes at the step, token and time limits, and on model and environment errors, each with its reason', async () => {
    await start();
    await prepare('limits');
    const store = f.store;
    const demo = await loadModelScript(DEMO);
    const reasons = async (runId: string, request: Omit<RolloutRequest, 'runId' | 'samples' | 'modes'>) => {
      // Each limit needs its own run (rollout settings are frozen per run): copy the prepared run.
      await copyRun(store, 'limits', runId);
      const list = await rollouts({ runId, samples: 1, modes: ['non-conversational'], ...request });
      return new Set(list.map(t => t.termination.reason));
    };
    expect(await reasons('steps', { maxSteps: { 'non-conversational': 1, conversational: 1 } })).to.deep.equal(new Set(['step-limit']));
    expect(await reasons('tokens', { maxTokens: 50 })).to.deep.equal(new Set(['token-limit']));
    // Every policy answer now takes 1.5 s, past a 1 s episode limit.
    f.server.setScript({ ...demo, rules: (demo.rules ?? []).map(r => (r.stage === 'rollout.policy' && !r.fault ? { ...r, fault: { type: 'delay' as const, ms: 1500 } } : r)) });
    expect(await reasons('time', { maxWallMs: 1000 })).to.deep.equal(new Set(['time-limit']));
    // The endpoint refuses every policy request: no retry helps.
    f.server.setScript(mergeModelScripts([parseModelScript({ rules: [{ stage: 'rollout.policy', fault: { type: 'server_error', status: 400 } }] }), demo]));
    expect(await reasons('model', {})).to.deep.equal(new Set(['model-error']));
    // Recorded, but as episodes that left the funnel, not as passed ones (status showed them as passed).
    const modelRow = (await funnelReport(store, 'model')).find(r => r.stage === 'rollout.run')!;
    expect(modelRow.passed).to.equal(0);
    expect(modelRow.left['model-error']).to.be.greaterThan(0);
    // No reward, and status says so: no mean of zeros.
    const modelStatus = (await runStatus({ store, ledger: f.workers.ctx.ledger, control: f.workers.ctx.runControl }, 'model'))!.trajectories;
    expect(modelStatus.count).to.be.greaterThan(0);
    expect(modelStatus).to.deep.include({ unscored: modelStatus.count, meanReward: null });
    const modelText = formatStatus((await runStatus({ store, ledger: f.workers.ctx.ledger, control: f.workers.ctx.runControl }, 'model'))!);
    expect(modelText).to.include(`trajectories ${modelStatus.count} (no reward, solved 0.0% of all ${modelStatus.count}; ${modelStatus.count} unscored: no reward, from a model or environment error`);
    // How the episodes ended is in the text too, not only in --json.
    expect(modelText).to.include(`episodes ended: model-error ${modelStatus.count}`);
    // The requests sent, and apart from them those the cache answered (not "N requests (M cached)", read as M of N).
    const sent = await f.workers.ctx.ledger.totals('model');
    expect(modelText).to.match(new RegExp(`\\nmodel: ${sent.requests} requests sent, \\d+ tokens, \\$[\\d.]+(; ${sent.cachedRequests} more answered from the response cache \\(saving \\$[\\d.]+\\))?`));
    f.server.setScript(demo);
    // A broken environment source: the session cannot start.
    await copyRun(store, 'limits', 'env-error');
    for (const id of await store.listDocIds('env-error', 'env')) {
      const env = (await store.getDoc('env-error', 'env', id))!;
      await store.putDoc('env-error', 'env', id, { ...env, source: 'class Broken {' });
    }
    const envErrors = await rollouts({ runId: 'env-error', samples: 1, modes: ['non-conversational'] });
    expect(new Set(envErrors.map(t => t.termination.reason))).to.deep.equal(new Set(['environment-error']));
    expect(envErrors.every(t => t.reward === null && t.checksError !== null)).to.equal(true);
    const envRow = (await funnelReport(store, 'env-error')).find(r => r.stage === 'rollout.run')!;
    expect(envRow).to.deep.include({ passed: 0 });
    expect(envRow.left['environment-error']).to.equal(envErrors.length);
    // A check that loops only on a changed final state (scenario.check ran it on the initial one): each episode's check
    // errs, counts as false, and status says so by code (it showed only a mean reward of 0).
    await copyRun(store, 'limits', 'check-errors');
    for (const id of await store.listDocIds('check-errors', 'scenario')) {
      const sc = (await store.getDoc('check-errors', 'scenario', id))!;
      if (sc.status !== 'ready') continue;
      const loops = { item: 'loops once the state changed — boucle 🔁', check: 'function check(finalState, initialState) {\n  while (JSON.stringify(finalState) !== JSON.stringify(initialState)) {}\n  return true;\n}' };
      await store.putDoc('check-errors', 'scenario', id, { ...sc, checklist: [...(sc.checklist ?? []), loops] });
    }
    const looped = await rollouts({ runId: 'check-errors', samples: 1, modes: ['non-conversational'] });
    const erred = looped.filter(t => t.checks.some(c => c.errorCode === 'DEADLINE_EXCEEDED')).length;
    expect(erred).to.be.greaterThan(0);
    const checkStatus = (await runStatus({ store, ledger: f.workers.ctx.ledger, control: f.workers.ctx.runControl }, 'check-errors'))!;
    expect(checkStatus.events['checks']).to.deep.equal({ DEADLINE_EXCEEDED: erred });
    expect(formatStatus(checkStatus)).to.include(`checks that ended in an error: DEADLINE_EXCEEDED ${erred} (each counted as false`);
    // A cancel before any episode ran: its episode jobs are no trajectories (counted under rollout.run they were taken
    // for episodes that ended: status showed trajectories, a solved rate and a mean reward of none; from the review).
    await copyRun(store, 'limits', 'cancelled');
    await f.stopWorkers();
    await submitRollouts(f.config, f.redis, { runId: 'cancelled', samples: 2, modes: ['non-conversational'] });
    const control = createRedisRunControl(f.redis, f.config.redis.prefix);
    const cancelled = await cancelRun({ connection: f.redis, prefix: f.config.redis.prefix }, store, control, 'cancelled', 'plus besoin 🛑');
    expect(cancelled.removed).to.be.greaterThan(0);
    await f.startWorkers();
    const cancelledStatus = (await runStatus({ store, ledger: createRedisLedger(f.redis, f.config.redis.prefix), control }, 'cancelled'))!;
    expect(cancelledStatus.trajectories).to.deep.include({ count: 0, meanReward: null, solvedRate: null });
    expect(cancelledStatus.events['run']!['cancelled:rollout.run']).to.be.greaterThan(0);
    expect(Object.keys(cancelledStatus.events['run']!).every(k => k === 'cancelled' || k.startsWith('cancelled:rollout.'))).to.equal(true);
  });

  it('reads tool calls written as text in each format the profile names, with the rewards of native calls; a failed text call ends as unparsed-tool-call and is not trained on', async () => {
    const demo = await loadModelScript(DEMO);
    type Call = { name: string; arguments?: unknown };
    const writers: Record<'hermes' | 'llama3' | 'mistral' | 'json', (calls: Call[]) => string> = {
      json: calls => `\`\`\`json\n${JSON.stringify(calls.map(c => ({ name: c.name, arguments: c.arguments ?? {} })))}\n\`\`\``,
      hermes: calls => `Je vérifie — 确认 ✅\n${calls.map(c => `<tool_call>\n${JSON.stringify({ name: c.name, arguments: c.arguments ?? {} })}\n</tool_call>`).join('\n')}`,
      llama3: calls => `<|python_tag|>${calls.map(c => JSON.stringify({ name: c.name, parameters: c.arguments ?? {} })).join('; ')}`,
      mistral: calls => `[TOOL_CALLS]${JSON.stringify(calls.map(c => ({ name: c.name, arguments: c.arguments ?? {} })))}`,
    };
    /** The demo policy writing its calls as text (the deliberately broken call of the demo stays native: its envelope is not text). */
    const asText = (format: keyof typeof writers): ModelScript => ({
      ...demo,
      rules: (demo.rules ?? []).map(r => {
        const calls = r.respond?.toolCalls;
        if (r.stage !== 'rollout.policy' || !calls || calls.some(c => typeof c.arguments === 'string')) return r;
        const { toolCalls: _, ...rest } = r.respond!;
        return { ...r, respond: { ...rest, content: writers[format](calls) } };
      }),
    });
    const summary = (list: Trajectory[]) =>
      list
        .map(t => JSON.stringify([t.scenarioId, t.mode, t.reward, t.termination.reason, t.steps.map(st => [st.tool, st.rawArguments.trim().startsWith('{') && !st.runtimeError ? (JSON.parse(st.rawArguments) as unknown) : st.rawArguments, st.result])]))
        .sort();

    await start();
    await prepare('native');
    const native = await rollouts({ runId: 'native', samples: 1, modes: ['non-conversational', 'conversational'] });
    expect(native.map(t => t.termination.reason)).to.not.include('unparsed-tool-call');
    for (const format of ['hermes', 'llama3', 'mistral', 'json', 'auto'] as const) {
      const dir = await mkdtemp(join(tmpdir(), `envfleet-text-calls-${format}-`));
      await writeFile(join(dir, 'models.yaml'), `profiles:\n  rollout.policy: { preset: vllm, structuredOutput: prompt, toolCallFormat: ${format} }\n`);
      await f.stopWorkers();
      await f.startWorkers({ config: testConfig(f.server, { ENVFLEET_REDIS_PREFIX: f.config.redis.prefix, ENVFLEET_MODELS_FILE: join(dir, 'models.yaml') }) });
      f.server.setScript(asText(format === 'auto' ? 'hermes' : format));
      await copyRun(f.store, 'native', `text-${format}`);
      const text = await rollouts({ runId: `text-${format}`, samples: 1, modes: ['non-conversational', 'conversational'] });
      expect(summary(text), format).to.deep.equal(summary(native));
      // The calls were read from the text: ids numbered by turn, the prose kept as the content.
      // Served without a tool-call parser: tool_choice "none" (vLLM refuses its default "auto" there; "none" still renders the tools).
      expect(f.server.log().filter(e => e.stage === 'rollout.policy').slice(-3).map(e => (e.body as { tool_choice?: unknown }).tool_choice), format).to.deep.equal(['none', 'none', 'none']);
      const fromText = text.flatMap(t => t.messages).filter(m => m.role === 'assistant' && m.tool_calls?.some(c => /^call_\d+_\d+$/.test(c.id)));
      expect(fromText.length, format).to.be.greaterThan(0);
      if (format === 'hermes' || format === 'auto') expect(fromText.every(m => m.content === 'Je vérifie — 确认 ✅'), format).to.equal(true);
      else expect(fromText.every(m => m.content === null), format).to.equal(true);
    }

    // The profile expects native calls, and the model writes one as text: not an answer.
    f.server.setScript(asText('hermes'));
    await f.stopWorkers();
    await f.startWorkers();
    await copyRun(f.store, 'native', 'misread');
    const misread = await rollouts({ runId: 'misread', samples: 1, modes: ['non-conversational'] });
    const ended = misread.filter(t => t.termination.reason === 'unparsed-tool-call');
    expect(ended.length).to.be.greaterThan(0);
    for (const t of ended) {
      expect(t.termination.detail).to.match(/tool call as text/);
      expect(text(t.messages.at(-1))).to.include('<tool_call>');
    }
    const out = await mkdtemp(join(tmpdir(), 'envfleet-misread-'));
    await exportRun(f.store, 'misread', out);
    for (const line of (await jsonl(join(out, 'sft-openai.jsonl'))) as { messages: { content?: string }[] }[]) {
      expect(line.messages.some(m => (m.content ?? '').includes('<tool_call>')), 'a failed text call is never a training target').to.equal(false);
    }
  });

  it('keeps per policy turn the log-probabilities and token ids the endpoint returned, the model it reported, and the policy version', async () => {
    await start();
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-tokens-'));
    await writeFile(join(dir, 'models.yaml'), 'profiles:\n  rollout.policy: { preset: vllm, structuredOutput: prompt, logprobs: true, returnTokenIds: true, seed: true, extraBody: { top_k: 20 } }\n');
    await f.stopWorkers();
    await f.startWorkers({ config: testConfig(f.server, { ENVFLEET_REDIS_PREFIX: f.config.redis.prefix, ENVFLEET_MODELS_FILE: join(dir, 'models.yaml') }) });
    await prepare('tokens');
    const list = await rollouts({ runId: 'tokens', samples: 1, modes: ['non-conversational', 'conversational'], policyVersion: 'step-1200 — v2 ✅' });
    expect(list.length).to.be.greaterThan(0);
    for (const t of list) {
      expect(t.policyVersion).to.equal('step-1200 — v2 ✅');
      // What the requests carried: one seed per episode, the same on every turn.
      expect(t.samplingSent).to.include({ temperature: 1, top_k: 20 });
      expect(t.samplingSent!['seed']).to.be.a('number');
      const turns = t.policyTurns!;
      expect(turns.map(p => p.turn)).to.deep.equal(Array.from({ length: t.turns }, (_, i) => i + 1));
      for (const p of turns) {
        expect(p.model).to.equal('gpt-4o-mini');
        expect(p.logprobs!.length).to.be.greaterThan(0);
        expect(p.logprobs!.every(x => x <= 0)).to.equal(true);
        expect(p.tokenIds).to.have.length(p.logprobs!.length);
      }
      // The first prompt in full; later prompts extend the previous prompt and completion: only what they append.
      expect(turns[0]!.promptTokenIds!.length).to.be.greaterThan(0);
      for (const p of turns.slice(1)) {
        expect(p.promptTokenIds, `turn ${p.turn} of ${t.id}`).to.equal(undefined);
        expect(p.promptTokenIdsAppended!.length).to.be.greaterThan(0);
      }
    }
    const body = f.server.log().find(e => e.stage === 'rollout.policy')!.body as Record<string, unknown>;
    expect(body).to.include({ logprobs: true, return_token_ids: true, top_k: 20 });
    const seeds = new Set(list.map(t => t.samplingSent!['seed']));
    expect(seeds.size).to.equal(list.length);
    for (const t of list.slice(0, 2)) {
      const sent = f.server.log().filter(e => e.stage === 'rollout.policy' && (e.body as { seed?: unknown }).seed === t.samplingSent!['seed']);
      expect(sent.length, t.id).to.equal(t.turns);
    }
    // Another model without a version of its own is refused, naming the first policy's model (no --model: the profile's,
    // which it called "null").
    const unversioned = await rejection(submitRollouts(f.config, f.redis, { runId: 'tokens', samples: 1, modes: ['non-conversational'], policyModel: 'autre-modèle' }));
    expect(String((unversioned as Error).message)).to.include(`already has rollouts of policy model ${JSON.stringify(f.config.profiles['rollout.policy'].model)} (the rollout.policy profile's, no --model given), version "step-1200 — v2 ✅"; this request asks for model "autre-modèle" without a version`);
    // Another version on the same run is a policy generation of its own: new trajectories and groups, the first ones untouched.
    const next = { runId: 'tokens', samples: 1, modes: ['non-conversational', 'conversational'] as RolloutMode[], policyVersion: 'step-1300' };
    const policyRequests = () => f.server.log().filter(e => e.stage === 'rollout.policy').length;
    const asked = policyRequests();
    const second = await submitRollouts(f.config, f.redis, next);
    expect(second.policy).to.match(/^p-[0-9a-f]{12}$/);
    expect(second.groupsAdded).to.equal(list.length);
    await f.waitForRun('tokens');
    const all = await trajectories(f.store, 'tokens');
    expect(all).to.have.length(2 * list.length);
    const v2 = all.filter(t => t.policyVersion === 'step-1300');
    expect(v2).to.have.length(list.length);
    expect(v2.every(t => t.policy === second.policy)).to.equal(true);
    // Its answers come from the model, not from the first generation's cache (the model name is the same).
    expect(policyRequests() - asked).to.equal(v2.reduce((n, t) => n + t.turns, 0));
    expect(v2.map(t => t.id).filter(id => list.some(t => t.id === id))).to.deep.equal([]);
    expect(all.filter(t => t.policyVersion === 'step-1200 — v2 ✅').map(t => JSON.stringify([t.id, t.reward])).sort()).to.deep.equal(list.map(t => JSON.stringify([t.id, t.reward])).sort());
    const groups = await f.store.listDocIds('tokens', 'group');
    expect(groups).to.have.length(2 * list.length);
    expect(groups.filter(g => g.endsWith(`.${second.policy}`))).to.have.length(list.length);
    // The same generation again adds nothing; the same version with other settings is refused, saying what differs.
    expect((await submitRollouts(f.config, f.redis, next)).groupsAdded).to.equal(0);
    const err = await submitRollouts(f.config, f.redis, { ...next, samples: 2 }).catch((e: unknown) => e);
    expect(String(err)).to.match(/samples/).and.to.match(/step-1300/);
  });

  it('keeps only scenarios a reference rollout solves when the solvability gate is on', async () => {
    await start();
    await submitSynthesis(f.config, f.redis, { runId: 'gate', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun('gate');
    await submitScenarios(f.config, f.redis, { runId: 'gate', perEnv: 3, verifyWith: 'reference-model', tries: 2 });
    await f.waitForRun('gate');
    const store = f.store;
    const scenarios = await Promise.all((await store.listDocIds('gate', 'scenario')).map(id => store.getDoc('gate', 'scenario', id)));
    const pl = scenarios.find(s => s?.task?.includes('PL-900') && s.dropReason?.code !== 'DUPLICATE_TASK')!;
    expect(pl.status).to.equal('dropped');
    expect(pl.dropReason?.code).to.equal('UNSOLVABLE');
    expect(pl.validation?.verification?.tries).to.have.length(2);
    const ready = scenarios.filter(s => s?.status === 'ready');
    expect(ready).to.have.length(3);
    for (const s of ready) expect(s!.validation!.verification).to.deep.include({ solved: true, model: 'reference-model' });
    const counters = await store.counters('gate');
    expect(counters['scenario.verify']).to.deep.include({ solvable: 3, 'dropped:UNSOLVABLE': 1 });
    // The reference rollouts asked for the reference model.
    expect(f.server.log().some(e => e.stage === 'rollout.policy' && e.model === 'reference-model')).to.equal(true);
  });

  it('counts the stop token only in what the simulated user says, and never before the agent has spoken', async () => {
    const script = parseModelScript({
      rules: [
        { stage: 'rollout.user', matchAny: 'I want to return Solaris', matchLast: '^user: \\[Agent\\] Hi!', respond: { json: { thought: 'I will say ###STOP### later', reply: "###STOP### Hi, I'd like to return a book and borrow another one." } } },
        { stage: 'rollout.user', matchLast: '^user: \\[Agent\\] Of course', respond: { json: { thought: 'not done yet: ###STOP###', reply: 'My member id is M7 and the Solaris loan is L21.' } } },
      ],
    });
    await start(script);
    await prepare('stop');
    const list = await rollouts({ runId: 'stop', samples: 1, modes: ['conversational'] });
    const iris = list.find(t => text(t.messages[1]).includes('return a book'))!;
    expect(text(iris.messages[1])).not.to.include('###STOP###');
    expect(iris.termination.reason).to.equal('user-stopped');
    expect(iris.solved).to.equal(true); // went on past the thought that mentioned the token
  });

  it('loses no trajectory and writes none twice when the sink and a worker are SIGKILLed mid-run', async () => {
    const demo = await loadModelScript(DEMO);
    // The delay applies on top of the normal answers: wrap every policy rule of the demo in a delay.
    const delayed = { ...demo, rules: (demo.rules ?? []).map(r => (r.stage === 'rollout.policy' && !r.fault ? { ...r, fault: { type: 'delay' as const, ms: 150 } } : r)) };
    f = await fleet({ script: delayed, overrides: { ENVFLEET_ROLLOUT_CONCURRENCY: '4' } });
    await prepare('kill');
    await f.stopWorkers();
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sink-'));
    const spawnWorker = () => f.spawnWorker({ ENVFLEET_ROLLOUT_CONCURRENCY: '4' });
    const spawnSink = () => {
      const c = spawn(process.execPath, [ENVFLEET_BIN, 'sink', '--run', 'kill', '--out', dir, '--follow'], { env: childEnv(f.config), stdio: 'ignore' });
      f.children.push(c);
      return c;
    };
    const linesOnDisk = async () => {
      let n = 0;
      const tdir = join(dir, 'trajectories');
      for (const f of await readdir(tdir).catch(() => [])) n += (await readFile(join(tdir, f), 'utf8')).split('\n').filter(Boolean).length;
      return n;
    };
    const worker = spawnWorker();
    const sink = spawnSink();
    await submitRollouts(f.config, f.redis, { runId: 'kill', samples: 3, modes: ['non-conversational', 'conversational'] });
    await until(async () => (await linesOnDisk()) >= 3, 'a few trajectories on disk', 300_000);
    sink.kill('SIGKILL');
    worker.kill('SIGKILL');
    await Promise.all([exited(sink), exited(worker)]);
    spawnWorker();
    const store = f.store;
    await f.waitForRun('kill');
    // The final sink (not following) exits once everything is written.
    await runSink({ redis: f.redis, prefix: f.config.redis.prefix, store, runId: 'kill', dir });
    const lines = [];
    for (const file of (await readdir(join(dir, 'trajectories'))).sort()) lines.push(...(await jsonl(join(dir, 'trajectories', file))));
    const ids = lines.map(l => (l as { id: string }).id);
    expect(ids.length).to.equal(24);
    expect(new Set(ids).size).to.equal(24);
    const stored = await store.listDocIds('kill', 'trajectory');
    expect(new Set(ids)).to.deep.equal(new Set(stored));
    // Every written trajectory is a summary in Redis by now, also one whose sink died between the write and the summary.
    const shardOf = new Map<string, string>();
    for (const file of await readdir(join(dir, 'trajectories'))) for (const l of await jsonl(join(dir, 'trajectories', file))) shardOf.set((l as { id: string }).id, join(dir, 'trajectories', file));
    for (const id of stored) {
      const doc = (await store.getDoc('kill', 'trajectory', id))!;
      expect(isArchived(doc) ? doc.archived : null, id).to.deep.equal({ path: shardOf.get(id) });
      expect((doc as { messages?: unknown }).messages, id).to.equal(undefined);
    }
  });
});

/** Copies a prepared run (record, environments, scenarios) under a new run id. */
async function copyRun(store: RunStore, from: string, to: string) {
  const run = (await store.getRun(from))!;
  await store.createRun({ ...run, id: to });
  for (const id of await store.listDocIds(from, 'env')) await store.putDoc(to, 'env', id, { ...(await store.getDoc(from, 'env', id))!, runId: to });
  for (const id of await store.listDocIds(from, 'scenario')) await store.putDoc(to, 'scenario', id, { ...(await store.getDoc(from, 'scenario', id))!, runId: to });
}
