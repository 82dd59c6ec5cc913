import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { readTasksFile } from '../../../src/synthesis/inputs.js';

describe('envfleet synth --tasks: the ids of a tasks file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-task-ids-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const read = async (lines: readonly object[]) => {
    const path = join(dir, `tasks-${Math.random().toString(36).slice(2)}.jsonl`);
    await writeFile(path, lines.map(l => JSON.stringify(l)).join('\n') + '\n');
    return readTasksFile(path);
  };

  it('two different ids that differ only in characters outside A-Z a-z 0-9 _ . - are two tasks, not a duplicate', async () => {
    const r = await read([
      { id: '日本', task: 'Return two overdue books at the library.' },
      { id: '中国', task: 'Park my car on level 2.' },
      { id: 'a/b', task: 'Book a table.' },
      { id: 'a b', task: 'Cancel the booking.' },
    ]);
    expect(r.problems).to.deep.equal([]);
    expect(r.items.map(t => t.task)).to.deep.equal(['Return two overdue books at the library.', 'Park my car on level 2.', 'Book a table.', 'Cancel the booking.']);
    const ids = r.items.map(t => t.id);
    expect(new Set(ids).size).to.equal(4);
    for (const id of ids) expect(id).to.match(/^[A-Za-z0-9_.-]+$/);
  });

  it('keeps the ids it kept before: safe ids as written, one unsafe id with its characters replaced', async () => {
    const r = await read([{ id: 't1', task: 'a' }, { id: 'ü1', task: 'b' }, { id: 7, task: 'c' }, { task: 'd' }]);
    expect(r.items.map(t => t.id).slice(0, 3)).to.deep.equal(['t1', '_1', '7']);
    expect(r.items[3]!.id).to.match(/^task-[0-9a-f]{12}$/);
  });

  it('a real duplicate id is still a bad line, named as the file writes it', async () => {
    const r = await read([{ id: '日本', task: 'a' }, { id: '日本', task: 'b' }]);
    expect(r.items.map(t => t.task)).to.deep.equal(['a']);
    expect(r.problems).to.deep.equal([{ line: 2, problem: 'id "日本" appears on an earlier line' }]);
  });
});
