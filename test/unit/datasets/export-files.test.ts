import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '../../../config/index.js';
import { runOptionsFrom } from '../../../queues/submit.js';
import { exportRun } from '../../../src/datasets/export.js';
import { createRedisRunStore, type RunStore } from '../../../src/runs/store.js';
import { archivedTrajectory } from '../../../src/rollouts/types.js';
import { AlpacaLine, HFPromptCompletionLine, LlamaFactoryDatasetInfo, OpenAIFineTuneLine, ShareGPTLine } from '../../helpers/formats.js';
import { BROKEN, call, PARALLEL, step, trajectory } from '../../helpers/sft-fixtures.js';

const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

describe('the SFT files of an export (real Redis)', () => {
  const prefix = `envfleet-test-sft-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  let store: RunStore;

  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    store = createRedisRunStore(redis, prefix);
    await store.createRun({ id: 'sft', createdAt: '2026-01-01T00:00:00.000Z', input: 'descriptions', options: runOptionsFrom(loadConfig({})) });
    await store.putDoc('sft', 'trajectory', 'trj-broken', { ...BROKEN, id: 'trj-broken', runId: 'sft' });
    await store.putDoc('sft', 'trajectory', 'trj-parallel', { ...PARALLEL, id: 'trj-parallel', runId: 'sft' });
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  const jsonl = async (path: string) => (await readFile(path, 'utf8')).split('\n').filter(Boolean).map(l => JSON.parse(l) as unknown);

  it('writes every SFT file, valid line by line, multi-byte text as UTF-8, and dataset_info.json for LLaMA-Factory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-'));
    const result = await exportRun(store, 'sft', dir);
    expect(result.datasets).to.deep.include({ 'sft-openai.jsonl': 2, 'sft-sharegpt.jsonl': 5, 'sft-llamafactory.jsonl': 5, 'sft-hf.jsonl': 2, 'dataset_info.json': 2 });
    for (const [file, schema] of [['sft-openai.jsonl', OpenAIFineTuneLine], ['sft-sharegpt.jsonl', ShareGPTLine], ['sft-llamafactory.jsonl', AlpacaLine], ['sft-hf.jsonl', HFPromptCompletionLine]] as const) {
      for (const line of await jsonl(join(dir, file))) expect(schema.safeParse(line).success, file).to.equal(true);
      // Not escaped: the bytes of the characters themselves.
      const text = await readFile(join(dir, file), 'utf8');
      expect(text, file).to.include('Je vérifie — 确认 ✅').and.include('📚');
      expect(text, file).not.to.include('\\u');
    }
    const info = JSON.parse(await readFile(join(dir, 'dataset_info.json'), 'utf8')) as Record<string, { file_name: string }>;
    expect(LlamaFactoryDatasetInfo.safeParse(info).success).to.equal(true);
    expect(info).to.deep.equal({
      envfleet_sharegpt: {
        file_name: 'sft-sharegpt.jsonl',
        formatting: 'sharegpt',
        columns: { messages: 'conversations', system: 'system', tools: 'tools' },
        tags: { role_tag: 'from', content_tag: 'value', user_tag: 'human', assistant_tag: 'gpt', observation_tag: 'observation', function_tag: 'function_call' },
      },
      envfleet_alpaca: { file_name: 'sft-llamafactory.jsonl', formatting: 'alpaca', columns: { prompt: 'instruction', query: 'input', response: 'output', system: 'system', history: 'history' } },
    });
    for (const entry of Object.values(info)) expect(await readdir(dir)).to.include(entry.file_name);
  });

  it('says how many assistant turns of which trajectories are in no ShareGPT line, and why; an export with none says nothing', async () => {
    const clean = await exportRun(store, 'sft', await mkdtemp(join(tmpdir(), 'envfleet-sft-left-')));
    expect(clean.leftOut).to.deep.equal({});
    await store.createRun({ id: 'sft-left', createdAt: '2026-01-04T00:00:00.000Z', input: 'descriptions', options: runOptionsFrom(loadConfig({})) });
    const words = trajectory(
      [
        { role: 'system', content: 's' },
        { role: 'user', content: 'réserve le livre 📚' },
        { role: 'assistant', content: '我来查 <tool_call> 一下', tool_calls: [call('a', 'get', '{"x":1}')] },
        { role: 'tool', tool_call_id: 'a', content: '{}' },
        { role: 'assistant', content: 'fini ✅' },
      ],
      { id: 'trj-words', runId: 'sft-left', steps: [step(1, 'a', 'get', '{"x":1}')] },
    );
    const twoUsers = trajectory([{ role: 'system', content: 's' }, { role: 'user', content: 'a' }, { role: 'user', content: 'b' }, { role: 'assistant', content: 'c' }], { id: 'trj-two', runId: 'sft-left' });
    for (const t of [words, twoUsers, { ...PARALLEL, id: 'trj-parallel', runId: 'sft-left' }]) await store.putDoc('sft-left', 'trajectory', t.id, t);
    const result = await exportRun(store, 'sft-left', await mkdtemp(join(tmpdir(), 'envfleet-sft-left-')));
    expect(result.leftOut).to.deep.equal({ 'sft-sharegpt.jsonl': { turns: 3, trajectories: 2, byReason: { 'unreadable-call-turn': 2, 'turn-order': 1 } } });
  });

  it('never replaces a file of an export\'s name that no earlier export wrote (a hand-written one): it stops before writing anything, naming it', async () => {
    // A stranger's probe: a hand-written scenarios.jsonl was replaced without a word, where the README says such a file is kept.
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-hand-'));
    await writeFile(join(dir, 'environments.jsonl'), '{"mine": "écrit à la main ✍️"}\n');
    await writeFile(join(dir, 'sft-hf.jsonl'), '{"mine": true}\n');
    await writeFile(join(dir, 'notes.txt'), 'kept');
    const err = (await exportRun(store, 'sft', dir).then(() => null, (e: unknown) => e)) as Error & { code?: string };
    expect(err?.code).to.equal('INVALID_REQUEST');
    expect(err.message).to.equal(
      `${dir} holds environments.jsonl, sft-hf.jsonl, which no earlier envfleet export there wrote (the folder's .envfleet-export.json does not list them: written by hand, by another tool, or by an envfleet older than the manifest); this export would replace them, so it stopped without writing anything: move them away, or export into another folder`,
    );
    expect((await readdir(dir)).sort()).to.deep.equal(['environments.jsonl', 'notes.txt', 'sft-hf.jsonl']);
    expect(await readFile(join(dir, 'environments.jsonl'), 'utf8')).to.equal('{"mine": "écrit à la main ✍️"}\n');
    // Moved away, the export goes on; and an export into a folder an earlier export wrote replaces its files as before.
    await rm(join(dir, 'environments.jsonl'));
    await rm(join(dir, 'sft-hf.jsonl'));
    expect((await exportRun(store, 'sft', dir)).datasets['sft-hf.jsonl']).to.equal(2);
    expect((await exportRun(store, 'sft', dir)).datasets['sft-hf.jsonl']).to.equal(2);
    expect(await readFile(join(dir, 'notes.txt'), 'utf8')).to.equal('kept');
  });

  it('stops at a hand-written file before reading a transcript (it read and wrote them all first: minutes and gigabytes on a large run, or a full disk said instead)', async () => {
    // A run whose only trajectory's sink file is gone: reading transcripts would fail TRAJECTORY_ARCHIVE_MISSING.
    await store.createRun({ id: 'sft-early', createdAt: '2026-01-05T00:00:00.000Z', input: 'descriptions', options: runOptionsFrom(loadConfig({})) });
    const gone = join(await mkdtemp(join(tmpdir(), 'envfleet-sft-gone-')), 'trajectories', 'part-00000.jsonl');
    await store.putDoc('sft-early', 'trajectory', 'trj-parallel', archivedTrajectory({ ...PARALLEL, id: 'trj-parallel', runId: 'sft-early' }, gone));
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-early-'));
    await writeFile(join(dir, 'sft-hf.jsonl'), '{"mine": "手写 ✍️"}\n');
    const err = (await exportRun(store, 'sft-early', dir).then(() => null, (e: unknown) => e)) as Error & { code?: string };
    expect(err?.code, String(err)).to.equal('INVALID_REQUEST');
    expect(err.message).to.include(`${dir} holds sft-hf.jsonl, which no earlier envfleet export there wrote`);
    expect((await readdir(dir)).sort()).to.deep.equal(['sft-hf.jsonl']);
  });

  it('puts no file under its name when the manifest cannot be written (a full disk at the very end), so the next export is not refused its own files', async () => {
    // A stranger's probe: the files went under their names, then the manifest's write failed (no room); from then on every
    // export into the folder refused them as hand-written. A folder holding the manifest's name fails its write here.
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-nomanifest-'));
    await mkdir(join(dir, '.envfleet-export.json'));
    const err = (await exportRun(store, 'sft', dir).then(() => null, (e: unknown) => e)) as Error & { code?: string };
    expect(err?.code, String(err)).to.equal('OUTPUT_NOT_WRITABLE');
    expect((await readdir(dir)).sort()).to.deep.equal(['.envfleet-export.json']);
    await rm(join(dir, '.envfleet-export.json'), { recursive: true });
    expect((await exportRun(store, 'sft', dir)).datasets['sft-hf.jsonl']).to.equal(2);
    expect(JSON.parse(await readFile(join(dir, '.envfleet-export.json'), 'utf8'))).to.deep.equal({
      run: 'sft',
      files: ['dataset_info.json', 'environments.jsonl', 'rl-groups.jsonl', 'rl-scenarios.jsonl', 'sft-hf.jsonl', 'sft-llamafactory.jsonl', 'sft-openai.jsonl', 'sft-sharegpt.jsonl'],
    });
    // An export of fewer files after it: the manifest lists this one's alone, and the earlier one's other files are gone.
    const fewer = await exportRun(store, 'sft', dir, { formats: ['hf'] });
    expect(fewer.removed).to.include('sft-openai.jsonl');
    expect(JSON.parse(await readFile(join(dir, '.envfleet-export.json'), 'utf8'))).to.deep.equal({ run: 'sft', files: ['environments.jsonl', 'sft-hf.jsonl'] });
  });

  it('keeps or drops reasoning in every file by the option', async () => {
    const kept = await mkdtemp(join(tmpdir(), 'envfleet-sft-keep-'));
    const dropped = await mkdtemp(join(tmpdir(), 'envfleet-sft-drop-'));
    await exportRun(store, 'sft', kept, { reasoning: 'keep', formats: ['openai', 'sharegpt', 'llamafactory', 'hf'] });
    await exportRun(store, 'sft', dropped, { reasoning: 'drop', formats: ['openai', 'sharegpt', 'llamafactory', 'hf'] });
    for (const file of ['sft-openai.jsonl', 'sft-sharegpt.jsonl', 'sft-llamafactory.jsonl', 'sft-hf.jsonl']) {
      expect(await readFile(join(kept, file), 'utf8'), file).to.include('先付款');
      expect(await readFile(join(dropped, file), 'utf8'), file).not.to.include('先付款');
    }
  });

  it('writes dataset_info.json with the LLaMA-Factory files only', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-lf-'));
    await exportRun(store, 'sft', dir, { formats: ['llamafactory'] });
    expect(Object.keys(JSON.parse(await readFile(join(dir, 'dataset_info.json'), 'utf8')) as object)).to.deep.equal(['envfleet_alpaca']);
    const none = await mkdtemp(join(tmpdir(), 'envfleet-sft-none-'));
    await exportRun(store, 'sft', none, { formats: ['openai', 'hf'] });
    expect((await readdir(none)).sort()).to.deep.equal(['.envfleet-export.json', 'environments.jsonl', 'sft-hf.jsonl', 'sft-openai.jsonl']);
  });

  // LLaMA-Factory's own data/dataset_info.json, as its repository writes it (two-space indent), with a user's entry, a
  // number as the user wrote it and an integer-like key (which a JavaScript object would move first).
  const USER_ENTRIES = [
    ['alpaca_en_demo', '{\n    "file_name": "alpaca_en_demo.json"\n  }'],
    ['my_private_set', '{\n    "file_name": "mine.jsonl",\n    "formatting": "sharegpt",\n    "num_samples": 1.0\n  }'],
    ['2024', '{"file_name": "y2024.json"}'],
  ] as const;
  const USER_INFO = `{\n${USER_ENTRIES.map(([k, v]) => `  ${JSON.stringify(k)}: ${v}`).join(',\n')}\n}\n`;
  /** The top-level keys of a JSON object's text, in the order written. */
  const keysInOrder = (text: string) => [...text.matchAll(/^ {2}"([^"]+)": /gm)].map(m => m[1]);

  it('adds its entries to a dataset_info.json already in the folder (LLaMA-Factory data/), keeping every other entry as written and in its order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-lfdata-'));
    await writeFile(join(dir, 'dataset_info.json'), USER_INFO);
    const result = await exportRun(store, 'sft', dir);
    const text = await readFile(join(dir, 'dataset_info.json'), 'utf8');
    expect(keysInOrder(text)).to.deep.equal(['alpaca_en_demo', 'my_private_set', '2024', 'envfleet_sharegpt', 'envfleet_alpaca']);
    for (const [k, v] of USER_ENTRIES) expect(text, k).to.include(`${JSON.stringify(k)}: ${v}`);
    const info = JSON.parse(text) as Record<string, unknown>;
    expect(LlamaFactoryDatasetInfo.safeParse({ envfleet_sharegpt: info['envfleet_sharegpt'], envfleet_alpaca: info['envfleet_alpaca'] }).success).to.equal(true);
    expect(info['envfleet_sharegpt']).to.deep.include({ file_name: 'sft-sharegpt.jsonl', formatting: 'sharegpt' });
    expect(result.datasets).to.deep.include({ 'dataset_info.json': 2 });
    expect(result.infoKept).to.deep.equal(['alpaca_en_demo', 'my_private_set', '2024']);
    expect(result.foreign).to.deep.equal([]);
    // Again into the same folder: the same file, byte for byte.
    await exportRun(store, 'sft', dir);
    expect(await readFile(join(dir, 'dataset_info.json'), 'utf8')).to.equal(text);
    // An export with one LLaMA-Factory file: the other's entry goes, the user's stay.
    await exportRun(store, 'sft', dir, { formats: ['sharegpt'] });
    expect(keysInOrder(await readFile(join(dir, 'dataset_info.json'), 'utf8'))).to.deep.equal(['alpaca_en_demo', 'my_private_set', '2024', 'envfleet_sharegpt']);
    // An export without LLaMA-Factory files takes its entries out, and keeps the file with the user's, as they were.
    const without = await exportRun(store, 'sft', dir, { formats: ['openai'] });
    expect(without.removed).not.to.include('dataset_info.json');
    expect(without.infoKept).to.deep.equal(['alpaca_en_demo', 'my_private_set', '2024']);
    expect(await readFile(join(dir, 'dataset_info.json'), 'utf8')).to.equal(USER_INFO);
    // Its own dataset_info.json (no other entry) an export removes whole, as before.
    const own = await mkdtemp(join(tmpdir(), 'envfleet-sft-own-'));
    await exportRun(store, 'sft', own);
    expect((await exportRun(store, 'sft', own, { formats: ['openai'] })).removed).to.include('dataset_info.json');
    expect(await readdir(own)).not.to.include('dataset_info.json');
  });

  it('refuses a dataset_info.json in the folder that is not a JSON object, naming it, and writes nothing', async () => {
    for (const bad of ['{"alpaca_en_demo": {"file_name": "a.json"},}', '["alpaca_en_demo"]']) {
      const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-badinfo-'));
      await writeFile(join(dir, 'dataset_info.json'), bad);
      const err = await exportRun(store, 'sft', dir).then(
        () => null,
        (e: unknown) => e as { code?: string; message: string },
      );
      expect(err, bad).not.to.equal(null);
      expect(err!.code).to.equal('INPUT_FILE_INVALID');
      expect(err!.message).to.include(join(dir, 'dataset_info.json')).and.include('not a JSON object');
      expect(await readFile(join(dir, 'dataset_info.json'), 'utf8')).to.equal(bad);
      expect(await readdir(dir)).to.deep.equal(['dataset_info.json']);
      // Without the LLaMA-Factory files the export does not need it: kept and named, as any file it did not write.
      expect((await exportRun(store, 'sft', dir, { formats: ['openai'] })).foreign).to.deep.equal(['dataset_info.json']);
      expect(await readFile(join(dir, 'dataset_info.json'), 'utf8')).to.equal(bad);
    }
  });

  it('leaves the earlier export of the folder whole when an export into it fails part way: no file of the new run beside the old ones', async () => {
    // A stranger's probe: an export killed or failing on a full disk left environments.jsonl and scenarios.jsonl of the
    // new run beside sft-*.jsonl of the old one, under a manifest naming the old run.
    await store.createRun({ id: 'sft-next', createdAt: '2026-01-02T00:00:00.000Z', input: 'descriptions', options: runOptionsFrom(loadConfig({})) });
    await store.putDoc('sft-next', 'trajectory', 'trj-parallel', { ...PARALLEL, id: 'trj-parallel', runId: 'sft-next' });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-staged-'));
    await exportRun(store, 'sft', dir);
    const before = new Map<string, string>();
    for (const name of (await readdir(dir)).sort()) before.set(name, await readFile(join(dir, name), 'utf8'));
    // The groups are read last, after every SFT file of the new run is complete.
    const failing: RunStore = {
      ...store,
      listDocIds: (runId, kind) => (kind === 'group' ? Promise.reject(new Error('Redis went away')) : store.listDocIds(runId, kind)),
    };

    const err = await exportRun(failing, 'sft-next', dir).then(
      () => null,
      (e: unknown) => e as Error,
    );

    expect(err?.message).to.equal('Redis went away');
    expect((await readdir(dir)).sort()).to.deep.equal([...before.keys()]);
    for (const [name, text] of before) expect(await readFile(join(dir, name), 'utf8'), name).to.equal(text);
    // and the same export without the failure replaces it whole
    await exportRun(store, 'sft-next', dir);
    expect(await readFile(join(dir, 'sft-openai.jsonl'), 'utf8')).not.to.equal(before.get('sft-openai.jsonl'));
    expect((await readdir(dir)).filter(n => n.endsWith('.partial'))).to.deep.equal([]);
  });

  it('two exports into one folder at once: one is refused (EXPORT_FOLDER_BUSY, naming the other), and the folder holds the other export whole', async () => {
    // A reviewer's probe: both wrote the same NAME.partial; the file one committed held lines of both runs and a torn one.
    // With partial files of their own, which run each name ended up with, the manifest and the removals still crossed.
    await store.createRun({ id: 'sft-twice', createdAt: '2026-01-03T00:00:00.000Z', input: 'descriptions', options: runOptionsFrom(loadConfig({})) });
    await store.putDoc('sft-twice', 'trajectory', 'trj-parallel', { ...PARALLEL, id: 'trj-parallel', runId: 'sft-twice' });
    const alone: Record<string, string> = {};
    for (const run of ['sft', 'sft-twice']) {
      alone[run] = await mkdtemp(join(tmpdir(), 'envfleet-sft-alone-'));
      await exportRun(store, run, alone[run]);
    }
    for (let round = 0; round < 3; round += 1) {
      const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-twice-'));
      const runs = round % 2 ? ['sft-twice', 'sft'] : ['sft', 'sft-twice'];
      const settled = await Promise.allSettled(runs.map(run => exportRun(store, run, dir)));
      // Which one takes the lock is the file system's call; exactly one does.
      const won = settled.findIndex(r => r.status === 'fulfilled');
      expect(settled.map(r => r.status).sort()).to.deep.equal(['fulfilled', 'rejected']);
      const err = (settled[1 - won] as PromiseRejectedResult).reason as Error & { code?: string };
      expect(err.code).to.equal('EXPORT_FOLDER_BUSY');
      expect(err.message).to.match(new RegExp(`^another export is writing into ${dir} \\(run "${runs[won]}", process ${process.pid} on .+, since .+\\): wait for it to end, or export into another folder\\. If no export is running there .*remove ${join(dir, '.envfleet-export.lock')} and export again\\.$`));
      // The folder is the winner's export, file for file and byte for byte, and no lock or partial file is left.
      const files = (await readdir(dir)).sort();
      expect(files).to.deep.equal((await readdir(alone[runs[won]!]!)).sort());
      for (const name of files) expect(await readFile(join(dir, name), 'utf8'), name).to.equal(await readFile(join(alone[runs[won]!]!, name), 'utf8'));
    }
  });

  it('takes over the lock of an export whose process is gone, removing the partial files it left; refuses one held on another machine', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sft-stale-'));
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    await writeFile(join(dir, '.envfleet-export.lock'), `${JSON.stringify({ token: 'x', run: 'killed', pid: dead, host: hostname(), startedAt: '2026-01-01T00:00:00.000Z' })}\n`);
    await writeFile(join(dir, 'sft-openai.jsonl.0a1b2c3d.partial'), '{"messages": [{"role": "user", "content": "half a li');
    await writeFile(join(dir, 'notes.0a1b2c3d.partial'), 'not an export file: kept');
    const result = await exportRun(store, 'sft', dir);
    expect(result.datasets['sft-openai.jsonl']).to.equal(2);
    expect((await readdir(dir)).filter(n => n.endsWith('.partial') || n.endsWith('.lock'))).to.deep.equal(['notes.0a1b2c3d.partial']);
    // Two exports that find one stale lock at once: exactly one takes it over (a reviewer's probe: both did, 4 rounds in 200).
    for (let round = 0; round < 40; round += 1) {
      const raced = await mkdtemp(join(tmpdir(), 'envfleet-sft-stale-race-'));
      await writeFile(join(raced, '.envfleet-export.lock'), `${JSON.stringify({ token: 'z', run: 'killed', pid: dead, host: hostname(), startedAt: '2026-01-01T00:00:00.000Z' })}\n`);
      const settled = await Promise.allSettled([exportRun(store, 'sft', raced), exportRun(store, 'sft', raced)]);
      expect(settled.map(r => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code?: string }).code)).sort(), `round ${round}`).to.deep.equal(['EXPORT_FOLDER_BUSY', 'ok']);
      expect((await readdir(raced)).filter(n => n.includes('.lock') || n.endsWith('.partial') || n.endsWith('.stale'))).to.deep.equal([]);
    }
    // Another machine's export (a folder on a shared file system): its process cannot be looked at, so it is never taken over.
    const lock = `${JSON.stringify({ token: 'y', run: 'elsewhere', pid: dead, host: `${hostname()}-other`, startedAt: '2026-01-01T00:00:00.000Z' })}\n`;
    await writeFile(join(dir, '.envfleet-export.lock'), lock);
    const before = await readFile(join(dir, 'sft-openai.jsonl'), 'utf8');
    const err = (await exportRun(store, 'sft-twice', dir).then(() => null, (e: unknown) => e)) as Error & { code?: string };
    expect(err?.code).to.equal('EXPORT_FOLDER_BUSY');
    expect(err.message).to.include(`(run "elsewhere", process ${dead} on ${hostname()}-other, since 2026-01-01T00:00:00.000Z)`);
    expect(await readFile(join(dir, '.envfleet-export.lock'), 'utf8')).to.equal(lock);
    expect(await readFile(join(dir, 'sft-openai.jsonl'), 'utf8')).to.equal(before);
  });
});
