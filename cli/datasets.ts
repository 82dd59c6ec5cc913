import { InvalidArgumentError } from 'commander';
import { loadConfig } from '../config/index.js';
import { DATASET_FORMATS, exportRun, type DatasetFormat } from '../src/datasets/export.js';
import { LLAMAFACTORY_INFO_FILE } from '../src/datasets/llamafactory-info.js';
import { runSink } from '../src/datasets/sink.js';
import { REASONING_MODES, type ReasoningMode, type ShareGPTLeftOut } from '../src/datasets/trajectories.js';
import { createRedisConnection, describeRedis, waitForRedisToStart } from '../src/redis/connection.js';
import { nowAndThen } from '../src/util/now-and-then.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { requireRun, withRuns } from './context.js';

/** `envfleet sink`: writes a run's trajectories to DIR/trajectories, exactly once, until the run has none outstanding (or Ctrl-C with --follow). */
export async function sinkCommand(opts: { run: string; out: string; follow?: boolean }): Promise<void> {
  const config = loadConfig();
  // The sink blocks on the stream: a worker-style connection that waits through reconnects. Not auto-pipelined: ioredis
  // fails the commands of a batch a dropped connection had half answered instead of sending them again, and the sink
  // must ride through a Redis restart (its batches are what `gatherMs` makes larger, src/datasets/sink.ts).
  const redis = createRedisConnection(config.redis, 'worker');
  const controller = new AbortController();
  let written = 0;
  process.once('SIGINT', () => controller.abort());
  process.once('SIGTERM', () => controller.abort());
  // Said while it runs (it said nothing for a whole run, nor while Redis was away): Redis away and back (each at most
  // every 30 s, however many reconnection attempts), and with --follow how many lines it has written, at most every 30 s (when it writes).
  const where = describeRedis(config.redis);
  const away = nowAndThen(30_000);
  let saidAway = false;
  let started = false;
  redis.on('error', (err: Error) => {
    if (!started) return; // waitForRedisToStart says why it waits
    if (away.take()) {
      saidAway = true;
      process.stderr.write(`envfleet sink: Redis at ${where} does not answer (${err.message}); waiting for it to come back: what is on disk stays, and the sink goes on where it stopped\n`);
    }
  });
  redis.on('ready', () => {
    // Said once for each outage said (one within 30 s of the last is neither said nor its end).
    if (!saidAway) return;
    saidAway = false;
    process.stderr.write(`envfleet sink: Redis at ${where} answers again; the sink goes on\n`);
  });
  const progress = nowAndThen(30_000);
  progress.take();
  try {
    await waitForRedisToStart(redis, config.redis, config.redis.startupWaitMs, reason =>
      process.stderr.write(`envfleet sink: Redis does not answer yet (${reason}); waiting up to ${config.redis.startupWaitMs} ms for it (ENVFLEET_REDIS_STARTUP_WAIT_MS)\n`),
    );
    const store = createRedisRunStore(redis, config.redis.prefix);
    // Before anything is created (the output folder, the run's stream): a mistyped name would otherwise leave an
    // empty part file and a stream key no `runs delete` removes, and wait forever with --follow.
    await requireRun(store, opts.run);
    started = true;
    const onProgress = (n: number) => {
      written = n;
      if (opts.follow && progress.take()) process.stderr.write(`envfleet sink: ${n} trajectories of run ${opts.run} written to ${opts.out}/trajectories by this sink so far\n`);
    };
    const result = await runSink({ redis, prefix: config.redis.prefix, store, runId: opts.run, dir: opts.out, follow: opts.follow ?? false, signal: controller.signal, onProgress });
    process.stdout.write(`wrote ${result.written} trajectories to ${opts.out}/trajectories (${result.shards.join(', ')}); ${result.skippedDuplicates} duplicates skipped\n`);
  } catch (err) {
    if (!controller.signal.aborted) {
      // What is on disk, before the reason it stopped (a run deleted, a lock lost): nothing written is undone.
      if (written) process.stderr.write(`envfleet sink: ${written} trajectories were written to ${opts.out}/trajectories before it stopped; they stay there\n`);
      throw err;
    }
    process.stdout.write(`sink stopped: ${written} trajectories written to ${opts.out}/trajectories this time; everything acknowledged is on disk (run the same command again to go on)\n`);
  } finally {
    redis.disconnect();
  }
}

export interface ExportCommandOptions {
  readonly run: string;
  readonly out: string;
  readonly format?: string;
  readonly filter?: string;
  readonly minReward?: number;
  readonly reasoning?: string;
  readonly trajectories?: string;
  readonly skipMissing?: boolean;
}

/** What each reason for a ShareGPT turn left out means, for the export's note. */
const SHAREGPT_LEFT_OUT: Record<ShareGPTLeftOut, string> = {
  'unreadable-call-turn': "at or after a tool-call turn whose text or kept reasoning holds the template's tool-call or think words, which LLaMA-Factory would read its calls from",
  'turn-order': 'at or after a break of the human / assistant turn order LLaMA-Factory requires (two user turns in a row, say)',
};

