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
    expect(records.map(r => r.text)).to.deep.equal(['{"env_id": "env_1", "x": "{[,]}\\" 茶"}', undefined, '{"env_id": "env_3"}']);
    expect(records[1]!.error).to.match(/not valid JSON/);
    expect(records[2]!.value).to.deep.equal({ env_id: 'env_3' });
  });

  it('refuses a file that is not UTF-8 (Latin-1, UTF-16) with the line and byte, and reads a character cut by a read boundary whole', async () => {
    const latin = await file('latin.json', Buffer.concat([Buffer.from('[{"task": "a"},\n {"task": "R'), Buffer.from([0xe9]), Buffer.from('server"}]')]));
    const err = await readAll(latin).then(() => null, (e: unknown) => e as Error);
    expect(err?.message).to.equal(`${latin} line 2: not UTF-8 text: byte 0xE9 at byte 29 of the file (as Latin-1 / Windows-1252 writes accented letters); save the file as UTF-8 and run the command again`);
    const utf16 = await file('utf16.json', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('[{"task": "a"}]', 'utf16le')]));
    expect((await readAll(utf16).then(() => null, (e: unknown) => e as Error))?.message).to.equal(`${utf16}: the file is UTF-16LE text; save it as UTF-8 and run the command again`);
    // 🙂 (4 bytes) and é (2 bytes) across the 64 KiB reads: decoded whole, not as U+FFFD.
    const head = '[{"task": "';
    const pad = 'x'.repeat((1 << 16) - Buffer.byteLength(head) - 2);
    const text = `${head}${pad}🙂é"}, {"task": "第七本"}]`;
    const { records } = await readAll(await file('cut.json', text));
    expect(records.map(r => r.value)).to.deep.equal([{ task: `${pad}🙂é` }, { task: '第七本' }]);
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

  it('reads one pretty-printed record (a first line that is only "{"), and jq\'s stream of them, record by record; a malformed one is skipped', async () => {
    const one = { env_id: 'env_7_rl', env_class_name: 'TeaHouse', tools: [{ name: 'book', parameters: { type: 'object' } }], note: '靠窗 🍵 « près » {[,]}"' };
    const single = await readAll(await file('one.json', `\uFEFF${JSON.stringify(one, null, 2).replace(/\n/g, '\r\n')}\r\n`));
    expect(single.end).to.deep.equal({ shape: 'values', problem: null });
    // The record's text comes with it (the importers read numbers from it as Python would).
    expect(single.records).to.deep.equal([{ index: 0, line: 1, value: one, text: JSON.stringify(one, null, 2).replace(/\n/g, '\r\n') }]);

    const two = { env_id: 'env_8_rl', x: [1, { y: '}' }] };
    const stream = `${JSON.stringify(one, null, 2)}\n{\n  "env_id": "bad",\n  "x": tru\n}\n${JSON.stringify(two, null, 4)}\n`;
    const { records, end } = await readAll(await file('stream.json', stream));
    expect(end).to.deep.equal({ shape: 'values', problem: null });
    expect(records.map(r => [r.index, r.line, r.value ?? r.error!.slice(0, 14)])).to.deep.equal([
      [0, 1, one],
      [1, JSON.stringify(one, null, 2).split('\n').length + 1, 'not valid JSON'],
      [2, JSON.stringify(one, null, 2).split('\n').length + 5, two],
    ]);

    const cut = await readAll(await file('cut-one.json', stream.slice(0, stream.length - 12)));
    expect(cut.records.map(r => r.value ?? r.error!.slice(0, 14))).to.deep.equal([one, 'not valid JSON', 'the file ends ']);
    expect(cut.end.problem).to.match(/truncated/);
    // A record over many chunks of the stream (64 KiB each), with multi-byte text across their boundaries.
    const big = { env_id: 'env_9_rl', env_class_code: 'class Big:\n    """茶馆 🍵 café {"""\n'.repeat(6000) };
    expect((await readAll(await file('big-one.json', JSON.stringify(big, null, 2)))).records).to.deep.equal([{ index: 0, line: 1, value: big, text: JSON.stringify(big, null, 2) }]);
    // A single-line record is still JSON Lines.
    expect((await readAll(await file('line.json', JSON.stringify(one) + '\n'))).end.shape).to.equal('lines');
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
