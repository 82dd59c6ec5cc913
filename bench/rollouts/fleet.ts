/**
 * The worker process of one bench/rollouts.ts configuration: `startWorkerProcess` (workers/main.ts)
 * for the queues rollout.run and rollout.group, exactly as `envfleet worker` starts it, plus a
 * sampler on its main thread (every SAMPLE_MS: RSS, CPU of the process and of the main thread,
 * event-loop utilisation of the main thread and of each sandbox pool thread, event-loop delay,
 * piscina's queue; the sampler's and the memory probes' own time is taken off the CPU it reports).
 * A fresh process per configuration, so that memory (the sandbox's WebAssembly
 * heaps never shrink) and JIT state do not carry over. Settings come as JSON in argv[2].
 * With ENVFLEET_BENCH_DIST=1 (bench/rollouts.ts's default) the product is the build in dist/, as
 * `envfleet worker` runs it (its sandbox threads then load dist/workers/sandbox-thread.js, without tsx);
 * otherwise the TypeScript sources through tsx.
 */
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { Piscina } from 'piscina';
import { pino } from 'pino';
import type { loadConfig as LoadConfig } from '../../config/index.js';
import type { startWorkerProcess as StartWorkerProcess } from '../../workers/main.js';
import type { EnvSession } from '../../src/sandbox/runner.js';
import { SAMPLE_MS, runQueueDelayUs, taskIds, threadCpuUs, wasmResident, type FleetCommand, type FleetMessage, type FleetSample, type FleetSettings, type MemoryProbe, type Timing } from './common.js';

const settings = JSON.parse(process.argv[2] ?? '{}') as FleetSettings;
const send = (m: FleetMessage, then?: () => void) => process.send?.(m, undefined, {}, () => then?.());
process.on('disconnect', () => process.exit(0));

const root = process.env['ENVFLEET_BENCH_DIST'] === '1' ? '../../dist/' : '../../';
// The product's two entry points, from the build or from the sources (the types are the sources' either way).
const { loadConfig } = (await import(`${root}config/index.js`)) as { loadConfig: typeof LoadConfig };
const { startWorkerProcess } = (await import(`${root}workers/main.js`)) as { startWorkerProcess: typeof StartWorkerProcess };
const config = loadConfig({}, {
  overrides: {
    REDIS_URL: settings.redisUrl,
    ENVFLEET_REDIS_PREFIX: settings.prefix,
    OPENAI_BASE_URL: settings.modelUrl,
    OPENAI_API_KEY: 'envfleet-local',
    ENVFLEET_WORKER_QUEUES: 'rollout.run,rollout.group',
    ENVFLEET_ROLLOUT_CONCURRENCY: String(settings.concurrency),
    ENVFLEET_POOL_THREADS: String(settings.poolThreads),
    ENVFLEET_POOL_TASKS_PER_THREAD: String(settings.tasksPerThread),
    ENVFLEET_SANDBOX_HEAP_MB: String(settings.heapMb),
    ENVFLEET_ROLLOUT_START_PACING: settings.startPacing === false ? 'off' : 'auto',
    ENVFLEET_MODEL_MAX_CONCURRENCY: '0',
    ENVFLEET_MODEL_TIMEOUT_MS: '600000',
    ENVFLEET_SHUTDOWN_TIMEOUT_MS: '10000',
    LOG_LEVEL: 'silent',
  },
});
const startMs = Date.now();
// Threads there before the worker starts; those that appear while it starts are the sandbox pool's.
const tidsBefore = new Set(taskIds());
const running = await startWorkerProcess(config, pino({ level: 'silent' }), { queues: ['rollout.run', 'rollout.group'] });
const piscina = (running.ctx.sandbox as unknown as { piscina?: Piscina }).piscina;
const poolTids = taskIds().filter(tid => !tidsBefore.has(tid));
// Per-thread CPU of the pool threads, kept when a thread has ended (its last reading stays counted).
const poolCpuByTid = new Map<number, number>();
const poolCpuUs = () => {
  for (const tid of poolTids) {
    const us = threadCpuUs(tid);
    if (Number.isFinite(us)) poolCpuByTid.set(tid, us);
  }
  return poolTids.length ? [...poolCpuByTid.values()].reduce((a, b) => a + b, 0) : NaN;
};

