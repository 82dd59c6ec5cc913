import { randomUUID } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { claimFolder, completeLinesOfFile, oneLine, runSink, scanShards, SINK_RUNS_FILE } from '../../../src/datasets/sink.js';
import { createRedisConnection } from '../../../src/redis/connection.js';
import { createRedisTrajectoryStream, trajectoryStreamKey } from '../../../src/rollouts/stream.js';
import { archivedTrajectory, isArchived, trajectorySummary, type StoredTrajectory, type Trajectory } from '../../../src/rollouts/types.js';
import { createRedisRunStore, type RunStore } from '../../../src/runs/store.js';
import { createRedisRunControl } from '../../../src/runs/control.js';
import { runKeys } from '../../../src/runs/keys.js';
import { deleteRun } from '../../../queues/run-delete.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import { RawJson, stringifyJson } from '../../../src/util/raw-json.js';

const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/** Model text of the kind an unseen domain brings: every UTF-8 length from 1 to 4 bytes, and a combining accent. */
const TEXTS = [
  'Réservation pour Zoë : café crème, naïve façade, Ørsted, Łódź, e\u0301',
  '图书馆借阅系统：请归还《红楼梦》，然后借出《三体》。',
  '🚀📚 👩‍💻 finished ✅ — 도서관 예약 완료 🎉',
  'Ἀθῆναι → Αθήνα ✓ 😀 (ASCII at the end)',
];

function trajectory(i: number): Trajectory {
  const text = TEXTS[i % TEXTS.length]!;
  return {
    id: `trj-${i}`, runId: 'sink', scenarioId: 'scn', environmentId: 'env', mode: 'non-conversational', sample: i, model: 'm', userModel: null,
    sampling: { temperature: 1, maxTokens: 100 }, tools: [],
    messages: [{ role: 'user', content: text }, { role: 'assistant', content: `${text} ${text}` }],
    userMessages: null, steps: [], checks: [], reward: 1, solved: true, checksError: null,
    termination: { reason: 'agent-finished', detail: null }, turns: 1, usage: { promptTokens: 0, completionTokens: 0, modelCalls: 0 },
    timings: { startedAt: '2026-01-01T00:00:00.000Z', wallMs: 0, envUs: 0 }, finalState: { note: text }, lineage: {},
  };
}

const line = (t: Trajectory) => Buffer.from(`${JSON.stringify(t)}\n`, 'utf8');

/** The line of `t` cut by a crash inside its first emoji (not on a character boundary), without its newline. */
function tornLine(t: Trajectory): Buffer {
  const full = line(t);
  const emoji = full.indexOf(Buffer.from('🚀', 'utf8'));
  expect(emoji, 'the torn line has an emoji to cut into').to.be.greaterThan(0);
  return full.subarray(0, emoji + 2);
}

