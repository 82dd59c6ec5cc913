import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig, redactUrl, type AppConfig } from '../config/index.js';
import { startDashboard } from '../http/dashboard/server.js';
import { waitForRun } from '../queues/run-jobs.js';
import { listRuns, runStatus, type RunSummary } from '../queues/run-status.js';
import { RequestError } from '../src/errors.js';
import { createRedisRunControl } from '../src/runs/control.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { submitRollouts, submitScenarios, submitSynthesis } from '../queues/submit.js';
import { exportRun } from '../src/datasets/export.js';
import { runSink } from '../src/datasets/sink.js';
import { createLogger } from '../src/logger.js';
import { loadModelScript, startModelServer } from '../src/model-server/index.js';
import type { StoredTrajectory } from '../src/rollouts/types.js';
import { fixturesPath } from '../src/util/package-root.js';
import { startWorkerProcess } from '../workers/main.js';
import { createRedisConnection, describeRedis, waitForRedis } from '../src/redis/connection.js';
import { chooseRedis } from './private-redis.js';
import { formatEvents, formatFunnel } from './runs.js';
import { cutText } from '../src/util/text.js';

/** The name the demo gives its run when --run is not given. */
const DEMO_RUN_NAME = /^demo-\d{8}T\d{6}-\d+$/;

/** The runs under the configured prefix, other than `runId` and earlier demos', that are running with jobs outstanding. */
async function runsAtWork(config: AppConfig, runId: string): Promise<RunSummary[]> {
  const redis = createRedisConnection(config.redis, 'producer');
  try {
    await waitForRedis(redis, config.redis);
    const runs = await listRuns(createRedisRunStore(redis, config.redis.prefix), createRedisRunControl(redis, config.redis.prefix));
    // An earlier demo's run (its default name), stopped part way with Ctrl-C, is the demo's own: its jobs are answered
    // by the same script, and refusing it would refuse every demo after an interrupted one.
    return runs.filter(r => r.id !== runId && !DEMO_RUN_NAME.test(r.id) && r.state === 'running' && r.outstanding > 0);
  } finally {
    redis.disconnect();
  }
}

/**
 * `envfleet demo`: the product end to end on real queues and workers — a Redis (the configured
 * one, or a private one), the scripted model server (or the real endpoint OPENAI_BASE_URL names),
 * source tasks mined, deduplicated, turned into environments, probed by the dual-agent check and
 * exported; then the same submission again, which adds no job and sends no model request.
 */