// Timing wrappers, installed on the context's own gateway and sandbox objects (the processors
// call them through these objects, so every episode goes through the wrappers).
const timings: Record<string, Timing[]> = {};
const record = (name: string, started: number) => (timings[name] ??= []).push([Date.now(), performance.now() - started]);
function timed<A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    const started = performance.now();
    try {
      return await fn(...args);
    } finally {
      record(name, started);
    }
  };
}
const { gateway, sandbox } = running.ctx;
gateway.chat = timed('model call', gateway.chat.bind(gateway));
sandbox.checks = timed('checks', sandbox.checks.bind(sandbox));
const openSession = sandbox.openSession.bind(sandbox);
sandbox.openSession = async (...args: Parameters<typeof openSession>): Promise<EnvSession> => {
  const session = await timed('session open', openSession)(...args);
  return {
    tools: session.tools,
    call: timed('tool call', session.call.bind(session)),
    snapshot: timed('snapshot', session.snapshot.bind(session)),
    initialState: timed('initial state', session.initialState.bind(session)),
    finish: timed('finish', session.finish.bind(session)),
    close: timed('session close', session.close.bind(session)),
  };
};
new PerformanceObserver(list => {
  for (const e of list.getEntries()) (timings['gc'] ??= []).push([performance.timeOrigin + e.startTime + e.duration, e.duration]);
}).observe({ entryTypes: ['gc'] });

const eld = monitorEventLoopDelay({ resolution: 10 });
eld.enable();
const samples: FleetSample[] = [];
/**
 * Main-thread time (µs) this script spent measuring — its samples and memory probes, which read /proc (a probe
 * reads /proc/self/smaps, ≈ 0.2 s with a thousand WebAssembly memories) — taken off the CPU it reports, which is
 * meant to be the fleet's. Wall time of synchronous reads, so an estimate of their CPU.
 */
let benchUs = 0;
const sample = () => {
  const started = performance.now();
  const mem = process.memoryUsage();
  const cpu = process.cpuUsage();
  const poolActiveMs: Record<string, number> = {};
  for (const w of piscina?.threads ?? []) poolActiveMs[String(w.threadId)] = w.performance.eventLoopUtilization().active;
  const delay = runQueueDelayUs();
  samples.push({
    t: Date.now(),
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    cpuUs: cpu.user + cpu.system - benchUs,
    mainCpuUs: threadCpuUs(process.pid) - benchUs,
    mainActiveMs: performance.eventLoopUtilization().active,
    poolActiveMs,
    eldP50: eld.percentile(50) / 1e6,
    eldP99: eld.percentile(99) / 1e6,
    eldMax: eld.max / 1e6,
    poolQueue: piscina?.queueSize ?? 0,
    mainRunDelayUs: delay.main,
    otherRunDelayUs: delay.others,
    poolCpuUs: poolCpuUs(),
  });
  eld.reset();
  benchUs += (performance.now() - started) * 1000;
};
const timer = setInterval(sample, SAMPLE_MS);
const hrUs = () => Number(process.hrtime.bigint() / 1000n);
let hrFromUs = hrUs();

function memoryProbe(label: string, gc: boolean): MemoryProbe {
  const started = performance.now();
  const collect = (globalThis as { gc?: () => void }).gc;
  if (gc && collect) collect();
  const mem = process.memoryUsage();
  const t = performance.now();
  const wasm = wasmResident();
  benchUs += (performance.now() - started) * 1000;
  return {
    label,
    t: Date.now(),
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    external: mem.external,
    arrayBuffers: mem.arrayBuffers,
    wasmRss: wasm.bytes,
    wasmMemories: wasm.memories,
    smapsMs: performance.now() - t,
  };
}

process.on('message', (cmd: FleetCommand) => {
  switch (cmd.type) {
    case 'sample-start':
      hrFromUs = hrUs();
      samples.length = 0;
      for (const k of Object.keys(timings)) delete timings[k];
      eld.reset();
      sample();
      break;
    case 'memory':
      send({ type: 'memory', probe: memoryProbe(cmd.label, cmd.gc) });
      break;
    case 'stop': {
      clearInterval(timer);
      sample();
      const hrToUs = hrUs();
      void running
        .stop()
        .catch(() => undefined)
        .finally(() => send({ type: 'samples', samples, timings, hrFromUs, hrToUs }, () => process.exit(0)));
      break;
    }
  }
});

send({ type: 'ready', pid: process.pid, startMs, poolTids });
