import { mkdir, mkdtemp, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { forEachFullTrajectory, readTrajectoryLines, shardsMovedTo } from '../../../src/datasets/shards.js';
import type { RunStore } from '../../../src/runs/store.js';
import { JsonlWriter } from '../../../src/datasets/jsonl-writer.js';
import { withoutLoneSurrogates } from '../../../src/util/text.js';
import { RawJson } from '../../../src/util/raw-json.js';
import { rejection } from '../../helpers/assert.js';

describe('shard files', () => {
  it('finds trajectory lines by id, also ids with escapes and lines whose id is not the first field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-shard-'));
    const path = join(dir, 'part-00000.jsonl');
    const odd = 'run.s"1\\x.non-conversational.0';
    const lines = [JSON.stringify({ id: 'a', reward: 1 }), JSON.stringify({ id: odd, reward: 0.5 }), JSON.stringify({ reward: 0, id: 'c' }), JSON.stringify({ id: 'a', reward: 9 })];
    await writeFile(path, `${lines.join('\n')}\n`);
    const found = await readTrajectoryLines(path, new Set(['a', odd, 'c']));
    expect([...found.keys()].sort()).to.deep.equal(['a', 'c', odd].sort());
    // The first line of an id wins (the sink never writes one twice; a hand-edited file might).
    expect(JSON.parse(found.get('a')!)).to.deep.equal({ id: 'a', reward: 1 });
    expect(JSON.parse(found.get(odd)!)).to.deep.equal({ id: odd, reward: 0.5 });
  });

  it('reads a run written into two sink folders when one was moved: only the shards no longer at their place are looked for in --trajectories', async () => {
    // A stranger's probe: the sink's full-disk error says to give it another --out; every folder has a part-00000.jsonl,
    // and all of them were looked for in the moved folder (the folder left in place: "missing", --skip-missing dropped them).
    const root = await mkdtemp(join(tmpdir(), 'envfleet-shard-two-é-'));
    const first = join(root, 'out1', 'trajectories');
    const second = join(root, 'out 2 🎯', 'trajectories');
    await mkdir(first, { recursive: true });
    await mkdir(second, { recursive: true });
    await writeFile(join(first, 'part-00000.jsonl'), `${JSON.stringify({ id: 'a', note: '一' })}\n`);
    await writeFile(join(second, 'part-00000.jsonl'), `${JSON.stringify({ id: 'b', note: '二 😀' })}\n`);
    const at: Record<string, string> = { a: join(first, 'part-00000.jsonl'), b: join(second, 'part-00000.jsonl') };
    const store = { getDoc: (_run: string, _kind: string, id: string) => Promise.resolve({ id, archived: { path: at[id], line: 0 } }) } as unknown as RunStore;
    await rename(join(root, 'out1'), join(root, 'moved'));

    const seen: string[] = [];
    await forEachFullTrajectory(store, 'r', ['a', 'b'], { relocate: shardsMovedTo(join(root, 'moved', 'trajectories')) }, t => void seen.push(`${t.id} ${(t as unknown as { note: string }).note}`));

    expect(seen.sort()).to.deep.equal(['a 一', 'b 二 😀']);

    // A sink of another run made a new part-00000.jsonl where the moved one was (a reviewer's check: it hid the moved one).
    await mkdir(first, { recursive: true });
    await writeFile(join(first, 'part-00000.jsonl'), `${JSON.stringify({ id: 'other-run', note: '他' })}\n`);
    const again: string[] = [];
    await forEachFullTrajectory(store, 'r', ['a', 'b'], { relocate: shardsMovedTo(join(root, 'moved', 'trajectories')) }, t => void again.push(t.id));
    expect(again.sort()).to.deep.equal(['a', 'b']);
  });

  it('says which trajectories are missing and where they were looked for', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-shard-'));
    const path = join(dir, 'part-00000.jsonl');
    await writeFile(path, `${JSON.stringify({ id: 'a' })}\n`);
    const missing = await rejection(readTrajectoryLines(path, new Set(['a', 'b'])));
    expect(missing).to.have.property('code', 'TRAJECTORY_ARCHIVE_MISSING');
    expect(String(missing)).to.include('(first b)').and.include(path);
    const gone = await rejection(readTrajectoryLines(join(dir, 'nope.jsonl'), new Set(['a'])));
    expect(gone).to.have.property('code', 'TRAJECTORY_ARCHIVE_MISSING');
    expect(String(gone)).to.include('cannot be read');
  });

  it('names the file and the line of a trajectory that is not whole JSON (a copy cut inside a multi-byte character), and says what to do', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-shard-ÄÖ-'));
    const path = join(dir, 'part-00000.jsonl');
    const whole = JSON.stringify({ id: 'a', messages: [{ role: 'user', content: 'Réserve 🚗 駐車場' }] });
    const second = Buffer.from(JSON.stringify({ id: 'b', messages: [{ role: 'user', content: 'Ça marche 🚗 駐車場' }] }));
    // Cut in the middle of the car emoji's four bytes.
    const cut = second.subarray(0, second.indexOf(Buffer.from('🚗')) + 2);
    await writeFile(path, Buffer.concat([Buffer.from(`${whole}\n`), cut]));
    const store = { getDoc: (_run: string, _kind: string, id: string) => Promise.resolve({ id, archived: { path, line: 0 } }) } as unknown as RunStore;
    const seen: string[] = [];
    const err = await rejection(forEachFullTrajectory(store, 'r', ['a', 'b'], {}, t => void seen.push(t.id)));
    expect(seen).to.deep.equal(['a']);
    expect(err).to.have.property('code', 'TRAJECTORY_ARCHIVE_MISSING');
    expect(String(err)).to.include(`${path}, whose line 2 is not a whole trajectory`).and.to.include('(first b)').and.to.include('Copy the shard again');
  });

  it('passes over a torn line in the middle of a shard (a sink that died mid-write, another run\'s lines after it) and reads the whole copy written later', async () => {
    // A reviewer's check: the sink keeps complete lines after a torn one; the reader failed the whole shard on it, and a
    // torn line still holding its id was taken for that trajectory's line.
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-shard-torn-'));
    const path = join(dir, 'part-00000.jsonl');
    const a = JSON.stringify({ id: 'a', note: 'Zoë 😀' });
    const b = JSON.stringify({ id: 'b', note: '駐車場 🚗' });
    const c = JSON.stringify({ id: 'c', note: 'ok' });
    await writeFile(path, `${a}\n${b.slice(0, 18)}\n${c}\n${b}\n`);
    const found = await readTrajectoryLines(path, new Set(['a', 'b', 'c']));
    expect(Object.fromEntries(found)).to.deep.equal({ a, b, c });
    const store = { getDoc: (_run: string, _kind: string, id: string) => Promise.resolve({ id, archived: { path, line: 0 } }) } as unknown as RunStore;
    const seen: string[] = [];
    expect(await forEachFullTrajectory(store, 'r', ['a', 'b', 'c'], {}, t => void seen.push(t.id))).to.equal(3);
    expect(seen).to.deep.equal(['a', 'c', 'b']);
  });
});