/** `envfleet export`: the datasets of a run. */
export async function exportCommand(opts: ExportCommandOptions): Promise<void> {
  const formats = opts.format ? opts.format.split(',').map(f => f.trim()) : [...DATASET_FORMATS];
  for (const f of formats) if (!DATASET_FORMATS.includes(f as DatasetFormat)) throw new InvalidArgumentError(`unknown --format "${f}"; use ${DATASET_FORMATS.join(', ')}`);
  if (opts.filter !== undefined && opts.filter !== 'solved') throw new InvalidArgumentError('--filter takes "solved"');
  if (opts.minReward !== undefined && !(opts.minReward >= 0 && opts.minReward <= 1)) throw new InvalidArgumentError('--min-reward takes a number between 0 and 1');
  // Alternatives, as the README gives them: solved means reward 1, so with both, --min-reward changed nothing, unsaid.
  if (opts.filter !== undefined && opts.minReward !== undefined) throw new InvalidArgumentError('give --filter solved or --min-reward X, not both (solved trajectories are those with reward 1: --min-reward 1 is the same filter)');
  if (opts.reasoning !== undefined && !REASONING_MODES.includes(opts.reasoning as ReasoningMode)) throw new InvalidArgumentError(`--reasoning takes ${REASONING_MODES.join(' or ')}`);
  await withRuns(async ({ store }) => {
    const result = await exportRun(store, opts.run, opts.out, {
      formats: formats as DatasetFormat[],
      filter: { solvedOnly: opts.filter === 'solved', minReward: opts.minReward ?? null },
      ...(opts.reasoning ? { reasoning: opts.reasoning as ReasoningMode } : {}),
      ...(opts.trajectories ? { trajectoriesDir: opts.trajectories } : {}),
      ...(opts.skipMissing ? { skipMissingTrajectories: true } : {}),
    });
    for (const [file, n] of Object.entries(result.datasets)) {
      // dataset_info.json is one object (an entry per LLaMA-Factory file); the others hold a record a line.
      process.stdout.write(file === LLAMAFACTORY_INFO_FILE ? `wrote ${opts.out}/${file} (${n} dataset entr${n === 1 ? 'y' : 'ies'})\n` : `wrote ${n} record${n === 1 ? '' : 's'} to ${opts.out}/${file}\n`);
    }
    process.stdout.write(`wrote ${result.count} environments to ${result.path} ${JSON.stringify(result.byStatus)}\n`);
    if (result.scenarios.path) {
      process.stdout.write(`wrote ${result.scenarios.ready} scenarios to ${result.scenarios.path} (${result.scenarios.dropped} dropped, with reasons, in scenarios-dropped.jsonl)\n`);
    }
    if (result.removed.length) process.stdout.write(`removed ${result.removed.length} files of an earlier export in ${opts.out} that this one did not write (so no trainer mixes them with these): ${result.removed.join(', ')}\n`);
    if (result.infoKept.length) {
      // A folder's own dataset_info.json (LLaMA-Factory's data/): its datasets stay, beside envfleet's.
      const n = result.infoKept.length;
      const names = `${result.infoKept.slice(0, 5).join(', ')}${n > 5 ? `, … (${n} in all)` : ''}`;
      process.stderr.write(
        LLAMAFACTORY_INFO_FILE in result.datasets
          ? `note: ${opts.out}/${LLAMAFACTORY_INFO_FILE} already held ${n} other dataset entr${n === 1 ? 'y' : 'ies'} (${names}): envfleet added its entries to that file and kept the others as they were\n`
          : `note: took envfleet's entries out of ${opts.out}/${LLAMAFACTORY_INFO_FILE} (this export writes no LLaMA-Factory file) and kept its ${n} other dataset entr${n === 1 ? 'y' : 'ies'} (${names})\n`,
      );
    }
    for (const [file, left] of Object.entries(result.leftOut)) {
      const reasons = Object.entries(left.byReason).map(([why, n]) => `${n} ${SHAREGPT_LEFT_OUT[why as ShareGPTLeftOut] ?? why}`).join('; ');
      process.stderr.write(`note: ${left.turns} assistant turn${left.turns === 1 ? '' : 's'} of ${left.trajectories} trajector${left.trajectories === 1 ? 'y' : 'ies'} ${left.turns === 1 ? 'is' : 'are'} in no line of ${opts.out}/${file} (a conversation's lines stop at the first such turn): ${reasons} (docs/formats.md)\n`);
    }
    const lost = result.missingTrajectories;
    if (lost.count) {
      process.stderr.write(`note: ${lost.count} trajector${lost.count === 1 ? 'y is' : 'ies are'} in no SFT file (--skip-missing): the sink's file${lost.shards.length === 1 ? '' : 's'} of ${lost.count === 1 ? 'it' : 'them'} ${lost.shards.length === 1 ? 'is' : 'are'} gone or damaged:\n${lost.shards.map(s => `  ${s}`).join('\n')}\n`);
    }
    for (const { formats: none, reason } of result.notWritten) process.stderr.write(`note: no ${none.join(', ')} file${none.length === 1 ? '' : 's'} written: ${reason}\n`);
    if (result.foreign.length) process.stderr.write(`note: ${opts.out} also holds ${result.foreign.join(', ')}, which this export did not write and no earlier export's manifest lists (written by hand, or by an older envfleet): kept; remove them if they are an earlier export's, so no trainer mixes them with these\n`);
  });
}
