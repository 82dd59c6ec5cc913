import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '../../../config/index.js';
import { runOptionsFrom } from '../../../queues/submit.js';
import { exportRun } from '../../../src/datasets/export.js';
import { createRedisRunStore, type RunStore } from '../../../src/runs/store.js';
import { AlpacaLine, HFPromptCompletionLine, LlamaFactoryDatasetInfo, OpenAIFineTuneLine, ShareGPTLine } from '../../helpers/formats.js';
import { BROKEN, PARALLEL } from '../../helpers/sft-fixtures.js';

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
});
