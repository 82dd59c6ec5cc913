import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';

const ROOT = new URL('../../../', import.meta.url).pathname;

/** The files a reader of the repository follows: README, docs/ and the sources' comments. */
function readable(): string[] {
  const files = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter(f => f.endsWith('.md')).map(f => `docs/${f}`)];
  for (const dir of ['src', 'http', 'cli', 'queues', 'workers', 'config']) {
    for (const f of readdirSync(join(ROOT, dir), { recursive: true }) as string[]) if (/\.(ts|mjs)$/.test(f)) files.push(`${dir}/${f}`);
  }
  return files;
}

describe('docs and sources cite only what the repository holds', () => {
  it('no reference to the shared/reference notes, which are not in the repository', () => {
    const citing = readable().filter(f => readFileSync(join(ROOT, f), 'utf8').includes('shared/reference/'));
    expect(citing).to.deep.equal([]);
  });
});
