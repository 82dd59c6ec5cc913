import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ENVSCALER_FIELDS } from '../../../src/importers/envscaler-records.js';
import { readJsonRecords, type JsonFileEnd, type JsonRecord } from '../../../src/importers/json-records.js';

async function readAll(path: string): Promise<{ records: JsonRecord[]; end: JsonFileEnd }> {
  const it = readJsonRecords(path, ENVSCALER_FIELDS);
  const records: JsonRecord[] = [];
  for (;;) {
    const next = await it.next();
    if (next.done) return { records, end: next.value };
    records.push(next.value);
  }
}

describe('importers: reading JSON records (array, object keyed by id, JSON Lines)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-records-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const file = async (name: string, text: string | Buffer) => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };

  it('reads a JSON object keyed by id member by member, with each key and line, and skips a malformed member', async () => {
    const path = await file('envs.json', '\uFEFF{\n  "env_1": {"env_id": "env_1", "x": "{[,]}\\" 茶"},\n  "env_2": {"env_id": "env_2", "x": tru},\n  "env_3": {"env_id": "env_3"}\n}\n');
    const { records, end } = await readAll(path);
    expect(end).to.deep.equal({ shape: 'object', problem: null });
    expect(records.map(r => [r.index, r.key, r.line])).to.deep.equal([
      [0, 'env_1', 2],
      [1, 'env_2', 3],
      [2, 'env_3', 4],
    ]);
    expect(records[0]!.value).to.deep.equal({ env_id: 'env_1', x: '{[,]}" 茶' });
    expect(records[1]!.error).to.match(/not valid JSON/);
    expect(records[2]!.value).to.deep.equal({ env_id: 'env_3' });
  });

  it('reads a JSON array element by element', async () => {
    const path = await file('list.json', '[{"task": "a"},\n {"task": "b", "bad": [1,,2]},\n {"task": "c"}]');
    const { records, end } = await readAll(path);
    expect(end.shape).to.equal('array');
    expect(records.map(r => r.value ?? r.error!.slice(0, 14))).to.deep.equal([{ task: 'a' }, 'not valid JSON', { task: 'c' }]);
    expect(records[1]!.line).to.equal(2);
  });

  it('reads JSON Lines whose first object starts with a record field (even in a file named .json), line by line', async () => {
    const path = await file('rows.json', '{"env_id": "e1", "tools": "[]"}\n{"env_id": "e2", "tools": \n\n{"env_id": "e3"}\r\n');
    const { records, end } = await readAll(path);
    expect(end.shape).to.equal('lines');
    expect(records.map(r => [r.line, r.value ?? 'error'])).to.deep.equal([
      [1, { env_id: 'e1', tools: '[]' }],
      [2, 'error'],
      [4, { env_id: 'e3' }],
    ]);
  });

  it('keeps multi-byte text whole across chunk boundaries (CJK, emoji, accents)', async () => {
    const text = '茶馆 🍵 café naïve Zoë 🎂'.repeat(9000);
    const path = await file('big.json', JSON.stringify([{ task: text }, { task: 'b' }]));
    const { records } = await readAll(path);
    expect((records[0]!.value as { task: string }).task).to.equal(text);
    expect(records).to.have.length(2);
  });

  it('reports a truncated file: the records before are read, the last one is an error, and the file has a problem', async () => {
    const path = await file('cut.json', '{"env_1": {"env_id": "env_1"}, "env_2": {"env_id": "env_2", "tools": [{"na');
    const { records, end } = await readAll(path);
    expect(records[0]!.value).to.deep.equal({ env_id: 'env_1' });
    expect(records[1]).to.include({ key: 'env_2' });
    expect(records[1]!.error).to.match(/ends inside this record/);
    expect(end.problem).to.match(/truncated/);
  });

  it('an empty file has no records', async () => {
    const { records, end } = await readAll(await file('empty.json', '\n  \n'));
    expect(records).to.deep.equal([]);
    expect(end.shape).to.equal('empty');
  });
});