describe('JsonlWriter', () => {
  it('writes a lone surrogate as U+FFFD (a loader could not encode the line as UTF-8), and leaves pairs, emoji and an escaped backslash as they are', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-jsonl-'));
    const path = join(dir, 'sft.jsonl');
    const w = new JsonlWriter(path);
    await w.write({ cut: 'réponse \ud83d', low: '\ude00 fin', pair: 'ok 😀 駐車場', text: '\\ud800 is how JSON writes it' });
    // A raw text kept as the runtime wrote it (a Python state), with its own escapes.
    await w.write({ state: new RawJson('{"name":"\\ud800x","emoji":"\\ud83d\\ude00","slash":"\\\\ud800"}') });
    await w.close();
    const lines = (await readFile(path, 'utf8')).trim().split('\n');
    const first = JSON.parse(lines[0]!) as Record<string, string>;
    expect(first).to.deep.equal({ cut: 'réponse \ufffd', low: '\ufffd fin', pair: 'ok 😀 駐車場', text: '\\ud800 is how JSON writes it' });
    expect(JSON.parse(lines[1]!)).to.deep.equal({ state: { name: '\ufffdx', emoji: '😀', slash: '\\ud800' } });
    // Every string a loader reads from the lines is well-formed (no lone surrogate): it encodes to UTF-8 and back unchanged.
    const strings = (v: unknown): string[] => (typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(strings) : []);
    for (const s of lines.flatMap(line => strings(JSON.parse(line)))) expect(Buffer.from(s, 'utf8').toString('utf8')).to.equal(s);
    expect(withoutLoneSurrogates('{"a":"plain"}')).to.equal('{"a":"plain"}');
  });

  it('writes many records through backpressure and shows the file under its name only when closed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-jsonl-'));
    const path = join(dir, 'out.jsonl');
    const w = new JsonlWriter(path);
    const big = 'x'.repeat(10_000);
    for (let i = 0; i < 2_000; i += 1) await w.write({ i, big });
    expect(await readdir(dir)).to.deep.equal(['out.jsonl.partial']);
    expect(await w.close()).to.equal(2_000);
    expect(await readdir(dir)).to.deep.equal(['out.jsonl']);
    const lines = (await readFile(path, 'utf8')).trim().split('\n');
    expect(lines).to.have.length(2_000);
    expect((JSON.parse(lines[1_999]!) as { i: number }).i).to.equal(1_999);
  });

  it('leaves nothing behind when aborted', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-jsonl-'));
    const w = new JsonlWriter(join(dir, 'out.jsonl'));
    await w.write({ a: 1 });
    await w.abort();
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('leaves nothing behind when aborted before its file is even open (an export that fails at once)', async () => {
    // The open is asynchronous; removing the partial file before it is through let it come back
    // afterwards (now and then: hence many writers).
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-jsonl-'));
    for (let i = 0; i < 400; i += 1) {
      const w = new JsonlWriter(join(dir, `out-${i}.jsonl`));
      if (i % 2) await w.write({ i });
      await w.abort();
    }
    // Whatever an open or a write still had in flight has landed by now.
    await new Promise(resolve => setTimeout(resolve, 50));
    expect(await readdir(dir)).to.deep.equal([]);
  });
});
