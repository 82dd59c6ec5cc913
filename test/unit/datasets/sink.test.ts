import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { completeLines, oneLine, runSink, scanShards } from '../../../src/datasets/sink.js';
import { createRedisTrajectoryStream, trajectoryStreamKey } from '../../../src/rollouts/stream.js';
import { archivedTrajectory, isArchived, type Trajectory } from '../../../src/rollouts/types.js';
import { createRedisRunStore } from '../../../src/runs/store.js';
import { RawJson } from '../../../src/util/raw-json.js';

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
  it('finds where the complete lines end in bytes, whatever the characters', () => {
    const lines = [0, 1, 2, 3].map(i => line(trajectory(i)));
    const good = Buffer.concat(lines);
    // The old measure: UTF-16 characters, which this text has far fewer of than bytes.
    expect(good.toString('utf8').length).to.be.lessThan(good.length);
    expect(completeLines(good)).to.deep.equal({ end: good.length, lines: 4, ids: ['trj-0', 'trj-1', 'trj-2', 'trj-3'] });
    expect(completeLines(Buffer.concat([good, tornLine(trajectory(6))]))).to.deep.equal({ end: good.length, lines: 4, ids: ['trj-0', 'trj-1', 'trj-2', 'trj-3'] });
    // A whole line whose newline did not make it to disk is torn too (its document is still whole in Redis).
    expect(completeLines(Buffer.concat([good, line(trajectory(4)).subarray(0, -1)])).end).to.equal(good.length);
    expect(completeLines(Buffer.alloc(0))).to.deep.equal({ end: 0, lines: 0, ids: [] });
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

  describe('runSink after a crash mid-write (real Redis)', () => {
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

  it('puts JSON text on one line without touching its strings', () => {
    expect(oneLine('{"a":1}')).to.equal('{"a":1}');
    const pretty = JSON.stringify({ a: 'x\ny 🌸', b: [1.5, 'é'] }, null, 2);
    expect(oneLine(pretty)).to.not.match(/[\r\n]/);
    expect(JSON.parse(oneLine(pretty))).to.deep.equal({ a: 'x\ny 🌸', b: [1.5, 'é'] });
    expect(oneLine('{"a":\r\n1}')).to.equal('{"a":  1}');
  });
});