export async function runDemo(out: (line: string) => void = line => process.stdout.write(`${line}\n`), options: { dashboard?: boolean; runId?: string } = {}): Promise<void> {
  const started = Date.now();
  const FIXTURES = fixturesPath('demo');
  const base = loadConfig();
  // On a Redis Cluster (ENVFLEET_REDIS_CLUSTER_NODES) the demo runs there, as configured; else on REDIS_URL or a private redis-server.
  const redis = base.redis.clusterNodes.length
    ? { url: base.redis.url, private: false, stop: () => Promise.resolve(), stopNow: () => undefined }
    : await chooseRedis(base.redis.url, line => out(`[demo] ${line}`));
  if (base.redis.clusterNodes.length) out(`[demo] using ${describeRedis(base.redis)}`);
  const useReal = base.explicit.includes('OPENAI_BASE_URL');
  const server = useReal ? null : await startModelServer({ script: await loadModelScript(FIXTURES) });
  out(useReal ? `[demo] using the model endpoint ${redactUrl(base.endpoints['default']?.baseURL ?? '')}` : `[demo] scripted model server at ${server?.url} (fixtures/demo)`);

  const config: AppConfig = loadConfig(undefined, {
    overrides: {
      REDIS_URL: redis.url,
      ...(server ? { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'envfleet-local' } : {}),
      ENVFLEET_JOB_BACKOFF_MS: base.explicit.includes('ENVFLEET_JOB_BACKOFF_MS') ? String(base.jobs.backoffMs) : '300',
      ENVFLEET_SHUTDOWN_TIMEOUT_MS: '5000',
    },
  });
  const logger = createLogger({ log: { level: base.explicit.includes('LOG_LEVEL') ? base.log.level : 'silent' } });
  const runId = options.runId ?? `demo-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${process.pid}`;
  // The demo's workers take the jobs of every queue under the prefix: on a Redis other runs use, they would answer
  // those runs' model calls with the scripted model's demo answers (a stranger's probe: a run's waiting jobs were
  // done by the demo, and the demo failed, having spent its script on them).
  if (server && !redis.private) {
    const busy = await runsAtWork(config, runId).catch(async (err: unknown) => {
      await server.close();
      throw err;
    });
    if (busy.length) {
      await server.close();
      throw new RequestError(
        `the Redis at ${describeRedis(config.redis)} holds runs with jobs to do under the key prefix "${config.redis.prefix}" (${busy.map(r => `${r.id}: ${r.outstanding} job${r.outstanding === 1 ? '' : 's'}`).join(', ')}); ` +
          "the demo's workers would take their jobs and answer them with the scripted model's demo answers. Run the demo under a prefix of its own (ENVFLEET_REDIS_PREFIX=envfleet-demo npx envfleet demo), or let those runs finish (or cancel them) first.",
      );
    }
  }
  const running = await startWorkerProcess(config, logger);
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      await running.stop();
      await server?.close();
      await redis.stop();
    })());
  // Ctrl-C still stops the workers and removes the private Redis.
  const interrupt = () => {
    out('[demo] interrupted; cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    const request = { runId, tasks: join(FIXTURES, 'source-tasks.jsonl'), probeSteps: 8 };
    const submission = await submitSynthesis(config, running.ctx.redis, request);
    // A new run under a name an earlier demo used (--run, with another Redis): the demo's folder of that name is the
    // earlier run's, and the sink would refuse it; it is the demo's own, so it starts again empty.
    if (submission.created) await rm(join('demo-output', runId), { recursive: true, force: true });
    for (const p of submission.problems) out(`[demo] source-tasks.jsonl line ${p.line} skipped: ${p.problem}`);
    out(`[demo] run ${runId}: ${submission.items} source tasks, ${submission.jobsAdded} jobs enqueued (mining → skeleton → dual-agent check)`);
    await waitForRun(running.ctx.store, runId, p => out(`[demo] ${p.outstanding} jobs outstanding; environments ${JSON.stringify(p.environments)}`));

    const scenarioRequest = { runId, perEnv: 3 };
    const scenarios = await submitScenarios(config, running.ctx.redis, scenarioRequest);
    out(`[demo] scenarios: 3 initial states for each of the ${scenarios.items} kept environments (${scenarios.jobsAdded} jobs: state → task → checklist → checks)`);
    await waitForRun(running.ctx.store, runId, p => out(`[demo] ${p.outstanding} jobs outstanding; scenarios ${JSON.stringify(p.scenarios)}`));

    const dir = join('demo-output', runId);
    const rolloutRequest = { runId, samples: 2, modes: ['non-conversational', 'conversational'] as const };
    const rollouts = await submitRollouts(config, running.ctx.redis, { ...rolloutRequest, modes: [...rolloutRequest.modes] });
    out(`[demo] rollouts: ${rollouts.scenarios} scenarios × 2 modes × ${rollouts.config.samples} samples with the scripted policy and user; the sink writes them to ${dir}/trajectories/`);
    // Its own connection, as `envfleet sink` makes it: the sink's blocking XREADGROUP would hold the shared
    // connection's commands, and a connection without auto-pipelining lets it ride through a Redis restart (ioredis
    // fails the rest of an auto-pipelined batch that a dropped connection had half answered).
    const sinkRedis = createRedisConnection(config.redis, 'worker');
    const sink = runSink({ redis: sinkRedis, prefix: config.redis.prefix, store: running.ctx.store, runId, dir }).finally(() => sinkRedis.quit().catch(() => undefined));
    sink.catch(() => undefined); // awaited below, after the run: an early failure must not be an unhandled rejection meanwhile
    await waitForRun(running.ctx.store, runId, p => out(`[demo] ${p.outstanding} jobs outstanding`));
    const sunk = await sink;
    out(`[demo] sink wrote ${sunk.written} trajectories (${sunk.shards.join(', ')})`);

    // Requests the endpoint was sent, from the run's ledger (`requests` counts only those: cached answers are not sent),
    // so that the count holds for a real endpoint too, not only for the demo's scripted server.
    const sentOf = async () => (await running.ctx.ledger.totals(runId)).requests;
    const requestsBefore = await sentOf();
    const again = await submitSynthesis(config, running.ctx.redis, request);
    const againScenarios = await submitScenarios(config, running.ctx.redis, scenarioRequest);
    const againRollouts = await submitRollouts(config, running.ctx.redis, { ...rolloutRequest, modes: [...rolloutRequest.modes] });
    await waitForRun(running.ctx.store, runId, () => undefined);
    out(`[demo] submitted the same run, scenarios and rollouts again: ${again.jobsAdded + againScenarios.jobsAdded + againRollouts.groupsAdded} jobs added, ${(await sentOf()) - requestsBefore} model requests sent`);

    const exported = await exportRun(running.ctx.store, runId, dir);
    out(`[demo] datasets in ${dir}/: environments.jsonl (${exported.count}), scenarios.jsonl (${exported.scenarios.ready}), scenarios-dropped.jsonl (${exported.scenarios.dropped}), ${Object.entries(exported.datasets).map(([f, n]) => `${f} (${n})`).join(', ')}, trajectories/ (${sunk.written})`);
    out('[demo] environments:');
    for (const id of (await running.ctx.store.listDocIds(runId, 'env')).sort()) {
      const env = (await running.ctx.store.getDoc(runId, 'env', id))!;
      const q = env.quality;
      const notes = [
        env.assembleRepairs?.length ? `assemble repaired ${env.assembleRepairs.flatMap(r => r.methods).join(', ')}` : '',
        q?.repair ? `repair round ${q.repair.saved ? 'saved it' : 'did not save it'} (${q.repair.methods.join(', ')})` : '',
        q?.rejectionReason ?? '',
        env.failure ? `${env.failure.stage}: ${env.failure.message}` : '',
      ].filter(Boolean);
      out(`  ${env.status.padEnd(8)} ${env.description.summary.padEnd(34)} ${String(env.tools?.length ?? 0).padStart(2)} tools  not-fail ${q ? `${(q.notFailRate * 100).toFixed(0)}%` : '-'}  ${notes.join('; ')}`);
    }
    out('[demo] scenarios:');
    for (const id of (await running.ctx.store.listDocIds(runId, 'scenario')).sort()) {
      const s = (await running.ctx.store.getDoc(runId, 'scenario', id))!;
      const env = (await running.ctx.store.getDoc(runId, 'env', s.environmentId))!;
      const detail = s.status === 'ready'
        ? `${s.checklist?.length ?? 0} checks${s.validation?.repairs.length ? ` (${s.validation.repairs.length} repaired)` : ''}: ${cutText(s.task ?? '', 70)}…`
        : `${s.dropReason?.code}: ${s.dropReason?.message}`;
      out(`  ${s.status.padEnd(8)} ${env.description.summary.padEnd(28)} state ${s.index + 1}  ${detail}`);
    }
    out('[demo] rollouts per environment:');
    const byEnv = new Map<string, StoredTrajectory[]>();
    for (const id of await running.ctx.store.listDocIds(runId, 'trajectory')) {
      const t = (await running.ctx.store.getDoc(runId, 'trajectory', id))!;
      byEnv.set(t.environmentId, [...(byEnv.get(t.environmentId) ?? []), t]);
    }
    for (const [envId, list] of byEnv) {
      const env = (await running.ctx.store.getDoc(runId, 'env', envId))!;
      // The mean over the scored ones: an episode without a reward (a model or environment error) is no zero.
      const scored = list.filter(t => t.reward !== null && t.reward !== undefined);
      const mean = scored.length ? `mean reward ${(scored.reduce((a, t) => a + t.reward!, 0) / scored.length).toFixed(2)}${scored.length < list.length ? ` over ${scored.length} scored` : ''}` : 'no reward';
      const solved = list.filter(t => t.solved).length / list.length;
      const reasons = [...new Set(list.map(t => t.termination.reason))].join(', ');
      out(`  ${env.description.summary.padEnd(28)} ${String(list.length).padStart(3)} trajectories  ${mean}  solved ${(solved * 100).toFixed(0)}%  (${reasons})`);
    }
    const status = (await runStatus({ store: running.ctx.store, ledger: running.ctx.ledger, control: running.ctx.runControl }, runId))!;
    out(`[demo] funnel (envfleet status --run ${runId}):\n${formatFunnel(status.funnel)}\n  counters: ${formatEvents(status.events)}`);
    const totals = await running.ctx.ledger.totals(runId);
    out(`[demo] ledger: ${totals.requests} model requests (${totals.cachedRequests} from the cache), ${totals.promptTokens} prompt + ${totals.completionTokens} completion tokens, $${totals.costUsd.toFixed(4)}`);
    if (server) {
      const faults = server.log().filter(e => e.fault).map(e => e.fault);
      out(`[demo] model server received ${server.log().length} requests; injected faults: ${faults.join(', ') || 'none'}`);
    }
    out(`[demo] done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (options.dashboard) {
      const dashboard = await startDashboard(config, logger, { port: base.explicit.includes('ENVFLEET_DASHBOARD_PORT') ? base.dashboard.port : 3000, host: '127.0.0.1', token: null });
      out(`[demo] dashboard on the demo run: ${dashboard.url}/runs/${runId} (bull-board at ${dashboard.url}/queues, metrics at ${dashboard.url}/metrics); Ctrl-C to stop`);
      await new Promise<void>(resolve => {
        process.off('SIGINT', interrupt);
        process.off('SIGTERM', interrupt);
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      await dashboard.close();
    }
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    await cleanup();
  }
}