describe('sink crash recovery (byte offsets)', () => {
  it('keeps every run of sinks that start into one folder at the same moment in its runs file (they take turns: none drops another\'s entry)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sink-claims-'));
    const runs = Array.from({ length: 24 }, (_, i) => ({ run: `run-${i}`, createdAt: `2026-12-06T05:00:${String(i).padStart(2, '0')}.000Z` }));
    await Promise.all(runs.map(r => claimFolder(dir, r.run, r.createdAt)));
    const kept = (JSON.parse(await readFile(join(dir, SINK_RUNS_FILE), 'utf8')) as { runs: { run: string; createdAt: string }[] }).runs;
    expect([...kept].sort((a, b) => a.run.localeCompare(b.run, 'en', { numeric: true }))).to.deep.equal(runs);
    // and the lock is gone; a run of the same name made later is still refused
    expect((await readdir(dir)).sort()).to.deep.equal([SINK_RUNS_FILE]);
    expect(String(await claimFolder(dir, 'run-3', '2026-12-07T00:00:00.000Z').catch((err: unknown) => err))).to.include('holds trajectories of an earlier run named "run-3"');
  });

  it('names a folder that exists and takes no files (read-only, another user\'s) as OUTPUT_NOT_WRITABLE, with what to do (it was a bare EROFS)', async function () {
    if (process.platform !== 'linux') this.skip();
    const err = (await claimFolder('/sys', 'run-ro', '2026-12-06T05:00:00.000Z').catch((e: unknown) => e)) as { code?: string; message: string };
    expect(err.code).to.equal('OUTPUT_NOT_WRITABLE');
    expect(err.message).to.match(/^cannot write \/sys\/\.envfleet-sink-runs\.json\.lock: .* \((EPERM|EACCES|EROFS)\)\. Make the folder writable for this user, or write to another folder; /);
  });

  it('finds where the complete lines end in bytes, whatever the characters', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sink-lines-'));
    const completeLines = async (bytes: Buffer) => {
      await writeFile(join(dir, 'part-00000.jsonl'), bytes);
      const { size, ...found } = await completeLinesOfFile(join(dir, 'part-00000.jsonl'));
      expect(size).to.equal(bytes.length);
      return found;
    };
    const lines = [0, 1, 2, 3].map(i => line(trajectory(i)));
    const good = Buffer.concat(lines);
    // The old measure: UTF-16 characters, which this text has far fewer of than bytes.
    expect(good.toString('utf8').length).to.be.lessThan(good.length);
    expect(await completeLines(good)).to.deep.equal({ end: good.length, lines: 4, ids: ['trj-0', 'trj-1', 'trj-2', 'trj-3'], bad: 0 });
    expect(await completeLines(Buffer.concat([good, tornLine(trajectory(6))]))).to.deep.equal({ end: good.length, lines: 4, ids: ['trj-0', 'trj-1', 'trj-2', 'trj-3'], bad: 0 });
    // A whole line whose newline did not make it to disk is torn too (its document is still whole in Redis).
    expect((await completeLines(Buffer.concat([good, line(trajectory(4)).subarray(0, -1)]))).end).to.equal(good.length);
    expect(await completeLines(Buffer.alloc(0))).to.deep.equal({ end: 0, lines: 0, ids: [], bad: 0 });
    // A torn line with complete lines after it (another run's, appended to a shard they share) is passed over, not an end.
    const torn = Buffer.concat([good.subarray(0, line(trajectory(0)).length), tornLine(trajectory(6)), Buffer.from('\n'), line(trajectory(5))]);
    expect(await completeLines(torn)).to.deep.equal({ end: torn.length, lines: 2, ids: ['trj-0', 'trj-5'], bad: 1 });
    // and one a line was written onto (no newline between them), then a complete line and a torn tail
    const onto = Buffer.concat([tornLine(trajectory(6)), line(trajectory(4)), line(trajectory(5)), tornLine(trajectory(2))]);
    expect(await completeLines(onto)).to.deep.equal({ end: onto.length - tornLine(trajectory(2)).length, lines: 1, ids: ['trj-5'], bad: 1 });
  });

  it("keeps the lines of another run that follow a torn line in a shared shard, and cuts only what follows the last complete line", async () => {
    // A stranger's probe: runs ta and tb sinking into one folder; ta's sink died on a full disk leaving half a line,
    // tb's sink wrote 319 lines after it (acknowledged: Redis kept only their summaries), then ta's sink, started
    // again, cut the shard at the half line and every one of tb's lines with it.
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sink-shared-'));
    const shard = Buffer.concat([line(trajectory(0)), line(trajectory(1)), tornLine(trajectory(6)), Buffer.from('\n'), line(trajectory(4)), line(trajectory(5))]);
    await writeFile(join(dir, 'part-00000.jsonl'), Buffer.concat([shard, tornLine(trajectory(2))]));

    const { written, shard: at } = await scanShards(dir);

    expect(await readFile(join(dir, 'part-00000.jsonl'))).to.deep.equal(shard);
    expect(at).to.deep.equal({ index: 0, lines: 4 });
    expect([...written.keys()]).to.deep.equal(['trj-0', 'trj-1', 'trj-4', 'trj-5']);
  });

  it('cuts a torn last line exactly and keeps every complete line of every shard byte for byte', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sink-scan-'));
    const first = Buffer.concat([0, 1, 2, 3].map(i => line(trajectory(i))));
    const second = Buffer.concat([4, 5, 7].map(i => line(trajectory(i))));
    await writeFile(join(dir, 'part-00000.jsonl'), first);
    await writeFile(join(dir, 'part-00001.jsonl'), Buffer.concat([second, tornLine(trajectory(6))]));

    const { written, shard } = await scanShards(dir);

    expect(await readFile(join(dir, 'part-00000.jsonl'))).to.deep.equal(first);
    expect(await readFile(join(dir, 'part-00001.jsonl'))).to.deep.equal(second);
    expect(shard).to.deep.equal({ index: 1, lines: 3 });
    expect(Object.fromEntries(written)).to.deep.equal({
      'trj-0': 'part-00000.jsonl', 'trj-1': 'part-00000.jsonl', 'trj-2': 'part-00000.jsonl', 'trj-3': 'part-00000.jsonl',
      'trj-4': 'part-00001.jsonl', 'trj-5': 'part-00001.jsonl', 'trj-7': 'part-00001.jsonl',
    });
  });

  it('scans a shard past 2 GiB, a line longer than its reads included, and cuts off what a crash left after the complete lines', async () => {
    // A careless environment's trajectories are megabytes, and a shard ends after shardLines lines, whatever their size:
    // a sink started again on such a shard failed at once ("File size (…) is greater than 2 GiB").
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sink-scan-big-'));
    const big = { ...trajectory(2), id: 'trj-big', finalState: { log: Array.from({ length: 3 }, (_, i) => `${'中'.repeat(1_200_000)} ${TEXTS[i]}`) } };
    const good = Buffer.concat([line(trajectory(0)), line(big), line(trajectory(1))]);
    expect(good.length, 'a line longer than one read of the scan').to.be.greaterThan(10 << 20);
    const path = join(dir, 'part-00000.jsonl');
    await writeFile(path, good);
    // What a crash can leave after the last complete line: the file extended, its new blocks never written (zeros).
    await truncate(path, 2 ** 31 + (1 << 20));

    const { written, shard } = await scanShards(dir);

    expect(Object.fromEntries(written)).to.deep.equal({ 'trj-0': 'part-00000.jsonl', 'trj-big': 'part-00000.jsonl', 'trj-1': 'part-00000.jsonl' });
    expect(shard).to.deep.equal({ index: 0, lines: 3 });
    expect((await stat(path)).size).to.equal(good.length);
    expect(await readFile(path)).to.deep.equal(good);
  });

  // The runSink groups share one Redis connection and key prefix (each test has a run of its own).
  const prefix = `envfleet-test-sink-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  before(() => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  describe('runSink after a crash mid-write (real Redis)', () => {

    it('keeps the acknowledged trajectories whole and writes the one it was writing once, after them', async () => {
      const store = createRedisRunStore(redis, prefix);
      const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-crash-'));
      const shardPath = join(out, 'trajectories', 'part-00000.jsonl');
      await mkdir(join(out, 'trajectories'));
      const done = [0, 1, 2, 3].map(trajectory);
      const inFlight = trajectory(6);
      // What a sink left when it crashed in the middle of writing trajectory 6: the earlier lines synced and
      // acknowledged (Redis keeps only their summary, their stream entries are gone), the last line torn
      // mid-character, its document still whole and its stream entry read but not acknowledged.
      const acknowledged = Buffer.concat(done.map(line));
      await writeFile(shardPath, Buffer.concat([acknowledged, tornLine(inFlight)]));
      for (const t of done) await store.putDoc('sink', 'trajectory', t.id, archivedTrajectory(t, resolve(shardPath)));
      await store.putDoc('sink', 'trajectory', inFlight.id, inFlight);
      await redis.xgroup('CREATE', trajectoryStreamKey(prefix, 'sink'), 'sink', '0', 'MKSTREAM');
      await createRedisTrajectoryStream(redis, prefix).publish('sink', inFlight.id);
      await redis.xreadgroup('GROUP', 'sink', 'crashed-sink', 'COUNT', 10, 'STREAMS', trajectoryStreamKey(prefix, 'sink'), '>');

      const result = await runSink({ redis, prefix, store, runId: 'sink', dir: out });

      expect(result).to.deep.include({ written: 1, skippedDuplicates: 0 });
      expect(await readFile(shardPath)).to.deep.equal(Buffer.concat([acknowledged, line(inFlight)]));
      const stored = await store.getDoc('sink', 'trajectory', inFlight.id);
      expect(stored && isArchived(stored) && stored.archived.path).to.equal(resolve(shardPath));
    });

    it('starts the next shard when the last one is full already (a sink that stopped between its last line and the next shard wrote one line more)', async () => {
      const store = createRedisRunStore(redis, prefix);
      const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-full-'));
      await mkdir(join(out, 'trajectories'));
      const full = join(out, 'trajectories', 'part-00000.jsonl');
      const done = [0, 1, 2, 3].map(i => ({ ...trajectory(i), runId: 'sink-shard-full' }));
      await writeFile(full, Buffer.concat(done.map(line)));
      for (const t of done) await store.putDoc('sink-shard-full', 'trajectory', t.id, archivedTrajectory(t, resolve(full)));
      const next = { ...trajectory(6), runId: 'sink-shard-full' };
      await store.putDoc('sink-shard-full', 'trajectory', next.id, next);
      await redis.xgroup('CREATE', trajectoryStreamKey(prefix, 'sink-shard-full'), 'sink', '0', 'MKSTREAM');
      await createRedisTrajectoryStream(redis, prefix).publish('sink-shard-full', next.id);

      expect(await runSink({ redis, prefix, store, runId: 'sink-shard-full', dir: out, shardLines: 4 })).to.deep.include({ written: 1 });

      expect(await readFile(full)).to.deep.equal(Buffer.concat(done.map(line)));
      expect(await readFile(join(out, 'trajectories', 'part-00001.jsonl'))).to.deep.equal(line(next));
    });

    /** A run of one stored, published trajectory, and a store whose reads of a document first do `meanwhile` (what happens between the sink's scan and its write). */
    async function oneInFlight(runId: string, meanwhile: () => Promise<void>) {
      const base = createRedisRunStore(redis, prefix);
      const out = await mkdtemp(join(tmpdir(), `envfleet-${runId}-`));
      const t = { ...trajectory(2), id: `trj-${runId}`, runId };
      await base.putDoc(runId, 'trajectory', t.id, t);
      await redis.xgroup('CREATE', trajectoryStreamKey(prefix, runId), 'sink', '0', 'MKSTREAM');
      await createRedisTrajectoryStream(redis, prefix).publish(runId, t.id);
      let once = true;
      const store: RunStore = {
        ...base,
        getDocBuffer: async (...args) => {
          if (once) {
            once = false;
            await meanwhile();
          }
          return base.getDocBuffer(...args);
        },
      };
      const pending = async () => Number(((await redis.xpending(trajectoryStreamKey(prefix, runId), 'sink')) as [number])[0]);
      return { t, out, store, base, shard: join(out, 'trajectories', 'part-00000.jsonl'), pending };
    }

    it('ends a torn line another run\'s sink left in a shared shard before writing, so its own first line stays whole', async () => {
      const torn = tornLine(trajectory(6));
      const run = await oneInFlight('sink-guard', async () => {
        await appendFile(run.shard, torn);
      });
      await mkdir(join(run.out, 'trajectories'));
      await writeFile(run.shard, line(trajectory(0)));

      expect(await runSink({ redis, prefix, store: run.store, runId: 'sink-guard', dir: run.out })).to.deep.include({ written: 1 });

      expect(await readFile(run.shard)).to.deep.equal(Buffer.concat([line(trajectory(0)), torn, Buffer.from('\n'), line(run.t)]));
      expect((await completeLinesOfFile(run.shard)).ids).to.deep.equal(['trj-0', run.t.id]);
    });

    it('stops without acknowledging when its folder is deleted under it, and a sink started again writes the batch', async () => {
      // A stranger's probe: `rm -rf` of a following sink's folder; it went on writing into the deleted file, replaced
      // 320 documents by summaries pointing at it, acknowledged them, and said "everything acknowledged is on disk".
      const run = await oneInFlight('sink-gone', async () => {
        await rm(run.out, { recursive: true, force: true });
      });

      const err = await runSink({ redis, prefix, store: run.store, runId: 'sink-gone', dir: run.out }).then(() => null, (e: unknown) => e as { code?: string; message: string });

      expect(err?.code).to.equal('SINK_OUTPUT_GONE');
      expect(err?.message).to.include(resolve(run.shard)).and.include('not acknowledged').and.include('run the sink again');
      expect(await run.pending()).to.equal(1);
      expect(isArchived((await run.base.getDoc('sink-gone', 'trajectory', run.t.id))!)).to.equal(false);

      expect(await runSink({ redis, prefix, store: run.base, runId: 'sink-gone', dir: run.out })).to.deep.include({ written: 1 });
      expect(await readFile(run.shard)).to.deep.equal(line(run.t));
      expect(await run.pending()).to.equal(0);
    });

    it('names the shard and what to do when the disk is full, and acknowledges nothing it could not write', async () => {
      const run = await oneInFlight('sink-full', () => Promise.resolve());
      await mkdir(join(run.out, 'trajectories'));
      await symlink('/dev/full', run.shard);

      const err = await runSink({ redis, prefix, store: run.store, runId: 'sink-full', dir: run.out }).then(() => null, (e: unknown) => e as { code?: string; message: string });

      expect(err?.code).to.equal('OUTPUT_NOT_WRITABLE');
      expect(err?.message).to.include(resolve(run.shard)).and.include('the disk is full (ENOSPC)').and.include('run the sink again');
      expect(await run.pending()).to.equal(1);
      expect(isArchived((await run.base.getDoc('sink-full', 'trajectory', run.t.id))!)).to.equal(false);

      await rm(run.shard);
      expect(await runSink({ redis, prefix, store: run.base, runId: 'sink-full', dir: run.out })).to.deep.include({ written: 1 });
      expect(await readFile(run.shard)).to.deep.equal(line(run.t));
    });

    it('looks at its lock again just before writing: one another sink took meanwhile stops it before the write', async () => {
      // A stranger's probe: a sink stopped (SIGSTOP) past its lock's life while a second one started wrote its batch
      // when it went on, and the shard held 13 trajectories twice.
      const run = await oneInFlight('sink-late', async () => {
        await redis.set(runKeys(prefix, 'sink-late', false).sinkLock, 'another-sink', 'PX', 60_000);
      });

      const err = await runSink({ redis, prefix, store: run.store, runId: 'sink-late', dir: run.out }).then(() => null, (e: unknown) => e as { code?: string; message: string });

      expect(err?.code).to.equal('SINK_LOCK_LOST');
      expect(err?.message).to.include('stopped before writing anything more');
      expect(await readFile(run.shard)).to.deep.equal(Buffer.alloc(0));
      expect(await run.pending()).to.equal(1);
    });

    /** `redis`, whose third read of `key` (the look after the write: one at the batch's start, one before the write) first does `meanwhile`. */
    function afterTheWrite(key: string, meanwhile: () => Promise<unknown>): Redis {
      let reads = 0;
      return new Proxy(redis, {
        get(target, prop) {
          if (prop === 'get') {
            return async (k: string) => {
              if (k === key && ++reads === 3) await meanwhile();
              return target.get(k);
            };
          }
          const v = Reflect.get(target, prop, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    }

    it('says how many lines it wrote after another sink took its lock, and leaves their entries to that sink; a lock simply gone is taken again', async () => {
      const lock = (runId: string) => runKeys(prefix, runId, false).sinkLock;
      const late = await oneInFlight('sink-late-write', () => Promise.resolve());
      const taken = afterTheWrite(lock('sink-late-write'), () => redis.set(lock('sink-late-write'), 'another-sink', 'PX', 60_000));

      const err = await runSink({ redis: taken, prefix, store: late.store, runId: 'sink-late-write', dir: late.out }).then(() => null, (e: unknown) => e as { code?: string; message: string });

      expect(err?.code).to.equal('SINK_LOCK_LOST');
      expect(err?.message).to.include('wrote 1 trajectory after the lock had lapsed').and.include('an export keeps one line per trajectory id');
      expect(await readFile(late.shard)).to.deep.equal(line(late.t));
      expect(await late.pending()).to.equal(1);

      const gone = await oneInFlight('sink-lock-gone', () => Promise.resolve());
      const dropped = afterTheWrite(lock('sink-lock-gone'), () => redis.del(lock('sink-lock-gone')));
      expect(await runSink({ redis: dropped, prefix, store: gone.store, runId: 'sink-lock-gone', dir: gone.out })).to.deep.include({ written: 1 });
      expect(await gone.pending()).to.equal(0);
    });

    it('writes each trajectory as stored: a final state of a Python environment keeps 1.0 and its text byte for byte', async () => {
      const store = createRedisRunStore(redis, prefix);
      const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-raw-'));
      // As the Python runtime writes a final state: floats with their point, non-ASCII as it is, no spaces.
      const state = '{"balance":1.0,"rate":2.50,"items":[{"price":10.0,"name":"Zoë 李 🌸"}],"total":1e3}';
      const runId = 'sink-raw';
      const t = { ...trajectory(2), id: 'trj-raw', runId, finalState: new RawJson(state) } as unknown as Trajectory;
      await store.putDoc(runId, 'trajectory', t.id, t);
      const stored = await store.getDocText(runId, 'trajectory', t.id);
      expect(stored).to.include(state);
      await redis.xgroup('CREATE', trajectoryStreamKey(prefix, runId), 'sink', '0', 'MKSTREAM');
      await createRedisTrajectoryStream(redis, prefix).publish(runId, t.id);

      const result = await runSink({ redis, prefix, store, runId, dir: out });

      expect(result).to.deep.include({ written: 1 });
      const file = await readFile(join(out, 'trajectories', 'part-00000.jsonl'), 'utf8');
      expect(file).to.equal(`${stored}\n`);
      expect(file).to.include('"balance":1.0,"rate":2.50');
      expect((JSON.parse(file) as { finalState: unknown }).finalState).to.deep.equal(JSON.parse(state));
    });
  });

  describe('runSink with the summaries the workers publish (real Redis)', () => {

    /** A trajectory as a worker holds it: model text of every UTF-8 length in its messages, a final state as the Python runtime wrote it. */
    function workerTrajectory(i: number, runId: string): Trajectory {
      const t = trajectory(i);
      return {
        ...t,
        id: `trj-sum-${i}`,
        runId,
        policyTurns: [{ turn: 1, model: 'm', finishReason: 'stop' }],
        checks: [{ item: 'café réservé ✓ 李', passed: true }, { item: 'total 🌸', passed: false, error: 'x', errorCode: 'CHECK_FAILED' }],
        reward: 0.5,
        lineage: { runId, scenarioId: 'scn', prompts: { policy: 'v1' }, note: TEXTS[(i + 1) % TEXTS.length]! },
        finalState: new RawJson(`{"balance":1.0,"rate":2.50,"guest":"${TEXTS[i % TEXTS.length]!}","n":${i}.0}`),
      };
    }

    /** The store, counting what the sink reads and writes, and how many summary writes are out at once. */
    function watchedStore(store: RunStore) {
      const seen = { inFlight: 0, maxInFlight: 0, putTexts: 0, puts: 0 };
      const track = async <T>(work: Promise<T>) => {
        seen.inFlight += 1;
        seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
        try {
          return await work;
        } finally {
          seen.inFlight -= 1;
        }
      };
      const watched: RunStore = {
        ...store,
        putDoc: (...args) => ((seen.puts += 1), track(store.putDoc(...args))),
        putDocText: (...args) => ((seen.putTexts += 1), track(store.putDocText(...args))),
      };
      return { store: watched, seen };
    }

    /** Runs `work` with JSON.parse counting the texts it parses that hold a trajectory's messages. */
    async function countingParses<T>(work: () => Promise<T>): Promise<{ result: T; parses: number }> {
      const parse = JSON.parse;
      let parses = 0;
      JSON.parse = ((text: string, reviver?: (this: unknown, key: string, value: unknown) => unknown) => {
        if (typeof text === 'string' && text.includes('"messages":')) parses += 1;
        return parse(text, reviver) as unknown;
      }) as typeof JSON.parse;
      try {
        return { result: await work(), parses };
      } finally {
        JSON.parse = parse;
      }
    }

    for (const connection of ['plain', 'auto-pipelined'] as const) {
      it(`writes each stored document byte for byte and keeps exactly the summary archivedTrajectory makes, without parsing a document (${connection} connection)`, async () => {
        const runId = `sink-summary-${connection}`;
        const conn = connection === 'plain' ? redis : createRedisConnection(REDIS_URL, 'worker', { enableAutoPipelining: true });
        try {
          const store = createRedisRunStore(conn, prefix);
          const watched = watchedStore(store);
          const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-summary-'));
          const stream = createRedisTrajectoryStream(redis, prefix);
          const ts = [0, 1, 2, 3, 4, 5].map(i => workerTrajectory(i, runId));
          for (const t of ts) {
            await store.putDoc(runId, 'trajectory', t.id, t);
            await stream.publish(runId, t.id, { summary: trajectorySummary(t), text: stringifyJson(t)! });
          }
          const stored = new Map<string, Buffer>();
          for (const t of ts) stored.set(t.id, (await redis.getBuffer(`${prefix}:run:${runId}:doc:trajectory:${t.id}`))!);
          expect(stored.get('trj-sum-0')!.toString('utf8')).to.include('"balance":1.0,"rate":2.50');

          const { result, parses } = await countingParses(() => runSink({ redis: conn, prefix, store: watched.store, runId, dir: out }));

          expect(result).to.deep.include({ written: 6, skippedDuplicates: 0 });
          expect(parses, 'documents parsed by the sink').to.equal(0);
          const shard = resolve(join(out, 'trajectories', 'part-00000.jsonl'));
          expect(await readFile(shard)).to.deep.equal(Buffer.concat(ts.flatMap(t => [stored.get(t.id)!, Buffer.from('\n')])));
          for (const t of ts) {
            const expected = stringifyJson(archivedTrajectory(JSON.parse(stored.get(t.id)!.toString('utf8')) as StoredTrajectory, shard));
            expect(await store.getDocText(runId, 'trajectory', t.id)).to.equal(expected);
          }
          // The summaries of the batch went out together, as text.
          expect(watched.seen).to.deep.include({ putTexts: 6, puts: 0, maxInFlight: 6 });
          expect((await store.bytes(runId))['doc:trajectory']).to.equal(
            (await Promise.all(ts.map(t => store.getDocText(runId, 'trajectory', t.id)))).reduce((n, text) => n + Buffer.byteLength(text!), 0),
          );
        } finally {
          if (conn !== redis) conn.disconnect();
        }
      });
    }

    it('reads and writes at most batchBytes of trajectories at once, by the sizes the workers published (a careless environment: MB each)', async () => {
      const runId = 'sink-bytes';
      const store = createRedisRunStore(redis, prefix);
      const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-bytes-'));
      const stream = createRedisTrajectoryStream(redis, prefix);
      // ≈ 1.1 MB each: a final state of a growing log with text of every UTF-8 length.
      const big = (i: number) => ({ ...workerTrajectory(i, runId), finalState: new RawJson(JSON.stringify({ log: Array.from({ length: 15_000 }, (_, k) => `${k} ${TEXTS[k % TEXTS.length]!}`) })) }) as Trajectory;
      const ts = [0, 1, 2, 3, 4, 5, 6, 7].map(big);
      const texts = ts.map(t => stringifyJson(t)!);
      expect(Buffer.byteLength(texts[0]!)).to.be.within(1_000_000, 1_400_000);
      for (const [i, t] of ts.entries()) {
        await store.putDoc(runId, 'trajectory', t.id, t);
        await stream.publish(runId, t.id, { summary: trajectorySummary(t), text: texts[i]! });
      }
      const progress: number[] = [];
      const result = await runSink({ redis, prefix, store, runId, dir: out, batchBytes: 3_000_000, onProgress: n => progress.push(n) });

      expect(result).to.deep.include({ written: 8, skippedDuplicates: 0 });
      // Two trajectories a batch (three would pass 3 MB): four batches, each written and acknowledged before the next is read.
      expect(progress).to.deep.equal([2, 4, 6, 8]);
      const file = await readFile(join(out, 'trajectories', 'part-00000.jsonl'), 'utf8');
      expect(file).to.equal(texts.map(t => `${t}\n`).join(''));
    });

    it('archives the entries of an older worker (no summary) as before, in the same batch as the others', async () => {
      const runId = 'sink-mixed';
      const store = createRedisRunStore(redis, prefix);
      const watched = watchedStore(store);
      const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-mixed-'));
      const stream = createRedisTrajectoryStream(redis, prefix);
      const ts = [0, 1, 2, 3].map(i => workerTrajectory(i, runId));
      for (const t of ts) {
        await store.putDoc(runId, 'trajectory', t.id, t);
        // Trajectories 1 and 3 from a worker of the version before: the id alone.
        await stream.publish(runId, t.id, t.sample % 2 ? undefined : { summary: trajectorySummary(t), text: stringifyJson(t)! });
      }
      const stored = new Map<string, string>();
      for (const t of ts) stored.set(t.id, (await store.getDocText(runId, 'trajectory', t.id))!);

      const { result, parses } = await countingParses(() => runSink({ redis, prefix, store: watched.store, runId, dir: out }));

      expect(result).to.deep.include({ written: 4 });
      expect(parses, 'documents parsed: those without a summary').to.equal(2);
      const shard = resolve(join(out, 'trajectories', 'part-00000.jsonl'));
      expect(await readFile(shard, 'utf8')).to.equal(ts.map(t => `${stored.get(t.id)!}\n`).join(''));
      for (const t of ts) expect(await store.getDocText(runId, 'trajectory', t.id)).to.equal(stringifyJson(archivedTrajectory(JSON.parse(stored.get(t.id)!) as StoredTrajectory, shard)));
      expect(watched.seen).to.deep.include({ putTexts: 2, puts: 2, maxInFlight: 4 });
    });

    it('copies a trajectory archived into another directory even when its entry carries a summary (a sink that crashed before its acknowledgement)', async () => {
      const runId = 'sink-moved';
      const store = createRedisRunStore(redis, prefix);
      const first = await mkdtemp(join(tmpdir(), 'envfleet-sink-first-'));
      const t = workerTrajectory(2, runId);
      await store.putDoc(runId, 'trajectory', t.id, t);
      const text = (await store.getDocText(runId, 'trajectory', t.id))!;
      await redis.xgroup('CREATE', trajectoryStreamKey(prefix, runId), 'sink', '0', 'MKSTREAM');
      await createRedisTrajectoryStream(redis, prefix).publish(runId, t.id, { summary: trajectorySummary(t), text: stringifyJson(t)! });
      // The first sink wrote and archived it, then crashed before acknowledging its entry.
      await redis.xreadgroup('GROUP', 'sink', 'crashed-sink', 'COUNT', 10, 'STREAMS', trajectoryStreamKey(prefix, runId), '>');
      const firstShard = join(first, 'trajectories', 'part-00000.jsonl');
      await mkdir(join(first, 'trajectories'));
      await writeFile(firstShard, `${text}\n`);
      await store.putDoc(runId, 'trajectory', t.id, archivedTrajectory(JSON.parse(text) as StoredTrajectory, resolve(firstShard)));
      const archived = (await store.getDocText(runId, 'trajectory', t.id))!;

      const second = await mkdtemp(join(tmpdir(), 'envfleet-sink-second-'));
      const result = await runSink({ redis, prefix, store, runId, dir: second });

      expect(result).to.deep.include({ written: 1 });
      const secondShard = resolve(join(second, 'trajectories', 'part-00000.jsonl'));
      expect(await readFile(secondShard, 'utf8')).to.equal(`${text}\n`);
      expect(await store.getDocText(runId, 'trajectory', t.id)).to.equal(stringifyJson(archivedTrajectory(JSON.parse(archived) as StoredTrajectory, secondShard)));
    });

    it("keeps the summary of the document it wrote when a job that ran twice stored another trajectory under the id after publishing its own", async () => {
      const runId = 'sink-twice';
      const store = createRedisRunStore(redis, prefix);
      const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-twice-'));
      const stream = createRedisTrajectoryStream(redis, prefix);
      // Run A stores its trajectory (reward 1) and publishes; run B of the same job then stores another (reward 0).
      const a = { ...workerTrajectory(4, runId), reward: 1, solved: true };
      const b: Trajectory = { ...workerTrajectory(4, runId), reward: 0, solved: false, messages: [{ role: 'assistant', content: 'autre réponse 😀' }] };
      await store.putDoc(runId, 'trajectory', a.id, a);
      await stream.publish(runId, a.id, { summary: trajectorySummary(a), text: stringifyJson(a)! });
      await store.putDoc(runId, 'trajectory', b.id, b);
      const storedB = (await store.getDocText(runId, 'trajectory', b.id))!;

      await runSink({ redis, prefix, store, runId, dir: out });
      await stream.publish(runId, b.id, { summary: trajectorySummary(b), text: stringifyJson(b)! });
      await runSink({ redis, prefix, store, runId, dir: out });

      const shard = resolve(join(out, 'trajectories', 'part-00000.jsonl'));
      expect(await readFile(shard, 'utf8')).to.equal(`${storedB}\n`);
      const kept = JSON.parse((await store.getDocText(runId, 'trajectory', b.id))!) as StoredTrajectory;
      expect(kept).to.deep.include({ reward: 0, solved: false });
      expect(await store.getDocText(runId, 'trajectory', b.id)).to.equal(stringifyJson(archivedTrajectory(JSON.parse(storedB) as StoredTrajectory, shard)));
    });

    it('puts a stored document with line breaks between its tokens on one line, its other bytes untouched', async () => {
      const runId = 'sink-pretty';
      const store = createRedisRunStore(redis, prefix);
      const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-pretty-'));
      const t = workerTrajectory(3, runId);
      const pretty = JSON.stringify(JSON.parse(stringifyJson(t)!), null, 2).replace(/\n/g, '\r\n');
      await store.putDoc(runId, 'trajectory', t.id, t);
      await redis.set(`${prefix}:run:${runId}:doc:trajectory:${t.id}`, pretty);
      await createRedisTrajectoryStream(redis, prefix).publish(runId, t.id, { summary: trajectorySummary(t), text: stringifyJson(t)! });

      await runSink({ redis, prefix, store, runId, dir: out });

      const file = await readFile(join(out, 'trajectories', 'part-00000.jsonl'), 'utf8');
      expect(file).to.equal(`${oneLine(pretty)}\n`);
      expect(JSON.parse(file)).to.deep.equal(JSON.parse(pretty));
    });

    it('writes each lone surrogate of a stored trajectory as U+FFFD, so that the shard is UTF-8 a strict decoder and pyarrow read, and pairs as they are', async () => {
      const runId = 'sink-lone';
      const store = createRedisRunStore(redis, prefix);
      const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-lone-'));
      // A model's output cut inside an emoji, and a tool result of an environment that cut one, as JSON stores them.
      const t: Trajectory = { ...workerTrajectory(5, runId), messages: [{ role: 'assistant', content: 'cut \ud83d here, whole 😀, \\ud800 is text' }, { role: 'tool', tool_call_id: 'c1', content: '{"n":"\udc00x"}' }] };
      await store.putDoc(runId, 'trajectory', t.id, t);
      await createRedisTrajectoryStream(redis, prefix).publish(runId, t.id, { summary: trajectorySummary(t), text: stringifyJson(t)! });

      await runSink({ redis, prefix, store, runId, dir: out });

      const bytes = await readFile(join(out, 'trajectories', 'part-00000.jsonl'));
      const line = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      const [said, tool] = (JSON.parse(line) as Trajectory).messages;
      expect(said!.content).to.equal('cut \ufffd here, whole 😀, \\ud800 is text');
      expect(tool!.content).to.equal('{"n":"\ufffdx"}');
    });
  });

  describe('runSink following a run that is deleted (real Redis)', () => {
    it('stops with RUN_GONE saying the run was deleted, not that Redis came back, and makes nothing of it again (it followed a stream it made again, for ever)', async () => {
      const runId = 'sink-deleted';
      const store = createRedisRunStore(redis, prefix);
      const control = createRedisRunControl(redis, prefix);
      await store.createRun({ id: runId, createdAt: new Date().toISOString(), input: 'tasks', options: { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as never });
      const t = { ...trajectory(1), id: 'trj-del', runId };
      await store.putDoc(runId, 'trajectory', t.id, t);
      await createRedisTrajectoryStream(redis, prefix).publish(runId, t.id, { summary: trajectorySummary(t), text: stringifyJson(t)! });
      const out = await mkdtemp(join(tmpdir(), 'envfleet-sink-deleted-'));
      const written: number[] = [];
      // On a connection of its own, as `envfleet sink --follow` has: the deletion must not be mistaken for an outage.
      const own = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
      try {
        const sink = runSink({ redis: own, prefix, store: createRedisRunStore(own, prefix), runId, dir: out, follow: true, gatherMs: 0, onProgress: n => written.push(n) });
        sink.catch(() => undefined);
        for (let i = 0; i < 200 && !written.includes(1); i += 1) await new Promise(r => setTimeout(r, 50));
        expect(written).to.include(1);
        await deleteRun(redis, prefix, store, control, runId);
        const error = await sink.then(
          () => new Error('the sink ended by itself'),
          (err: unknown) => err,
        );
        expect(error).to.have.property('code', 'RUN_GONE');
        expect(String((error as Error).message)).to.match(/^run "sink-deleted" is no longer in Redis: it was deleted \(envfleet runs delete\), or Redis restarted without its data/);
        expect(String((error as Error).message)).to.not.include('has just come back');
        // Nothing of the deleted run made again (a stream followed for ever).
        expect(await redis.keys(`${prefix}:run:${runId}*`)).to.deep.equal([]);
        expect((await readFile(join(out, 'trajectories', 'part-00000.jsonl'), 'utf8')).split('\n').filter(Boolean)).to.have.length(1);
      } finally {
        own.disconnect();
      }
    });
  });

  it('puts UTF-8 bytes on one line as it does their text', () => {
    for (const text of ['{"a":1}', JSON.stringify({ a: 'x\ny 🌸', b: [1.5, 'é'] }, null, 2), '{"a":\r\n"李"}', `{\n"t":${JSON.stringify(TEXTS.join('\n'))}\r}`]) {
      const bytes = Buffer.from(text, 'utf8');
      expect(oneLine(bytes)).to.deep.equal(Buffer.from(oneLine(text), 'utf8'));
    }
    const plain = Buffer.from('{"a":"é"}');
    expect(oneLine(plain)).to.equal(plain);
  });

  it('puts JSON text on one line without touching its strings', () => {
    expect(oneLine('{"a":1}')).to.equal('{"a":1}');
    const pretty = JSON.stringify({ a: 'x\ny 🌸', b: [1.5, 'é'] }, null, 2);
    expect(oneLine(pretty)).to.not.match(/[\r\n]/);
    expect(JSON.parse(oneLine(pretty))).to.deep.equal({ a: 'x\ny 🌸', b: [1.5, 'é'] });
    expect(oneLine('{"a":\r\n1}')).to.equal('{"a":  1}');
  });
});
